//! The Python and JavaScript SDKs and examples (`guest-udfs/sdk-*`, `*-py`, `*-js`, built by
//! `sluice udf build` in `cargo xtask test`): their native unit tests pass, the built components reproduce their
//! golden samples through `sluice udf test`, and the pure-Python ECG scorer reproduces H2O's
//! scores on the test data within 1e-12 inside Wasm.

use sluice_harness::root;
use std::process::Command;

/// Runs `cmd`, which must succeed; answers its stdout and stderr.
fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The SDKs' own tests and the examples', natively (CPython, Node.js).
#[test]
fn the_sdks_and_examples_pass_their_native_unit_tests() {
    for example in ["sdk-python", "unit-convert-py", "anomaly-py"] {
        run_ok(
            Command::new("python3")
                .args(["-m", "unittest", "-v"])
                .current_dir(root().join("guest-udfs").join(example))
                .env("PYTHONPATH", root().join("guest-udfs/sdk-python"))
                .env("PYTHONDONTWRITEBYTECODE", "1"),
        );
    }
    for example in ["sdk-js", "unit-convert-js"] {
        run_ok(
            Command::new("node")
                .arg("--test")
                .current_dir(root().join("guest-udfs").join(example)),
        );
    }
    // The JS example carries the SDK as a scaffold does: the same file.
    assert_eq!(
        std::fs::read_to_string(root().join("guest-udfs/unit-convert-js/sluice_udf.js")).ok(),
        std::fs::read_to_string(root().join("guest-udfs/sdk-js/sluice_udf.js")).ok(),
        "guest-udfs/unit-convert-js/sluice_udf.js is a copy of guest-udfs/sdk-js/sluice_udf.js"
    );
}

#[test]
fn the_unit_converters_match_their_golden_samples() {
    for example in ["unit-convert", "unit-convert-py", "unit-convert-js"] {
        let samples = root().join("guest-udfs").join(example).join("samples");
        let (_, verdict) = run_ok(
            Command::new(sluice_harness::sluice_bin())
                .args(["udf", "test", example, "--udf-dir"])
                .arg(sluice_harness::udf_dir())
                .arg("--input")
                .arg(samples.join("input.txt"))
                .arg("--expect")
                .arg(samples.join("expected.txt")),
        );
        assert!(
            verdict.contains("ok: 3 output lines match"),
            "{example}: {verdict}"
        );
    }
}

#[test]
fn the_python_anomaly_scorer_reproduces_h2o_in_wasm() {
    let data = root().join("tests/data");
    let (out, _) = run_ok(
        Command::new(sluice_harness::sluice_bin())
            .args(["udf", "test", "anomaly-py", "--udf-dir"])
            .arg(sluice_harness::udf_dir())
            .arg("--input")
            .arg(data.join("ecg_discord_test.msgs")),
    );
    let expected: Vec<(String, String)> =
        std::fs::read_to_string(data.join("ecg_test_expected_mse.tsv"))
            .expect("expected scores")
            .lines()
            .map(|l| {
                let (event, mse) = l.split_once('\t').expect("EVENTID<TAB>MSE");
                (event.to_string(), mse.to_string())
            })
            .collect();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{out}");
    let mut same_digits = 0;
    for (line, (event, mse)) in lines.iter().zip(&expected) {
        let prefix = format!("{{\"eventid\":{event},\"anomaly_val\":");
        let got = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or_else(|| panic!("event {event}: {line}"));
        let (got_value, want): (f64, f64) = (
            got.parse().expect("a number"),
            mse.parse().expect("a number"),
        );
        assert!(
            ((got_value - want) / want).abs() <= 1e-12,
            "event {event}: {got} against H2O's {mse}"
        );
        same_digits += usize::from(got == mse);
    }
    // Every digit H2O printed, as the Rust scorer does.
    assert_eq!(same_digits, expected.len());
}

