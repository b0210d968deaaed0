//! `sluice serve` and its admin API, against a real Mosquitto:
//! - requests without the token or with a wrong one get 401 and change nothing; an invalid
//!   TOML gets 400 with every error and changes nothing; a refused UDF gets 422;
//! - deploy, replace and undeploy through the API while records flow: every record comes out
//!   exactly once;
//! - a restarted host comes back with the same pipelines and UDF versions (uploads and
//!   rollbacks included);
//! - `/metrics`, `sluice tap`, `--pipelines-dir` and JSON logs.

use sluice_harness::serve::{http, pipeline_names, Serve, TOKEN};
use sluice_harness::{fixture_dir, publish_all, Collector, Mosquitto};
use std::collections::BTreeMap;

/// MQTT `NAME/in` → `transforms` (the last one named `sink_input`) → MQTT `out_topic`.
fn relay_toml(
    name: &str,
    broker: &Mosquitto,
    out_topic: &str,
    transforms: &str,
    sink_input: &str,
) -> String {
    format!(
        r#"
[pipeline]
name = "{name}"

[sources.input]
type = "mqtt"
broker.url = "{url}"
broker.client_id = "{name}-input"
broker.clean_session = false
topics = ["{name}/in"]
qos = 1
{transforms}
[sinks.output]
type = "mqtt"
inputs = ["{last}"]
broker.url = "{url}"
topic = "{out_topic}"
qos = 1
"#,
        url = broker.url(),
        last = sink_input,
    )
}

const TAGGER: &str = r#"
[transforms.tag]
type = "udf"
inputs = ["input"]
module = "tagger"
"#;

fn payloads(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range.map(|i| i.to_string().into_bytes()).collect()
}

fn counts(messages: &[(String, Vec<u8>)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, payload) in messages {
        *counts
            .entry(String::from_utf8_lossy(payload).into_owned())
            .or_insert(0) += 1;
    }
    counts
}

fn connected(serve: &Serve, pipeline: &str) -> bool {
    let status = serve.call("GET", &format!("/pipelines/{pipeline}"), None);
    status.status == 200
        && status.json()["components"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["connected"] != false))
}

fn wait_connected(serve: &Serve, pipeline: &str) {
    serve.wait_until(&format!("{pipeline} connected"), |_| {
        connected(serve, pipeline)
    });
}

#[test]
fn requests_without_the_token_or_with_invalid_input_change_nothing() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(state.path(), &[]);
    let valid = relay_toml("p", &broker, "p/out", "", "input");

    // Health and readiness need no token; everything else does.
    assert_eq!(http(serve.port, "GET", "/health", None, None).status, 200);
    assert_eq!(http(serve.port, "GET", "/ready", None, None).status, 200);
    for (token, why) in [(None, "missing"), (Some("wrong-token"), "wrong")] {
        let list = http(serve.port, "GET", "/pipelines", token, None);
        assert_eq!(list.status, 401, "{why} token: {}", list.body);
        let put = http(
            serve.port,
            "PUT",
            "/pipelines/p",
            token,
            Some(valid.as_bytes()),
        );
        assert_eq!(put.status, 401, "{why} token: {}", put.body);
        let udf = http(serve.port, "PUT", "/udfs/tagger", token, Some(b"\0asm"));
        assert_eq!(udf.status, 401, "{why} token: {}", udf.body);
        let metrics = http(serve.port, "GET", "/metrics", token, None);
        assert_eq!(metrics.status, 401, "{why} token: {}", metrics.body);
    }
    assert_eq!(
        pipeline_names(&serve.call("GET", "/pipelines", None).json()),
        Vec::<String>::new()
    );

    // Invalid TOML: 400 with every error, each with its line and field; nothing deployed.
    let invalid = "[sources.input]\ntype = \"mqtt\"\ntopics = [\"t\"]\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"nowhere\"]\n";
    let answer = serve.call("PUT", "/pipelines/p", Some(invalid.as_bytes()));
    assert_eq!(answer.status, 400, "{}", answer.body);
    let errors = answer.json()["errors"].as_array().cloned().unwrap();
    let fields: Vec<&str> = errors.iter().filter_map(|e| e["field"].as_str()).collect();
    assert!(fields.contains(&"sources.input"), "{fields:?}"); // no broker
    assert!(fields.contains(&"sinks.out.inputs"), "{fields:?}");
    assert!(errors.iter().all(|e| e["line"].as_u64().unwrap() > 0));
    // A body naming another pipeline than the URL is refused too.
    let mismatch = serve.call("PUT", "/pipelines/other", Some(valid.as_bytes()));
    assert_eq!(mismatch.status, 400, "{}", mismatch.body);
    assert_eq!(
        pipeline_names(&serve.call("GET", "/pipelines", None).json()),
        Vec::<String>::new()
    );
    assert!(std::fs::read_dir(state.path().join("pipelines"))
        .unwrap()
        .next()
        .is_none());

    // A module that is not Wasm is refused with the reason; no UDF appears.
    let refused = serve.call("PUT", "/udfs/tagger", Some(b"not wasm at all"));
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        serve.call("GET", "/udfs", None).json()["udfs"],
        serde_json::json!([])
    );
    assert!(!state.path().join("udfs/tagger.wasm").exists());
    assert_eq!(serve.call("DELETE", "/pipelines/nope", None).status, 404);

    // The OpenAPI document describes the endpoints.
    let openapi = http(serve.port, "GET", "/openapi.json", None, None).json();
    for path in ["/pipelines/{name}", "/udfs/{name}/rollback", "/metrics"] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }
}

