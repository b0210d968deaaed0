//! The example UDFs (`guest-udfs/unit-convert`, `json-filter`, `split-lines`) pass their golden
//! tests through `sluice udf test --expect`, and `--expect` reports a mismatch as a diff with
//! exit status 1.

use std::process::{Command, Output};

fn udf_test(name: &str, config: &[&str], expected: &str) -> Output {
    let samples = sluice_harness::root()
        .join("guest-udfs")
        .join(name)
        .join("samples");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["udf", "test"])
        .arg(sluice_harness::udf(name))
        .arg("--input")
        .arg(samples.join("input.txt"))
        .arg("--expect")
        .arg(sluice_harness::root().join(expected));
    for entry in config {
        command.args(["--config", entry]);
    }
    command.output().expect("run sluice")
}

fn assert_golden(name: &str, config: &[&str]) {
    let out = udf_test(
        name,
        config,
        &format!("guest-udfs/{name}/samples/expected.txt"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
    assert!(stderr.contains("output lines match"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "with --expect the outputs are compared, not printed"
    );
}

#[test]
fn unit_convert_maps_celsius_to_fahrenheit() {
    assert_golden("unit-convert", &[]);
}

#[test]
fn json_filter_keeps_only_matching_messages() {
    assert_golden("json-filter", &["field=site", "equals=north"]);
}

#[test]
fn split_lines_flat_maps_one_message_into_several() {
    assert_golden("split-lines", &[]);
}

#[test]
fn a_mismatch_is_shown_as_a_diff_and_fails() {
    // json-filter's real output checked against split-lines' expectations.
    let out = udf_test(
        "json-filter",
        &["field=site", "equals=north"],
        "guest-udfs/split-lines/samples/expected.txt",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "output line 1:\n  - expected: a\n  + got:      {\"site\":\"north\",\"v\":1}"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("output line 6: missing"), "{stderr}");
    assert!(
        stderr.contains("FAILED: 6 of 6 output lines differ"),
        "{stderr}"
    );
}
