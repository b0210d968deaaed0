//! The console sink: writes each record's encoded value as a line on stdout (for trying
//! pipelines out and for tutorials).

use crate::codec::EncodingConfig;
use serde::Deserialize;

/// `[sinks.NAME] type = "console"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// How values are encoded (default raw).
    #[serde(default)]
    pub encoding: EncodingConfig,
}

impl ConsoleSinkConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        self.encoding
            .validate()
            .into_iter()
            .map(|(_, e)| ("encoding", e))
            .collect()
    }
}