#[test]
fn deploy_replace_and_undeploy_while_records_flow_lose_nothing() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(state.path(), &[]);
    let collector = Collector::subscribe(broker.port, &["flow/out"]);
    let file = state.path().join("flow.toml");
    std::fs::write(&file, relay_toml("flow", &broker, "flow/out", "", "input")).unwrap();

    let deployed = serve.cli(&["deploy", file.to_str().unwrap()]);
    assert!(deployed.status.success(), "{deployed:?}");
    assert_eq!(
        String::from_utf8_lossy(&deployed.stdout).trim(),
        "flow: created"
    );
    wait_connected(&serve, "flow");
    // Another pipeline, which the changes to `flow` must not touch.
    let steady = relay_toml("steady", &broker, "steady/out", "", "input");
    serve.create_pipeline("steady", &steady);
    wait_connected(&serve, "steady");
    let steady_since = serve.pipeline("steady")["deployed_at_unix"].clone();
    let steady_out = Collector::subscribe(broker.port, &["steady/out"]);

    // Records flow from a publisher thread while the pipeline is replaced twice (new
    // components each time: the old version drains before the new one takes the source).
    let publisher = {
        let port = broker.port;
        std::thread::spawn(move || {
            for chunk in 0..30 {
                publish_all(port, "flow/in", &payloads(chunk * 100..(chunk + 1) * 100));
            }
        })
    };
    let mut seen = collector.take(300);
    let with_filter = relay_toml(
        "flow",
        &broker,
        "flow/out",
        "[transforms.keep]\ntype = \"filter\"\ninputs = [\"input\"]\ncondition = \"true\"\n",
        "keep",
    );
    let replaced = serve.call("PUT", "/pipelines/flow", Some(with_filter.as_bytes()));
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.json()["deployed"], "replaced");
    seen.extend(collector.take(300));
    let back = relay_toml("flow", &broker, "flow/out", "", "input");
    assert_eq!(
        serve
            .call("PUT", "/pipelines/flow", Some(back.as_bytes()))
            .json()["deployed"],
        "replaced"
    );
    publisher.join().expect("publisher");
    seen.extend(collector.take(3_000 - seen.len()));
    // `steady` was not restarted and still flows.
    assert_eq!(serve.pipeline("steady")["deployed_at_unix"], steady_since);
    assert_eq!(serve.pipeline("steady")["status"]["state"], "running");
    publish_all(broker.port, "steady/in", &payloads(0..20));
    assert_eq!(counts(&steady_out.take(20)).len(), 20);
    let all = counts(&seen);
    let twice: Vec<&String> = all
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        all.len(),
        3_000,
        "every record arrived; twice: {twice:?}; log:\n{}",
        serve.log_so_far()
    );
    assert!(all.values().all(|n| *n == 1), "no record twice");

    // Undeploy drains; records published while it is gone wait in the broker for its
    // persistent session and arrive exactly once after it is deployed again.
    let undeployed = serve.cli(&["undeploy", "flow"]);
    assert!(undeployed.status.success(), "{undeployed:?}");
    assert!(
        !pipeline_names(&serve.call("GET", "/pipelines", None).json()).contains(&"flow".into())
    );
    publish_all(broker.port, "flow/in", &payloads(3_000..3_500));
    let again = serve.cli(&["deploy", file.to_str().unwrap()]);
    assert!(again.status.success(), "{again:?}");
    let rest = counts(&collector.take_or_explain(500, || {
        format!(
            "{}\ndead letters: {:?}\n{}",
            serve.pipeline("flow"),
            std::fs::read_to_string(state.path().join("dead-letters/flow.jsonl")),
            serve.log_so_far()
        )
    }));
    assert_eq!(rest.len(), 500);
    assert!(rest.keys().all(|k| k.parse::<usize>().unwrap() >= 3_000));

    // The counters saw it all: what the source took, the sink delivered (a sink counts a
    // record when the broker acknowledged it, which may be just after the collector has it).
    let counter = |component: &str, field: &str| {
        serve.pipeline("flow")["components"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == component))
            .map(|c| c[field].clone())
            .unwrap_or_default()
    };
    assert_eq!(counter("input", "records_out"), 500);
    serve.wait_until("the sink counted every acknowledged record", |_| {
        counter("output", "records_out") == 500
    });
    assert_eq!(counter("output", "errors"), 0);
    let metrics = serve.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains(
            r#"sluice_records_out_total{pipeline="flow",component="output",role="sink",kind="mqtt"} 500"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_pipeline_deployments_total 5"),
        "{metrics}"
    );
}

