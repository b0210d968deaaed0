//! An in-process MQTT 3.1.1 broker (rumqttd) on a free local port, and a publisher that waits for
//! the broker's acknowledgements (the demo's sensors, the end-to-end tests' input).

use std::time::Duration;

/// A running broker; it lives as long as the process.
pub struct EmbeddedMqttBroker {
    /// `mqtt://127.0.0.1:PORT`, as pipeline files spell broker URLs.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
}

impl EmbeddedMqttBroker {
    /// Starts a broker named `name` and waits until it accepts connections.
    pub fn start(name: &str) -> Result<Self, String> {
        let port = crate::free_port().map_err(|e| format!("no free port for {name}: {e}"))?;
        let config = serde_json::json!({
            "id": 0,
            "router": {
                "max_connections": 1000,
                "max_outgoing_packet_count": 200,
                "max_segment_size": 10_485_760,
                "max_segment_count": 10,
            },
            "v4": {
                "1": {
                    "name": name,
                    "listen": format!("127.0.0.1:{port}"),
                    "next_connection_delay_ms": 1,
                    "connections": {
                        "connection_timeout_ms": 60_000,
                        "max_payload_size": 1_048_576,
                        "max_inflight_count": 100,
                        "dynamic_filters": true,
                    },
                },
            },
        });
        let config: rumqttd::Config = serde_json::from_value(config)
            .map_err(|e| format!("broker configuration for {name}: {e}"))?;
        let mut broker = rumqttd::Broker::new(config);
        let thread_name = format!("mqtt-{name}");
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                if let Err(err) = broker.start() {
                    eprintln!("embedded MQTT broker stopped: {err}");
                }
            })
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        crate::wait_for_port(port, Duration::from_secs(10))
            .map_err(|e| format!("{name} did not start listening on port {port}: {e}"))?;
        Ok(EmbeddedMqttBroker {
            url: format!("mqtt://127.0.0.1:{port}"),
            port,
        })
    }
}

/// Publishes `payloads` to `topic` at QoS 1 as MQTT client `client_id`, and returns once the
/// broker on `127.0.0.1:port` acknowledged every one of them.
pub fn publish_all(
    port: u16,
    client_id: &str,
    topic: &str,
    payloads: &[impl AsRef<[u8]>],
) -> Result<(), String> {
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(16 << 20, 16 << 20);
    // Room for every publish, so that all are queued before the connection is polled.
    let (client, mut connection) = rumqttc::Client::new(options, payloads.len() + 10);
    for payload in payloads {
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.as_ref())
            .map_err(|e| format!("publish: {e}"))?;
    }
    let (mut acked, mut events) = (0, connection.iter());
    while acked < payloads.len() {
        match events.next() {
            Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => acked += 1,
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(format!("publishing to port {port}: {err}")),
            None => return Err(format!("publishing to port {port}: the connection ended")),
        }
    }
    let _ = client.disconnect();
    Ok(())
}
