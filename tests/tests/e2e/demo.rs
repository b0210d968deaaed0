//! `cargo xtask demo` runs `sluice-demo`: the shipped pipeline on the embedded default
//! (in-process MQTT brokers, librdkafka's mock cluster, the Elasticsearch stand-in). Its final
//! table must be H2O's reference scores with ALERT on exactly the events over 1.5, and its own
//! checks (byte-identical raw copies, documents, dead letter, clean drain) must all pass.

use std::process::Command;

#[test]
fn the_demo_reproduces_the_reference_scores_and_alerts() {
    let sluice = sluice_harness::sluice_bin();
    let demo = sluice.with_file_name("sluice-demo");
    assert!(
        demo.is_file(),
        "{} is missing: run `cargo xtask test`",
        demo.display()
    );
    let log = tempfile::NamedTempFile::new().expect("log file");
    let out = Command::new(&demo)
        .current_dir(sluice_harness::root())
        .arg("--sluice")
        .arg(&sluice)
        .arg("--udf-dir")
        .arg(sluice_harness::udf_dir())
        .arg("--log")
        .arg(log.path())
        .output()
        .expect("run sluice-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sluice-demo failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // The final table: "EVENTID  MSE  [ALERT]" rows after the "All scores" heading.
    let table: Vec<(String, bool)> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("All scores"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (
                format!("{},{}", fields[0], fields[1]),
                fields.get(2) == Some(&"ALERT"),
            )
        })
        .collect();
    let expected = sluice_harness::expected_scores();
    let scores: Vec<&String> = table.iter().map(|(score, _)| score).collect();
    assert_eq!(scores, expected.iter().collect::<Vec<_>>(), "{stdout}");

    let alerts: Vec<&str> = table
        .iter()
        .filter(|(_, alert)| *alert)
        .map(|(score, _)| score.split(',').next().unwrap_or_default())
        .collect();
    assert_eq!(alerts, ["4", "5", "15", "20", "22", "23"], "{stdout}");
    let over_threshold: Vec<&str> = expected
        .iter()
        .filter(|row| row.split(',').nth(1).and_then(|m| m.parse::<f64>().ok()) > Some(1.5))
        .map(|row| row.split(',').next().unwrap_or_default())
        .collect();
    assert_eq!(
        alerts, over_threshold,
        "the alerts are the reference rows over 1.5"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("sluice run pipelines/ecg-ingest.toml pipelines/ecg-detect.toml"),
        "it says how to run the pipeline on real servers"
    );
}
