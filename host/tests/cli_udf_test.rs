//! The `sluice udf test` contract: outputs on stdout in input order, `line N: <kind>: <reason>`
//! on stderr per failed record, exit 0 / 1 / 2.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sluice(args: &[&str], stdin: Option<&str>) -> Output {
    let cache = std::env::temp_dir().join("sluice-cli-test-cache");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_CACHE_DIR", cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("sluice runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn scores_the_reference_file_in_order() {
    let anomaly = sluice_harness::udf("anomaly");
    let input = sluice_harness::root().join("tests/data/ecg_discord_test.msgs");
    let out = sluice(
        &[
            "udf",
            "test",
            anomaly.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--batch-size",
            "5",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let want: Vec<String> = sluice_harness::data::expected_score_pairs()
        .iter()
        .map(|(id, mse)| format!("{{\"eventid\":{id},\"anomaly_val\":{mse}}}"))
        .collect();
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), want);
}

#[test]
fn bad_records_are_reported_by_line_and_the_rest_still_flow() {
    let rows = sluice_harness::ecg_messages();
    let short: String = rows[1].rsplit_once('#').unwrap().0.to_string();
    let input = format!(
        "{}\n{short}\nnot-a-payload\n\n{}\n",
        rows[0],
        sluice_harness::spaced(&rows[2])
    );
    let udf_dir = sluice_harness::udf("anomaly")
        .parent()
        .unwrap()
        .to_path_buf();
    let out = sluice(
        &[
            "udf",
            "test",
            "anomaly",
            "--udf-dir",
            udf_dir.to_str().unwrap(),
        ],
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("{\"eventid\":1,"), "{stdout}");
    assert!(lines[1].starts_with("{\"eventid\":3,"), "{stdout}");
    let stderr = text(&out.stderr);
    let failures: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(
        failures,
        [
            "line 2: invalid-input: event 2: expected 210 readings separated by '#', found 209",
            "line 3: invalid-input: missing EVENTID: expected `EVENTID,v1#v2#...#v210`, found no comma",
            "line 4: invalid-input: empty payload",
        ],
        "{stderr}"
    );
}

#[test]
fn a_missing_module_exits_2_and_names_it() {
    let out = sluice(
        &["udf", "test", "no-such-udf", "--udf-dir", "/nonexistent"],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`no-such-udf`") && stderr.contains("/nonexistent/no-such-udf.wasm"),
        "{stderr}"
    );
}

#[test]
fn a_module_refusing_its_config_exits_2_with_the_reason() {
    let anomaly = sluice_harness::udf("anomaly");
    let out = sluice(
        &[
            "udf",
            "test",
            anomaly.to_str().unwrap(),
            "--config",
            "threshold=2",
        ],
        Some(""),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("takes no keys, found `threshold`"),
        "{stderr}"
    );
}

#[test]
fn hostile_records_get_typed_errors_from_the_cli_too() {
    let hostile = sluice_harness::fixture("hostile");
    let out = sluice(
        &[
            "udf",
            "test",
            hostile.to_str().unwrap(),
            "--deadline-ms",
            "100",
            "--memory-mib",
            "16",
        ],
        Some("a\nloop\nalloc\nb\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "a\nb\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2: timeout: "), "{stderr}");
    assert!(stderr.contains("line 3: memory-limit: "), "{stderr}");
}

#[test]
fn bench_reports_throughput_and_latency_percentiles() {
    let anomaly = sluice_harness::udf("anomaly");
    let input = sluice_harness::root().join("tests/data/ecg_discord_test.msgs");
    let out = sluice(
        &[
            "udf",
            "bench",
            anomaly.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--records",
            "230",
            "--warmup",
            "23",
            "--batch-size",
            "16",
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["records"], 230);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["calls"], 15); // 14 full batches of 16, then 6
    assert!(report["records_per_second"].as_f64().unwrap() > 0.0);
    for scope in ["per_record", "per_call"] {
        let p = |k: &str| report[scope][k].as_f64().unwrap();
        assert!(p("p50_us") > 0.0, "{scope}");
        assert!(
            p("p50_us") <= p("p90_us") && p("p90_us") <= p("p99_us"),
            "{scope}"
        );
        assert!(p("p99_us") <= p("max_us"), "{scope}");
    }

    // The text report says the same in words.
    let out = sluice(
        &[
            "udf",
            "bench",
            anomaly.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--records",
            "50",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("records/s"), "{report}");
    assert!(report.contains("p99"), "{report}");
}

#[test]
fn bench_counts_failed_records_and_refuses_missing_input() {
    let anomaly = sluice_harness::udf("anomaly");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.msgs");
    let rows = sluice_harness::ecg_messages();
    std::fs::write(&input, format!("{}\nnot-a-payload\n", rows[0])).unwrap();
    let out = sluice(
        &[
            "udf",
            "bench",
            anomaly.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--records",
            "10",
            "--warmup",
            "0",
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["failed"], 5, "every second record is bad");
    assert!(
        text(&out.stderr).contains("invalid-input"),
        "{}",
        text(&out.stderr)
    );

    let missing = dir.path().join("missing.msgs");
    let out = sluice(
        &[
            "udf",
            "bench",
            anomaly.to_str().unwrap(),
            "--input",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing.msgs"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_pinned_version_runs_from_the_current_file_or_the_archive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let udf_dir = dir.path().to_str().unwrap();
    let a = std::fs::read(sluice_harness::fixture("tagger")).expect("tagger");
    let b = std::fs::read(sluice_harness::fixture("tagger-b")).expect("tagger-b");
    let sha8 = |bytes: &[u8]| sluice::udf_runtime::sha256_hex(bytes)[..8].to_string();
    // B is the current file; A is archived, as the registry keeps an earlier version.
    std::fs::write(dir.path().join("tagger.wasm"), &b).expect("write b");
    std::fs::create_dir(dir.path().join(".versions")).expect("versions dir");
    let archived = dir
        .path()
        .join(format!(".versions/tagger@{}.wasm", sha8(&a)));
    std::fs::write(archived, &a).expect("write a");

    let run = |module: &str| sluice(&["udf", "test", module, "--udf-dir", udf_dir], Some("x\n"));
    for (module, want) in [
        ("tagger".to_string(), "x|b\n"),
        (format!("tagger@{}", sha8(&b)), "x|b\n"),
        (format!("tagger@{}", sha8(&a)), "x|a\n"),
    ] {
        let out = run(&module);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{module}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), want, "{module}");
    }

    let out = run("tagger@00000000");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("tagger@00000000") && err.contains(".versions"),
        "stderr: {err}"
    );
}
