//! Shadow versions on `sluice serve` against Mosquitto (default settings): the ECG scorer
//! shadowed by an identical build (all agree) and by a scorer whose scores are doubled (the
//! alert table names the events whose decision would change), then promoted with nothing lost;
//! a shadow that traps on some records (counted; the live output untouched), a slow one
//! (dropped by its lag bound), a rule that promotes under load (nothing lost or duplicated),
//! and the API refusing what makes no sense.

use sluice_harness::data::expected_score_pairs;
use sluice_harness::serve::Serve;
use sluice_harness::{ecg_messages, fixture_dir, publish_all, udf_dir, Collector, Mosquitto};
use std::collections::BTreeSet;
use std::time::Instant;

/// The ECG pipeline: scores to `scores`, those over 1.5 to `alerts`.
fn ecg_pipeline(url: &str) -> String {
    format!(
        r#"
[pipeline]
name = "ecg"

[sources.sensors]
type = "mqtt"
broker.url = "{url}"
broker.client_id = "shadow-ecg-in"
broker.clean_session = false
topics = ["electric-temperature"]
qos = 1

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
broker.url = "{url}"
topic = "scores"
qos = 1

[sinks.alerts_out]
type = "mqtt"
inputs = ["alerts"]
broker.url = "{url}"
topic = "alerts"
qos = 1
"#
    )
}

/// A relay through the tagger (`value|a`), with `extra` lines on the transform.
fn tagger_pipeline(url: &str, name: &str, extra: &str) -> String {
    format!(
        r#"
[pipeline]
name = "{name}"

[sources.input]
type = "mqtt"
broker.url = "{url}"
broker.client_id = "{name}-in"
broker.clean_session = false
topics = ["{name}/in"]
qos = 1

[transforms.tag]
type = "udf"
inputs = ["input"]
module = "tagger"
batch_size = 8
{extra}

[sinks.output]
type = "mqtt"
inputs = ["tag"]
broker.url = "{url}"
topic = "{name}/out"
qos = 1
"#
    )
}

