//! `docs/tutorial.md`, run for real in Rust and in Python, and the same path in JavaScript:
//! new, native unit test, build, golden test, run in a pipeline on Mosquitto, edit, build
//! again, and the running host serves the new version. Every command the tutorial paths run
//! must appear verbatim in the tutorial (so neither can change without the other).

use sluice_harness::{Collector, Mosquitto, PipelineFile, SluiceRun};
use std::path::Path;
use std::process::Command;

/// One language's way through the tutorial.
struct Walk {
    /// The UDF's name (and the folder `sluice udf new` makes).
    name: &'static str,
    /// `--lang`.
    lang: &'static str,
    /// The native unit test: program and arguments, run in the new folder.
    unit_test: &'static [&'static str],
    /// The file the edit step changes, in the folder, and the line before and after.
    edit: (&'static str, &'static str, &'static str),
    /// Whether the tutorial documents this walk (its commands must then appear verbatim).
    documented: bool,
}

fn walk(walk: Walk) {
    let tutorial = std::fs::read_to_string(sluice_harness::root().join("docs/tutorial.md"))
        .expect("docs/tutorial.md");
    let work = tempfile::tempdir().expect("tempdir");
    let (src, udfs) = (work.path().join("udfs-src"), work.path().join("udfs"));
    let folder = src.join(walk.name);
    // Shared across runs so the Rust scaffold's dependencies are compiled once.
    let target = sluice_harness::root().join("target/tutorial");
    let check_documented = |command: &str| {
        assert!(
            !walk.documented || tutorial.contains(&format!("    {command}\n")),
            "docs/tutorial.md shows the command `{command}`"
        );
    };
    let sluice = |command: &str| {
        check_documented(command);
        let args: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(|a| a.replace("/tmp/udfs-src", &src.display().to_string()))
            .map(|a| a.replace("/tmp/udfs", &udfs.display().to_string()))
            .collect();
        let out = Command::new(sluice_harness::sluice_bin())
            .args(&args)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run sluice");
        assert!(
            out.status.success(),
            "`{command}` failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let name = walk.name;

    sluice(&format!(
        "sluice udf new {name}{} --dir /tmp/udfs-src",
        if walk.lang == "rust" {
            String::new()
        } else {
            format!(" --lang {}", walk.lang)
        }
    ));
    let unit_test = walk.unit_test.join(" ");
    check_documented(&unit_test);
    let mut args: Vec<String> = walk.unit_test[1..]
        .iter()
        .map(|a| a.replace("/tmp/udfs-src", &src.display().to_string()))
        .collect();
    let program = if walk.unit_test[0] == "cargo" {
        // Release, as the rest of the run, so the scaffold's dependencies build once.
        args.insert(1, "--release".into());
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
    } else {
        walk.unit_test[0].to_string()
    };
    let tested = Command::new(program)
        .args(&args)
        .current_dir(&folder)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run the unit test");
    assert!(
        tested.status.success(),
        "the scaffold's unit test passes unchanged:\n{}\n{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    let build = format!("sluice udf build /tmp/udfs-src/{name} --udf-dir /tmp/udfs");
    let built = sluice(&build);
    assert!(built.contains(&format!("version  {name}@")), "{built}");
    sluice(&format!("sluice udf test {name} --udf-dir /tmp/udfs --input /tmp/udfs-src/{name}/samples/input.txt --expect /tmp/udfs-src/{name}/samples/expected.txt"));

    let broker = Mosquitto::start();
    let pipeline_text = format!(
        "[sources.input]\ntype = \"mqtt\"\nbroker.url = \"mqtt://127.0.0.1:1883\"\ntopics = [\"shout/in\"]\n\n[transforms.shout]\ntype = \"udf\"\ninputs = [\"input\"]\nmodule = \"{name}\"\n\n[sinks.output]\ntype = \"mqtt\"\ninputs = [\"shout\"]\nbroker.url = \"mqtt://127.0.0.1:1883\"\ntopic = \"shout/out\"\n"
    );
    assert!(
        !walk.documented || tutorial.contains(&format!("```toml\n{pipeline_text}```")),
        "docs/tutorial.md shows the pipeline of {name}"
    );
    let pipeline = PipelineFile::new(
        &format!("{name}.toml"),
        &pipeline_text.replace("127.0.0.1:1883", &format!("127.0.0.1:{}", broker.port)),
    );
    check_documented(&format!("sluice run /tmp/{name}.toml --udf-dir /tmp/udfs"));
    let collector = Collector::subscribe(broker.port, &["shout/out"]);
    let mut host = SluiceRun::start_with_udf_dir(&pipeline.path, &udfs);
    host.wait_ready();
    sluice_harness::publish_all(broker.port, "shout/in", &[b"hello".to_vec()]);
    assert_eq!(collector.take(1)[0].1, b"HELLO");

    let (file, before, after) = walk.edit;
    assert!(
        !walk.documented
            || (tutorial.contains(&format!("`{before}`"))
                && tutorial.contains(&format!("`{after}`"))),
        "the tutorial shows the edit"
    );
    edit(&folder.join(file), before, after);
    sluice(&build);
    host.wait_for_log("udf swapped between batches");
    sluice_harness::publish_all(broker.port, "shout/in", &[b"hello".to_vec()]);
    assert_eq!(collector.take(1)[0].1, b"HELLO!");
    assert!(host.stop().success());
}

fn edit(file: &Path, before: &str, after: &str) {
    let code = std::fs::read_to_string(file).expect("the scaffold's source");
    assert!(
        code.contains(before),
        "the scaffold has the line the tutorial edits: {before}"
    );
    std::fs::write(file, code.replace(before, after)).expect("edit");
}

#[test]
fn the_tutorial_works() {
    walk(Walk {
        name: "shout",
        lang: "rust",
        unit_test: &[
            "cargo",
            "test",
            "--manifest-path",
            "/tmp/udfs-src/shout/Cargo.toml",
        ],
        edit: (
            "src/lib.rs",
            "let out = text.to_uppercase();",
            "let out = format!(\"{}!\", text.to_uppercase());",
        ),
        documented: true,
    });
}

#[test]
fn the_tutorial_works_in_python() {
    walk(Walk {
        name: "shout-py",
        lang: "python",
        unit_test: &["python3", "-m", "unittest"],
        edit: ("app.py", "out = text.upper()", "out = text.upper() + \"!\""),
        documented: true,
    });
}

/// The tutorial's path in JavaScript (the tutorial says it works the same way).
#[test]
fn the_tutorial_path_works_in_javascript() {
    walk(Walk {
        name: "shout-js",
        lang: "js",
        unit_test: &["node", "--test"],
        edit: (
            "app.js",
            "const out = text.toUpperCase();",
            "const out = text.toUpperCase() + '!';",
        ),
        documented: false,
    });
}
