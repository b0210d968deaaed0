//! The ECG anomaly UDF's payload parser and scorer, natively: any bytes give a score (an
//! event id and a finite MSE in JSON) or a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    match anomaly::score_payload(payload) {
        Ok((key, json)) => {
            let score: serde_json::Value = serde_json::from_str(&json).expect("the score is JSON");
            assert!(
                score["anomaly_val"].as_f64().is_some_and(f64::is_finite),
                "{json}"
            );
            assert!(!key.is_empty());
        }
        Err(err) => assert!(!err.reason.is_empty()),
    }
});
