//! Snapshot tests over `tests/pipeline_specs/`: every `valid/*.toml` parses; every
//! `invalid/*.toml` fails with exactly the errors in its `.errors` file (file:line:column:
//! path: message, all of them at once). `SLUICE_BLESS=1` rewrites the `.errors` files.
//! The shipped `pipelines/*.toml` must be valid too, and `sluice validate` prints the same.

use sluice::pipeline::parse_pipeline;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fixed environment, so snapshots do not depend on the machine.
fn env(name: &str) -> Option<String> {
    match name {
        "PASS" => Some("secret".into()),
        _ => None,
    }
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no pipeline files in {}", dir.display());
    files
}

fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pipeline_specs")
}

#[test]
fn valid_pipelines_parse() {
    for file in toml_files(&specs().join("valid")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = Path::new("valid").join(file.file_name().unwrap());
        if let Err(errors) = parse_pipeline(&shown, &text, &env) {
            panic!("{} should be valid:\n{errors}", file.display());
        }
    }
}

#[test]
fn invalid_pipelines_report_every_error_with_its_place() {
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    for file in toml_files(&specs().join("invalid")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = Path::new("invalid").join(file.file_name().unwrap());
        let errors = match parse_pipeline(&shown, &text, &env) {
            Ok(_) => panic!("{} should be invalid", file.display()),
            Err(errors) => format!("{errors}\n"),
        };
        let expected_file = file.with_extension("errors");
        if bless {
            std::fs::write(&expected_file, &errors).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with SLUICE_BLESS=1 to create it)",
                expected_file.display()
            )
        });
        assert_eq!(errors, expected, "errors of {}", file.display());
    }
}

#[test]
fn the_demo_pipeline_validates() {
    let file = sluice_harness::root().join("pipelines/ecg-anomaly.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let spec = parse_pipeline(&file, &text, &env).expect("pipelines/ecg-anomaly.toml is valid");
    assert_eq!(spec.name, "ecg-anomaly");
    assert_eq!(spec.dead_letter.as_deref(), Some("dead_letters"));
    let order: Vec<&str> = spec.transforms.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        order,
        ["score", "alerts"],
        "transforms come after their inputs"
    );
}

#[test]
fn sluice_validate_checks_every_shipped_pipeline_and_reports_errors() {
    let mut shipped = toml_files(&sluice_harness::root().join("pipelines"));
    let sql = sluice_harness::root().join("pipelines/ecg-anomaly.sql");
    shipped.push(sql.clone());
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .args(&shipped)
        .output()
        .expect("run sluice");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "{}: ok: pipeline `ecg-anomaly` (1 sources, 4 transforms, 3 sinks)",
            sql.display()
        )),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A SQL file with problems: every one of them, with file:line:column, exit 1.
    let dir = tempfile::tempdir().expect("dir");
    let bad_sql = dir.path().join("bad.sql");
    std::fs::write(
        &bad_sql,
        "CREATE STREAM A (X INT) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');\n\
         CREATE STREAM B AS SELECT Y FROM A;\n\
         CREATE STREAM C AS SELECT X FROM A GROUP BY X;\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&bad_sql)
        .output()
        .expect("run sluice");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        format!(
            "{}:2:27: unknown column Y (the columns are X)",
            bad_sql.display()
        ),
        format!(
            "{}:3:45: GROUP BY (aggregation) is not supported",
            bad_sql.display()
        ),
    ] {
        assert!(stderr.contains(&line), "{line}\n{stderr}");
    }

    let bad = specs().join("invalid/everything-wrong.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&bad)
        .output()
        .expect("run sluice");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:34:11: sinks.alerts.inputs: unknown component \"scroe\" (did you mean \"score\"?)",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn sluice_validate_warns_about_a_clean_session_at_qos_1_and_the_shipped_pipeline_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clean.toml");
    std::fs::write(
        &file,
        r#"
[sources.input]
type = "mqtt"
broker = { url = "mqtt://127.0.0.1:1883", clean_session = true }
topics = ["in"]

[sinks.output]
type = "mqtt"
inputs = ["input"]
broker = { url = "mqtt://127.0.0.1:1883", clean_session = false }
topic = "out"
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("run sluice");
    assert_eq!(out.status.code(), Some(0), "a warning, not an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sources.input.broker.clean_session: warning: QoS 1 with a clean session"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sinks.output.broker.clean_session: warning: ignored"),
        "{stderr}"
    );

    // The shipped pipeline keeps the safe default: a persistent session, no warning.
    let shipped = sluice_harness::root().join("pipelines/ecg-anomaly.toml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let spec = parse_pipeline(&shipped, &text, &env).unwrap();
    assert!(spec.warnings().is_empty(), "{:?}", spec.warnings());
    match &spec.sources[0].config {
        sluice::pipeline::SourceConfig::Mqtt(mqtt) => {
            assert!(
                !mqtt.clean_session(),
                "persistent session by default at QoS 1"
            );
            assert_eq!(mqtt.broker.client_id, None, "the host-derived client id");
        }
        other => panic!("expected an MQTT source, got {other:?}"),
    }
}
