//! The MQTT client adapter: a rumqttc client and event loop from [`MqttConnection`], for MQTT
//! 3.1.1 or 5, with one event type ([`MqttEvent`]) and one publish type for both versions.

use super::{MqttConnection, MqttProtocol};

impl MqttConnection {
    /// A client and its event loop for this connection, in the configured protocol version.
    /// Reads TLS files; never connects (the event loop does, when polled).
    /// `clean_session` is the session to ask for (see [`MqttConnection::clean_session`]); `role`
    /// sets the packet limits and the in-flight window.
    pub fn client(
        &self,
        default_client_id: &str,
        clean_session: bool,
        role: ClientRole,
    ) -> Result<(MqttClient, MqttEventLoop), String> {
        let manual_acks = role == ClientRole::Source;
        // A source accepts any packet the protocol allows, and dead-letters messages over its
        // own limit: refusing a packet drops the connection, and the broker would send the
        // same message again after every reconnect.
        let max_incoming = match role {
            ClientRole::Source => MAX_PROTOCOL_PACKET,
            ClientRole::Sink => MAX_PACKET,
        };
        let address = self.address()?;
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id.to_string());
        let transport = if address.tls {
            Some(self.tls_transport()?)
        } else {
            None
        };
        let keep_alive = std::time::Duration::from_secs(self.keep_alive_secs);
        Ok(match self.protocol {
            MqttProtocol::V311 => {
                let mut options = rumqttc::MqttOptions::new(client_id, address.host, address.port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_session(clean_session)
                    .set_max_packet_size(max_incoming, MAX_PACKET)
                    .set_inflight(SINK_WINDOW)
                    .set_manual_acks(manual_acks);
                if let Some(user) = &self.username {
                    options
                        .set_credentials(user.clone(), self.password.clone().unwrap_or_default());
                }
                if let Some(transport) = transport {
                    options.set_transport(transport);
                }
                let (client, events) = rumqttc::AsyncClient::new(options, 1024);
                (
                    MqttClient::V311(client),
                    MqttEventLoop::V311(Box::new(events)),
                )
            }
            MqttProtocol::V5 => {
                let mut options =
                    rumqttc::v5::MqttOptions::new(client_id, address.host, address.port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_start(clean_session)
                    .set_max_packet_size(Some(max_incoming as u32))
                    .set_outgoing_inflight_upper_limit(SINK_WINDOW)
                    .set_manual_acks(manual_acks);
                if !clean_session {
                    // MQTT 5 ends a session at disconnect unless it is given an expiry.
                    options.set_session_expiry_interval(Some(
                        self.session_expiry_secs
                            .unwrap_or(DEFAULT_SESSION_EXPIRY_SECS),
                    ));
                }
                if let Some(user) = &self.username {
                    options
                        .set_credentials(user.clone(), self.password.clone().unwrap_or_default());
                }
                if let Some(transport) = transport {
                    options.set_transport(transport);
                }
                let (client, events) = rumqttc::v5::AsyncClient::new(options, 1024);
                (MqttClient::V5(client), MqttEventLoop::V5(Box::new(events)))
            }
        })
    }

    fn tls_transport(&self) -> Result<rumqttc::Transport, String> {
        let tls = self.tls.clone().unwrap_or_default();
        let read = |what: &str, path: &Option<String>| -> Result<Option<Vec<u8>>, String> {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| format!("broker.tls.{what}: cannot read {p}: {e}"))
                })
                .transpose()
        };
        let ca = read("ca_file", &tls.ca_file)?.ok_or(
            "TLS needs broker.tls.ca_file (the system roots are not loaded by this build)",
        )?;
        let client_auth = match (
            read("client_cert", &tls.client_cert)?,
            read("client_key", &tls.client_key)?,
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        };
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            },
        ))
    }
}

/// Largest packet a sink sends: 16 MiB (larger records are dead-lettered with their size).
pub const MAX_PACKET: usize = 16 << 20;
/// The largest packet MQTT can carry (its remaining-length field's limit).
const MAX_PROTOCOL_PACKET: usize = 268_435_455;
/// Publishes a sink keeps unacknowledged at once (rumqttc's in-flight window).
pub const SINK_WINDOW: u16 = 100;
/// Default MQTT 5 session expiry of a persistent session: one day.
pub const DEFAULT_SESSION_EXPIRY_SECS: u32 = 86_400;

/// Which side of a pipeline a client serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Subscribes; acknowledges manually.
    Source,
    /// Publishes.
    Sink,
}

