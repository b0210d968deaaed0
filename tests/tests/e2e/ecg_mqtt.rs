//! The original demo's MQTT side, end to end, on two real Mosquitto brokers:
//! the 23 ECG rows (half in the original sensors' spaced format) and two malformed messages go
//! to the source broker; the raw messages must reach the receiver broker byte for byte; every
//! score must come out as `EVENTID,MSE` with H2O's digits; exactly rows 4, 5, 15, 20, 22, 23
//! must alert; the malformed messages must reach the dead-letter sink with their reasons while
//! later messages still flow; SIGTERM must drain and exit 0.
//!
//! (The Kafka and Elasticsearch legs of the shipped pipeline are tested when those connectors
//! land; here the score topics live on the source broker.)

use sluice_harness::{expected_scores, Collector, Mosquitto, SluiceRun};

#[test]
fn ecg_demo_over_mqtt() {
    let source = Mosquitto::start();
    let receiver = Mosquitto::start();
    let pipeline = sluice_harness::PipelineFile::new(
        "ecg-mqtt.toml",
        &format!(
            r#"
[pipeline]
name = "ecg-mqtt"
dead_letter = "dead_letters"

[sources.sensors]
type = "mqtt"
broker.url = "{source}"
topics = ["electric-temperature"]

[sinks.receiver]
type = "mqtt"
inputs = ["sensors"]
broker.url = "{receiver}"
topic = "electric-temperature"

[transforms.score]
type = "udf"
inputs = ["sensors"]
module = "anomaly"

[transforms.alerts]
type = "filter"
inputs = ["score"]
condition = "anomaly_val > 1.5"

[sinks.scores]
type = "mqtt"
inputs = ["score"]
broker.url = "{source}"
topic = "TEMPERATURE_ANOMALY_DETECTION"
encoding = {{ codec = "delimited", fields = ["eventid", "anomaly_val"] }}

[sinks.alerts_out]
type = "mqtt"
inputs = ["alerts"]
broker.url = "{source}"
topic = "ANOMALYDETECTIONWITHFILTER"
encoding = {{ codec = "delimited", fields = ["eventid", "anomaly_val"] }}

[sinks.dead_letters]
type = "console"
inputs = []
format = "json"
"#,
            source = source.url(),
            receiver = receiver.url()
        ),
    );

    let at_receiver = Collector::subscribe(receiver.port, &["electric-temperature"]);
    let scores = Collector::subscribe(source.port, &["TEMPERATURE_ANOMALY_DETECTION"]);
    let alerts = Collector::subscribe(source.port, &["ANOMALYDETECTIONWITHFILTER"]);
    let mut sluice = SluiceRun::start(&pipeline.path);
    sluice.wait_ready();

    // Odd rows as the original sensors send them ("106, 9.88# 9.13# ..."), even rows plain;
    // two malformed messages in the middle.
    let payloads = sluice_harness::demo_payloads();
    sluice_harness::publish_all(source.port, "electric-temperature", &payloads);

    let raw: Vec<Vec<u8>> = at_receiver
        .take(payloads.len())
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        raw, payloads,
        "the receiver gets every message unchanged, in order"
    );

    let text = |messages: Vec<(String, Vec<u8>)>| -> Vec<String> {
        messages
            .into_iter()
            .map(|(_, p)| String::from_utf8(p).expect("UTF-8"))
            .collect()
    };
    assert_eq!(
        text(scores.take(23)),
        expected_scores(),
        "one EVENTID,MSE per event, H2O's digits"
    );
    let alerted: Vec<String> = text(alerts.take(6))
        .into_iter()
        .map(|line| line.split(',').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(alerted, ["4", "5", "15", "20", "22", "23"]);

    let dead = sluice.stdout_lines(2);
    let expect_dead = [
        (
            "99, 1.0# 2.0",
            "event 99: expected 210 readings separated by '#', found 2",
        ),
        ("not an ecg event", "missing EVENTID"),
    ];
    for (line, (value, reason)) in dead.iter().zip(expect_dead) {
        assert!(line.contains(&format!("\"value\":\"{value}\"")), "{line}");
        assert!(line.contains("\"sluice-error\":\"udf anomaly@"), "{line}");
        assert!(line.contains(reason), "{line}");
        assert!(line.contains("\"sluice-component\":\"score\""), "{line}");
        assert!(line.contains("\"sluice-pipeline\":\"ecg-mqtt\""), "{line}");
    }

    let status = sluice.stop();
    assert!(
        status.success(),
        "sluice drains and exits 0 on SIGTERM: {status}"
    );
}
