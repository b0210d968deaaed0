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
    /// Client id (default: `sluice-<pipeline>-<component>`).
    pub client_id: Option<String>,
    /// Start a clean session (`true`, default) or resume a persistent one (`false`).
    #[serde(default = "yes")]
    pub clean_session: bool,
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

fn yes() -> bool {
    true
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
    /// rumqttc options for this connection. Reads TLS files; never connects.
    pub fn client_options(&self, default_client_id: &str) -> Result<rumqttc::MqttOptions, String> {
        if self.protocol == MqttProtocol::V5 {
            return Err("MQTT 5 is accepted by the config but not yet by the runtime; use protocol = \"3.1.1\"".into());
        }
        let address = self.address()?;
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id.to_string());
        let mut options = rumqttc::MqttOptions::new(client_id, address.host, address.port);
        options.set_keep_alive(std::time::Duration::from_secs(self.keep_alive_secs));
        options.set_clean_session(self.clean_session);
        options.set_max_packet_size(16 << 20, 16 << 20);
        if let Some(user) = &self.username {
            options.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if address.tls {
            let tls = self.tls.clone().unwrap_or_default();
            let read = |what: &str, path: &Option<String>| -> Result<Option<Vec<u8>>, String> {
                path.as_ref()
                    .map(|p| {
                        std::fs::read(p)
                            .map_err(|e| format!("broker.tls.{what}: cannot read {p}: {e}"))
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
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth,
                },
            ));
        }
        Ok(options)
    }
}

/// Converts a QoS number (validated 0..=2) for rumqttc.
pub fn qos(level: u8) -> rumqttc::QoS {
    match level {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
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
            clean_session: true,
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
