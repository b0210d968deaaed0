//! The `udf` transform: runs each batch through a Wasm UDF (see `udf_runtime`).

use serde::Deserialize;
use std::collections::BTreeMap;

/// `[transforms.NAME] type = "udf"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdfTransformConfig {
    /// A module name (resolved in the UDF directory, default `target/udfs`) or a `.wasm` path.
    pub module: String,
    /// Passed to the UDF's `init` as key/value pairs.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Memory cap per instance, in MiB (default 64).
    #[serde(default = "memory_mib")]
    pub memory_mib: u64,
    /// Wall-clock deadline per batch, in milliseconds (default 1000).
    #[serde(default = "deadline_ms")]
    pub deadline_ms: u64,
    /// Records per UDF call (default 64).
    #[serde(default = "batch_size")]
    pub batch_size: usize,
}

fn memory_mib() -> u64 {
    64
}

fn deadline_ms() -> u64 {
    1000
}

fn batch_size() -> usize {
    64
}

impl UdfTransformConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.module.trim().is_empty() {
            problems.push(("module", "name a UDF module".into()));
        }
        if self.memory_mib == 0 || self.memory_mib > 4096 {
            problems.push((
                "memory_mib",
                format!("must be 1..=4096 MiB, not {}", self.memory_mib),
            ));
        }
        if self.deadline_ms == 0 {
            problems.push(("deadline_ms", "must be at least 1 ms".into()));
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            problems.push((
                "batch_size",
                format!("must be 1..=65536, not {}", self.batch_size),
            ));
        }
        problems
    }
}
