//! Connection settings shared by the MQTT source and sink: broker URL, protocol version,
//! credentials, TLS, session. Parsed and checked here without touching the network.

use serde::Deserialize;

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MqttProtocol {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1", alias = "3", alias = "v3")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5", alias = "v5")]
    V5,
}

/// TLS settings (rustls). `mqtts://` URLs use TLS with the system roots unless `ca_file` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificates to trust (default: the system roots).
    pub ca_file: Option<String>,
    /// PEM client certificate, for mutual TLS (with `client_key`).
    pub client_cert: Option<String>,
    /// PEM client private key, for mutual TLS (with `client_cert`).
    pub client_key: Option<String>,
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConnection {
    /// Broker URL: `mqtt://host:port` (plain) or `mqtts://host:port` (TLS).
    pub url: String,
    /// Protocol version: `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// Client id (default: `sluice-<host id>-<pipeline>-<component>`: stable across restarts of
    /// one host, distinct between hosts; see `sluice run --host-id`).
    pub client_id: Option<String>,
    /// Start a clean session (`true`) or resume a persistent one (`false`). Default: persistent
    /// for sources with QoS >= 1 (the broker keeps what was not acknowledged across a crash or
    /// restart), clean otherwise. Sinks always start clean and send again whatever the broker did
    /// not acknowledge, so `false` on a sink changes nothing.
    pub clean_session: Option<bool>,
    /// MQTT 5 only: how long the broker keeps a persistent session after a disconnect, in
    /// seconds (default 86400, one day). MQTT 3.1.1 sessions last until the broker's own
    /// `persistent_client_expiration`.
    pub session_expiry_secs: Option<u32>,
    /// Username for the broker.
    pub username: Option<String>,
    /// Password for the broker (use `${VAR}` rather than writing it down).
    pub password: Option<String>,
    /// TLS settings; implied by `mqtts://`.
    pub tls: Option<TlsConfig>,
    /// Keep-alive interval in seconds.
    #[serde(default = "keep_alive")]
    pub keep_alive_secs: u64,
}

fn keep_alive() -> u64 {
    30
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to use TLS.
    pub tls: bool,
}

impl MqttConnection {
    /// The broker address, or why the URL is not one.
    pub fn address(&self) -> Result<BrokerAddress, String> {
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| format!("{:?} is not a URL like mqtt://host:1883", self.url))?;
        let tls = match scheme {
            "mqtt" | "tcp" => self.tls.is_some(),
            "mqtts" | "ssl" => true,
            other => {
                return Err(format!(
                    "unknown scheme `{other}` (use mqtt:// or mqtts://)"
                ))
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("port {port:?} in {:?} is not a number", self.url))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("{:?} has no host", self.url));
        }
        Ok(BrokerAddress {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls,
        })
    }

    /// Problems as `(field, message)`, with fields relative to the component (`broker.url`).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(err) = self.address() {
            problems.push(("broker.url", err));
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push(("broker.password", "a password needs a username".into()));
        }
        if let Some(tls) = &self.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                problems.push((
                    "broker.tls",
                    "client_cert and client_key go together".into(),
                ));
            }
        }
        if self.keep_alive_secs < 5 {
            problems.push((
                "broker.keep_alive_secs",
                "keep-alive must be at least 5 seconds".into(),
            ));
        }
        problems
    }
}

/// Checks a QoS number.
pub fn validate_qos(qos: u8) -> Option<String> {
    (qos > 2).then(|| format!("QoS must be 0, 1 or 2, not {qos}"))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(url: &str) -> MqttConnection {
        MqttConnection {
            url: url.into(),
            protocol: MqttProtocol::V311,
            client_id: None,
            clean_session: None,
            session_expiry_secs: None,
            username: None,
            password: None,
            tls: None,
            keep_alive_secs: 30,
        }
    }

    #[test]
    fn urls() {
        let a = conn("mqtt://127.0.0.1:1884").address().unwrap();
        assert_eq!((a.host.as_str(), a.port, a.tls), ("127.0.0.1", 1884, false));
        let a = conn("mqtts://broker").address().unwrap();
        assert_eq!((a.port, a.tls), (8883, true));
        assert!(conn("http://x")
            .address()
            .unwrap_err()
            .contains("unknown scheme"));
        assert!(conn("mqtt://x:abc")
            .address()
            .unwrap_err()
            .contains("not a number"));
        assert!(conn("localhost:1883").address().is_err());
    }
}
