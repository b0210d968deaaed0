//! The shipped `pipelines/ecg-anomaly.toml`, and the same flow split in two with Kafka between
//! (`ecg-ingest.toml` + `ecg-detect.toml`, as the original demo had it), unchanged, end to end
//! on real servers: two
//! Mosquitto brokers (sensors and receiver), a tansu Kafka broker, and the faithful `_bulk`
//! server (or a real Elasticsearch with `SLUICE_TEST_ELASTICSEARCH_URL`), wired through the
//! file's own environment variables.
//!
//! The 23 ECG rows (odd ones spaced as the original sensors send them) and two malformed
//! messages go to MQTT `electric-temperature`; then:
//! - the receiver broker and Kafka `electric-temperature` get every payload byte for byte;
//! - Kafka `TEMPERATURE_ANOMALY_DETECTION` gets one `EVENTID,MSE` per event with H2O's digits;
//! - Kafka `ANOMALYDETECTIONWITHFILTER` gets exactly events 4, 5, 15, 20, 22, 23;
//! - Elasticsearch index `temperature-anomaly` holds every score under `_id` = EVENTID;
//! - Kafka `sluice-dead-letters` gets both malformed messages with their reasons in headers,
//!   while later messages still flow; SIGTERM drains and exits 0.

use sluice_harness::elasticsearch::{get_document, FakeElasticsearch, Faults};
use sluice_harness::kafka::{Tansu, TopicReader};
use sluice_harness::{expected_scores, Collector, Mosquitto};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

#[test]
fn the_original_demo_topology_end_to_end() {
    demo_topology(&["pipelines/ecg-anomaly.toml"], "ecg-anomaly");
}

/// Both halves in one `sluice run`: every output of the one-pipeline version, the same bytes.
#[test]
fn the_ingest_and_detect_pipelines_together_keep_every_output() {
    demo_topology(
        &["pipelines/ecg-ingest.toml", "pipelines/ecg-detect.toml"],
        "ecg-detect",
    );
}

/// Runs `files` against fresh servers and checks every destination; `scoring_pipeline` is the
/// one whose UDF dead-letters the malformed messages.
fn demo_topology(files: &[&str], scoring_pipeline: &str) {
    let sensors = Mosquitto::start();
    let receiver = Mosquitto::start();
    let kafka = Tansu::start();
    for topic in [
        "electric-temperature",
        "TEMPERATURE_ANOMALY_DETECTION",
        "ANOMALYDETECTIONWITHFILTER",
        "sluice-dead-letters",
    ] {
        kafka.create_topic(topic, 1);
    }
    let real_es = std::env::var("SLUICE_TEST_ELASTICSEARCH_URL").ok();
    let fake_es = real_es
        .is_none()
        .then(|| FakeElasticsearch::start(Faults::default()).expect("fake elasticsearch"));
    let es_url =
        real_es.unwrap_or_else(|| fake_es.as_ref().map(|f| f.url.clone()).unwrap_or_default());

    let at_receiver = Collector::subscribe(receiver.port, &["electric-temperature"]);
    let files: Vec<std::path::PathBuf> = files
        .iter()
        .map(|f| sluice_harness::root().join(f))
        .collect();
    let state = tempfile::tempdir().expect("state dir");
    let ready = state.path().join("ready");
    let mut child = Command::new(sluice_harness::sluice_bin())
        .arg("run")
        .args(&files)
        .arg("--udf-dir")
        .arg(sluice_harness::udf_dir())
        .arg("--state-dir")
        .arg(state.path())
        .arg("--ready-file")
        .arg(&ready)
        .env("SLUICE_LOG", "info")
        .env("MQTT_URL", sensors.url())
        .env("MQTT_RECEIVER_URL", receiver.url())
        .env("KAFKA_BROKERS", &kafka.brokers)
        .env("ELASTICSEARCH_URL", &es_url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice");
    let log = sluice_harness::log_lines(child.stderr.take().expect("stderr"));
    if let Err(err) =
        sluice_harness::process::try_wait_ready(&mut child, &ready, sluice_harness::WAIT)
    {
        panic!(
            "{err}; its log:\n{}",
            log.try_iter().collect::<Vec<_>>().join("\n")
        );
    }

    let payloads = sluice_harness::demo_payloads();
    sluice_harness::publish_all(sensors.port, "electric-temperature", &payloads);

    let raw: Vec<Vec<u8>> = at_receiver
        .take(payloads.len())
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        raw, payloads,
        "the receiver broker gets every payload unchanged, in order"
    );

    let values = |topic: &str, n: usize| -> Vec<Vec<u8>> {
        TopicReader::new(&kafka.brokers, topic)
            .read_until(|seen| seen.len() >= n)
            .into_iter()
            .map(|r| r.value)
            .collect()
    };
    assert_eq!(
        values("electric-temperature", payloads.len()),
        payloads,
        "Kafka electric-temperature (one partition) gets every payload unchanged, in order"
    );
    let scores: Vec<String> = values("TEMPERATURE_ANOMALY_DETECTION", 23)
        .into_iter()
        .map(|v| String::from_utf8(v).expect("UTF-8"))
        .collect();
    assert_eq!(scores, expected_scores(), "every score, in input order");
    let alerts: BTreeSet<u32> = values("ANOMALYDETECTIONWITHFILTER", 6)
        .into_iter()
        .map(|v| {
            String::from_utf8_lossy(&v)
                .split(',')
                .next()
                .unwrap_or_default()
                .parse()
                .expect("id")
        })
        .collect();
    assert_eq!(alerts, BTreeSet::from([4, 5, 15, 20, 22, 23]));

    let dead =
        TopicReader::new(&kafka.brokers, "sluice-dead-letters").read_until(|seen| seen.len() >= 2);
    let mut reasons = Vec::new();
    for record in &dead {
        let (value, headers) = (&record.value, &record.headers);
        assert!(
            value == b"99, 1.0# 2.0" || value == b"not an ecg event",
            "{value:?}"
        );
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("sluice-component"), "score");
        assert_eq!(header("sluice-pipeline"), scoring_pipeline);
        reasons.push(header("sluice-error"));
    }
    reasons.sort();
    assert!(
        reasons[0].contains("event 99: expected 210 readings"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("missing EVENTID"), "{reasons:?}");

    for line in expected_scores() {
        let (id, mse) = line.split_once(',').expect("id,mse");
        let deadline = std::time::Instant::now() + sluice_harness::WAIT;
        let doc = loop {
            if let Some(doc) = get_document(&es_url, "temperature-anomaly", id) {
                break doc;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "document {id} never indexed"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert_eq!(
            doc["anomaly_val"].as_f64(),
            mse.parse().ok(),
            "document {id}"
        );
    }

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = child.wait().expect("sluice exits");
    assert!(status.success(), "SIGTERM drains and exits 0: {status}");
}
