//! The MQTT sink: publishes each record's encoded value to a topic.

use crate::codec::EncodingConfig;
use crate::mqtt_common::{validate_qos, MqttConnection};
use serde::Deserialize;

/// `[sinks.NAME] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// Broker connection (`broker.url = "mqtt://..."`, credentials, TLS, session).
    pub broker: MqttConnection,
    /// Topic to publish to (no wildcards).
    pub topic: String,
    /// Publish QoS: 0, 1 (default) or 2. A record counts as accepted when the broker acknowledged it.
    #[serde(default = "qos_one")]
    pub qos: u8,
    /// Set the retain flag.
    #[serde(default)]
    pub retain: bool,
    /// How values are encoded (default raw: bytes untouched).
    #[serde(default)]
    pub encoding: EncodingConfig,
}

fn qos_one() -> u8 {
    1
}

impl MqttSinkConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = self.broker.validate();
        if self.topic.is_empty() || self.topic.contains(['+', '#']) {
            problems.push((
                "topic",
                format!("{:?} is not a topic name (no wildcards)", self.topic),
            ));
        }
        problems.extend(validate_qos(self.qos).map(|e| ("qos", e)));
        problems.extend(
            self.encoding
                .validate()
                .into_iter()
                .map(|(_, e)| ("encoding", e)),
        );
        problems
    }
}
