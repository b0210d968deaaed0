//! Kafka offsets are committed only after the sink accepted the records: kill `sluice` mid-stream
//! (SIGKILL, no drain) while it commits every 50 ms, check that the committed offsets never run
//! ahead of what reached the output topic, start it again, and every input record still comes
//! out (at least once). Runs against librdkafka's mock cluster, a Kafka-protocol broker on real
//! sockets.

use rdkafka::mocking::MockCluster;
use sluice_harness::kafka::{produce_all, TopicReader};
use sluice_harness::SluiceRun;
use std::collections::HashSet;

const RECORDS: usize = 5_000;

#[test]
fn nothing_is_missing_after_a_crash_and_restart() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("in", 3, 1).expect("topic in");
    cluster.create_topic("out", 1, 1).expect("topic out");
    let brokers = cluster.bootstrap_servers();
    let payloads: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| format!("record-{i}").into_bytes())
        .collect();
    produce_all(&brokers, "in", &payloads);

    let pipeline = sluice_harness::PipelineFile::new(
        "relay.toml",
        &format!(
            r#"
[sources.input]
type = "kafka"
brokers = "{brokers}"
topics = ["in"]
group_id = "relay"
options = {{ "auto.commit.interval.ms" = "50", "session.timeout.ms" = "3000", "heartbeat.interval.ms" = "500" }}

[sinks.output]
type = "kafka"
inputs = ["input"]
brokers = "{brokers}"
topic = "out"
"#
        ),
    );

    let reader = TopicReader::new(&brokers, "out");
    let first = SluiceRun::start(&pipeline.path);
    first.wait_for_log("kafka source receiving");
    // Let some records through, then crash mid-stream.
    let before = reader.read_until(|seen| seen.len() >= RECORDS / 10);
    first.kill();

    // Nothing writes to `out` now: its high watermark is everything the sink delivered.
    let delivered = high_watermark(&brokers, "out", 0);
    let committed = committed_total(&brokers, "relay", "in", 3);
    assert!(
        committed > 0,
        "the first run committed something (else this test proves nothing)"
    );
    assert!(
        committed <= delivered,
        "committed offsets ({committed}) ran ahead of delivered records ({delivered})"
    );

    let second = SluiceRun::start(&pipeline.path);
    let mut distinct: HashSet<Vec<u8>> = before.iter().map(|r| r.value.clone()).collect();
    reader.read_until(|seen| {
        distinct.extend(seen.iter().map(|r| r.value.clone()));
        distinct.len() == RECORDS
    });
    let expected: HashSet<Vec<u8>> = payloads.into_iter().collect();
    assert_eq!(
        distinct, expected,
        "every record made it through, none invented"
    );
    assert!(second.stop().success());
}

fn high_watermark(brokers: &str, topic: &str, partition: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, partition, sluice_harness::WAIT)
        .expect("watermarks")
        .1
}

fn committed_total(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, sluice_harness::WAIT)
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}
