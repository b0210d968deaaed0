//! The fault-injection suite: ordinary faults against real brokers with their default settings
//! (Mosquitto with `persistence true` and its default in-flight window and queue limits, the
//! librdkafka mock cluster, the Elasticsearch stand-in), each ending with a checker that counts
//! missing and duplicated records. Nothing may be missing; duplicates stay within the brokers'
//! in-flight windows. `cargo xtask faults` runs the repeatable ones for more cycles
//! (`SLUICE_FAULT_CYCLES`).

use sluice_harness::elasticsearch::{FakeElasticsearch, Faults};
use sluice_harness::faults::{
    cycles, seq_payload, PersistentMosquitto, SequenceCollector, SequencePublisher, Tally,
    MOSQUITTO_INFLIGHT,
};
use sluice_harness::{fixture_dir, free_port, PipelineFile, SluiceRun};
use std::ffi::OsStr;
use std::time::Duration;

/// A plain MQTT-to-MQTT relay with every setting left at its default.
fn relay(source: &str, sink: &str) -> PipelineFile {
    relay_with("relay.toml", source, sink, r#"topics = ["in"]"#)
}

/// An MQTT-to-MQTT relay (`file` names it) whose source table has `source_lines` (its topics
/// and anything else) and otherwise every default; it publishes to `out`.
fn relay_with(file: &str, source: &str, sink: &str, source_lines: &str) -> PipelineFile {
    PipelineFile::new(
        file,
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker.url = "{source}"
{source_lines}

[sinks.output]
type = "mqtt"
inputs = ["input"]
broker.url = "{sink}"
topic = "out"
"#
        ),
    )
}

/// `sluice run` with its own state directory (its host id, dead letters), so a restart is the
/// same host and another process is another host.
fn run_in(pipeline: &PipelineFile, state: &std::path::Path, extra: &[&str]) -> SluiceRun {
    let mut args: Vec<&OsStr> = vec![OsStr::new("--state-dir"), state.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    SluiceRun::start_with_args(&pipeline.path, &args)
}

/// Waits until `sluice` logged that its MQTT source is subscribed.
fn subscribed(run: &mut SluiceRun) {
    run.wait_ready();
}

#[test]
fn kill_9_with_default_settings_loses_nothing() {
    const COUNT: usize = 3000;
    let broker = PersistentMosquitto::start();
    let pipeline = relay(&broker.url(), &broker.url());
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(broker.port, "out");
    let mut first = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut first);
    let publisher = SequencePublisher::start(broker.port, "in", COUNT, 300);
    let kills = cycles();
    let mut run = first;
    for cycle in 1..=kills {
        // Mid-stream: some delivered, more coming.
        publisher.wait_sent(COUNT * cycle / (kills + 1));
        run.kill();
        run = run_in(&pipeline, state.path(), &[]);
        subscribed(&mut run);
    }
    publisher.finish();
    let tally = collector.tally(COUNT);
    tally.assert_complete("kill -9", kills * MOSQUITTO_INFLIGHT);
    assert_eq!(run.stop().code(), Some(0));
}

#[test]
fn the_sink_broker_restarting_loses_nothing() {
    const COUNT: usize = 4000;
    let source = PersistentMosquitto::start();
    let mut sink = PersistentMosquitto::start();
    let pipeline = relay(&source.url(), &sink.url());
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(sink.port, "out");
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    let publisher = SequencePublisher::start(source.port, "in", COUNT, 500);
    let restarts = cycles();
    for cycle in 1..=restarts {
        publisher.wait_sent(COUNT * cycle / (restarts + 1));
        sink.stop();
        // Under Mosquitto's default queue limit (1000) even with the reconnect backoff.
        publisher.wait_sent(COUNT * cycle / (restarts + 1) + 300);
        sink.start_again();
    }
    publisher.finish();
    let tally = collector.tally(COUNT);
    // Per restart: what Sluice had in flight to the sink broker (at most the source's window)
    // is sent again, and what the broker had in flight to the collector is delivered again.
    tally.assert_complete("sink broker restart", restarts * 2 * MOSQUITTO_INFLIGHT);
    assert_eq!(run.stop().code(), Some(0));
}