/// What the converters make of `{"sensor":"sN","celsius":5N}`: the same number, written
/// `9N+32` by JSON.stringify (JavaScript) and `9N+32.0` by json.dumps (Python), so each output
/// tells which language's version made it.
fn converted(n: u64, python: bool) -> String {
    let fahrenheit = 9 * n + 32;
    let number = if python {
        format!("{fahrenheit}.0")
    } else {
        fahrenheit.to_string()
    };
    format!("{{\"fahrenheit\":{number},\"sensor\":\"s{n}\"}}")
}

/// `sluice udf push` of a JavaScript UDF, a pipeline using it on `sluice serve`, then a Python
/// version of it pushed under the same name while records flow: swapped between batches,
/// nothing lost or duplicated, every record made by one version and the versions in input
/// order; then `sluice udf rollback` brings the JavaScript version back.
#[test]
fn a_pushed_udf_changes_language_under_load_and_rolls_back() {
    use sluice_harness::serve::Serve;
    use sluice_harness::{publish_all, Collector, Mosquitto};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let broker = Mosquitto::start();
    let state = tempfile::tempdir().expect("tempdir");
    let serve = Serve::start(state.path(), &[]);
    let push = |file: &str| {
        let module = sluice_harness::udf_dir().join(file);
        let pushed = serve.cli(&[
            "udf",
            "push",
            module.to_str().expect("utf-8 path"),
            "--name",
            "convert",
        ]);
        assert!(pushed.status.success(), "{pushed:?}");
    };
    push("unit-convert-js.wasm");
    let collector = Collector::subscribe(broker.port, &["convert/out"]);
    serve.create_pipeline(
        "convert",
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker.url = "{url}"
broker.client_id = "convert-input"
broker.clean_session = false
topics = ["convert/in"]
qos = 1

[transforms.convert]
type = "udf"
inputs = ["input"]
module = "convert"
batch_size = 8

[sinks.output]
type = "mqtt"
inputs = ["convert"]
broker.url = "{url}"
topic = "convert/out"
qos = 1
"#,
            url = broker.url()
        ),
    );
    serve.wait_until("the pipeline is connected", |_| {
        serve.pipeline("convert")["components"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["connected"] != false))
    });
    let live_version = || {
        serve.call("GET", "/udfs", None).json()["udfs"][0]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let javascript = live_version();
    let language = || serve.call("GET", "/udfs", None).json()["udfs"][0]["language"].clone();
    assert_eq!(language(), "javascript");

    // Publish in tens until the swap is seen, then forty more.
    let (swapped, published) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let publisher = {
        let (swapped, published, port) = (swapped.clone(), published.clone(), broker.port);
        std::thread::spawn(move || {
            let mut after_swap = 0;
            while after_swap < 4 {
                let from = published.load(Ordering::SeqCst);
                let payloads: Vec<Vec<u8>> = (from..from + 10)
                    .map(|n| format!("{{\"sensor\":\"s{n}\",\"celsius\":{}}}", 5 * n).into_bytes())
                    .collect();
                publish_all(port, "convert/in", &payloads);
                published.store(from + 10, Ordering::SeqCst);
                if swapped.load(Ordering::SeqCst) {
                    after_swap += 1;
                }
            }
        })
    };
    assert_eq!(
        collector.take(10).len(),
        10,
        "the JavaScript version serves"
    );
    push("unit-convert-py.wasm");
    serve.wait_for_log("udf swapped between batches");
    swapped.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher");
    let total = published.load(Ordering::SeqCst);
    let outputs: Vec<String> = collector
        .take(total as usize - 10)
        .into_iter()
        .map(|(_, value)| String::from_utf8_lossy(&value).into_owned())
        .collect();

    let mut seen_python = false;
    let (mut by_js, mut by_python) = (10, 0);
    for (n, output) in (10..total).zip(&outputs) {
        if *output == converted(n, false) && !seen_python {
            by_js += 1;
        } else if *output == converted(n, true) {
            seen_python = true;
            by_python += 1;
        } else {
            panic!("record {n}: {output} is not its conversion by the version in order");
        }
    }
    assert_eq!(by_js + by_python, total, "every record once, in order");
    assert!(by_python >= 40, "the Python version served after the swap");
    assert_eq!(language(), "python");
    let status = serve.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("(python)"),
        "{status:?}"
    );

    let rolled = serve.cli(&["udf", "rollback", "convert"]);
    assert!(rolled.status.success(), "{rolled:?}");
    assert_eq!(live_version(), javascript);
    // The transform swaps at a batch boundary once the JavaScript instance is ready: records
    // go on through Python until then, and through JavaScript from then on.
    let mut back = false;
    for n in total..total + 500 {
        publish_all(
            broker.port,
            "convert/in",
            &[format!("{{\"sensor\":\"s{n}\",\"celsius\":{}}}", 5 * n).into_bytes()],
        );
        let output = String::from_utf8_lossy(&collector.take(1)[0].1).into_owned();
        if output == converted(n, false) {
            back = true;
        } else {
            assert!(
                !back && output == converted(n, true),
                "record {n}: {output} is not its conversion by the version in order"
            );
        }
        if back && n >= total + 5 {
            break;
        }
    }
    assert!(back, "the rolled-back JavaScript version serves again");
    assert!(serve.stop().success());
}

