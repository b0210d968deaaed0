//! The live dashboard in a real browser: headless Debian Chromium driven through ChromeDriver
//! (the W3C WebDriver protocol, plain HTTP) against `sluice serve` scoring the ECG data through
//! Mosquitto. The anomaly chart (points, threshold line) and the alert rows must appear, then
//! update as more events flow. A screenshot is saved to `target/dashboard.png`.

use sluice_harness::serve::{http, Serve, TOKEN};
use sluice_harness::{
    ecg_messages, expected_scores, free_port, publish_all, wait_for_port, Mosquitto,
};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A ChromeDriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver; `cargo xtask test` installs it)");
        wait_for_port(port);
        let profile = tempfile::tempdir().unwrap();
        let capabilities = serde_json::json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}
        });
        let answer = http(
            port,
            "POST",
            "/session",
            None,
            Some(capabilities.to_string().as_bytes()),
        );
        assert_eq!(answer.status, 200, "new session: {}", answer.body);
        let session = answer.json()["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            driver,
            port,
            session,
            _profile: profile,
        }
    }

    fn command(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let answer = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            None,
            (method == "POST").then_some(body.as_bytes()),
        );
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
        answer.json()["value"].clone()
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", serde_json::json!({ "url": url }));
    }

    /// Runs `script` in the page and returns its result.
    fn eval(&self, script: &str) -> serde_json::Value {
        self.command(
            "POST",
            "/execute/sync",
            serde_json::json!({ "script": script, "args": [] }),
        )
    }

    /// Evaluates `script` until `check` holds on its result (bounded by the test WAIT).
    fn wait_for(
        &self,
        what: &str,
        script: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + sluice_harness::WAIT;
        loop {
            let value = self.eval(script);
            if check(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "{what}: never; last {value}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let png = self.command("GET", "/screenshot", serde_json::Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("a decodable screenshot")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const ECG_PIPELINE: &str = r#"
[pipeline]
name = "ecg"

[sources.sensors]
type = "mqtt"
broker.url = "BROKER"
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

[sinks.alerts_out]
type = "console"
inputs = ["alerts"]
"#;

/// What the page shows: chart points, alert points, the threshold line, alert row ids, graph
/// nodes.
const PAGE_STATE: &str = r#"return {
  points: document.querySelectorAll('svg.score-chart circle').length,
  alertPoints: document.querySelectorAll('svg.score-chart circle.alert').length,
  threshold: document.querySelectorAll('svg.score-chart line.threshold').length,
  alertRows: Array.from(document.querySelectorAll('#alerts tbody tr')).map(r => r.dataset.id),
  nodes: Array.from(document.querySelectorAll('svg.graph g.node')).map(g => g.dataset.component),
  udfs: document.querySelector('#udfs tbody').textContent,
  live: document.getElementById('connection').textContent,
};"#;

/// What the page shows of a shadow: its rings, the ids of those marked as disagreeing, the
/// rows of alerts that would change, the summary line.
const SHADOW_STATE: &str = r#"return {
  rings: document.querySelectorAll('svg.score-chart circle.shadow').length,
  disagree: Array.from(new Set(Array.from(document.querySelectorAll('svg.score-chart circle.shadow.disagree')).map(c => c.dataset.id))),
  changes: Array.from(new Set(Array.from(document.querySelectorAll('#shadow-changes tbody tr')).map(r => r.dataset.id))),
  summary: document.getElementById('shadow-summary').textContent,
};"#;

fn alert_ids(upto: usize) -> BTreeSet<String> {
    expected_scores()
        .iter()
        .take(upto)
        .filter_map(|line| {
            let (id, mse) = line.split_once(',')?;
            (mse.parse::<f64>().ok()? > 1.5).then(|| id.to_string())
        })
        .collect()
}

/// The ids the page lists under `key` of its state.
fn ids(state: &serde_json::Value, key: &str) -> BTreeSet<String> {
    state[key]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_dashboard_charts_scores_and_lists_alerts_live() {
    let broker = Mosquitto::start();
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("udfs")).unwrap();
    std::fs::copy(
        sluice_harness::udf_dir().join("anomaly.wasm"),
        state.path().join("udfs/anomaly.wasm"),
    )
    .expect("anomaly.wasm (run `cargo xtask test`)");
    let serve = Serve::start(state.path(), &[]);
    let pipeline = ECG_PIPELINE.replace("BROKER", &broker.url());
    serve.create_pipeline("ecg", &pipeline);
    serve.wait_until("the ECG source is connected", |_| {
        serve.pipeline("ecg")["components"][0]["connected"] == true
    });

    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{}/#token={TOKEN}", serve.port));
    let connected = browser.wait_for("the page connects", PAGE_STATE, |s| {
        s["live"] == "live" && s["nodes"].as_array().is_some_and(|n| n.len() == 4)
    });
    assert_eq!(
        connected["nodes"],
        serde_json::json!(["sensors", "score", "alerts", "alerts_out"])
    );
    assert!(
        connected["udfs"]
            .as_str()
            .is_some_and(|t| t.contains("anomaly@")),
        "{connected}"
    );

    // The first ten events: ten points, the threshold line, and their alerts.
    let messages: Vec<Vec<u8>> = ecg_messages().into_iter().map(String::into_bytes).collect();
    publish_all(broker.port, "electric-temperature", &messages[..10]);
    let first = browser.wait_for("ten scores charted", PAGE_STATE, |s| s["points"] == 10);
    assert_eq!(first["threshold"], 1);
    let want = alert_ids(10);
    assert!(!want.is_empty());
    let first = browser.wait_for("the first alerts listed", PAGE_STATE, |s| {
        ids(s, "alertRows") == want
    });
    assert_eq!(first["alertPoints"], want.len());

    // The rest: the chart and the alert table update.
    publish_all(broker.port, "electric-temperature", &messages[10..]);
    let all = alert_ids(messages.len());
    assert!(all.len() > want.len());
    let last = browser.wait_for("every score and alert", PAGE_STATE, |s| {
        s["points"] == messages.len() && ids(s, "alertRows") == all
    });
    assert_eq!(last["alertPoints"], all.len());

    // A retrained model (every score doubled) as the shadow: its scores are drawn beside the
    // live ones, and the alerts it would add are marked and listed.
    let double = sluice_harness::fixture_dir().join("anomaly-double.wasm");
    let pushed = serve.cli(&[
        "udf",
        "push",
        double.to_str().expect("utf-8 path"),
        "--name",
        "anomaly",
        "--shadow",
    ]);
    assert!(pushed.status.success(), "{pushed:?}");
    serve.wait_for_log("shadow running beside the live version");
    publish_all(broker.port, "electric-temperature", &messages);
    let would_alert: BTreeSet<String> = expected_scores()
        .iter()
        .filter_map(|line| {
            let (id, mse) = line.split_once(',')?;
            let mse: f64 = mse.parse().ok()?;
            (mse <= 1.5 && mse * 2.0 > 1.5).then(|| id.to_string())
        })
        .collect();
    assert!(!would_alert.is_empty());
    let shadowed = browser.wait_for(
        "the shadow drawn and its changed alerts listed",
        SHADOW_STATE,
        |s| ids(s, "changes") == would_alert && ids(s, "disagree") == would_alert,
    );
    assert!(
        shadowed["rings"].as_u64() >= Some(messages.len() as u64),
        "{shadowed}"
    );
    assert!(
        shadowed["summary"]
            .as_str()
            .is_some_and(|t| t.contains("shadow only")),
        "{shadowed}"
    );

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = sluice_harness::root().join("target/dashboard.png");
    std::fs::write(&out, &png).expect("save the screenshot");
    eprintln!("dashboard screenshot: {}", out.display());
}
