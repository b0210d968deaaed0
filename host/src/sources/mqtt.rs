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

/// The running MQTT source.
pub struct MqttSource {
    config: MqttSourceConfig,
    client: crate::mqtt_common::MqttClient,
    events: crate::mqtt_common::MqttEventLoop,
}

/// How long a stopping source waits for the acknowledgements of what it already emitted.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl MqttSource {
    /// Prepares the client (no connection yet). A publish is acknowledged manually, only after
    /// everything derived from it was accepted.
    pub fn build(
        config: MqttSourceConfig,
        ctx: &crate::topology::ComponentContext,
    ) -> Result<Self, String> {
        let (client, events) = config
            .broker
            .client(&format!("sluice-{}-{}", ctx.pipeline, ctx.component), true)?;
        Ok(MqttSource {
            config,
            client,
            events,
        })
    }

    /// Receives publishes until shutdown, then waits for in-flight acknowledgements.
    pub fn run(
        self,
        outputs: crate::topology::Outputs,
        ctx: crate::topology::ComponentContext,
    ) -> crate::topology::ComponentTask {
        use crate::mqtt_common::MqttEvent;
        use crate::topology::Backoff;
        use crate::topology::{Ack, Record};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        Box::pin(async move {
            let MqttSource {
                config,
                client,
                mut events,
            } = self;
            let in_flight = Arc::new(AtomicUsize::new(0));
            let mut shutdown = ctx.shutdown.clone();
            let mut backoff = Backoff::default();
            let component = ctx.component.clone();
            loop {
                let event = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    event = events.poll() => event,
                };
                match event {
                    Ok(MqttEvent::Connected) => {
                        backoff.reset();
                        ctx.metrics.set_connection(crate::metrics::Connection::Up);
                        // A clean session forgets subscriptions: subscribe on every connection.
                        if let Err(err) = client.subscribe(&config.topics, config.qos).await {
                            tracing::error!(%component, "cannot subscribe: {err}");
                        }
                    }
                    Ok(MqttEvent::Subscribed) => {
                        tracing::info!(%component, topics = ?config.topics, "mqtt source subscribed");
                    }
                    Ok(MqttEvent::Publish(publish)) => {
                        let ack = if publish.needs_ack() {
                            in_flight.fetch_add(1, Ordering::AcqRel);
                            let (client, publish, in_flight) =
                                (client.clone(), publish.clone(), in_flight.clone());
                            Ack::new(move || {
                                if let Err(err) = client.try_ack(&publish) {
                                    tracing::warn!("cannot acknowledge a publish (the broker will redeliver it): {err}");
                                }
                                in_flight.fetch_sub(1, Ordering::AcqRel);
                            })
                        } else {
                            Ack::none()
                        };
                        let timestamp_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .ok()
                            .and_then(|d| i64::try_from(d.as_millis()).ok());
                        let mut headers =
                            vec![("mqtt-topic".to_string(), publish.topic().into_bytes())];
                        headers.extend(publish.user_properties());
                        let (value, failure) = match config.decoding.decode(publish.payload()) {
                            Ok(value) => (value, None),
                            Err(reason) => (publish.payload().to_vec(), Some(reason)),
                        };
                        let record = Record {
                            msg: crate::message::Message {
                                key: None,
                                value,
                                headers,
                                timestamp_ms,
                            },
                            ack,
                        };
                        match failure {
                            None => outputs.send(record).await,
                            Some(reason) => {
                                let reason = format!("decode: {reason}");
                                ctx.metrics.record_in();
                                ctx.dead_letters.send(record, &ctx.metrics, &reason).await;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(%component, "mqtt connection: {err}; retrying in {delay:?}");
                        ctx.metrics.set_connection(crate::metrics::Connection::Down);
                        ctx.metrics.report_error(&format!("mqtt connection: {err}"));
                        tokio::select! {
                            _ = shutdown.wait_for(|stop| *stop) => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
            // Stop feeding downstream, then keep the connection up until what was emitted is
            // acknowledged, so the acknowledgements reach the broker.
            drop(outputs);
            tracing::debug!(%component, in_flight = in_flight.load(Ordering::Acquire), "mqtt source draining");
            let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
            while in_flight.load(Ordering::Acquire) > 0 {
                match tokio::time::timeout_at(deadline, events.poll()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(%component, "mqtt connection while draining: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    Err(_) => {
                        tracing::warn!(
                            %component,
                            pending = in_flight.load(Ordering::Acquire),
                            "stopping with unacknowledged publishes; the broker will redeliver them"
                        );
                        break;
                    }
                }
            }
            tracing::debug!(%component, "mqtt source acknowledged everything; disconnecting");
            let _ = client.disconnect().await;
            // Flush the queued acknowledgements and the DISCONNECT.
            let flush_deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                match tokio::time::timeout_at(flush_deadline, events.poll()).await {
                    Ok(Ok(MqttEvent::DisconnectSent)) => {
                        events.wait_closed(std::time::Duration::from_secs(2)).await;
                        tracing::debug!(%component, "mqtt source disconnected");
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(%component, "mqtt connection while disconnecting: {err}");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(%component, "no DISCONNECT sent within 2 s");
                        break;
                    }
                }
            }
        })
    }
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
