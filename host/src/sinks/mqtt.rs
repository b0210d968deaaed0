//! The MQTT sink: publishes each record's encoded value to a topic.

use crate::codec::EncodingConfig;
use crate::metrics::Connection;
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

/// The running MQTT sink.
pub struct MqttSink {
    config: MqttSinkConfig,
    client: crate::mqtt_common::MqttClient,
    events: crate::mqtt_common::MqttEventLoop,
}

/// How long a stopping sink waits for the broker to acknowledge what it published.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Records handed to the client, in publish order, until the event loop assigns them a packet
/// id; then by packet id until the broker acknowledges. The record itself is kept so that a
/// message the broker refuses (MQTT 5 reason codes) can be dead-lettered.
#[derive(Default)]
struct Pending {
    unassigned: std::collections::VecDeque<crate::topology::Record>,
    by_packet: std::collections::HashMap<u16, crate::topology::Record>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.unassigned.is_empty() && self.by_packet.is_empty()
    }
}

impl MqttSink {
    /// Prepares the client options (no connection yet).
    pub fn build(
        config: MqttSinkConfig,
        ctx: &crate::topology::ComponentContext,
    ) -> Result<Self, String> {
        let (client, events) = config
            .broker
            .client(&format!("sluice-{}-{}", ctx.pipeline, ctx.component), false)?;
        Ok(MqttSink {
            config,
            client,
            events,
        })
    }

    /// Publishes records until the input closes; a record is accepted (its ack done) when the
    /// broker acknowledged it (at QoS 0: when it was written).
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<crate::topology::Record>,
        ctx: crate::topology::ComponentContext,
    ) -> crate::topology::ComponentTask {
        use crate::mqtt_common::MqttEvent;
        use crate::topology::Backoff;
        use std::sync::{Arc, Mutex};

        Box::pin(async move {
            let MqttSink {
                config,
                client,
                mut events,
            } = self;
            let pending = Arc::new(Mutex::new(Pending::default()));
            let drained = Arc::new(tokio::sync::Notify::new());
            let component = ctx.component.clone();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

            let event_loop = {
                let (pending, drained, stop, ctx, topic) = (
                    pending.clone(),
                    drained.clone(),
                    stop.clone(),
                    ctx.clone(),
                    config.topic.clone(),
                );
                tokio::spawn(async move {
                    let component = ctx.component.clone();
                    let mut backoff = Backoff::default();
                    loop {
                        let event = events.poll().await;
                        let lock = || pending.lock().unwrap_or_else(|p| p.into_inner());
                        match event {
                            Ok(MqttEvent::Connected) => {
                                backoff.reset();
                                tracing::info!(%component, "mqtt sink connected");
                                ctx.metrics.set_connection(Connection::Up);
                            }
                            Ok(MqttEvent::PublishSent(packet)) => {
                                let mut p = lock();
                                // A retransmission after a reconnect reuses a known packet id.
                                if packet != 0 && p.by_packet.contains_key(&packet) {
                                    continue;
                                }
                                if let Some(record) = p.unassigned.pop_front() {
                                    if packet == 0 {
                                        ctx.metrics.record_out();
                                        record.ack.done(); // QoS 0: written is all there is
                                    } else {
                                        p.by_packet.insert(packet, record);
                                    }
                                }
                            }
                            Ok(MqttEvent::PublishDone { pkid, refused }) => {
                                let done = lock().by_packet.remove(&pkid);
                                match (done, refused) {
                                    (Some(record), None) => {
                                        ctx.metrics.record_out();
                                        record.ack.done()
                                    }
                                    (Some(record), Some(reason)) => {
                                        let reason = format!("mqtt topic {topic}: {reason}");
                                        ctx.dead_letters.send(record, &ctx.metrics, &reason).await;
                                    }
                                    (None, _) => {}
                                }
                            }
                            Ok(MqttEvent::DisconnectSent) => {
                                events.wait_closed(std::time::Duration::from_secs(2)).await;
                                break;
                            }
                            Ok(_) => {}
                            Err(err) => {
                                if stop.load(std::sync::atomic::Ordering::Acquire)
                                    && lock().is_empty()
                                {
                                    break;
                                }
                                let delay = backoff.next_delay();
                                tracing::warn!(%component, "mqtt connection: {err}; retrying in {delay:?}");
                                ctx.metrics.set_connection(Connection::Down);
                                ctx.metrics.report_error(&format!("mqtt connection: {err}"));
                                tokio::time::sleep(delay).await;
                            }
                        }
                        if lock().is_empty() {
                            drained.notify_waiters();
                        }
                    }
                })
            };

            while let Some(record) = input.recv().await {
                let Some((record, payload)) =
                    super::encode_or_dead_letter(&config.encoding, record, &ctx).await
                else {
                    continue;
                };
                let headers = record.msg.headers.clone();
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .unassigned
                    .push_back(record);
                if let Err(err) = client
                    .publish(&config.topic, config.qos, config.retain, payload, &headers)
                    .await
                {
                    tracing::error!(%component, "mqtt client stopped: {err}");
                    break;
                }
            }

            // Input closed: wait for the broker to acknowledge everything, then disconnect.
            stop.store(true, std::sync::atomic::Ordering::Release);
            let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
            loop {
                let notified = drained.notified();
                if pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    tracing::warn!(%component, "stopping with unacknowledged publishes");
                    break;
                }
            }
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), event_loop).await;
        })
    }
}
