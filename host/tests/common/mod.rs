//! Shared helpers for the host's integration tests: where the built UDFs are, and the ECG data.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn built(env: &str, default: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test` (or `cargo xtask build`) first",
        path.display()
    );
    path
}

/// A shipped UDF, e.g. `target/udfs/anomaly.wasm`.
pub fn udf(name: &str) -> PathBuf {
    built("SLUICE_TEST_UDF_DIR", "target/udfs", name)
}

/// A test fixture UDF, e.g. `target/test-udfs/hostile.wasm`.
pub fn fixture(name: &str) -> PathBuf {
    built("SLUICE_TEST_FIXTURE_DIR", "target/test-udfs", name)
}

/// A file of `tests/data/`.
pub fn data(name: &str) -> String {
    let path = root().join("tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The 23 reference payloads, `EVENTID,v1#...#v210`.
pub fn ecg_messages() -> Vec<String> {
    data("ecg_discord_test.msgs")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `(EVENTID, MSE as printed by H2O)` for each reference payload.
pub fn expected_scores() -> Vec<(String, String)> {
    data("ecg_test_expected_mse.tsv")
        .lines()
        .map(|l| {
            let (id, mse) = l.split_once('\t').expect("EVENTID<TAB>MSE");
            (id.to_string(), mse.to_string())
        })
        .collect()
}

/// The same payload as the original demo's sensors write it: a space after every separator.
pub fn spaced(payload: &str) -> String {
    payload.replacen(',', ", ", 1).replace('#', "# ")
}