#[test]
fn the_source_broker_restarting_loses_nothing() {
    const COUNT: usize = 3000;
    let mut source = PersistentMosquitto::start();
    let sink = PersistentMosquitto::start();
    let pipeline = relay(&source.url(), &sink.url());
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(sink.port, "out");
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    let publisher = SequencePublisher::start(source.port, "in", COUNT, 400);
    let restarts = cycles();
    for cycle in 1..=restarts {
        publisher.wait_sent(COUNT * cycle / (restarts + 1));
        source.stop();
        source.start_again();
    }
    publisher.finish();
    let tally = collector.tally(COUNT);
    // Per restart: the broker's window to Sluice, and the publisher's one message it sends again.
    tally.assert_complete("source broker restart", restarts * (MOSQUITTO_INFLIGHT + 1));
    assert_eq!(run.stop().code(), Some(0));
}

/// MQTT source -> Elasticsearch sink at `es_url`, documents keyed by their `id`.
fn to_elasticsearch(mqtt: &str, es_url: &str, keep_alive: u64) -> PipelineFile {
    PipelineFile::new(
        "to-es.toml",
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker.url = "{mqtt}"
broker.keep_alive_secs = {keep_alive}
topics = ["in"]

[sinks.index]
type = "elasticsearch"
inputs = ["input"]
url = "{es_url}"
index = "seq"
id_field = "id"
batch_max_records = 50
batch_timeout_ms = 100
"#
        ),
    )
}

