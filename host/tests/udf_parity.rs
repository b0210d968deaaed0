//! The Wasm build of the anomaly UDF reproduces H2O's scores (`ecg_test_expected_mse.tsv`),
//! to the printed digit, whatever the batch size and however the payload is spaced.

use sluice::udf_runtime::{RuntimeOptions, UdfLimits, UdfRuntime, UdfWorker};
use sluice::Message;

/// The Wasm anomaly UDF, loaded and initialised with default limits.
fn anomaly_worker() -> UdfWorker {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let module = runtime
        .load_file(&sluice_harness::udf("anomaly"), None)
        .expect("anomaly module");
    module
        .instantiate(Vec::new(), UdfLimits::default())
        .expect("init")
}

fn score_all(batch_size: usize, payloads: &[String]) -> Vec<Message> {
    let mut worker = anomaly_worker();
    let records: Vec<Message> = payloads
        .iter()
        .map(|p| Message::from_value(p.as_bytes()))
        .collect();
    let mut out = Vec::new();
    for chunk in records.chunks(batch_size) {
        for result in worker.process(chunk) {
            let mut messages = result.expect("every reference row scores");
            assert_eq!(messages.len(), 1, "one score per event");
            out.push(messages.remove(0));
        }
    }
    out
}

#[test]
fn wasm_scores_match_h2o_to_the_printed_digit() {
    let expected = sluice_harness::data::expected_score_pairs();
    assert_eq!(expected.len(), 23);
    for batch_size in [1, 7, 64] {
        let scores = score_all(batch_size, &sluice_harness::ecg_messages());
        assert_eq!(scores.len(), expected.len());
        for (msg, (id, mse)) in scores.iter().zip(&expected) {
            let value = String::from_utf8(msg.value.clone()).unwrap();
            assert_eq!(
                value,
                format!("{{\"eventid\":{id},\"anomaly_val\":{mse}}}"),
                "batch size {batch_size}"
            );
            assert_eq!(msg.key.as_deref(), Some(id.as_bytes()), "key = EVENTID");
        }
    }
}

#[test]
fn spaces_after_separators_change_nothing() {
    let plain = score_all(64, &sluice_harness::ecg_messages());
    let spaced: Vec<String> = sluice_harness::ecg_messages()
        .iter()
        .map(|m| sluice_harness::spaced(m))
        .collect();
    assert!(
        spaced[0].starts_with("1, ") && spaced[0].contains("# "),
        "{}",
        &spaced[0][..20]
    );
    assert_eq!(score_all(64, &spaced), plain);
}

#[test]
fn headers_and_timestamps_pass_through_the_guest() {
    let mut worker = anomaly_worker();
    let mut input = Message::from_value(sluice_harness::ecg_messages()[0].as_bytes());
    input.headers.push(("origin".into(), b"sensor-7".to_vec()));
    input.timestamp_ms = Some(1_700_000_000_000);
    let out = worker.process(&[input]).remove(0).expect("score");
    assert_eq!(out[0].header("origin"), Some(&b"sensor-7"[..]));
    assert_eq!(out[0].timestamp_ms, Some(1_700_000_000_000));
}
