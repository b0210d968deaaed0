//! The ECG reference data (`tests/data/`, from `../shared/reference/`) in the shapes the tests
//! and the demo use.

use crate::root;

/// The 23 reference payloads, `EVENTID,v1#...#v210`.
pub fn ecg_messages() -> Vec<String> {
    read_data("ecg_discord_test.msgs")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `EVENTID,MSE` as H2O printed it, per reference payload.
pub fn expected_scores() -> Vec<String> {
    expected_score_pairs()
        .into_iter()
        .map(|(id, mse)| format!("{id},{mse}"))
        .collect()
}

/// `(EVENTID, MSE as H2O printed it)` per reference payload.
pub fn expected_score_pairs() -> Vec<(String, String)> {
    read_data("ecg_test_expected_mse.tsv")
        .lines()
        .map(|l| {
            let (id, mse) = l.split_once('\t').expect("EVENTID<TAB>MSE");
            (id.to_string(), mse.to_string())
        })
        .collect()
}

/// A file of `tests/data/` as text.
pub fn read_data(name: &str) -> String {
    let path = root().join("tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The payload as the original demo's sensors write it: a space after every separator.
pub fn spaced(payload: &str) -> String {
    payload.replacen(',', ", ", 1).replace('#', "# ")
}

/// What the end-to-end tests publish: the 23 reference rows, the odd ones spaced as the
/// original sensors send them, and two malformed messages after row 12.
pub fn demo_payloads() -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    for (i, row) in ecg_messages().iter().enumerate() {
        payloads.push(if i % 2 == 0 { spaced(row) } else { row.clone() }.into_bytes());
        if i == 11 {
            payloads.push(b"99, 1.0# 2.0".to_vec());
            payloads.push(b"not an ecg event".to_vec());
        }
    }
    payloads
}
