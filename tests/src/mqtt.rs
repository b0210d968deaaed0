//! MQTT for tests and the demo: an in-process MQTT 3.1.1 broker (rumqttd, the demo's), Mosquitto
//! (the Debian package, the tests'), a publisher that waits for the broker's acknowledgements,
//! and a subscriber that collects what arrives.

use crate::{free_port, try_free_port, try_wait_for_port, wait_for_port, WAIT};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
        let port = try_free_port().map_err(|e| format!("no free port for {name}: {e}"))?;
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
        try_wait_for_port(port, Duration::from_secs(10))
            .map_err(|e| format!("{name} did not start listening on port {port}: {e}"))?;
        Ok(EmbeddedMqttBroker {
            url: format!("mqtt://127.0.0.1:{port}"),
            port,
        })
    }
}

/// Publishes `payloads` to `topic` at QoS 1 as MQTT client `client_id`, and returns once the
/// broker on `127.0.0.1:port` acknowledged every one of them.
pub fn try_publish_all(
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

/// Messages arriving on some topics, as `(topic, payload)` in arrival order, collected on a
/// background thread.
pub struct Subscription(mpsc::Receiver<(String, Vec<u8>)>);

impl Subscription {
    /// Subscribes at QoS 1 as `client_id` and returns once the broker confirmed every topic
    /// (an error if it did not within `limit`).
    pub fn start(
        port: u16,
        client_id: &str,
        topics: &[&str],
        limit: Duration,
    ) -> Result<Self, String> {
        let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 100);
        for topic in topics {
            client
                .subscribe(*topic, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| format!("subscribe to {topic}: {e}"))?;
        }
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let expected_acks = topics.len();
        std::thread::spawn(move || {
            let _client = client; // keep the connection's request channel open
            let mut acks = 0;
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == expected_acks {
                            let _ = ready_tx.send(Ok(()));
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let _ = ready_tx.send(Err(format!("subscriber on port {port}: {err}")));
                        return;
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(limit)
            .map_err(|_| format!("the broker on port {port} did not confirm the subscription"))??;
        Ok(Subscription(rx))
    }

    /// The next message, if one arrives before `deadline`.
    pub fn next_before(&self, deadline: Instant) -> Option<(String, Vec<u8>)> {
        self.0
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// Up to `n` payloads, waiting until `deadline` for the rest.
    pub fn collect(&self, n: usize, deadline: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.next_before(deadline))
            .take(n)
            .map(|(_, payload)| payload)
            .collect()
    }
}

/// A Mosquitto broker (the Debian package) on a free port, stopped on drop.
pub struct Mosquitto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a broker on `port` (e.g. one reserved earlier with [`free_port`]).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, "", &[])
    }

    /// Starts a broker with a plain listener on `port` plus `extra` configuration lines (e.g. a
    /// TLS listener), and waits until `port` and every port in `extra_ports` accept connections.
    pub fn start_with(port: u16, extra: &str, extra_ports: &[u16]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        // `user root`: as root, Mosquitto would otherwise drop to a user that cannot read the
        // test's temporary files (TLS keys); as anyone else the line is ignored.
        std::fs::write(
            &conf,
            format!("user root\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlistener {port} 127.0.0.1\n{extra}"),
        )
        .expect("write mosquitto.conf");
        let binary = mosquitto_binary();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start mosquitto ({e}): `cargo xtask test` installs it")
            });
        wait_for_port(port);
        for extra_port in extra_ports {
            wait_for_port(*extra_port);
        }
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages received on some topics, as `(topic, payload)`, in arrival order.
pub struct Collector(Subscription);

impl Collector {
    /// Subscribes at QoS 1 and returns once the broker confirmed the subscription.
    pub fn subscribe(port: u16, topics: &[&str]) -> Self {
        let client_id = format!("collector-{}", free_port());
        Collector(
            Subscription::start(port, &client_id, topics, WAIT).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// The next `n` messages (fails the test if they do not arrive in time).
    pub fn take(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        self.take_or_explain(n, String::new)
    }

    /// Like [`Collector::take`]; a failure also shows `explain()` (e.g. the host's log).
    pub fn take_or_explain(
        &self,
        n: usize,
        explain: impl FnOnce() -> String,
    ) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + WAIT;
        let mut taken = Vec::with_capacity(n);
        while taken.len() < n {
            match self.0.next_before(deadline) {
                Some(message) => taken.push(message),
                None => panic!(
                    "only {} of {n} messages arrived: {:?}\n{}",
                    taken.len(),
                    taken
                        .iter()
                        .map(|(_, payload)| String::from_utf8_lossy(payload))
                        .collect::<Vec<_>>(),
                    explain()
                ),
            }
        }
        taken
    }
}

/// Publishes payloads at QoS 1 and returns when the broker acknowledged all of them.
pub fn publish_all(port: u16, topic: &str, payloads: &[Vec<u8>]) {
    let client_id = format!("publisher-{}", free_port());
    if let Err(err) = try_publish_all(port, &client_id, topic, payloads) {
        panic!("publisher: {err}");
    }
}

/// The Mosquitto executable (`cargo xtask test` installs the Debian package).
pub fn mosquitto_binary() -> &'static str {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("mosquitto")
}
