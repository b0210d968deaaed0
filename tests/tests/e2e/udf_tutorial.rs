//! `docs/tutorial.md`, run for real: new, cargo test, build, golden test, run in a pipeline on
//! Mosquitto, edit, build again, and the running host serves the new version. Every command it
//! runs must appear verbatim in the tutorial (so neither can change without the other).

use sluice_harness::{Collector, Mosquitto, PipelineFile, SluiceRun};
use std::process::Command;

#[test]
fn the_tutorial_works() {
    let tutorial = std::fs::read_to_string(sluice_harness::root().join("docs/tutorial.md"))
        .expect("docs/tutorial.md");
    let work = tempfile::tempdir().expect("tempdir");
    let (src, udfs) = (work.path().join("udfs-src"), work.path().join("udfs"));
    // Shared across runs so the scaffold's dependencies are compiled once.
    let target = sluice_harness::root().join("target/tutorial");
    let sluice = |documented: &str| {
        assert!(
            tutorial.contains(&format!("    {documented}\n")),
            "docs/tutorial.md shows the command `{documented}`"
        );
        let args: Vec<String> = documented
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
            "`{documented}` failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    sluice("sluice udf new shout --dir /tmp/udfs-src");
    let unit_test = "cargo test --manifest-path /tmp/udfs-src/shout/Cargo.toml";
    assert!(tutorial.contains(unit_test));
    let tested = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--release", "--manifest-path"])
        .arg(src.join("shout/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cargo test");
    assert!(
        tested.success(),
        "the scaffold's unit test passes unchanged"
    );
    let built = sluice("sluice udf build /tmp/udfs-src/shout --udf-dir /tmp/udfs");
    assert!(built.contains("version  shout@"), "{built}");
    sluice("sluice udf test shout --udf-dir /tmp/udfs --input /tmp/udfs-src/shout/samples/input.txt --expect /tmp/udfs-src/shout/samples/expected.txt");

    let broker = Mosquitto::start();
    let toml_start = tutorial
        .find("```toml\n")
        .expect("a pipeline in the tutorial")
        + 8;
    let toml_len = tutorial[toml_start..]
        .find("```")
        .expect("end of the pipeline");
    let pipeline = PipelineFile::new(
        "shout.toml",
        &tutorial[toml_start..toml_start + toml_len]
            .replace("127.0.0.1:1883", &format!("127.0.0.1:{}", broker.port)),
    );
    assert!(tutorial.contains("    sluice run /tmp/shout.toml --udf-dir /tmp/udfs\n"));
    let collector = Collector::subscribe(broker.port, &["shout/out"]);
    let mut host = SluiceRun::start_with_udf_dir(&pipeline.path, &udfs);
    host.wait_ready();
    sluice_harness::publish_all(broker.port, "shout/in", &[b"hello".to_vec()]);
    assert_eq!(collector.take(1)[0].1, b"HELLO");

    let lib = src.join("shout/src/lib.rs");
    let (before, after) = (
        "let out = text.to_uppercase();",
        "let out = format!(\"{}!\", text.to_uppercase());",
    );
    assert!(tutorial.contains(&format!("`{before}`")) && tutorial.contains(&format!("`{after}`")));
    let code = std::fs::read_to_string(&lib).expect("lib.rs");
    assert!(
        code.contains(before),
        "the scaffold has the line the tutorial edits"
    );
    std::fs::write(&lib, code.replace(before, after)).expect("edit lib.rs");
    sluice("sluice udf build /tmp/udfs-src/shout --udf-dir /tmp/udfs");
    host.wait_for_log("udf swapped between batches");
    sluice_harness::publish_all(broker.port, "shout/in", &[b"hello".to_vec()]);
    assert_eq!(collector.take(1)[0].1, b"HELLO!");
    assert!(host.stop().success());
}