/// A client handle (cheap to clone) for MQTT 3.1.1 or 5.
#[derive(Clone)]
pub enum MqttClient {
    /// MQTT 3.1.1.
    V311(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop that owns the connection; poll it to make progress.
pub enum MqttEventLoop {
    /// MQTT 3.1.1 (boxed, like the other: event loops are large).
    V311(Box<rumqttc::EventLoop>),
    /// MQTT 5.
    V5(Box<rumqttc::v5::EventLoop>),
}

/// A publish received from the broker.
#[derive(Clone)]
pub enum IncomingPublish {
    /// MQTT 3.1.1.
    V311(rumqttc::Publish),
    /// MQTT 5.
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

/// What happened on the connection, the same for both protocol versions.
pub enum MqttEvent {
    /// The broker accepted the connection; `session_present` when it resumed a session.
    Connected {
        /// The broker kept our session (persistent sessions only).
        session_present: bool,
    },
    /// The broker answered a subscription: the positions of the filters it refused (an ACL,
    /// for instance), empty when it granted every one.
    Subscribed {
        /// Indexes of refused filters, in the order they were asked for.
        refused: Vec<usize>,
    },
    /// A message arrived.
    Publish(IncomingPublish),
    /// A publish of ours was written with this packet id (0 at QoS 0).
    PublishSent(u16),
    /// The broker finished a publish of ours (PUBACK at QoS 1, PUBCOMP at QoS 2); with MQTT 5 it
    /// may refuse it, with a reason.
    PublishDone {
        /// The packet id.
        pkid: u16,
        /// Why the broker refused the message (MQTT 5 reason codes 0x80 and up).
        refused: Option<String>,
    },
    /// Our DISCONNECT was written.
    DisconnectSent,
    /// Anything else (pings, acknowledgements we do not track).
    Other,
}

impl MqttEventLoop {
    /// After the DISCONNECT went out: keeps reading until the broker closes the connection (or
    /// `limit` passes). Closing a socket that still has unread data (publishes the broker sent
    /// meanwhile) makes the kernel send a reset, and the broker then drops what it had not read
    /// yet: our last acknowledgements and the DISCONNECT itself.
    pub async fn wait_closed(&mut self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, async { while self.poll().await.is_ok() {} }).await;
    }

    /// The next event; an error means the connection dropped (polling again reconnects).
    pub async fn poll(&mut self) -> Result<MqttEvent, String> {
        use rumqttc::Outgoing;
        Ok(match self {
            MqttEventLoop::V311(events) => {
                use rumqttc::{Event, Packet};
                match events.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(ack)) => MqttEvent::Connected {
                        session_present: ack.session_present,
                    },
                    Event::Incoming(Packet::SubAck(ack)) => {
                        MqttEvent::Subscribed {
                            refused: refused(ack.return_codes.iter().map(|code| {
                                matches!(code, rumqttc::SubscribeReasonCode::Success(_))
                            })),
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        MqttEvent::Publish(IncomingPublish::V311(p))
                    }
                    Event::Incoming(Packet::PubAck(rumqttc::PubAck { pkid, .. }))
                    | Event::Incoming(Packet::PubComp(rumqttc::PubComp { pkid, .. })) => {
                        MqttEvent::PublishDone {
                            pkid,
                            refused: None,
                        }
                    }
                    Event::Outgoing(Outgoing::Publish(pkid)) => MqttEvent::PublishSent(pkid),
                    Event::Outgoing(Outgoing::Disconnect) => MqttEvent::DisconnectSent,
                    _ => MqttEvent::Other,
                }
            }
            MqttEventLoop::V5(events) => {
                use rumqttc::v5::mqttbytes::v5::{Packet, PubAck, PubAckReason, PubComp};
                use rumqttc::v5::Event;
                match events.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(ack)) => MqttEvent::Connected {
                        session_present: ack.session_present,
                    },
                    Event::Incoming(Packet::SubAck(ack)) => MqttEvent::Subscribed {
                        refused: refused(ack.return_codes.iter().map(|code| {
                            matches!(
                                code,
                                rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                            )
                        })),
                    },
                    Event::Incoming(Packet::Publish(p)) => {
                        MqttEvent::Publish(IncomingPublish::V5(p))
                    }
                    Event::Incoming(Packet::PubAck(PubAck { pkid, reason, .. })) => {
                        MqttEvent::PublishDone {
                            pkid,
                            refused: (!matches!(
                                reason,
                                PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                            ))
                            .then(|| format!("the broker refused the message: {reason:?}")),
                        }
                    }
                    // PUBCOMP's only other reason (packet id not found) means the broker already
                    // completed this exchange.
                    Event::Incoming(Packet::PubComp(PubComp { pkid, .. })) => {
                        MqttEvent::PublishDone {
                            pkid,
                            refused: None,
                        }
                    }
                    Event::Outgoing(Outgoing::Publish(pkid)) => MqttEvent::PublishSent(pkid),
                    Event::Outgoing(Outgoing::Disconnect) => MqttEvent::DisconnectSent,
                    _ => MqttEvent::Other,
                }
            }
        })
    }
}

