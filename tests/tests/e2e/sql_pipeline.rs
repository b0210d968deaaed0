//! SQL pipelines end to end on a real Kafka-protocol broker (tansu):
//! - the original demo's three statements (`pipelines/ecg-anomaly.sql`) and the shipped TOML
//!   pipeline (`pipelines/ecg-detect.toml`) each read the same ECG input (23 events, two
//!   malformed messages, then a marker event and a malformed marker) on a broker of their own,
//!   and their output topics up to the markers are compared byte for byte, in order (so a
//!   duplicate or a loss shows), and with H2O's printed scores;
//! - deployed to `sluice serve` as SQL (`sluice deploy FILE.sql`), a push query
//!   (`SELECT ... EMIT CHANGES`) run by `sluice tap` prints the stream's rows that pass its
//!   WHERE, and nothing else.

use sluice_harness::data::expected_score_pairs;
use sluice_harness::elasticsearch::{FakeElasticsearch, Faults};
use sluice_harness::kafka::{produce_all, Tansu, TopicReader};
use sluice_harness::serve::Serve;
use sluice_harness::SluiceRun;
use sluice_harness::{demo_payloads, expected_scores};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

const TOPICS: &[&str] = &[
    "electric-temperature",
    "TEMPERATURE_ANOMALY_DETECTION",
    "ANOMALYDETECTIONWITHFILTER",
    "sluice-dead-letters",
];

/// The event id of the last input record: event 23's readings (scored over 1.5), so it ends
/// both score topics; nothing of the input can come after it on one partition.
const MARKER_ID: &str = "9999";

/// The last malformed input: it ends the dead-letter topic.
const MARKER_DEAD: &[u8] = b"the last malformed message";

/// The demo's input (23 events, two malformed messages), then the two markers.
fn input() -> Vec<Vec<u8>> {
    let mut payloads = demo_payloads();
    let last = sluice_harness::ecg_messages().pop().expect("23 events");
    let (_, readings) = last.split_once(',').expect("EVENTID,readings");
    payloads.push(format!("{MARKER_ID},{readings}").into_bytes());
    payloads.push(MARKER_DEAD.to_vec());
    payloads
}

/// A tansu broker with `topics`, one partition each.
fn broker(topics: &[&str]) -> Tansu {
    let kafka = Tansu::start();
    for topic in topics {
        kafka.create_topic(topic, 1);
    }
    kafka
}

/// A tansu broker with the demo's topics and the input on `electric-temperature`.
fn broker_with_input() -> Tansu {
    let kafka = broker(TOPICS);
    produce_all(&kafka.brokers, "electric-temperature", &input());
    kafka
}