/// A host with `modules` (file name in the UDF or fixture directory → UDF name) in its UDF
/// directory.
fn serve_with(state: &std::path::Path, modules: &[(&std::path::Path, &str)]) -> Serve {
    std::fs::create_dir_all(state.join("udfs")).expect("udf dir");
    for (from, name) in modules {
        std::fs::copy(from, state.join("udfs").join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask test`)", from.display()));
    }
    Serve::start(state, &[])
}

/// Deploys a pipeline and waits until its MQTT source subscribed (what is published before
/// that reaches no one).
fn deploy(serve: &Serve, name: &str, toml: &str) {
    serve.create_pipeline(name, toml);
    serve.wait_for_log("mqtt source subscribed");
}

/// `GET /udfs/{name}/shadow` until `check` holds (bounded by the test WAIT).
fn wait_for_shadow(
    serve: &Serve,
    name: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + sluice_harness::WAIT;
    loop {
        let answer = serve.call("GET", &format!("/udfs/{name}/shadow"), None);
        let report = answer.json();
        if answer.status == 200 && check(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never; last {} {}\n{}",
            answer.status,
            answer.body,
            serve.log_so_far()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn push_shadow(serve: &Serve, module: &std::path::Path, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "udf",
        "push",
        module.to_str().expect("utf-8 path"),
        "--name",
        name,
        "--shadow",
    ];
    args.extend_from_slice(extra);
    let pushed = serve.cli(&args);
    assert!(pushed.status.success(), "{pushed:?}");
    let out = String::from_utf8_lossy(&pushed.stdout).into_owned();
    assert!(out.contains(": shadow"), "{out}");
    // The transforms start it on instances of their own, then hand it every batch.
    serve.wait_for_log("shadow running beside the live version");
    out.split(':').next().unwrap_or_default().to_string()
}

/// The component's bytes with a custom section appended: the same behaviour, another sha256.
fn with_custom_section(wasm: &[u8]) -> Vec<u8> {
    let name = b"sluice-shadow-test";
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(b"same code, another version");
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(u8::try_from(body.len()).expect("a short section"));
    out.extend_from_slice(&body);
    out
}

fn score_of(value: &[u8]) -> (String, f64) {
    let doc: serde_json::Value = serde_json::from_slice(value).expect("score JSON");
    (
        doc["eventid"].to_string(),
        doc["anomaly_val"].as_f64().expect("anomaly_val"),
    )
}

fn count(report: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = &report["since_start"];
    for key in path {
        v = &v[*key];
    }
    v.as_u64().unwrap_or(0)
}

/// The operator's story on the ECG demo: shadow a rebuilt (identical) model, then a retrained
/// one whose scores differ; see which alerts would change (API, CLI, metrics); promote it;
/// every score delivered once, by the version live at the time.
#[test]
fn a_shadowed_anomaly_model_shows_which_alerts_would_change_and_is_promoted() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().expect("tempdir");
    let serve = serve_with(
        state.path(),
        &[(&udf_dir().join("anomaly.wasm"), "anomaly")],
    );
    let scores = Collector::subscribe(broker.port, &["scores"]);
    let alerts = Collector::subscribe(broker.port, &["alerts"]);
    deploy(&serve, "ecg", &ecg_pipeline(&broker.url()));
    let messages: Vec<Vec<u8>> = ecg_messages().into_iter().map(String::into_bytes).collect();
    let expected: Vec<(String, f64)> = expected_score_pairs()
        .into_iter()
        .map(|(id, mse)| (id, mse.parse().expect("an MSE")))
        .collect();
    let n = messages.len() as u64;
    let over = |factor: f64| -> BTreeSet<String> {
        expected
            .iter()
            .filter(|(_, mse)| mse * factor > 1.5)
            .map(|(id, _)| id.clone())
            .collect()
    };
    // Every round: each score once, as the live version computes it, and its alerts.
    let round = |factor: f64| {
        publish_all(broker.port, "electric-temperature", &messages);
        let got: Vec<(String, f64)> = scores
            .take_or_explain(messages.len(), || serve.log_so_far())
            .iter()
            .map(|(_, v)| score_of(v))
            .collect();
        let want: Vec<(String, f64)> = expected
            .iter()
            .map(|(id, mse)| (id.clone(), mse * factor))
            .collect();
        assert_eq!(got, want, "the live version's scores, each once, in order");
        let alerted: BTreeSet<String> = alerts
            .take(over(factor).len())
            .iter()
            .map(|(_, v)| score_of(v).0)
            .collect();
        assert_eq!(alerted, over(factor));
    };

    // 1. The same model, rebuilt (another sha256): every record agrees.
    let same = state.path().join("anomaly-rebuilt.wasm");
    let bytes = std::fs::read(udf_dir().join("anomaly.wasm")).expect("anomaly.wasm");
    std::fs::write(&same, with_custom_section(&bytes)).expect("write");
    let rebuilt = push_shadow(&serve, &same, "anomaly", &[]);
    round(1.0);
    let report = wait_for_shadow(&serve, "anomaly", "23 records compared", |r| {
        count(r, &["records"]) == n
    });
    assert_eq!(report["shadow"], rebuilt.as_str());
    assert_eq!(count(&report, &["identical"]), n, "{report}");
    assert_eq!(count(&report, &["differing"]), 0);
    assert_eq!(count(&report, &["alerts", "both"]), over(1.0).len() as u64);
    assert_eq!(count(&report, &["alerts", "shadow_only"]), 0);
    assert_eq!(count(&report, &["alerts", "live_only"]), 0);
    assert_eq!(
        report["decision_filters"],
        serde_json::json!(["ecg/alerts: anomaly_val > 1.5"])
    );
    let fields = &report["since_start"]["fields"];
    assert!(
        fields
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["max_abs_delta"] == 0.0)),
        "{fields}"
    );
    let dropped = serve.cli(&["udf", "unshadow", "anomaly"]);
    assert!(dropped.status.success(), "{dropped:?}");
    let report = serve.call("GET", "/udfs/anomaly/shadow", None).json();
    assert_eq!(report["state"], "dropped");
    assert_eq!(report["ended_reason"], "dropped by the operator");

    // 2. A retrained model whose scores are twice as high.
    let double = fixture_dir().join("anomaly-double.wasm");
    let retrained = push_shadow(&serve, &double, "anomaly", &[]);
    round(1.0);
    let report = wait_for_shadow(&serve, "anomaly", "23 records compared", |r| {
        r["shadow"] == retrained.as_str() && count(r, &["records"]) == n
    });
    assert_eq!(count(&report, &["differing"]), n, "{report}");
    let would_alert = &over(2.0) - &over(1.0);
    assert!(
        !would_alert.is_empty(),
        "the data has scores in (0.75, 1.5]"
    );
    assert_eq!(count(&report, &["alerts", "both"]), over(1.0).len() as u64);
    assert_eq!(
        count(&report, &["alerts", "shadow_only"]),
        would_alert.len() as u64
    );
    assert_eq!(count(&report, &["alerts", "live_only"]), 0);
    assert_eq!(
        count(&report, &["alerts", "neither"]),
        n - over(2.0).len() as u64
    );
    let changed: BTreeSet<String> = report["decision_changes"]
        .as_array()
        .expect("decision changes")
        .iter()
        .map(|c| {
            assert_eq!(c["change"], "shadow_only");
            assert_eq!(
                c["shadow_score"].as_f64(),
                c["live_score"].as_f64().map(|s| s * 2.0)
            );
            c["id"].as_str().expect("an id").to_string()
        })
        .collect();
    assert_eq!(changed, would_alert, "the table names exactly those events");
    let anomaly_val = report["since_start"]["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["field"] == "anomaly_val"))
        .expect("anomaly_val deltas")
        .clone();
    assert_eq!(anomaly_val["max_rel_delta"], 1.0, "{anomaly_val}");
    assert_eq!(anomaly_val["p99_rel_delta"], 1.0, "{anomaly_val}");
    assert_eq!(
        report["points"]["ecg"].as_array().map(Vec::len),
        Some(n as usize)
    );

    // The CLI says which events, and status shows the shadow.
    let table = serve.cli(&["udf", "shadow", "anomaly"]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    for id in &would_alert {
        assert!(
            table.contains(&format!("ecg event {id}: shadow only")),
            "{id} in\n{table}"
        );
    }
    let status = serve.cli(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains(&format!("shadow {retrained} (running): {n} records")),
        "{status}"
    );
    let metrics = serve.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains(&format!(
            "sluice_udf_shadow_alerts_total{{udf=\"anomaly\",shadow=\"{retrained}\",decision=\"shadow_only\"}} {}",
            would_alert.len()
        )),
        "{metrics}"
    );

    // 3. Promoted: from the next batch on the retrained model scores, nothing lost.
    let promoted = serve.cli(&["udf", "promote", "anomaly"]);
    assert!(promoted.status.success(), "{promoted:?}");
    serve.wait_for_log("udf swapped between batches");
    let udfs = serve.call("GET", "/udfs", None).json();
    assert_eq!(udfs["udfs"][0]["version"], retrained.as_str());
    assert!(udfs["udfs"][0]["shadow"].is_null(), "{udfs}");
    round(2.0);
    let report = serve.call("GET", "/udfs/anomaly/shadow", None).json();
    assert_eq!(report["state"], "promoted");
    // A restart loads the promoted version.
    assert_eq!(
        std::fs::read(state.path().join("udfs/anomaly.wasm")).expect("the saved module"),
        std::fs::read(&double).expect("anomaly-double.wasm")
    );
}

/// A shadow named in the pipeline TOML that traps on some records: the traps are counted on
/// the shadow's side, and the live output is complete and unchanged.
#[test]
fn a_trapping_shadow_is_counted_and_the_live_output_is_untouched() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().expect("tempdir");
    let hostile = fixture_dir().join("hostile.wasm");
    let serve = serve_with(
        state.path(),
        &[
            (&fixture_dir().join("tagger.wasm"), "tagger"),
            (&hostile, "hostile"),
        ],
    );
    let sha = sluice_harness::wasm::sha256_hex(&std::fs::read(&hostile).expect("hostile.wasm"));
    let shadow = format!("hostile@{}", &sha[..8]);
    let collector = Collector::subscribe(broker.port, &["trap/out"]);
    deploy(
        &serve,
        "trap",
        &tagger_pipeline(&broker.url(), "trap", &format!("shadow = \"{shadow}\"")),
    );
    let values: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            if i % 10 == 3 {
                b"panic".to_vec()
            } else {
                format!("v{i}").into_bytes()
            }
        })
        .collect();
    publish_all(broker.port, "trap/in", &values);
    let got: Vec<Vec<u8>> = collector
        .take_or_explain(values.len(), || serve.log_so_far())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let want: Vec<Vec<u8>> = values
        .iter()
        .map(|v| [v.as_slice(), b"|a"].concat())
        .collect();
    assert_eq!(got, want, "every record once, tagged by the live version");
    let report = wait_for_shadow(&serve, "tagger", "200 records compared", |r| {
        count(r, &["records"]) == 200
    });
    assert_eq!(report["shadow"], shadow.as_str());
    assert_eq!(
        report["since_start"]["shadow_errors"],
        serde_json::json!({ "trap": 20 })
    );
    assert_eq!(report["since_start"]["live_errors"], serde_json::json!({}));
    assert_eq!(count(&report, &["differing"]), 180, "{report}");
    assert!(report["samples"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["shadow"]
            .as_str()
            .is_some_and(|t| t.starts_with("error (trap)")))));
    let pipeline = serve.pipeline("trap");
    let tag = pipeline["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "tag"))
        .expect("the transform")
        .clone();
    assert_eq!(
        tag["errors"], 0,
        "the shadow's traps are not the live transform's"
    );
}

/// A shadow far slower than the live version (each record sleeps past the deadline) is
/// dropped once it is `max_lag` records behind; the live output never waits for it.
#[test]
fn a_slow_shadow_is_dropped_by_its_lag_bound() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().expect("tempdir");
    let serve = serve_with(
        state.path(),
        &[(&fixture_dir().join("tagger.wasm"), "tagger")],
    );
    let collector = Collector::subscribe(broker.port, &["slow/out"]);
    deploy(&serve, "slow", &tagger_pipeline(&broker.url(), "slow", ""));
    push_shadow(
        &serve,
        &fixture_dir().join("hostile.wasm"),
        "tagger",
        &["--max-lag", "16"],
    );
    // `sleep` takes the hostile guest past its 1 s deadline, record after record.
    let values: Vec<Vec<u8>> = (0..100).map(|_| b"sleep".to_vec()).collect();
    publish_all(broker.port, "slow/in", &values);
    let got = collector.take_or_explain(values.len(), || serve.log_so_far());
    assert!(got.iter().all(|(_, v)| v == b"sleep|a"));
    let report = wait_for_shadow(&serve, "tagger", "the shadow is dropped", |r| {
        r["state"] == "dropped"
    });
    assert_eq!(
        report["ended_reason"],
        "fell behind the live version by more than 16 records"
    );
    assert!(serve.call("GET", "/udfs", None).json()["udfs"][0]["shadow"].is_null());
}

/// `--promote-when` promotes the shadow itself while records flow: each record is delivered
/// once, tagged `a` then `b` in input order, never back.
#[test]
fn a_rule_promotes_the_shadow_under_load_with_nothing_lost() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().expect("tempdir");
    let serve = serve_with(
        state.path(),
        &[(&fixture_dir().join("tagger.wasm"), "tagger")],
    );
    let collector = Collector::subscribe(broker.port, &["load/out"]);
    deploy(&serve, "load", &tagger_pipeline(&broker.url(), "load", ""));
    push_shadow(
        &serve,
        &fixture_dir().join("tagger-b.wasm"),
        "tagger",
        &["--promote-when", "records >= 200 && shadow_errors == 0"],
    );
    // Publish in fifties until the swap is seen, then four more.
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let (swapped, published) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let publisher = {
        let (swapped, published, port) = (swapped.clone(), published.clone(), broker.port);
        std::thread::spawn(move || {
            let mut after_swap = 0;
            while after_swap < 4 {
                let from = published.load(Ordering::SeqCst);
                let values: Vec<Vec<u8>> = (from..from + 50)
                    .map(|i| format!("r{i}").into_bytes())
                    .collect();
                publish_all(port, "load/in", &values);
                published.store(from + 50, Ordering::SeqCst);
                if swapped.load(Ordering::SeqCst) {
                    after_swap += 1;
                }
            }
        })
    };
    serve.wait_for_log("udf swapped between batches");
    swapped.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher");
    let total = published.load(Ordering::SeqCst);
    let got: Vec<String> = collector
        .take_or_explain(total as usize, || serve.log_so_far())
        .into_iter()
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        .collect();
    let mut on_b = false;
    let (mut by_a, mut by_b) = (0, 0);
    for (i, out) in got.iter().enumerate() {
        if *out == format!("r{i}|a") && !on_b {
            by_a += 1;
        } else if *out == format!("r{i}|b") {
            on_b = true;
            by_b += 1;
        } else {
            panic!("record {i}: {out} is not its tag by the version in order");
        }
    }
    assert_eq!(by_a + by_b, total, "every record once, in order");
    assert!(by_a >= 200, "live until the rule held: {by_a}");
    let report = serve.call("GET", "/udfs/tagger/shadow", None).json();
    assert_eq!(report["state"], "promoted", "{report}");
    assert_eq!(
        report["ended_reason"],
        "promote_when `records >= 200 && shadow_errors == 0` holds"
    );
    assert!(count(&report, &["records"]) >= 200);
    // At least the three fifties published wholly after the swap was seen.
    assert!(by_b >= 150, "the promoted version served: {by_b}");
}

/// What the shadow API refuses, with the reason: a bad rule, an unknown UDF, promoting or
/// dropping nothing, the live version as its own shadow.
#[test]
fn the_shadow_api_refuses_what_makes_no_sense() {
    let state = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start();
    let tagger = fixture_dir().join("tagger.wasm");
    let serve = serve_with(state.path(), &[(&tagger, "tagger")]);
    let wasm = std::fs::read(&tagger).expect("tagger.wasm");
    let b = std::fs::read(fixture_dir().join("tagger-b.wasm")).expect("tagger-b.wasm");
    let put = |path: &str, body: &[u8]| serve.call("PUT", path, Some(body));
    let unknown = put("/udfs/nobody?shadow=true", &b);
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    serve.create_pipeline("api", &tagger_pipeline(&broker.url(), "api", ""));
    let itself = put("/udfs/tagger?shadow=true", &wasm);
    assert_eq!(itself.status, 422, "{}", itself.body);
    assert!(
        itself.body.contains("is the live version"),
        "{}",
        itself.body
    );
    let bad_rule = put("/udfs/tagger?shadow=true&promote_when=recods%20%3E%201", &b);
    assert_eq!(bad_rule.status, 400, "{}", bad_rule.body);
    assert!(
        bad_rule.body.contains("promote_when `recods > 1`"),
        "{}",
        bad_rule.body
    );
    let not_bool = put("/udfs/tagger?shadow=true&drop_when=records", &b);
    assert_eq!(not_bool.status, 400, "{}", not_bool.body);
    let lag = put("/udfs/tagger?shadow=true&max_lag=0", &b);
    assert_eq!(lag.status, 400, "{}", lag.body);
    let stray = put("/udfs/tagger?promote_when=true", &b);
    assert_eq!(stray.status, 400, "{}", stray.body);
    for (method, path) in [
        ("POST", "/udfs/tagger/promote"),
        ("DELETE", "/udfs/tagger/shadow"),
        ("GET", "/udfs/tagger/shadow"),
    ] {
        let none = serve.call(method, path, None);
        assert_eq!(none.status, 404, "{method} {path}: {}", none.body);
        assert!(none.body.contains("has no shadow"), "{}", none.body);
    }
    let cli = serve.cli(&["udf", "promote", "tagger"]);
    assert_eq!(cli.status.code(), Some(1), "{cli:?}");
    assert!(String::from_utf8_lossy(&cli.stderr).contains("has no shadow"));
    // Nothing changed: the live version is the one deployed, without a shadow.
    let udfs = serve.call("GET", "/udfs", None).json();
    assert!(udfs["udfs"][0]["shadow"].is_null(), "{udfs}");
    assert_eq!(serve.call("GET", "/udfs/tagger/shadow", None).status, 404);
}