impl MqttClient {
    /// Queues a subscription to every filter at `qos` without waiting (for the task that polls
    /// the connection, which must never wait on its own request queue).
    pub fn try_subscribe(&self, filters: &[String], qos_level: u8) -> Result<(), String> {
        match self {
            MqttClient::V311(client) => client
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), qos(qos_level))),
                )
                .map_err(|e| e.to_string()),
            MqttClient::V5(client) => {
                client
                    .try_subscribe_many(filters.iter().map(|f| {
                        rumqttc::v5::mqttbytes::v5::Filter::new(f.clone(), qos_v5(qos_level))
                    }))
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Queues a publish. With MQTT 5, headers whose values are UTF-8 go as user properties
    /// (MQTT 3.1.1 has nowhere to put them).
    pub async fn publish(
        &self,
        topic: &str,
        qos_level: u8,
        retain: bool,
        payload: Vec<u8>,
        headers: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        match self {
            MqttClient::V311(client) => client
                .publish(topic, qos(qos_level), retain, payload)
                .await
                .map_err(|e| e.to_string()),
            MqttClient::V5(client) => {
                let user_properties: Vec<(String, String)> = headers
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.clone()).ok()?)))
                    .collect();
                let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    user_properties,
                    ..Default::default()
                };
                client
                    .publish_with_properties(topic, qos_v5(qos_level), retain, payload, properties)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Acknowledges a received publish (manual acknowledgements).
    pub fn try_ack(&self, publish: &IncomingPublish) -> Result<(), String> {
        match (self, publish) {
            (MqttClient::V311(client), IncomingPublish::V311(p)) => {
                client.try_ack(p).map_err(|e| e.to_string())
            }
            (MqttClient::V5(client), IncomingPublish::V5(p)) => {
                client.try_ack(p).map_err(|e| e.to_string())
            }
            _ => Err("a publish acknowledged on a client of another protocol version".into()),
        }
    }

    /// Queues a DISCONNECT without waiting.
    pub fn try_disconnect(&self) -> Result<(), String> {
        match self {
            MqttClient::V311(client) => client.try_disconnect().map_err(|e| e.to_string()),
            MqttClient::V5(client) => client.try_disconnect().map_err(|e| e.to_string()),
        }
    }

    /// Queues a DISCONNECT.
    pub async fn disconnect(&self) -> Result<(), String> {
        match self {
            MqttClient::V311(client) => client.disconnect().await.map_err(|e| e.to_string()),
            MqttClient::V5(client) => client.disconnect().await.map_err(|e| e.to_string()),
        }
    }
}

impl IncomingPublish {
    /// The topic it was published to.
    pub fn topic(&self) -> String {
        match self {
            IncomingPublish::V311(p) => p.topic.clone(),
            IncomingPublish::V5(p) => String::from_utf8_lossy(&p.topic).into_owned(),
        }
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        match self {
            IncomingPublish::V311(p) => &p.payload,
            IncomingPublish::V5(p) => &p.payload,
        }
    }

    /// Whether it needs an acknowledgement (QoS 1 or 2).
    pub fn needs_ack(&self) -> bool {
        match self {
            IncomingPublish::V311(p) => p.qos != rumqttc::QoS::AtMostOnce,
            IncomingPublish::V5(p) => p.qos != rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        }
    }

    /// MQTT 5 user properties (none with 3.1.1).
    pub fn user_properties(&self) -> Vec<(String, Vec<u8>)> {
        match self {
            IncomingPublish::V311(_) => Vec::new(),
            IncomingPublish::V5(p) => p
                .properties
                .iter()
                .flat_map(|props| props.user_properties.iter())
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect(),
        }
    }
}

/// The positions of the `false`s (refused filters) in a SUBACK's answers.
fn refused(granted: impl Iterator<Item = bool>) -> Vec<usize> {
    granted
        .enumerate()
        .filter(|(_, ok)| !ok)
        .map(|(i, _)| i)
        .collect()
}

/// Converts a QoS number (validated 0..=2) for rumqttc.
fn qos(level: u8) -> rumqttc::QoS {
    match level {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos_v5(level: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}
