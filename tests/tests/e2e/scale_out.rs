//! Scale-out on the engines users already run: several `sluice run` processes (distinct host
//! ids) share one stream through a Kafka consumer group, under load, while members crash, join
//! and leave. Against librdkafka's mock cluster (a Kafka-protocol broker on real sockets, with
//! real group coordination: join, sync, heartbeats, session timeouts).
//!
//! The checker counts every input record in the output: none may be missing, and the only
//! duplicates allowed are those a crash leaves: records of the partitions the crashed member
//! owned, at or after the offsets it had committed (what it delivered but could not commit).
//! A member that leaves with SIGTERM, or gives partitions up to a newcomer, first delivers and
//! commits what it holds, so those rebalances duplicate nothing.

use sluice_harness::kafka::{committed_offsets, PacedProducer, TopicReader};
use sluice_harness::process::SluiceRun;
use sluice_harness::PipelineFile;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
const RECORDS: usize = 24_000;
const PER_SECOND: u32 = 1_500;
/// The group's session timeout: how long a crashed member's partitions wait.
const SESSION_TIMEOUT_MS: u64 = 6_000;

fn relay(brokers: &str) -> String {
    format!(
        r#"
[pipeline]
name = "relay"

[sources.input]
type = "kafka"
brokers = "{brokers}"
topics = ["in"]
group_id = "relay"
session_timeout_ms = {SESSION_TIMEOUT_MS}
commit_interval_ms = 200

[transforms.work]
type = "filter"
inputs = ["input"]
condition = "true"

[sinks.output]
type = "kafka"
inputs = ["work"]
brokers = "{brokers}"
topic = "out"
"#
    )
}

/// One `sluice run` process of the group, with the partitions it last said it owns.
struct Member {
    name: &'static str,
    run: SluiceRun,
    owned: BTreeSet<i32>,
    /// Its Kafka log lines (shown when the check fails).
    kafka_log: Vec<String>,
}

impl Member {
    fn start(name: &'static str, pipeline: &PipelineFile) -> Member {
        let mut run = SluiceRun::start_with_args(
            &pipeline.path,
            &[OsStr::new("--host-id"), OsStr::new(name)],
        );
        run.wait_ready();
        Member {
            name,
            run,
            owned: BTreeSet::new(),
            kafka_log: Vec::new(),
        }
    }

    /// Reads its log until `until` holds for what it owns, or `deadline` passes (`false`).
    fn follow(&mut self, deadline: Instant, until: impl Fn(&BTreeSet<i32>) -> bool) -> bool {
        while !until(&self.owned) {
            let Some(line) = self.run.next_log_line(deadline) else {
                return false;
            };
            if line.contains("kafka") {
                self.kafka_log.push(format!("{}: {line}", self.name));
            }
            if line.contains("partitions assigned") || line.contains("partitions revoked") {
                self.owned = owned_partitions(&line);
            }
        }
        true
    }
}

/// The partitions of `in[0,3]` in a log line's `owned=` field (none when it is empty).
fn owned_partitions(line: &str) -> BTreeSet<i32> {
    let Some(at) = line.find("owned=in[") else {
        return BTreeSet::new();
    };
    let rest = &line[at + "owned=in[".len()..];
    let list = &rest[..rest.find(']').unwrap_or(rest.len())];
    list.split(',').filter_map(|p| p.parse().ok()).collect()
}

/// Waits until `members` own every partition between them, each exactly `each`.
fn wait_balanced(members: &mut [&mut Member], each: usize) {
    let deadline = Instant::now() + sluice_harness::WAIT;
    loop {
        for m in members.iter_mut() {
            // Take what is logged so far (a short wait each: lines may still be coming).
            m.follow(Instant::now() + Duration::from_millis(50), |_| false);
        }
        let all: BTreeSet<i32> = members.iter().flat_map(|m| m.owned.clone()).collect();
        if all.len() == PARTITIONS as usize && members.iter().all(|m| m.owned.len() == each) {
            return;
        }
        let owned: Vec<String> = members
            .iter()
            .map(|m| format!("{} {:?}", m.name, m.owned))
            .collect();
        assert!(
            Instant::now() < deadline,
            "the group never balanced: {owned:?}"
        );
    }
}