#[test]
fn a_restarted_host_comes_back_with_the_same_pipelines_and_udf_versions() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let collector = Collector::subscribe(broker.port, &["tagged/out"]);
    let tagger_a = fixture_dir().join("tagger.wasm");
    let tagger_b = fixture_dir().join("tagger-b.wasm");
    let version_of = |serve: &Serve| {
        serve.call("GET", "/udfs", None).json()["udfs"][0]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let serve = Serve::start(state.path(), &[]);
    let pushed = serve.cli(&[
        "udf",
        "push",
        tagger_a.to_str().unwrap(),
        "--name",
        "tagger",
    ]);
    assert!(pushed.status.success(), "{pushed:?}");
    let toml = relay_toml("tagged", &broker, "tagged/out", TAGGER, "tag");
    serve.create_pipeline("tagged", &toml);
    wait_connected(&serve, "tagged");
    publish_all(broker.port, "tagged/in", &payloads(0..1));
    assert_eq!(collector.take(1)[0].1, b"0|a");
    let version_a = version_of(&serve);
    let pushed = serve.cli(&[
        "udf",
        "push",
        tagger_b.to_str().unwrap(),
        "--name",
        "tagger",
    ]);
    assert!(pushed.status.success(), "{pushed:?}");
    assert!(String::from_utf8_lossy(&pushed.stdout).contains("live"));
    let version_b = version_of(&serve);
    assert_ne!(version_a, version_b);
    let status = serve.pipeline("tagged");
    assert_eq!(status["udfs"][0]["version"], version_b.as_str());
    let metrics = serve.call("GET", "/metrics", None).body;
    assert!(metrics.contains("sluice_udf_reloads_total 1"), "{metrics}");
    assert!(serve.stop().success());

    // Restart: the pipeline and version B are back and serving.
    let serve = Serve::start(state.path(), &[]);
    assert_eq!(
        pipeline_names(&serve.call("GET", "/pipelines", None).json()),
        ["tagged"]
    );
    assert_eq!(version_of(&serve), version_b);
    wait_connected(&serve, "tagged");
    publish_all(broker.port, "tagged/in", &payloads(1..2));
    assert_eq!(collector.take(1)[0].1, b"1|b");

    // Roll back to A through the CLI; a restart keeps A.
    let rolled = serve.cli(&["udf", "rollback", "tagger"]);
    assert!(rolled.status.success(), "{rolled:?}");
    assert_eq!(version_of(&serve), version_a);
    // The transform swaps between batches, in the background: wait until it did.
    // (the first swap since this host started; the registry's own line says "rolled back").
    let swapped = serve.wait_for_log("udf swapped between batches");
    assert!(swapped.contains(&format!("to={version_a}")), "{swapped}");
    publish_all(broker.port, "tagged/in", &payloads(2..3));
    assert_eq!(collector.take(1)[0].1, b"2|a");
    assert!(serve.stop().success());
    let serve = Serve::start(state.path(), &[]);
    assert_eq!(version_of(&serve), version_a);
    wait_connected(&serve, "tagged");
    publish_all(broker.port, "tagged/in", &payloads(3..4));
    assert_eq!(collector.take(1)[0].1, b"3|a");

    // Undeployed pipelines stay gone after a restart.
    assert!(serve.cli(&["undeploy", "tagged"]).status.success());
    assert!(serve.stop().success());
    let serve = Serve::start(state.path(), &[]);
    assert!(pipeline_names(&serve.call("GET", "/pipelines", None).json()).is_empty());
}

