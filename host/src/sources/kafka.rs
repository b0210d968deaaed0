//! The Kafka source: a consumer-group member whose offsets are committed only after every sink
//! downstream accepted the records derived from them.

use crate::codec::EncodingConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[sources.NAME] type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group id; processes sharing it share the partitions.
    pub group_id: String,
    /// Where a new group starts: `earliest` (default) or `latest`.
    #[serde(default = "earliest")]
    pub auto_offset_reset: String,
    /// How values are decoded (default raw).
    #[serde(default)]
    pub decoding: EncodingConfig,
    /// librdkafka options passed through (SASL, TLS...), e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn earliest() -> String {
    "earliest".into()
}

impl KafkaSourceConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push(("brokers", "name at least one bootstrap server".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            problems.push(("topics", "name at least one topic, none empty".into()));
        }
        if self.group_id.trim().is_empty() {
            problems.push(("group_id", "the consumer group id cannot be empty".into()));
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            problems.push((
                "auto_offset_reset",
                format!(
                    "expected `earliest` or `latest`, found {:?}",
                    self.auto_offset_reset
                ),
            ));
        }
        problems.extend(
            self.decoding
                .validate()
                .into_iter()
                .map(|(_, e)| ("decoding", e)),
        );
        problems
    }
}