#[test]
fn a_consumer_group_of_processes_survives_a_crash_a_join_and_a_leave() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("in", PARTITIONS, 1).expect("topic in");
    cluster.create_topic("out", 1, 1).expect("topic out");
    let brokers = cluster.bootstrap_servers();
    let pipeline = PipelineFile::new("relay.toml", &relay(&brokers));

    let mut a = Member::start("host-a", &pipeline);
    let mut b = Member::start("host-b", &pipeline);
    let mut c = Member::start("host-c", &pipeline);
    wait_balanced(&mut [&mut a, &mut b, &mut c], 2);

    let producer = PacedProducer::start(&brokers, "in", PARTITIONS, RECORDS, PER_SECOND);
    // A crash mid-stream: its partitions pause for the session timeout, then move, and what it
    // delivered after its last commit is read again.
    producer.wait_sent(RECORDS / 5);
    let crashed: Vec<i32> = b.owned.iter().copied().collect();
    b.run.kill();
    let killed_at = Instant::now();
    let committed: BTreeMap<i32, i64> = committed_offsets(&brokers, "relay", "in", &crashed)
        .into_iter()
        .map(|(p, o)| (p, o.unwrap_or(0)))
        .collect();
    wait_balanced(&mut [&mut a, &mut c], 3);
    let pause = killed_at.elapsed();

    // A newcomer: the others give partitions up, after delivering and committing them.
    producer.wait_sent(RECORDS * 9 / 20);
    let mut d = Member::start("host-d", &pipeline);
    wait_balanced(&mut [&mut a, &mut c, &mut d], 2);

    // A member leaves with SIGTERM: it drains, commits and leaves the group at once.
    producer.wait_sent(RECORDS * 7 / 10);
    let status = a.run.stop();
    assert!(status.success(), "host-a stops cleanly: {status}");
    wait_balanced(&mut [&mut c, &mut d], 3);

    producer.finish();
    let expected: BTreeSet<usize> = (0..RECORDS).collect();
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    let reader = TopicReader::new(&brokers, "out");
    let (_, complete) = reader.try_read_until(|seen| {
        for record in &seen[counts.values().sum::<usize>()..] {
            let value: usize = String::from_utf8_lossy(&record.value)
                .parse()
                .expect("a number");
            *counts.entry(value).or_default() += 1;
        }
        counts.len() >= RECORDS
    });
    let missing: Vec<&usize> = expected
        .iter()
        .filter(|i| !counts.contains_key(i))
        .collect();
    assert!(
        complete && missing.is_empty(),
        "{} of {RECORDS} records never arrived, first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    // Duplicates: only the crashed member's partitions, only from its committed offsets on.
    let duplicates: Vec<usize> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| *i)
        .collect();
    let stray: Vec<&usize> = duplicates
        .iter()
        .filter(|i| {
            let (partition, offset) = (
                (**i as i32) % PARTITIONS,
                (**i / PARTITIONS as usize) as i64,
            );
            committed.get(&partition).is_none_or(|c| offset < *c)
        })
        .collect();
    let logs: Vec<&String> = [&a.kafka_log, &b.kafka_log, &c.kafka_log, &d.kafka_log]
        .into_iter()
        .flatten()
        .collect();
    assert!(
        stray.is_empty(),
        "records duplicated outside the crash's window (partitions {crashed:?} from offsets \
         {committed:?}): {} of them, first {:?}; the members' Kafka log:\n{logs:#?}",
        stray.len(),
        &stray[..stray.len().min(20)]
    );
    println!(
        "{RECORDS} records, {} duplicated (the crash's window), crash pause {:.1}s with \
         session_timeout_ms = {SESSION_TIMEOUT_MS}",
        duplicates.len(),
        pause.as_secs_f64()
    );
    for m in [c, d] {
        assert!(m.run.stop().success(), "{} stops cleanly", m.name);
    }
}

/// An MQTT relay that takes its share of `in` through the shared subscription `$share/relay/in`
/// and forwards it to `out/NAME` (so the checker sees who forwarded what).
fn shared_relay(url: &str, name: &str) -> String {
    shared_relay_over(url, name, "3.1.1")
}

/// [`shared_relay`] speaking MQTT `protocol` (`3.1.1` or `5`) on both sides.
fn shared_relay_over(url: &str, name: &str, protocol: &str) -> String {
    format!(
        r#"
[pipeline]
name = "shared"

[sources.input]
type = "mqtt"
broker.url = "{url}"
broker.protocol = "{protocol}"
topics = ["$share/relay/in"]
qos = 1

[sinks.output]
type = "mqtt"
inputs = ["input"]
broker.url = "{url}"
broker.protocol = "{protocol}"
topic = "out/{name}"
qos = 1
"#
    )
}

