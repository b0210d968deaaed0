//! A pipeline without a dead-letter sink loses nothing either: `sluice run` keeps the records it
//! cannot process in `<dead-letter-dir>/<pipeline>.jsonl`, with the reason, the component and
//! the pipeline in their headers, while later records still flow.

use sluice_harness::{ecg_messages, Mosquitto, PipelineFile, SluiceRun};
use std::ffi::OsStr;

#[test]
fn failed_records_go_to_the_pipelines_dead_letter_file() {
    let broker = Mosquitto::start();
    let pipeline = PipelineFile::new(
        "no-dead-letter-sink.toml",
        &format!(
            r#"
[pipeline]
name = "no-dl-sink"

[sources.sensors]
type = "mqtt"
broker.url = "{url}"
topics = ["electric-temperature"]

[transforms.score]
type = "udf"
inputs = ["sensors"]
module = "anomaly"

[sinks.out]
type = "console"
inputs = ["score"]
"#,
            url = broker.url()
        ),
    );
    let dead_letter_dir = tempfile::tempdir().expect("temp dir");
    let udf_dir = sluice_harness::udf_dir();
    let mut sluice = SluiceRun::start_with_args(
        &pipeline.path,
        &[
            OsStr::new("--udf-dir"),
            udf_dir.as_os_str(),
            OsStr::new("--dead-letter-dir"),
            dead_letter_dir.path().as_os_str(),
        ],
    );
    let file = dead_letter_dir.path().join("no-dl-sink.jsonl");
    sluice.wait_for_log(&format!(
        "no dead-letter sink: failed records go to {}",
        file.display()
    ));
    sluice.wait_ready();

    // The bad record first: once the good one is out, the bad one has been dealt with.
    let good = ecg_messages()[0].clone();
    sluice_harness::publish_all(
        broker.port,
        "electric-temperature",
        &[b"not an ecg event".to_vec(), good.into_bytes()],
    );
    let out = sluice.stdout_lines(1);
    assert!(out[0].starts_with("{\"eventid\":"), "{}", out[0]);
    assert!(sluice.stop().success(), "sluice drains and exits 0");

    let text =
        std::fs::read_to_string(&file).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let record = &lines[0];
    assert_eq!(record["value"], "not an ecg event");
    let header = |name: &str| -> String {
        record["headers"]
            .as_array()
            .and_then(|headers| headers.iter().find(|h| h["name"] == name))
            .and_then(|h| h["value"].as_str())
            .unwrap_or_else(|| panic!("no header {name} in {record}"))
            .to_string()
    };
    let error = header("sluice-error");
    assert!(error.starts_with("udf anomaly@"), "{error}");
    assert!(error.contains("missing EVENTID"), "{error}");
    assert_eq!(header("sluice-component"), "score");
    assert_eq!(header("sluice-pipeline"), "no-dl-sink");
}