/// The reason a dead letter carries (its `sluice-error` header).
fn reason(record: &sluice_harness::kafka::KafkaRecord) -> String {
    record
        .headers
        .iter()
        .find(|(k, _)| k == "sluice-error")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// Every record of `topic` up to the one `last` recognises, without it.
fn until(
    kafka: &Tansu,
    topic: &str,
    last: impl Fn(&[u8]) -> bool,
) -> Vec<sluice_harness::kafka::KafkaRecord> {
    let mut records = TopicReader::new(&kafka.brokers, topic)
        .read_until(|seen| seen.last().is_some_and(|r| last(&r.value)));
    records.pop();
    records
}

/// The values of `topic` before the score of the marker event.
fn scores_before_marker(kafka: &Tansu, topic: &str) -> Vec<Vec<u8>> {
    let marker = format!("{MARKER_ID},");
    until(kafka, topic, |v| v.starts_with(marker.as_bytes()))
        .into_iter()
        .map(|r| r.value)
        .collect()
}

/// `sluice run FILE FLAGS...` with the UDF directory, `KAFKA_BROKERS` and `ELASTICSEARCH_URL`
/// set, once every source is subscribed.
fn run(file: &Path, flags: &[&str], kafka: &Tansu, es_url: &str) -> SluiceRun {
    let udf_dir = sluice_harness::udf_dir();
    let mut args: Vec<&OsStr> = flags.iter().map(OsStr::new).collect();
    args.extend([OsStr::new("--udf-dir"), udf_dir.as_os_str()]);
    let mut run = SluiceRun::start_with_env(
        &[file],
        &args,
        &[
            ("KAFKA_BROKERS", &kafka.brokers),
            ("ELASTICSEARCH_URL", es_url),
        ],
    );
    run.wait_ready();
    run
}

#[test]
fn the_demo_statements_write_the_same_topics_as_the_toml_pipeline() {
    let es = FakeElasticsearch::start(Faults::default()).expect("fake elasticsearch");
    let toml_kafka = broker_with_input();
    let sql_kafka = broker_with_input();
    let root = sluice_harness::root();
    let toml_file = root.join("pipelines/ecg-detect.toml");
    let sql_file = root.join("pipelines/ecg-anomaly.sql");
    let toml_run = run(&toml_file, &[], &toml_kafka, &es.url);
    // The brokers from the flag, not the environment (which names the other broker here).
    let sql_run = run(
        &sql_file,
        &["--kafka-brokers", &sql_kafka.brokers],
        &toml_kafka,
        &es.url,
    );

    // Everything before the marker, so a duplicate would show (one partition, input order).
    let toml_scores = scores_before_marker(&toml_kafka, "TEMPERATURE_ANOMALY_DETECTION");
    let sql_scores = scores_before_marker(&sql_kafka, "TEMPERATURE_ANOMALY_DETECTION");
    assert_eq!(sql_scores, toml_scores, "the same bytes, in the same order");
    let text: Vec<String> = sql_scores
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(
        text,
        expected_scores(),
        "EVENTID,MSE with H2O's digits, e.g. 106,2.2022320685879437"
    );

    let toml_alerts = scores_before_marker(&toml_kafka, "ANOMALYDETECTIONWITHFILTER");
    let sql_alerts = scores_before_marker(&sql_kafka, "ANOMALYDETECTIONWITHFILTER");
    assert_eq!(sql_alerts, toml_alerts, "the same alerts, the same bytes");
    let over: Vec<String> = expected_score_pairs()
        .into_iter()
        .filter(|(_, mse)| mse.parse::<f64>().is_ok_and(|m| m > 1.5))
        .map(|(id, mse)| format!("{id},{mse}"))
        .collect();
    let sql_alerts: Vec<String> = sql_alerts
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(sql_alerts, over, "only the events over 1.5");

    // Both malformed messages are dead-lettered with a reason naming what is wrong.
    // Source decode errors and UDF errors are dead-lettered by different components, so the
    // marker is not necessarily last here: read until it and both others are in.
    let mut dead = TopicReader::new(&sql_kafka.brokers, "sluice-dead-letters")
        .read_until(|seen| seen.len() >= 3 && seen.iter().any(|r| r.value == MARKER_DEAD));
    assert_eq!(
        dead.len(),
        3,
        "both malformed messages and the marker, once each"
    );
    dead.retain(|r| r.value != MARKER_DEAD);
    let reasons: Vec<String> = dead.iter().map(reason).collect();
    for reason in [
        "event 99: ANOMALY: expected 210 readings",
        "expected 2 delimited fields (EVENTID, SENSORINPUT), found 1",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(reason)),
            "{reason}: {reasons:?}"
        );
    }

    for run in [toml_run, sql_run] {
        let status = run.stop();
        assert!(status.success(), "SIGTERM drains and exits 0: {status}");
    }
}

