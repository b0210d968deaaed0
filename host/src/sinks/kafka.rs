//! The Kafka sink: an idempotent producer with `acks=all`; key and headers carried.

use crate::codec::EncodingConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[sinks.NAME] type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic to produce to.
    pub topic: String,
    /// How values are encoded (default raw: bytes untouched).
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// librdkafka options passed through (SASL, TLS...), e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push(("brokers", "name at least one bootstrap server".into()));
        }
        if self.topic.trim().is_empty() {
            problems.push(("topic", "the topic cannot be empty".into()));
        }
        for fixed in ["acks", "enable.idempotence"] {
            if self.options.contains_key(fixed) {
                problems.push((
                    "options",
                    format!("`{fixed}` is fixed by Sluice (acks=all, idempotence on)"),
                ));
            }
        }
        problems.extend(
            self.encoding
                .validate()
                .into_iter()
                .map(|(_, e)| ("encoding", e)),
        );
        problems
    }
}
