//! Replacing a Kafka pipeline on a running `sluice serve` while it consumes: the old version
//! drains and commits what its sink accepted, the new one joins the same consumer group and
//! continues from the committed offsets. Every input record reaches the output exactly once.
//! Runs against librdkafka's mock cluster (a Kafka-protocol broker on real sockets).

use rdkafka::mocking::MockCluster;
use sluice_harness::kafka::{produce_all, TopicReader};
use sluice_harness::serve::Serve;
use std::collections::BTreeMap;

const RECORDS: usize = 4_000;

fn relay(brokers: &str, with_filter: bool) -> String {
    let (filter, sink_input) = if with_filter {
        (
            "[transforms.keep]\ntype = \"filter\"\ninputs = [\"input\"]\ncondition = \"true\"\n",
            "keep",
        )
    } else {
        ("", "input")
    };
    format!(
        r#"
[pipeline]
name = "handover"

[sources.input]
type = "kafka"
brokers = "{brokers}"
topics = ["in"]
group_id = "handover"
options = {{ "session.timeout.ms" = "3000", "heartbeat.interval.ms" = "500" }}

{filter}
[sinks.output]
type = "kafka"
inputs = ["{sink_input}"]
brokers = "{brokers}"
topic = "out"
"#
    )
}

#[test]
fn a_replaced_kafka_pipeline_continues_from_the_committed_offsets() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("in", 3, 1).expect("topic in");
    cluster.create_topic("out", 1, 1).expect("topic out");
    let brokers = cluster.bootstrap_servers();
    let payloads: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes()) // JSON: the filter reads it
        .collect();
    // The first half before the replacement, the second after: the new version has work, and
    // it must not read the first half again.
    produce_all(&brokers, "in", &payloads[..RECORDS / 2]);

    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(state.path(), &["--host-id", "edge-7"]);
    let reader = TopicReader::new(&brokers, "out");
    let created = serve.call(
        "PUT",
        "/pipelines/handover",
        Some(relay(&brokers, false).as_bytes()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let mut seen = reader.read_until(|seen| seen.len() >= RECORDS / 4);

    let replaced = serve.call(
        "PUT",
        "/pipelines/handover",
        Some(relay(&brokers, true).as_bytes()),
    );
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.json()["deployed"], "replaced");
    produce_all(&brokers, "in", &payloads[RECORDS / 2..]);
    let before = seen.len();
    seen.extend(reader.read_until(|rest| before + rest.len() >= RECORDS));

    let mut counts: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for record in &seen {
        *counts.entry(record.value.clone()).or_default() += 1;
    }
    let twice: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(counts.len(), RECORDS, "every record delivered");
    // The new version did part of the work.
    let status = serve.pipeline("handover");
    let keep = status["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "keep").cloned())
        .expect("the replacement's filter");
    assert!(keep["records_out"].as_u64().unwrap() > 0, "{status}");

    // Who does what: the host id, and the partitions this host owns (all three: it is alone).
    let list = serve.call("GET", "/pipelines", None).json();
    assert_eq!(list["host_id"], "edge-7", "{list}");
    let owned = serve.pipeline("handover")["components"][0]["owned"].clone();
    assert_eq!(owned, "in[0,1,2]", "the source says what it owns");
    let status = serve.cli(&["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.starts_with("host edge-7\n"), "{table}");
    assert!(table.contains("input owns in[0,1,2]"), "{table}");
    let metrics = serve.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains(r#"sluice_host_info{host_id="edge-7"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_source_owned{pipeline="handover",component="input",role="source",kind="kafka",host_id="edge-7",owned="in[0,1,2]"} 1"#),
        "{metrics}"
    );

    // Consumer lag is measured (every 5 s) and exported: nothing is left to read.
    serve.wait_until("the source reports its lag", |_| {
        serve.pipeline("handover")["components"][0]["lag"].is_number()
    });
    let metrics = serve.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains(
            r#"sluice_consumer_lag{pipeline="handover",component="input",role="source",kind="kafka"} 0"#
        ),
        "{metrics}"
    );
}
