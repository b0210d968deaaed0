//! Native parity: the scoring code reproduces H2O's own scores (`tests/data/ecg_test_expected_mse.tsv`).
//! The Wasm build of the same code is checked against the same file by the host's tests.

use std::path::PathBuf;

fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn scores_match_h2o_to_the_printed_digit() {
    let expected: Vec<(String, String)> = data("ecg_test_expected_mse.tsv")
        .lines()
        .map(|l| {
            let (id, mse) = l.split_once('\t').expect("tsv row");
            (id.to_string(), mse.to_string())
        })
        .collect();
    let msgs = data("ecg_discord_test.msgs");
    let lines: Vec<&str> = msgs.lines().collect();
    assert_eq!(lines.len(), expected.len());
    assert_eq!(lines.len(), 23);
    for (line, (id, want)) in lines.iter().zip(&expected) {
        let (key, json) = anomaly::score_payload(line.as_bytes()).expect("valid reference row");
        assert_eq!(key, *id);
        let got: f64 = json
            .split("\"anomaly_val\":")
            .nth(1)
            .and_then(|s| s.strip_suffix('}'))
            .expect("score json")
            .parse()
            .expect("float");
        let want_f: f64 = want.parse().unwrap();
        let rel = ((got - want_f) / want_f).abs();
        assert!(
            rel <= 1e-12,
            "event {id}: got {got}, want {want} (rel {rel:e})"
        );
        assert_eq!(
            json,
            format!("{{\"eventid\":{id},\"anomaly_val\":{want}}}"),
            "printed digits of event {id}"
        );
    }
}
