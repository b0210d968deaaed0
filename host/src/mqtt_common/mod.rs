//! Connection settings shared by the MQTT source and sink: broker URL, protocol version,
//! credentials, TLS, session. Parsed and checked here without touching the network; `client.rs`
//! turns them into a rumqttc client and adapts both protocol versions to one event type.

mod client;

pub use client::{
    ClientRole, IncomingPublish, MqttClient, MqttEvent, MqttEventLoop, DEFAULT_SESSION_EXPIRY_SECS,
    MAX_PACKET, SINK_WINDOW,
};

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
