//! The Python and JavaScript examples (`guest-udfs/*-py`, `*-js`, built by `sluice udf build`
//! in `cargo xtask test`): their native unit tests pass, the built components reproduce their
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

#[test]
fn the_examples_pass_their_native_unit_tests() {
    for example in ["unit-convert-py", "anomaly-py"] {
        run_ok(
            Command::new("python3")
                .args(["-m", "unittest", "-v"])
                .current_dir(root().join("guest-udfs").join(example))
                .env("PYTHONPATH", root().join("guest-udfs/sdk-python"))
                .env("PYTHONDONTWRITEBYTECODE", "1"),
        );
    }
    run_ok(
        Command::new("node")
            .arg("--test")
            .current_dir(root().join("guest-udfs/unit-convert-js")),
    );
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