/// A Python or JavaScript UDF that does not compile: `sluice udf build` fails naming the file
/// and line, and the module already in the UDF directory is left as it was.
#[test]
fn a_broken_build_names_file_and_line_and_keeps_the_old_module() {
    let work = tempfile::tempdir().expect("tempdir");
    let udfs = work.path().join("udfs");
    for (lang, name, file, before, after, expected) in [
        (
            "python",
            "broken-py",
            "app.py",
            "out = text.upper()",
            "out = text.upper(",
            "app.py, line 15",
        ),
        (
            "js",
            "broken-js",
            "app.js",
            "const out = text.toUpperCase();",
            "const out = text.toUpperCase(;",
            "app.js:14:",
        ),
    ] {
        let sluice = |args: &[&str]| {
            Command::new(sluice_harness::sluice_bin())
                .args(args)
                .arg("--udf-dir")
                .arg(&udfs)
                .output()
                .expect("run sluice")
        };
        let folder = work.path().join(name);
        let created = Command::new(sluice_harness::sluice_bin())
            .args(["udf", "new", name, "--lang", lang, "--dir"])
            .arg(work.path())
            .output()
            .expect("udf new");
        assert!(created.status.success(), "{created:?}");
        let built = sluice(&["udf", "build", folder.to_str().expect("utf-8")]);
        assert!(built.status.success(), "{built:?}");
        let module = udfs.join(format!("{name}.wasm"));
        let good = std::fs::read(&module).expect("the built module");

        let app = folder.join(file);
        let code = std::fs::read_to_string(&app).expect("the scaffold");
        assert!(code.contains(before), "{file} has `{before}`");
        std::fs::write(&app, code.replace(before, after)).expect("break it");
        let broken = sluice(&["udf", "build", folder.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&broken.stderr);
        assert!(!broken.status.success(), "{lang}: a broken build fails");
        assert!(
            stderr.contains(expected),
            "{lang}: names `{expected}`:\n{stderr}"
        );
        assert!(stderr.contains("SyntaxError"), "{lang}:\n{stderr}");
        assert!(
            stderr.contains(&format!("could not build {}", app.display())),
            "{lang}:\n{stderr}"
        );
        assert!(!stderr.contains("Stack backtrace"), "{lang}:\n{stderr}");
        assert_eq!(
            std::fs::read(&module).expect("the module"),
            good,
            "{lang}: the module in the UDF directory is untouched"
        );
    }
}