/// One member of the shared subscription: its pipeline, state directory (host id, session,
/// journal: kept across a restart) and process.
struct SharedMember {
    name: &'static str,
    pipeline: PipelineFile,
    state: tempfile::TempDir,
    run: Option<SluiceRun>,
}

impl SharedMember {
    fn start(name: &'static str, url: &str, protocol: &str) -> SharedMember {
        let mut member = SharedMember {
            name,
            pipeline: PipelineFile::new("shared.toml", &shared_relay_over(url, name, protocol)),
            state: tempfile::tempdir().expect("state dir"),
            run: None,
        };
        member.start_again();
        member
    }

    /// Starts it with the same host id and state: the same MQTT client id, so the broker
    /// resumes its persistent session.
    fn start_again(&mut self) {
        let mut run = SluiceRun::start_with_args(
            &self.pipeline.path,
            &[
                OsStr::new("--host-id"),
                OsStr::new(self.name),
                OsStr::new("--state-dir"),
                self.state.path().as_os_str(),
            ],
        );
        run.wait_ready();
        self.run = Some(run);
    }
}

/// Mosquitto with its default settings (in-flight window 20, queue 1000 per session) and
/// persistence on; `members` relays share `in`. One is killed (-9) mid-stream and comes back
/// after more was published. What the broker does, as this test checks it:
/// - it gives each message to one member, round robin, whether that member is connected or not
///   (Mosquitto 2.0: a member with a persistent session keeps its turn while away);
/// - a dead member's in-flight messages (sent, not acknowledged) and the share it is given
///   while away stay queued in its session (up to `max_queued_messages`, 1000 by default; more
///   would be dropped) and are delivered when it reconnects with the same client id; they are
///   never handed to the other members.
///
/// So with QoS 1 and persistent sessions nothing is lost as long as the member comes back
/// before its queue fills; what it had acknowledged is in its journal and replayed.
fn shared_subscription_survives_a_crash(members: usize, protocol: &str) {
    const RECORDS: usize = 3_000;
    const PER_SECOND: u32 = 500;
    let broker = sluice_harness::faults::PersistentMosquitto::start();
    let collector = sluice_harness::faults::SequenceCollector::subscribe(broker.port, "out/#");
    let names = ["host-a", "host-b", "host-c"];
    let mut group: Vec<SharedMember> = names[..members]
        .iter()
        .map(|name| SharedMember::start(name, &broker.url(), protocol))
        .collect();

    let crashed = names[1];
    let first = sluice_harness::faults::SequencePublisher::start_range(
        broker.port,
        "in",
        0..RECORDS / 2,
        PER_SECOND,
        sluice_harness::faults::seq_payload,
    );
    first.wait_sent(RECORDS / 4);
    if let Some(run) = group[1].run.take() {
        run.kill();
    }
    first.finish();
    // Published while it is away: its turns are queued in its session.
    let away = sluice_harness::faults::SequencePublisher::start_range(
        broker.port,
        "in",
        RECORDS / 2..RECORDS * 3 / 4,
        PER_SECOND,
        sluice_harness::faults::seq_payload,
    );
    away.finish();
    group[1].start_again();
    let rest = sluice_harness::faults::SequencePublisher::start_range(
        broker.port,
        "in",
        RECORDS * 3 / 4..RECORDS,
        PER_SECOND,
        sluice_harness::faults::seq_payload,
    );
    rest.finish();

    let tally = collector.tally(RECORDS);
    tally.assert_complete(
        &format!("{members} members sharing a stream (MQTT {protocol}), one killed and back"),
        sluice_harness::faults::MOSQUITTO_INFLIGHT,
    );
    let messages = collector.messages();
    let forwarded_by = |name: &str| -> Vec<usize> {
        messages
            .iter()
            .filter(|(topic, _)| topic == &format!("out/{name}"))
            .filter_map(|(_, p)| p.strip_prefix("seq-")?.parse().ok())
            .collect()
    };
    for name in &names[..members] {
        assert!(
            !forwarded_by(name).is_empty(),
            "{name} got a share of the stream"
        );
    }
    let queued_for_it = forwarded_by(crashed)
        .into_iter()
        .filter(|i| (RECORDS / 2..RECORDS * 3 / 4).contains(i))
        .count();
    assert!(
        queued_for_it > 0,
        "the broker kept the crashed member's turns for it while it was away"
    );
    for member in group {
        if let Some(run) = member.run {
            assert!(run.stop().success(), "{} stops cleanly", member.name);
        }
    }
}