fn json_seq(i: usize) -> String {
    format!(r#"{{"id":"{}"}}"#, seq_payload(i))
}

/// The ids indexed in `es`, as payloads the checker reads: once all arrived, or when nothing
/// new came for `WAIT`.
fn indexed(es: &FakeElasticsearch, count: usize) -> Tally {
    let (mut seen, mut since) = (0, std::time::Instant::now());
    loop {
        let ids: Vec<String> = es.documents("seq").into_iter().map(|(id, _)| id).collect();
        if ids.len() != seen {
            (seen, since) = (ids.len(), std::time::Instant::now());
        }
        let tally = Tally::of(&ids, count);
        if tally.missing.is_empty() || since.elapsed() > sluice_harness::WAIT {
            return tally;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_with_a_dead_sink_stops_at_the_drain_deadline_and_loses_nothing() {
    const COUNT: usize = 10;
    let broker = PersistentMosquitto::start();
    let es_port = free_port(); // nothing listens there yet
    let es_url = format!("http://127.0.0.1:{es_port}");
    let pipeline = to_elasticsearch(&broker.url(), &es_url, 30);
    let state = tempfile::tempdir().unwrap();
    let mut run = run_in(&pipeline, state.path(), &["--drain-timeout", "2s"]);
    subscribed(&mut run);
    let publisher = SequencePublisher::start_with(broker.port, "in", COUNT, 100, json_seq);
    publisher.finish();
    run.wait_for_log("elasticsearch"); // the sink is failing to reach it
    let (status, log) = run.stop_with_log();
    assert_eq!(status.code(), Some(3), "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("records unacknowledged")),
        "says how many were left: {log:?}"
    );
    // Elasticsearch comes up; the next start delivers everything the broker kept.
    let es = FakeElasticsearch::start_on(es_port, Faults::default()).expect("es");
    let again = run_in(&pipeline, state.path(), &[]);
    indexed(&es, COUNT).assert_complete("after a stop with a dead sink", 0);
    assert_eq!(again.stop().code(), Some(0));
}

#[test]
fn a_second_signal_stops_at_once() {
    let broker = PersistentMosquitto::start();
    let es_url = format!("http://127.0.0.1:{}", free_port()); // never up
    let pipeline = to_elasticsearch(&broker.url(), &es_url, 30);
    let state = tempfile::tempdir().unwrap();
    let mut run = run_in(&pipeline, state.path(), &["--drain-timeout", "10m"]);
    subscribed(&mut run);
    SequencePublisher::start_with(broker.port, "in", 5, 100, json_seq).finish();
    run.wait_for_log("elasticsearch");
    run.signal("TERM");
    run.wait_for_log("second Ctrl-C or SIGTERM stops at once");
    run.signal("TERM");
    let status = run.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3));
}

#[test]
fn an_elasticsearch_outage_longer_than_the_keep_alive_loses_nothing() {
    elasticsearch_outage("", 800, 600);
}

/// The same with the broker's in-flight window raised (as people do for throughput): the source
/// then holds more than its downstream channels take, and blocks sending downstream for the
/// whole outage; its connection must stay polled meanwhile.
#[test]
fn an_elasticsearch_outage_with_a_wide_in_flight_window_keeps_the_source_connected() {
    // 900 during the outage (18 s): the source blocks after about 300 (a 50-record batch
    // retrying, 256 in its channel), for far longer than 1.5 keep-alives.
    elasticsearch_outage("max_inflight_messages 1000", 1100, 900);
}

/// Elasticsearch is down while the first `during` of `count` records are published at 50/s.
fn elasticsearch_outage(broker_config: &str, count: usize, during: usize) {
    let broker = PersistentMosquitto::start_with(broker_config, &[]);
    let es_port = free_port();
    let es_url = format!("http://127.0.0.1:{es_port}");
    // The shortest keep-alive (5 s): Mosquitto drops a client silent for 1.5 keep-alives, and the
    // outage below lasts 12 s or more, so the source's connection must be kept alive while
    // nothing is acknowledged.
    let pipeline = to_elasticsearch(&broker.url(), &es_url, 5);
    let state = tempfile::tempdir().unwrap();
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    // What is published during the outage stays under Mosquitto's queue limit (default
    // max_queued_messages 1000), past which the broker itself drops messages.
    let publisher = SequencePublisher::start_with(broker.port, "in", count, 50, json_seq);
    publisher.wait_sent(during);
    let es = FakeElasticsearch::start_on(es_port, Faults::default()).expect("es");
    publisher.finish();
    indexed(&es, count).assert_complete("elasticsearch outage", 0);
    let (status, log) = run.stop_with_log();
    assert_eq!(status.code(), Some(0), "{log:?}");
    assert!(
        !log.iter().any(|l| l.contains("mqtt connection:")),
        "the source kept its connection: {log:?}"
    );
}

#[test]
fn a_kafka_broker_down_and_back_loses_nothing() {
    use rdkafka::mocking::MockCluster;
    const COUNT: usize = 1200;
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("out", 1, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let mqtt = PersistentMosquitto::start();
    let pipeline = PipelineFile::new(
        "to-kafka.toml",
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker.url = "{}"
topics = ["in"]

[sinks.output]
type = "kafka"
inputs = ["input"]
brokers = "{brokers}"
topic = "out"
"#,
            mqtt.url()
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    let read_all = |count: usize| {
        // A reader made after the outage (one that lived through it may sit out its group's
        // rejoin past the wait).
        let reader = sluice_harness::kafka::TopicReader::new(&brokers, "out");
        let mut checked = 0;
        reader.try_read_until(|seen| {
            // Tally only when enough arrived to be complete (each tally reads them all).
            seen.len() >= count
                && std::mem::replace(&mut checked, seen.len()) != seen.len()
                && Tally::of(&payloads(seen), count).missing.is_empty()
        })
    };
    // In phases, so that what waits in Mosquitto for Sluice while Kafka is away (and while the
    // producer reconnects, up to librdkafka's 10 s reconnect backoff) stays under Mosquitto's
    // default queue limit (1000 messages, past which the broker itself drops them).
    SequencePublisher::start_range(mqtt.port, "in", 0..COUNT / 2, 400, seq_payload).finish();
    cluster.broker_down(1).expect("broker down");
    SequencePublisher::start_range(mqtt.port, "in", COUNT / 2..COUNT * 3 / 4, 400, seq_payload)
        .finish();
    cluster.broker_up(1).expect("broker up");
    SequencePublisher::start_range(mqtt.port, "in", COUNT * 3 / 4..COUNT, 400, seq_payload)
        .finish();
    let (records, _) = read_all(COUNT);
    let (status, log) = run.stop_with_log();
    let tally = Tally::of(&payloads(&records), COUNT);
    if !tally.missing.is_empty() {
        eprintln!("sluice's log:\n{}", log.join("\n"));
    }
    tally.assert_complete("kafka broker down", MOSQUITTO_INFLIGHT);
    assert_eq!(status.code(), Some(0));
}

fn payloads(records: &[sluice_harness::kafka::KafkaRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

/// A relay through the hostile UDF, whose `init` does `init_mode`.
fn through_hostile(mqtt: &str, init_mode: &str) -> PipelineFile {
    let module = fixture_dir().join("hostile.wasm");
    PipelineFile::new(
        "hostile.toml",
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker.url = "{mqtt}"
topics = ["in"]

[transforms.guest]
type = "udf"
inputs = ["input"]
module = "{}"
deadline_ms = 300
config = {{ init = "{init_mode}" }}

[sinks.output]
type = "mqtt"
inputs = ["guest"]
broker.url = "{mqtt}"
topic = "out"
"#,
            module.display()
        ),
    )
}

#[test]
fn a_udf_that_prints_in_init_runs() {
    const COUNT: usize = 50;
    let broker = PersistentMosquitto::start();
    let pipeline = through_hostile(&broker.url(), "print");
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(broker.port, "out");
    let mut run = run_in(&pipeline, state.path(), &[]);
    // `init` runs when the pipeline is built, before the source subscribes.
    run.wait_for_log("hostile init says hello on stdout");
    subscribed(&mut run);
    SequencePublisher::start(broker.port, "in", COUNT, 500).finish();
    collector.tally(COUNT).assert_complete("printing init", 0);
    assert_eq!(run.stop().code(), Some(0));
}

#[test]
fn a_udf_that_sleeps_or_panics_in_init_is_refused_with_the_reason() {
    let broker = PersistentMosquitto::start();
    let state = tempfile::tempdir().unwrap();
    for (mode, reason) in [("sleep", "timeout"), ("trap", "hostile init panicked")] {
        let pipeline = through_hostile(&broker.url(), mode);
        let mut run = run_in(&pipeline, state.path(), &[]);
        let status = run.wait_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(1), "init = {mode}");
        run.wait_for_log(reason);
    }
}

#[test]
fn two_replicas_on_a_shared_subscription_split_the_stream() {
    const COUNT: usize = 2000;
    let broker = PersistentMosquitto::start();
    let pipeline = relay_with(
        "shared.toml",
        &broker.url(),
        &broker.url(),
        r#"topics = ["$share/g/in"]"#,
    );
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let collector = SequenceCollector::subscribe(broker.port, "out");
    let mut a = run_in(&pipeline, state_a.path(), &[]);
    subscribed(&mut a);
    let mut b = run_in(&pipeline, state_b.path(), &[]);
    subscribed(&mut b);
    SequencePublisher::start(broker.port, "in", COUNT, 1000).finish();
    collector.tally(COUNT).assert_complete("two replicas", 0);
    let (status_a, log_a) = a.stop_with_log();
    let (status_b, log_b) = b.stop_with_log();
    assert_eq!((status_a.code(), status_b.code()), (Some(0), Some(0)));
    // Neither replica lost its connection to the other (a shared client id makes the broker
    // disconnect one for the other, over and over).
    for log in [&log_a, &log_b] {
        assert!(
            !log.iter().any(|l| l.contains("mqtt connection:")),
            "a replica was disconnected: {log:?}"
        );
    }
}

#[test]
fn a_kafka_header_key_that_is_not_utf8_is_dead_lettered_not_a_crash_loop() {
    use rdkafka::mocking::MockCluster;
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("in", 1, 1).expect("topic in");
    cluster.create_topic("out", 1, 1).expect("topic out");
    let brokers = cluster.bootstrap_servers();
    sluice_harness::kafka::produce_all(&brokers, "in", &[b"first".to_vec()]);
    sluice_harness::kafka::produce_with_raw_header_key(
        &brokers,
        "in",
        b"bad\xff\xfekey",
        b"poison",
    );
    sluice_harness::kafka::produce_all(&brokers, "in", &[b"last".to_vec()]);
    let pipeline = PipelineFile::new(
        "headers.toml",
        &format!(
            r#"
[sources.input]
type = "kafka"
brokers = "{brokers}"
topics = ["in"]
group_id = "headers"

[sinks.output]
type = "kafka"
inputs = ["input"]
brokers = "{brokers}"
topic = "out"
"#
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let run = run_in(&pipeline, state.path(), &[]);
    let reader = sluice_harness::kafka::TopicReader::new(&brokers, "out");
    let out = reader.read_until(|seen| seen.len() >= 2);
    let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_slice()).collect();
    assert_eq!(values, [&b"first"[..], &b"last"[..]]);
    let dead = state.path().join("dead-letters/headers.jsonl");
    let text = std::fs::read_to_string(&dead).expect("a dead letter");
    assert!(text.contains("poison"), "{text}");
    assert!(text.contains("not UTF-8"), "{text}");
    assert_eq!(run.stop().code(), Some(0));
}

#[test]
fn a_pipeline_stuck_draining_holds_up_no_other_and_ready_names_it() {
    use sluice_harness::serve::{http, Serve};
    let broker = PersistentMosquitto::start();
    let dead_es = format!("http://127.0.0.1:{}", free_port());
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        state.path(),
        &[
            "--drain-timeout",
            "20s",
            "--ready-max-unacked-age",
            "1s",
            "--no-watch",
        ],
    );
    let stuck = std::fs::read_to_string(&to_elasticsearch(&broker.url(), &dead_es, 30).path)
        .unwrap()
        .replace("topics = [\"in\"]", "topics = [\"stuck/in\"]");
    serve.create_pipeline("stuck", &stuck);
    serve.wait_for_log("mqtt source subscribed");
    SequencePublisher::start_with(broker.port, "stuck/in", 5, 100, json_seq).finish();

    // Nothing is acknowledged: once the oldest record waited over a second, /ready says so.
    let deadline = std::time::Instant::now() + sluice_harness::WAIT;
    let not_ready = loop {
        let answer = http(serve.port, "GET", "/ready", None, None);
        if answer.status == 503 {
            break answer.json();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/ready stayed {}",
            answer.body
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        not_ready["unacked_too_long"][0]["pipeline"], "stuck",
        "{not_ready}"
    );
    assert_eq!(
        not_ready["unacked_too_long"][0]["unacked"], 5,
        "{not_ready}"
    );

    // Undeploying it drains until the deadline; meanwhile another pipeline deploys at once.
    let port = serve.port;
    let undeploy = std::thread::spawn(move || {
        http(
            port,
            "DELETE",
            "/pipelines/stuck",
            Some(sluice_harness::serve::TOKEN),
            None,
        )
    });
    serve.wait_until("stuck is being undeployed", |list| {
        !sluice_harness::serve::pipeline_names(list).contains(&"stuck".to_string())
    });
    let other = relay(&broker.url(), &broker.url());
    serve.create_pipeline("other", &std::fs::read_to_string(&other.path).unwrap());
    assert!(
        !undeploy.is_finished(),
        "the other deploy waited for the stuck pipeline's drain"
    );
    let answer = undeploy.join().expect("undeploy");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(serve.stop().code(), Some(0));
}

/// Dynamic-security configuration: everything allowed, but subscribing to `secret`.
const DENY_SECRET: &str = r#"{
  "defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true,
                       "subscribe": true, "unsubscribe": true},
  "clients": [],
  "groups": [{"groupname": "anonymous", "roles": [{"rolename": "no-secret"}], "clients": []}],
  "roles": [{"rolename": "no-secret", "acls": [
    {"acltype": "subscribePattern", "topic": "secret", "priority": 0, "allow": false}]}],
  "anonymousGroup": "anonymous"
}"#;

#[test]
fn a_refused_subscription_is_reported_not_ignored() {
    // Mosquitto's dynamic-security plugin (in the Debian package) with a role that denies
    // anonymous clients the subscription to `secret` (its ACL file never denies a SUBSCRIBE).
    let broker = PersistentMosquitto::start_with(
        "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n\
         plugin_opt_config_file {dir}/dynsec.json",
        &[("dynsec.json", DENY_SECRET)],
    );
    let pipeline = relay_with(
        "acl.toml",
        &broker.url(),
        &broker.url(),
        r#"topics = ["secret"]"#,
    );
    let state = tempfile::tempdir().unwrap();
    let run = run_in(&pipeline, state.path(), &[]);
    let line = run.wait_for_log("the broker refused the subscription");
    assert!(line.contains("secret"), "{line}");
    // The pipeline restarts with backoff and asks again, saying so each time.
    run.wait_for_log("restarting after backoff");
    assert_eq!(run.stop().code(), Some(0));
}

#[test]
fn a_message_over_the_size_limit_is_dead_lettered_with_its_size() {
    let broker = PersistentMosquitto::start();
    let pipeline = relay_with(
        "sizes.toml",
        &broker.url(),
        &broker.url(),
        "topics = [\"in\"]\nmax_message_bytes = 1000",
    );
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(broker.port, "out");
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    sluice_harness::publish_all(
        broker.port,
        "in",
        &[vec![b'x'; 5000], seq_payload(0).into_bytes()],
    );
    collector
        .tally(1)
        .assert_complete("after an oversized message", 0);
    let dead = std::fs::read_to_string(state.path().join("dead-letters/sizes.jsonl"))
        .expect("a dead letter");
    assert!(
        dead.contains("message of 5000 bytes is over max_message_bytes (1000)"),
        "{dead}"
    );
    assert_eq!(run.stop().code(), Some(0));
}

/// The same for a Kafka record over its source's `max_message_bytes`: dead-lettered with its
/// size, and the records around it flow on.
#[test]
fn a_kafka_record_over_the_size_limit_is_dead_lettered_with_its_size() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("in", 1, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    sluice_harness::kafka::produce_all(
        &brokers,
        "in",
        &[b"small-1".to_vec(), vec![b'x'; 5000], b"small-2".to_vec()],
    );
    let pipeline = PipelineFile::new(
        "sizes.toml",
        &format!(
            r#"
[sources.input]
type = "kafka"
brokers = "{brokers}"
topics = ["in"]
group_id = "sizes"
max_message_bytes = 1000

[sinks.out]
type = "console"
inputs = ["input"]
"#
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let run = run_in(&pipeline, state.path(), &[]);
    // The source dead-letters a record before it reads the next one.
    assert_eq!(run.stdout_lines(2), ["small-1", "small-2"]);
    let dead = std::fs::read_to_string(state.path().join("dead-letters/sizes.jsonl"))
        .expect("a dead letter");
    assert!(
        dead.contains("record of 5000 bytes is over max_message_bytes (1000)")
            && !dead.contains("decode: record of"),
        "the reason is the size, not a decoding failure: {dead}"
    );
    assert_eq!(run.stop().code(), Some(0));
}

/// `relay` with a `[journal]` table of `journal_lines`.
fn relay_with_journal(source: &str, sink: &str, journal_lines: &str) -> PipelineFile {
    PipelineFile::new(
        "journaled.toml",
        &format!(
            r#"
[journal]
{journal_lines}

[sources.input]
type = "mqtt"
broker.url = "{source}"
topics = ["in"]

[sinks.output]
type = "mqtt"
inputs = ["input"]
broker.url = "{sink}"
topic = "out"
"#
        ),
    )
}

#[test]
fn an_outage_longer_than_the_brokers_queue_is_kept_in_the_journal_through_kill_9() {
    // More than Mosquitto's default queue (`max_queued_messages 1000`) arrives while the sink
    // broker is down. Without the journal Sluice stops acknowledging after a few hundred and the
    // broker drops what does not fit; with it, Sluice acknowledges as it journals. Then Sluice is
    // killed with everything still undelivered, and the next run delivers it from the journal.
    const COUNT: usize = 2500;
    let source = PersistentMosquitto::start();
    // The sink broker is the test's receiver, not the system under test: Sluice catches up
    // faster than the collector reads, and with the default queue limit Mosquitto would drop
    // past 1000 between itself and the collector.
    let mut sink = PersistentMosquitto::start_with("max_queued_messages 0\n", &[]);
    let pipeline = relay(&source.url(), &sink.url());
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(sink.port, "out");
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    sink.stop();
    let publisher = SequencePublisher::start(source.port, "in", COUNT, 1000);
    publisher.finish();
    run.kill();
    sink.start_again();
    // Connected before the replay floods it: Mosquitto would queue at most 1000 for it.
    collector.wait_connections(2);
    let mut again = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut again);
    let tally = collector.tally(COUNT);
    tally.assert_complete("sink outage, kill -9, journal replay", MOSQUITTO_INFLIGHT);
    assert_eq!(again.stop().code(), Some(0));
}

#[test]
fn a_full_journal_holds_acknowledgements_back_and_drops_nothing() {
    // A journal of a few dozen entries: once full, the broker's window and queue hold the rest
    // (800 fits in Mosquitto's default queue) until the sink broker is back.
    const COUNT: usize = 800;
    let source = PersistentMosquitto::start();
    let mut sink = PersistentMosquitto::start();
    let pipeline = relay_with_journal(&source.url(), &sink.url(), "max_bytes = 2000");
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(sink.port, "out");
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    sink.stop();
    let publisher = SequencePublisher::start(source.port, "in", COUNT, 1000);
    publisher.finish();
    sink.start_again();
    collector.wait_connections(2);
    let tally = collector.tally(COUNT);
    tally.assert_complete("full journal", MOSQUITTO_INFLIGHT);
    assert_eq!(run.stop().code(), Some(0));
}

#[test]
fn without_the_journal_acknowledgements_wait_for_the_sinks() {
    // `[journal] enabled = false` keeps the old contract: kill -9 mid-stream, nothing lost,
    // duplicates within the broker's window.
    const COUNT: usize = 1500;
    let broker = PersistentMosquitto::start();
    let pipeline = relay_with_journal(&broker.url(), &broker.url(), "enabled = false");
    let state = tempfile::tempdir().unwrap();
    let collector = SequenceCollector::subscribe(broker.port, "out");
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    let publisher = SequencePublisher::start(broker.port, "in", COUNT, 500);
    publisher.wait_sent(COUNT / 2);
    run.kill();
    let mut again = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut again);
    publisher.finish();
    let tally = collector.tally(COUNT);
    tally.assert_complete("kill -9 without a journal", MOSQUITTO_INFLIGHT);
    assert!(
        !state.path().join("journal/journaled").exists(),
        "no journal is opened when it is off"
    );
    assert_eq!(again.stop().code(), Some(0));
}

/// `source_table` (a source named `input`) fanned out to a Kafka sink (topic `out` on `kafka`)
/// and an Elasticsearch sink that is down. `publish` feeds `count` records of `json_seq`. Every
/// record must reach Kafka while Elasticsearch is down (at most `max_duplicates` twice); then
/// Sluice is killed, Elasticsearch comes up, and the next run delivers its share from its
/// buffer.
fn kafka_keeps_going_while_elasticsearch_is_down(
    kafka: &sluice_harness::kafka::Tansu,
    source_table: &str,
    count: usize,
    max_duplicates: usize,
    publish: impl FnOnce(),
) {
    kafka.create_topic("out", 1);
    let es_port = free_port(); // nothing listens there yet
    let pipeline = PipelineFile::new(
        "fan-out.toml",
        &format!(
            r#"
{source_table}

[sinks.to_kafka]
type = "kafka"
inputs = ["input"]
brokers = "{brokers}"
topic = "out"

[sinks.index]
type = "elasticsearch"
inputs = ["input"]
url = "http://127.0.0.1:{es_port}"
index = "seq"
id_field = "id"
batch_max_records = 50
batch_timeout_ms = 100
"#,
            brokers = kafka.brokers,
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let mut run = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut run);
    publish();
    let reader = sluice_harness::kafka::TopicReader::new(&kafka.brokers, "out");
    let (records, _) = reader.try_read_until(|seen| seen.len() >= count);
    let ids: Vec<String> = payloads(&records)
        .iter()
        .map(|json| {
            let value: serde_json::Value = serde_json::from_str(json).expect("json");
            value["id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    Tally::of(&ids, count).assert_complete("kafka while elasticsearch is down", max_duplicates);
    // Killed with Elasticsearch's share still buffered; the next run delivers it.
    run.kill();
    let es = FakeElasticsearch::start_on(es_port, Faults::default()).expect("es");
    let mut again = run_in(&pipeline, state.path(), &[]);
    subscribed(&mut again);
    indexed(&es, count).assert_complete("elasticsearch after the outage and kill -9", 0);
    assert_eq!(again.stop().code(), Some(0));
}

#[test]
fn an_elasticsearch_outage_never_holds_up_the_kafka_sink() {
    // Far more than the channels between the components hold (256 each): without a buffer per
    // sink, the Kafka sink would stall with Elasticsearch after a few hundred. The outage lasts
    // as long as publishing takes, 3 s at 1000/s; `SLUICE_FAULT_OUTAGE_SECS=600` makes it the
    // issue's ten minutes (600 000 records).
    let outage_secs: usize = std::env::var("SLUICE_FAULT_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let count = outage_secs * 1000;
    let broker = PersistentMosquitto::start();
    let kafka = sluice_harness::kafka::Tansu::start();
    let source = format!(
        "[sources.input]\ntype = \"mqtt\"\nbroker.url = \"{}\"\ntopics = [\"in\"]\n",
        broker.url()
    );
    kafka_keeps_going_while_elasticsearch_is_down(&kafka, &source, count, 0, || {
        SequencePublisher::start_with(broker.port, "in", count, 1000, json_seq).finish();
    });
}

#[test]
fn a_journaled_kafka_source_keeps_kafka_sinks_going_while_elasticsearch_is_down() {
    // `journal = true` on a Kafka source: offsets are stored once records are journaled, and the
    // sinks get buffers, so Elasticsearch being down does not hold up the Kafka sink.
    const COUNT: usize = 3000;
    let kafka = sluice_harness::kafka::Tansu::start();
    kafka.create_topic("in", 1);
    let source = format!(
        "[sources.input]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"in\"]\ngroup_id = \"journaled\"\njournal = true\n",
        kafka.brokers
    );
    kafka_keeps_going_while_elasticsearch_is_down(&kafka, &source, COUNT, COUNT, || {
        let sent: Vec<Vec<u8>> = (0..COUNT).map(|i| json_seq(i).into_bytes()).collect();
        sluice_harness::kafka::produce_all(&kafka.brokers, "in", &sent);
    });
}
