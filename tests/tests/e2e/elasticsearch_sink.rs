//! The Elasticsearch sink over real HTTP: against the faithful `_bulk` server of this suite, or a
//! real cluster when `SLUICE_TEST_ELASTICSEARCH_URL` is set (the fault-injection test needs the
//! fake and is skipped then, saying so).

use sluice_harness::elasticsearch::{get_document, FakeElasticsearch, Faults};
use sluice_harness::{ecg_messages, expected_scores, Mosquitto, SluiceRun, WAIT};
use std::collections::HashSet;
use std::time::Instant;

fn pipeline(mqtt: &Mosquitto, es_url: &str, index: &str) -> sluice_harness::PipelineFile {
    sluice_harness::PipelineFile::new(
        "es.toml",
        &format!(
            r#"
[pipeline]
name = "es-test"
dead_letter = "dead_letters"

[sources.sensors]
type = "mqtt"
broker.url = "{mqtt}"
topics = ["electric-temperature"]

[transforms.score]
type = "udf"
inputs = ["sensors"]
module = "anomaly"

[sinks.dashboard]
type = "elasticsearch"
inputs = ["score"]
url = "{es_url}"
index = "{index}"
id_field = "eventid"
batch_max_records = 5
batch_timeout_ms = 200

[sinks.dead_letters]
type = "console"
inputs = []
format = "json"
"#,
            mqtt = mqtt.url()
        ),
    )
}

fn payloads() -> Vec<Vec<u8>> {
    ecg_messages().into_iter().map(String::into_bytes).collect()
}

/// Waits until `GET /{index}/_doc/{id}` finds every id; returns the sources by id.
fn wait_for_documents(url: &str, index: &str, ids: &[String]) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    ids.iter()
        .map(|id| loop {
            if let Some(doc) = get_document(url, index, id) {
                break doc;
            }
            assert!(
                Instant::now() < deadline,
                "document {id} never appeared in {index}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        })
        .collect()
}

#[test]
fn every_score_is_indexed_under_its_event_id() {
    let mqtt = Mosquitto::start();
    let real = std::env::var("SLUICE_TEST_ELASTICSEARCH_URL").ok();
    let fake = real
        .is_none()
        .then(|| FakeElasticsearch::start(Faults::default()).expect("fake elasticsearch"));
    let url = real
        .clone()
        .unwrap_or_else(|| fake.as_ref().map(|f| f.url.clone()).unwrap_or_default());
    let index = format!("sluice-test-{}", sluice_harness::free_port());
    let file = pipeline(&mqtt, &url, &index);
    let mut sluice = SluiceRun::start(&file.path);
    sluice.wait_ready();
    sluice_harness::publish_all(mqtt.port, "electric-temperature", &payloads());

    let expected = expected_scores();
    let ids: Vec<String> = expected
        .iter()
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    let docs = wait_for_documents(&url, &index, &ids);
    for (doc, line) in docs.iter().zip(&expected) {
        let (id, mse) = line.split_once(',').unwrap();
        assert_eq!(doc["eventid"].to_string(), id);
        assert_eq!(
            doc["anomaly_val"].as_f64(),
            mse.parse::<f64>().ok(),
            "event {id}"
        );
    }
    assert!(sluice.stop().success());
}

/// `sluice run` scoring into the fake server with `faults`, the ECG events published: `None` (and
/// a line saying so) when the tests run against a real cluster, where faults cannot be injected.
struct FaultyRun {
    sluice: SluiceRun,
    _file: sluice_harness::PipelineFile,
    _mqtt: Mosquitto,
    fake: FakeElasticsearch,
}

impl FaultyRun {
    fn start(faults: Faults) -> Option<Self> {
        if std::env::var_os("SLUICE_TEST_ELASTICSEARCH_URL").is_some() {
            eprintln!("skipped: fault injection needs the fake _bulk server");
            return None;
        }
        let fake = FakeElasticsearch::start(faults).expect("fake elasticsearch");
        let mqtt = Mosquitto::start();
        let file = pipeline(&mqtt, &fake.url, "scores");
        let mut sluice = SluiceRun::start(&file.path);
        sluice.wait_ready();
        sluice_harness::publish_all(mqtt.port, "electric-temperature", &payloads());
        Some(FaultyRun {
            sluice,
            _file: file,
            _mqtt: mqtt,
            fake,
        })
    }
}

#[test]
fn partial_failures_are_retried_or_dead_lettered() {
    let Some(faulty) = FaultyRun::start(Faults {
        busy_once: ["3", "7"].iter().map(|s| s.to_string()).collect(),
        reject: HashSet::from(["5".to_string()]),
        ..Faults::default()
    }) else {
        return;
    };
    let (fake, sluice) = (&faulty.fake, &faulty.sluice);

    let ids: Vec<String> = (1..=23)
        .filter(|i| *i != 5)
        .map(|i| i.to_string())
        .collect();
    let docs = wait_for_documents(&fake.url, "scores", &ids);
    assert_eq!(docs.len(), 22, "429s are retried until accepted");
    assert_eq!(
        get_document(&fake.url, "scores", "5"),
        None,
        "the rejected document is not indexed"
    );
    let dead = sluice.stdout_lines(1);
    assert!(
        dead[0].contains("\"value\":\"{\\\"eventid\\\":5,"),
        "{}",
        dead[0]
    );
    assert!(
        dead[0].contains("mapper_parsing_exception: failed to parse document [5]"),
        "{}",
        dead[0]
    );
    assert!(
        dead[0].contains("\"sluice-component\":\"dashboard\""),
        "{}",
        dead[0]
    );
    assert!(fake.bulk_requests() >= 2, "the 429 items were sent again");
    assert!(faulty.sluice.stop().success());
}

/// An answer with fewer items than the request had documents cannot say which document each item
/// is about: the sink sends the whole batch again (ids make that idempotent) and reports it.
#[test]
fn a_short_bulk_answer_resends_the_batch() {
    let Some(faulty) = FaultyRun::start(Faults {
        unanswered_once: HashSet::from(["9".to_string()]),
        ..Faults::default()
    }) else {
        return;
    };
    let (fake, sluice) = (&faulty.fake, &faulty.sluice);

    let ids: Vec<String> = (1..=23).map(|i| i.to_string()).collect();
    let docs = wait_for_documents(&fake.url, "scores", &ids);
    assert_eq!(docs.len(), 23);
    let line = sluice.wait_for_log("_bulk answered");
    assert!(line.contains("retrying in"), "{line}");
    assert!(fake.bulk_requests() >= 2, "the batch was sent again");
    assert!(faulty.sluice.stop().success());
}