#[test]
fn two_processes_share_an_mqtt_stream_and_survive_a_crash() {
    shared_subscription_survives_a_crash(2, "3.1.1");
}

#[test]
fn three_processes_share_an_mqtt_stream_and_survive_a_crash() {
    shared_subscription_survives_a_crash(3, "3.1.1");
}

/// The same over MQTT 5, where shared subscriptions are part of the protocol (the session
/// outlives the connection for `broker.session_expiry_secs`, one day by default).
#[test]
fn three_processes_share_an_mqtt_5_stream_and_survive_a_crash() {
    shared_subscription_survives_a_crash(3, "5");
}

/// A relay like [`shared_relay`] for a host reaching the broker at `address`, with the shortest
/// keep-alive (5 s: the broker drops a silent client after 1.5 times that).
fn lab_relay(address: &str, name: &str) -> String {
    shared_relay(&format!("mqtt://{address}:1883"), name)
        .replace("qos = 1\n", "qos = 1\nbroker.keep_alive_secs = 5\n")
}

/// Two hosts in network namespaces of their own share a stream through Mosquitto in a third.
/// One host's link is cut (packets dropped, nothing refused) until the broker gives up on it
/// (its keep-alive expires: the broker's session timeout), then reconnected: the broker kept
/// the host's session and turns, the host resumes it, and nothing is lost.
#[test]
fn a_host_cut_off_past_its_session_timeout_loses_nothing() {
    const RECORDS: usize = 2_000;
    const PER_SECOND: u32 = 100;
    let lab = sluice_harness::netns::Lab::try_new(&["h1", "h2"]).unwrap_or_else(|e| {
        panic!("this test makes network namespaces (root and iproute2 needed): {e}")
    });
    let broker = sluice_harness::netns::LabMosquitto::start(&lab);
    let collector = sluice_harness::faults::SequenceCollector::subscribe_at(
        &lab.broker_address_for_test(),
        1883,
        "out/#",
    );
    let hosts: Vec<(&str, PipelineFile, SluiceRun)> = ["h1", "h2"]
        .into_iter()
        .map(|host| {
            let pipeline = PipelineFile::new(
                "shared.toml",
                &lab_relay(&lab.broker_address_for(host), host),
            );
            let wrapper = lab.exec_in(host);
            let wrapper: Vec<&OsStr> = wrapper.iter().map(|s| s.as_os_str()).collect();
            let mut run = SluiceRun::start_wrapped(
                &wrapper,
                &[&pipeline.path],
                &[OsStr::new("--host-id"), OsStr::new(host)],
            );
            run.wait_ready();
            (host, pipeline, run)
        })
        .collect();

    let publisher = sluice_harness::faults::SequencePublisher::start_range_at(
        &lab.broker_address_for_test(),
        1883,
        "in",
        0..RECORDS,
        PER_SECOND,
        sluice_harness::faults::seq_payload,
    );
    publisher.wait_sent(RECORDS / 5);
    lab.cut("h1");
    // The broker's session timeout for it: it stops waiting for the host's keep-alive.
    broker.wait_for_log(&["sluice-h1-shared-input", "exceeded timeout"]);
    let cut_until = publisher.sent();
    lab.reconnect("h1");
    hosts[0].2.wait_for_log("session resumed");
    publisher.finish();

    let tally = collector.tally(RECORDS);
    tally.assert_complete(
        "a host cut off past its session timeout",
        sluice_harness::faults::MOSQUITTO_INFLIGHT,
    );
    let kept_for_it = collector
        .messages()
        .iter()
        .filter(|(topic, _)| topic == "out/h1")
        .filter_map(|(_, p)| p.strip_prefix("seq-")?.parse::<usize>().ok())
        .filter(|i| (RECORDS / 5..cut_until).contains(i))
        .count();
    assert!(
        kept_for_it > 0,
        "h1 forwarded its turns from while it was cut off"
    );
    for (host, _, run) in hosts {
        assert!(run.stop().success(), "{host} stops cleanly");
    }
}