#[test]
fn pipelines_dir_tap_status_and_json_logs() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let pipelines = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        state.path(),
        &[
            "--pipelines-dir",
            pipelines.path().to_str().unwrap(),
            "--log-format",
            "json",
        ],
    );
    // A new file deploys.
    let file = pipelines.path().join("dir.toml");
    std::fs::write(&file, relay_toml("dir", &broker, "dir/out", "", "input")).unwrap();
    // Logs are JSON objects with a level and the fields.
    let line = serve.wait_for_log("pipeline file applied");
    let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(log["level"], "INFO");
    assert_eq!(log["fields"]["pipeline"], "dir");
    serve.wait_until("dir deployed", |list| pipeline_names(list) == ["dir"]);
    wait_connected(&serve, "dir");

    // Tap: the first three messages leaving the source, as JSON lines.
    let tap = {
        let port = serve.port;
        std::thread::spawn(move || {
            std::process::Command::new(sluice_harness::sluice_bin())
                .args(["tap", "dir.input", "--limit", "3"])
                .env("SLUICE_ADMIN_URL", format!("http://127.0.0.1:{port}"))
                .env("SLUICE_ADMIN_TOKEN", TOKEN)
                .output()
                .expect("sluice tap")
        })
    };
    let collector = Collector::subscribe(broker.port, &["dir/out"]);
    // Publish until the tap is satisfied: it may subscribe after the first messages passed.
    let mut next = 0;
    while !tap.is_finished() {
        publish_all(broker.port, "dir/in", &payloads(next..next + 10));
        collector.take(10);
        next += 10;
    }
    let tapped = tap.join().unwrap();
    assert!(tapped.status.success(), "{tapped:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&tapped.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    let values: Vec<usize> = lines
        .iter()
        .map(|l| l["value"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[1] == w[0] + 1), "{values:?}");
    assert_eq!(lines[0]["headers"]["mqtt-topic"], "dir/in");

    // Status as a table names the components and their counts.
    let status = serve.cli(&["status"]);
    assert!(status.status.success(), "{status:?}");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("pipeline dir: running"), "{table}");
    assert!(table.contains(&format!("{next}")), "{table}");

    // A broken edit changes nothing; a good edit replaces; removing the file undeploys.
    std::fs::write(&file, "[sources.input]\ntype = \"nope\"\n").unwrap();
    serve.wait_for_log("pipeline file not applied");
    assert_eq!(serve.pipeline("dir")["status"]["state"], "running");
    std::fs::write(
        &file,
        relay_toml("dir", &broker, "dir/elsewhere", "", "input"),
    )
    .unwrap();
    serve.wait_until("dir replaced", |_| {
        serve.pipeline("dir")["toml"]
            .as_str()
            .is_some_and(|t| t.contains("dir/elsewhere"))
    });
    std::fs::remove_file(&file).unwrap();
    serve.wait_until("dir undeployed", |list| pipeline_names(list).is_empty());
}

#[test]
fn a_pipeline_failing_at_run_time_is_reported_and_does_not_stop_the_others() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start(state.path(), &[]);
    // Its sink's broker is a port nobody listens on.
    let dead_port = sluice_harness::free_port();
    let broken = relay_toml("broken", &broker, "broken/out", "", "input").replace(
        &format!("broker.url = \"{}\"\ntopic", broker.url()),
        &format!("broker.url = \"mqtt://127.0.0.1:{dead_port}\"\ntopic"),
    );
    assert!(broken.contains(&dead_port.to_string()));
    serve.create_pipeline("broken", &broken);
    let healthy = relay_toml("healthy", &broker, "healthy/out", "", "input");
    serve.create_pipeline("healthy", &healthy);
    // The failure shows in status: the sink is not connected and says why.
    serve.wait_until("the broken sink reports its error", |_| {
        let status = serve.pipeline("broken");
        let sink = status["components"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "output").cloned())
            .unwrap_or_default();
        sink["connected"] == false
            && sink["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("mqtt connection"))
    });
    // The other pipeline and the host carry on.
    wait_connected(&serve, "healthy");
    let collector = Collector::subscribe(broker.port, &["healthy/out"]);
    publish_all(broker.port, "healthy/in", &payloads(0..50));
    assert_eq!(counts(&collector.take(50)).len(), 50);
    assert_eq!(http(serve.port, "GET", "/health", None, None).status, 200);
    let metrics = serve.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains(
            r#"sluice_connection_up{pipeline="broken",component="output",role="sink",kind="mqtt"} 0"#
        ),
        "{metrics}"
    );
}
