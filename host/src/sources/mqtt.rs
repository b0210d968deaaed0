//! The MQTT source: subscribes to topic filters (wildcards, `$share/GROUP/...` shared
//! subscriptions for scale-out) and emits each publish as a record.

use crate::codec::EncodingConfig;
use crate::mqtt_common::{validate_qos, MqttConnection};
use serde::Deserialize;

/// `[sources.NAME] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Broker connection (`broker.url = "mqtt://..."`, credentials, TLS, session).
    pub broker: MqttConnection,
    /// Topic filters to subscribe to; `+`/`#` wildcards and `$share/GROUP/filter` allowed.
    pub topics: Vec<String>,
    /// Subscription QoS: 0, 1 (default) or 2. With QoS >= 1 a publish is acknowledged only
    /// after every sink downstream accepted what was derived from it.
    #[serde(default = "qos_one")]
    pub qos: u8,
    /// How payloads are decoded (default raw).
    #[serde(default)]
    pub decoding: EncodingConfig,
}

fn qos_one() -> u8 {
    1
}

impl MqttSourceConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = self.broker.validate();
        if self.topics.is_empty() {
            problems.push(("topics", "subscribe to at least one topic filter".into()));
        }
        for topic in &self.topics {
            if let Some(err) = check_filter(topic) {
                problems.push(("topics", err));
            }
        }
        problems.extend(validate_qos(self.qos).map(|e| ("qos", e)));
        problems.extend(
            self.decoding
                .validate()
                .into_iter()
                .map(|(_, e)| ("decoding", e)),
        );
        problems
    }
}

/// MQTT topic filter rules: `#` only last and alone in its level, `+` alone in its level.
fn check_filter(filter: &str) -> Option<String> {
    if filter.is_empty() {
        return Some("a topic filter cannot be empty".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Some(format!("{filter:?}: `#` must be a whole last level"));
        }
        if level.contains('+') && *level != "+" {
            return Some(format!("{filter:?}: `+` must be a whole level"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check_filter;

    #[test]
    fn topic_filters() {
        assert!(check_filter("electric-temperature").is_none());
        assert!(check_filter("sensors/+/temp").is_none());
        assert!(check_filter("$share/sluice/sensors/#").is_none());
        assert!(check_filter("a/#/b").is_some());
        assert!(check_filter("a/b+").is_some());
    }
}
