//! The admin API's answer bodies: one set of types for the server (`admin/`) and its
//! command-line client (`cli/admin_client.rs`), so the two cannot drift apart. Serde only, no
//! HTTP framework: the client links none of the server.
//!
//! The status types themselves live where they are made (`control_plane`, `metrics`,
//! `topology::supervisor`) and are re-exported here; the envelopes around them are defined here.

use serde::{Deserialize, Serialize};

pub use crate::control_plane::{ComponentStatus, PipelineStatus, PipelineUdf, UdfPushed, UdfView};
pub use crate::metrics::{ComponentSnapshot, LastError, Role};
pub use crate::topology::supervisor::{Deployed, PipelineState};
pub use crate::udf_shadow::report::{
    AlertTable, DecisionChange, FieldDeltas, Latency, ShadowFigures, ShadowOptions, ShadowPoint,
    ShadowReport, ShadowSample, ShadowState,
};

/// `GET /pipelines`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineList {
    /// This host's identity (`--host-id`).
    #[serde(default)]
    pub host_id: String,
    /// Every deployed pipeline.
    pub pipelines: Vec<PipelineStatus>,
}

/// `GET /pipelines/{name}`: the status and the TOML it was deployed from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineDetail {
    /// Its status, as in [`PipelineList`].
    #[serde(flatten)]
    pub status: PipelineStatus,
    /// The pipeline file as deployed (none for pipelines built without TOML).
    pub toml: Option<String>,
}

/// `PUT /pipelines/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployAnswer {
    /// The pipeline.
    pub name: String,
    /// Created, replaced (after draining the old one) or unchanged.
    pub deployed: Deployed,
}

/// `DELETE /pipelines/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UndeployAnswer {
    /// The pipeline.
    pub name: String,
    /// Always true: it drained and stopped.
    pub undeployed: bool,
}

/// `GET /udfs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UdfList {
    /// Every registered UDF.
    pub udfs: Vec<UdfView>,
}

/// `POST /udfs/{name}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackAnswer {
    /// The UDF.
    pub name: String,
    /// The version live now, `NAME@SHA8`.
    pub version: String,
}

/// Every error answer: a message, and for an invalid pipeline every error in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// An invalid pipeline's errors, in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ErrorBody {
    /// An error with a message only.
    pub fn new(error: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            errors: Vec::new(),
        }
    }

    /// The message, then each pipeline error on its own indented line.
    pub fn describe(&self) -> String {
        let mut text = self.error.clone();
        for err in &self.errors {
            text.push_str("\n  ");
            text.push_str(&err.text);
        }
        text
    }
}

/// One error in an invalid pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted field path, e.g. `sinks.alerts.inputs` (empty for the whole file).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// The whole error as `sluice validate` prints it: `FILE:LINE:COLUMN: FIELD: MESSAGE`.
    pub text: String,
}

impl From<&crate::pipeline::ConfigError> for FieldError {
    fn from(e: &crate::pipeline::ConfigError) -> Self {
        FieldError {
            line: e.line,
            column: e.column,
            field: e.path.clone(),
            message: e.message.clone(),
            text: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_are_listed() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error":"invalid pipeline","errors":[{"line":3,"column":1,"field":"sinks.x.inputs","message":"unknown component","text":"p.toml:3:1: sinks.x.inputs: unknown component"}]}"#,
        )
        .expect("an error body");
        assert_eq!(
            body.describe(),
            "invalid pipeline\n  p.toml:3:1: sinks.x.inputs: unknown component"
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("x")).expect("json"),
            r#"{"error":"x"}"#
        );
    }
}

/// `POST /udfs/{name}/promote`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteAnswer {
    /// The UDF.
    pub name: String,
    /// The version now live, `NAME@SHA8` (the former shadow).
    pub version: String,
}
