//! What a shadow shows (`GET /udfs/{name}/shadow`, `sluice udf shadow`, status, the dashboard):
//! serde types, re-exported by `api.rs` for the CLI client.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a shadow is run and judged (`udf push --shadow` options, the `shadow_*` fields of a
/// `udf` transform).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowOptions {
    /// A CEL rule over the shadow's figures since start; when it holds, the shadow is promoted.
    #[serde(default)]
    pub promote_when: Option<String>,
    /// A CEL rule; when it holds, the shadow is dropped.
    #[serde(default)]
    pub drop_when: Option<String>,
    /// The shadow is dropped when it is this many records behind the live version.
    pub max_lag: u64,
}

impl Default for ShadowOptions {
    fn default() -> Self {
        ShadowOptions {
            promote_when: None,
            drop_when: None,
            max_lag: DEFAULT_MAX_LAG,
        }
    }
}

/// Records a shadow may fall behind before it is dropped, unless told otherwise.
pub const DEFAULT_MAX_LAG: u64 = 10_000;

/// Where a shadow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowState {
    /// Compared with every live batch.
    Running,
    /// Made live.
    Promoted,
    /// Stopped without going live (by hand, by a rule, or for falling behind).
    Dropped,
}

/// The shadow of one UDF and how it compares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The module name.
    pub name: String,
    /// The live version it is compared with, `NAME@SHA8`.
    pub live: String,
    /// The shadow version, `NAME@SHA8`.
    pub shadow: String,
    /// Running, promoted or dropped.
    pub state: ShadowState,
    /// Why it ended (promoted or dropped), if it did.
    pub ended_reason: Option<String>,
    /// Seconds since the Unix epoch when it started.
    pub started_at_unix: u64,
    /// Seconds since the Unix epoch when it ended.
    pub ended_at_unix: Option<u64>,
    /// Its rules and lag bound.
    pub options: ShadowOptions,
    /// The filter whose decision is compared, `PIPELINE/FILTER: CONDITION` (none: no alert table).
    pub decision_filters: Vec<String>,
    /// Records given to the shadow and not yet compared, over every transform.
    pub lag_records: u64,
    /// Live batches given to the shadow.
    pub batches: u64,
    /// Transforms where the shadow could not start, with the reason.
    pub refused: Vec<String>,
    /// The sliding window's length in seconds.
    pub window_seconds: u64,
    /// Since the shadow started.
    pub since_start: ShadowFigures,
    /// Over the last `window_seconds`.
    pub window: ShadowFigures,
    /// The latest records whose outputs differ (input, live output, shadow output).
    pub samples: Vec<ShadowSample>,
    /// The latest records whose alert decision differs, newest last.
    pub decision_changes: Vec<DecisionChange>,
    /// The latest scores on both sides by pipeline, oldest first (when a filter thresholds a
    /// field: `FIELD > NUMBER`).
    pub points: BTreeMap<String, Vec<ShadowPoint>>,
}

/// Counts and deltas over some span of records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowFigures {
    /// Records compared.
    pub records: u64,
    /// Records whose outputs were byte-identical.
    pub identical: u64,
    /// Records where both sides succeeded with different outputs.
    pub differing: u64,
    /// Records the live version failed, by error kind.
    pub live_errors: BTreeMap<String, u64>,
    /// Records the shadow failed, by error kind.
    pub shadow_errors: BTreeMap<String, u64>,
    /// The alert decision table (records where both succeeded and a filter decides).
    pub alerts: AlertTable,
    /// Per numeric JSON field: how far the shadow's value is from the live one.
    pub fields: Vec<FieldDeltas>,
    /// Per-record latency of the live version (batch time / records), microseconds.
    pub live_latency_us: Latency,
    /// Per-record latency of the shadow, microseconds.
    pub shadow_latency_us: Latency,
}

/// Records by the filter's decision on each side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTable {
    /// Both alert.
    pub both: u64,
    /// Only the live version alerts: the shadow would miss these.
    pub live_only: u64,
    /// Only the shadow would alert.
    pub shadow_only: u64,
    /// Neither alerts.
    pub neither: u64,
}

/// |Δ| and |Δ| / |live| of one numeric field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldDeltas {
    /// The top-level JSON field.
    pub field: String,
    /// Records where both sides had it.
    pub records: u64,
    /// Largest |shadow - live|.
    pub max_abs_delta: f64,
    /// 99th percentile of |shadow - live| (within 12%).
    pub p99_abs_delta: f64,
    /// Largest |shadow - live| / |live|.
    pub max_rel_delta: f64,
    /// 99th percentile of the relative delta (within 12%).
    pub p99_rel_delta: f64,
}

/// Mean and 99th percentile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// 99th percentile (within 12%).
    pub p99: f64,
}

/// A record whose outputs differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowSample {
    /// Milliseconds since the Unix epoch when it was compared.
    pub at_ms: u64,
    /// The record's id, if it has one.
    pub id: Option<String>,
    /// The input value (text, lossy, at most 1 KiB).
    pub input: String,
    /// The live output values, or its error.
    pub live: String,
    /// The shadow's output values, or its error.
    pub shadow: String,
}

/// A record whose alert decision differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionChange {
    /// Milliseconds since the Unix epoch when it was compared.
    pub at_ms: u64,
    /// The pipeline.
    pub pipeline: String,
    /// The record's id.
    pub id: Option<String>,
    /// `live_only` (the shadow would not alert) or `shadow_only` (it would, live does not).
    pub change: String,
    /// The live score, when the filter thresholds a field.
    pub live_score: Option<f64>,
    /// The shadow's score.
    pub shadow_score: Option<f64>,
}

/// One record's score on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowPoint {
    /// The record's id.
    pub id: Option<String>,
    /// The live score.
    pub live: f64,
    /// The shadow's score.
    pub shadow: f64,
    /// The alert decisions differ.
    pub disagree: bool,
}

impl ShadowFigures {
    /// Records either side failed.
    pub fn errors(side: &BTreeMap<String, u64>) -> u64 {
        side.values().sum()
    }

    /// The largest of a per-field figure over every field (0 without fields).
    pub fn max_over_fields(&self, figure: fn(&FieldDeltas) -> f64) -> f64 {
        self.fields.iter().map(figure).fold(0.0, f64::max)
    }
}