#[test]
fn a_push_query_taps_a_stream_of_a_deployed_sql_pipeline() {
    let kafka = broker(TOPICS);
    let state = tempfile::tempdir().expect("state dir");
    let udf_dir = sluice_harness::udf_dir();
    let serve = Serve::start(
        state.path(),
        &["--udf-dir", udf_dir.to_str().expect("UTF-8 path")],
    );
    let sql = sluice_harness::root().join("pipelines/ecg-anomaly.sql");
    let deployed = serve.cli(&[
        "deploy",
        sql.to_str().expect("UTF-8 path"),
        "--kafka-brokers",
        &kafka.brokers,
    ]);
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&deployed.stdout).trim(),
        "ecg-anomaly: created"
    );
    // The host keeps the compiled pipeline, which says where it came from.
    let detail = serve.pipeline("ecg-anomaly");
    assert!(
        detail["toml"]
            .as_str()
            .is_some_and(|t| t.contains("Compiled by Sluice from ecg-anomaly.sql")),
        "{detail}"
    );

    // The demo's own kind of push query, with a WHERE of its own: alerts over 2.
    let query = "SELECT EVENTID, ANOMALY_VAL * 1 AS MSE FROM anomalydetectionwithfilter WHERE ANOMALY_VAL > 2 EMIT CHANGES;";
    let over_two: Vec<(String, String)> = expected_score_pairs()
        .into_iter()
        .filter(|(_, mse)| mse.parse::<f64>().is_ok_and(|m| m > 2.0))
        .collect();
    let mut tap = Command::new(sluice_harness::sluice_bin())
        .args(["tap", query, "--limit", &over_two.len().to_string()])
        .env(
            "SLUICE_ADMIN_URL",
            format!("http://127.0.0.1:{}", serve.port),
        )
        .env("SLUICE_ADMIN_TOKEN", sluice_harness::serve::TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice tap");
    serve.wait_for_log("tap opened");
    produce_all(&kafka.brokers, "electric-temperature", &demo_payloads());
    let finished = sluice_harness::process::try_wait_exit(&mut tap, sluice_harness::WAIT);
    let output = tap.wait_with_output().expect("tap output");
    assert!(
        finished.is_ok_and(|s| s.success()),
        "tap: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let expected: Vec<serde_json::Value> = over_two
        .iter()
        .map(|(id, mse)| {
            serde_json::json!({
                "EVENTID": id.parse::<i64>().expect("id"),
                "MSE": mse.parse::<f64>().expect("mse"),
            })
        })
        .collect();
    assert_eq!(
        rows, expected,
        "the stream's rows over 2, its columns as the query names them"
    );
    assert!(serve.stop().success());
}

/// The demo's statements with `ANOMALY` served by the pure-Python scorer
/// (`--function ANOMALY=anomaly-py`): a scalar function written with the Python SDK, run in
/// Wasm, writes H2O's digits too.
#[test]
fn a_python_udf_serves_the_sql_function() {
    let kafka = broker_with_input();
    let sql_file = sluice_harness::root().join("pipelines/ecg-anomaly.sql");
    let child = run(
        &sql_file,
        &[
            "--kafka-brokers",
            &kafka.brokers,
            "--function",
            "ANOMALY=anomaly-py",
        ],
        &kafka,
        "http://127.0.0.1:9",
    );
    let scores: Vec<String> = scores_before_marker(&kafka, "TEMPERATURE_ANOMALY_DETECTION")
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(
        scores,
        expected_scores(),
        "the Python scorer's bytes are H2O's digits"
    );
    let status = child.stop();
    assert!(status.success(), "{status}");
}

/// A stream of JSON readings (field names in any case), filtered, through a JavaScript UDF's
/// scalar function, written as DELIMITED: `FAHRENHEIT` of `guest-udfs/unit-convert-js`.
#[test]
fn a_javascript_udf_serves_a_function_on_a_json_stream() {
    let kafka = broker(&["readings", "HOT", "sluice-dead-letters"]);
    let input: Vec<Vec<u8>> = [
        r#"{"sensor":"a","celsius":21.5}"#,
        r#"{"sensor":"b","celsius":10}"#,
        r#"{"Sensor":"c","CELSIUS":100}"#,
        r#"{"sensor":"d","celsius":"warm"}"#,
        r#"{"sensor":"zz-marker","celsius":50}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    produce_all(&kafka.brokers, "readings", &input);
    let dir = tempfile::tempdir().expect("dir");
    let sql = dir.path().join("hot.sql");
    std::fs::write(
        &sql,
        "-- sluice: function.FAHRENHEIT = unit-convert-js\n\
         CREATE STREAM READINGS (SENSOR VARCHAR, CELSIUS DOUBLE)\n  \
         WITH (KAFKA_TOPIC='readings', VALUE_FORMAT='JSON');\n\
         CREATE STREAM HOT WITH (VALUE_FORMAT='DELIMITED') AS\n  \
         SELECT SENSOR, FAHRENHEIT(CELSIUS) AS F FROM READINGS WHERE CELSIUS > 20;\n",
    )
    .expect("write the SQL");
    let child = run(
        &sql,
        &["--kafka-brokers", &kafka.brokers],
        &kafka,
        "http://127.0.0.1:9",
    );
    let hot: Vec<String> = until(&kafka, "HOT", |v| v.starts_with(b"zz-marker,"))
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    assert_eq!(hot, ["a,70.7", "c,212.0"]);
    let dead =
        TopicReader::new(&kafka.brokers, "sluice-dead-letters").read_until(|s| !s.is_empty());
    assert_eq!(dead[0].value, input[3], "the reading that is not a number");
    let reason = reason(&dead[0]);
    assert!(
        reason.contains("field `CELSIUS`: expected a double"),
        "{reason}"
    );
    let status = child.stop();
    assert!(status.success(), "{status}");
}

/// Hot reload reaches SQL's function calls: on `sluice serve`, a new version of the module
/// behind `ANOMALY` (the doubling stand-in for a retrained model), pushed while the SQL
/// pipeline runs, scores every record after the swap; every record is scored once, by one
/// version or the other. A SQL file with errors is refused by the host, every error with its
/// place, and nothing is deployed.
#[test]
fn a_new_version_of_a_function_s_module_takes_over_in_a_running_sql_pipeline() {
    let kafka = broker(TOPICS);
    let state = tempfile::tempdir().expect("state dir");
    let serve = Serve::start(state.path(), &[]);
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_string();
    let pushed = serve.cli(&[
        "udf",
        "push",
        &path(&sluice_harness::udf_dir().join("anomaly.wasm")),
    ]);
    assert!(pushed.status.success(), "{pushed:?}");

    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("ecg-anomaly.sql");
    std::fs::write(
        &bad,
        "CREATE STREAM S (X INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON');\n\
         CREATE STREAM D AS SELECT X FROM S JOIN T ON S.X = T.X;\n",
    )
    .expect("write");
    let refused = serve.cli(&["deploy", &path(&bad), "--kafka-brokers", &kafka.brokers]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("ecg-anomaly.sql:2:36: JOIN is not supported"),
        "{stderr}"
    );
    let list = serve.call("GET", "/pipelines", None).json();
    assert!(
        sluice_harness::serve::pipeline_names(&list).is_empty(),
        "{list}"
    );

    let sql = sluice_harness::root().join("pipelines/ecg-anomaly.sql");
    let deployed = serve.cli(&["deploy", &path(&sql), "--kafka-brokers", &kafka.brokers]);
    assert!(deployed.status.success(), "{deployed:?}");
    produce_all(&kafka.brokers, "electric-temperature", &input());
    let first = scores_before_marker(&kafka, "TEMPERATURE_ANOMALY_DETECTION");
    let first: Vec<String> = first
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(first, expected_scores());

    let double = sluice_harness::fixture("anomaly-double");
    let pushed = serve.cli(&["udf", "push", &path(&double), "--name", "anomaly"]);
    assert!(pushed.status.success(), "{pushed:?}");
    serve.wait_for_log("udf swapped between batches");
    produce_all(&kafka.brokers, "electric-temperature", &input());
    let marker = format!("{MARKER_ID},");
    let all =
        TopicReader::new(&kafka.brokers, "TEMPERATURE_ANOMALY_DETECTION").read_until(|seen| {
            seen.iter()
                .filter(|r| r.value.starts_with(marker.as_bytes()))
                .count()
                >= 2
        });
    let second: Vec<(String, f64)> = all
        .iter()
        .skip(expected_scores().len() + 1)
        .take(expected_scores().len())
        .map(|r| {
            let text = String::from_utf8_lossy(&r.value).into_owned();
            let (id, mse) = text.split_once(',').expect("EVENTID,MSE");
            (id.to_string(), mse.parse().expect("a number"))
        })
        .collect();
    let doubled: Vec<(String, f64)> = expected_score_pairs()
        .into_iter()
        .map(|(id, mse)| (id, 2.0 * mse.parse::<f64>().expect("a number")))
        .collect();
    assert_eq!(
        second, doubled,
        "the new version scores every record after the swap"
    );
    assert_eq!(
        all.len(),
        2 * (expected_scores().len() + 1),
        "two rounds and their markers, nothing twice"
    );
    assert!(serve.stop().success());
}

/// value_format KAFKA: one column as Kafka's standard serializers write it, read and written.
#[test]
fn the_kafka_format_reads_strings_and_writes_bigints() {
    let kafka = broker(&["names", "LENGTHS", "sluice-dead-letters"]);
    let names: Vec<Vec<u8>> = ["alice", "bob", "a,b c"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    produce_all(&kafka.brokers, "names", &names);
    let dir = tempfile::tempdir().expect("dir");
    let sql = dir.path().join("lengths.sql");
    std::fs::write(
        &sql,
        "CREATE STREAM NAMES (NAME VARCHAR) WITH (KAFKA_TOPIC='names', VALUE_FORMAT='KAFKA');\n\
         CREATE STREAM LENGTHS AS SELECT CAST(LEN(NAME) AS BIGINT) AS N FROM NAMES;\n",
    )
    .expect("write the SQL");
    let child = run(
        &sql,
        &["--kafka-brokers", &kafka.brokers],
        &kafka,
        "http://127.0.0.1:9",
    );
    let lengths: Vec<Vec<u8>> = TopicReader::new(&kafka.brokers, "LENGTHS")
        .read_until(|seen| seen.len() >= 3)
        .into_iter()
        .map(|r| r.value)
        .collect();
    let expected: Vec<Vec<u8>> = [5i64, 3, 5]
        .iter()
        .map(|n| n.to_be_bytes().to_vec())
        .collect();
    assert_eq!(
        lengths, expected,
        "8-byte big-endian BIGINTs, as LongSerializer writes"
    );
    assert!(child.stop().success());
}
