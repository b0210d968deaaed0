//! Fault-injection helpers: a Mosquitto with its default settings and `persistence true` that
//! can be stopped, killed and started again on the same port; a publisher of sequence-numbered
//! messages at a steady rate that survives broker restarts; a collector with a persistent session
//! that survives them too; and the checker that counts missing and duplicated records.

use crate::mqtt::mosquitto_binary;
use crate::{free_port, wait_for_port, WAIT};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many times the repeatable scenarios repeat (`SLUICE_FAULT_CYCLES`, default 1;
/// `cargo xtask faults` sets more).
pub fn cycles() -> usize {
    std::env::var("SLUICE_FAULT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Mosquitto's default in-flight window (`max_inflight_messages 20`): how many QoS 1 messages a
/// source can hold unacknowledged, so the most a crash can make it deliver twice.
pub const MOSQUITTO_INFLIGHT: usize = 20;

/// A Mosquitto broker with the Debian package's defaults (in-flight window, queue limits) plus
/// `persistence true`, as in production. It can be stopped and started again on its port with
/// its persistence file.
pub struct PersistentMosquitto {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    extra: String,
}

impl PersistentMosquitto {
    /// Starts a broker on a free port.
    pub fn start() -> Self {
        Self::start_with("", &[])
    }

    /// Starts a broker on a free port with `extra` configuration lines and `files` (name,
    /// content) written in its directory first; `{dir}` in `extra` is that directory (for an
    /// ACL file, say).
    pub fn start_with(extra: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write a broker file");
        }
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        let mut broker = PersistentMosquitto {
            child: None,
            port: free_port(),
            dir,
            extra,
        };
        broker.start_again();
        broker
    }

    /// The broker's directory (persistence, configuration, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let conf = self.dir.path().join("mosquitto.conf");
        // Only what a test needs on top of the defaults: where to listen, anonymous clients
        // (Mosquitto 2 refuses them on a configured listener), persistence, and `user root`
        // (as root it would otherwise drop to a user that cannot write the test's directory).
        std::fs::write(
            &conf,
            format!(
                "user root\nallow_anonymous true\npersistence true\npersistence_location {}/\nlistener {} 127.0.0.1\n{}\n",
                self.dir.path().display(),
                self.port,
                self.extra
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).expect("log");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto (`cargo xtask test` installs it)");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Stops it as an operator would (SIGTERM: it saves its persistence file) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child);
        }
    }
}

impl Drop for PersistentMosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The payload of message `i`: `seq-000042`.
pub fn seq_payload(i: usize) -> String {
    format!("seq-{i:06}")
}

/// Publishes `seq-000000`.. at a steady rate at QoS 1, one at a time, each until the broker
/// acknowledged it; across a broker restart it publishes the unacknowledged one again.
pub struct SequencePublisher {
    handle: std::thread::JoinHandle<Result<(), String>>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
}

impl SequencePublisher {
    /// Starts publishing `count` messages ([`seq_payload`]) to `topic` at `per_second`.
    pub fn start(port: u16, topic: &str, count: usize, per_second: u32) -> Self {
        Self::start_with(port, topic, count, per_second, seq_payload)
    }

    /// Like [`SequencePublisher::start`], message `i` being `payload(i)`.
    pub fn start_with(
        port: u16,
        topic: &str,
        count: usize,
        per_second: u32,
        payload: fn(usize) -> String,
    ) -> Self {
        Self::start_range(port, topic, 0..count, per_second, payload)
    }

    /// Publishes messages `range` (`payload(i)` for each `i`) at `per_second`.
    pub fn start_range(
        port: u16,
        topic: &str,
        range: std::ops::Range<usize>,
        per_second: u32,
        payload: fn(usize) -> String,
    ) -> Self {
        Self::start_range_at("127.0.0.1", port, topic, range, per_second, payload)
    }

    /// Like [`SequencePublisher::start_range`], to the broker at `host` (an address).
    pub fn start_range_at(
        host: &str,
        port: u16,
        topic: &str,
        range: std::ops::Range<usize>,
        per_second: u32,
        payload: fn(usize) -> String,
    ) -> Self {
        let (topic, host) = (topic.to_string(), host.to_string());
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let progress = sent.clone();
        let handle = std::thread::spawn(move || {
            let mut options =
                rumqttc::MqttOptions::new(format!("seq-publisher-{}", free_port()), host, port);
            options.set_keep_alive(Duration::from_secs(5));
            let (client, mut connection) = rumqttc::Client::new(options, 10);
            let start = Instant::now();
            // As long as publishing takes at the rate asked, and a margin for broker restarts.
            let planned =
                Duration::from_secs_f64(range.len() as f64 / f64::from(per_second.max(1)));
            let give_up = start + planned + WAIT * 4;
            let mut connects = 0;
            let first = range.start;
            for i in range {
                let due =
                    start + Duration::from_secs_f64((i - first) as f64 / f64::from(per_second));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait); // pacing the publisher, not synchronising
                }
                let publish = |client: &rumqttc::Client| {
                    client
                        .publish(&topic, rumqttc::QoS::AtLeastOnce, false, payload(i))
                        .map_err(|e| format!("publish: {e}"))
                };
                publish(&client)?;
                loop {
                    if Instant::now() > give_up {
                        return Err(format!("message {i} never acknowledged"));
                    }
                    match connection.recv_timeout(Duration::from_secs(1)) {
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => break,
                        Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                            connects += 1;
                            // A reconnect starts a clean session: rumqttc dropped the pending
                            // publish, so send it again.
                            if connects > 1 {
                                publish(&client)?;
                            }
                        }
                        Ok(Ok(_)) => {}
                        // The broker is away: rumqttc reconnects at the next call.
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                        Err(_) => {}
                    }
                }
                progress.store(i + 1 - first, Ordering::Relaxed);
            }
            let _ = client.disconnect();
            Ok(())
        });
        SequencePublisher { handle, sent }
    }

    /// How many messages the broker acknowledged so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until `n` messages were acknowledged by the broker.
    pub fn wait_sent(&self, n: usize) {
        let deadline = Instant::now() + WAIT * 2;
        while self.sent() < n {
            assert!(
                Instant::now() < deadline,
                "the publisher got only {} of {n} acknowledgements",
                self.sent()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every message was acknowledged by the broker.
    pub fn finish(self) {
        match self.handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("publisher: {err}"),
            Err(_) => panic!("publisher panicked"),
        }
    }
}

/// Collects every message on a topic with a persistent session (QoS 1), across restarts of its
/// broker, until dropped.
pub struct SequenceCollector {
    seen: Arc<Mutex<Vec<String>>>,
    /// The topic of each message in `seen`, in the same order.
    topics: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// CONNACKs so far (1 after the first connection, one more per reconnect).
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl SequenceCollector {
    /// Subscribes and returns once the broker confirmed the subscription.
    pub fn subscribe(port: u16, topic: &str) -> Self {
        Self::subscribe_at("127.0.0.1", port, topic)
    }

    /// Like [`SequenceCollector::subscribe`], at the broker at `host` (an address).
    pub fn subscribe_at(host: &str, port: u16, topic: &str) -> Self {
        let host = host.to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let topics = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let topic_sink = topics.clone();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (topic, sink, stopping) = (topic.to_string(), seen.clone(), stop.clone());
        let connected = connections.clone();
        std::thread::spawn(move || {
            let mut options =
                rumqttc::MqttOptions::new(format!("seq-collector-{}", free_port()), host, port);
            options
                .set_clean_session(false)
                .set_keep_alive(Duration::from_secs(5));
            let (client, mut connection) = rumqttc::Client::new(options, 100);
            while !stopping.load(Ordering::Relaxed) {
                match connection.recv_timeout(Duration::from_millis(200)) {
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))) => {
                        connected.fetch_add(1, Ordering::Relaxed);
                        if !ack.session_present {
                            let _ = client.try_subscribe(&topic, rumqttc::QoS::AtLeastOnce);
                        }
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        // Both under the `seen` lock, so the two lists stay aligned.
                        let mut seen = sink.lock().unwrap_or_else(|p| p.into_inner());
                        seen.push(text);
                        topic_sink
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(p.topic.clone());
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)), // broker away: retry
                    Err(_) => {}
                }
            }
        });
        ready_rx
            .recv_timeout(WAIT)
            .expect("the broker confirms the collector's subscription");
        SequenceCollector {
            seen,
            topics,
            stop,
            connections,
        }
    }

    /// Every message so far as `(topic, payload)`, in arrival order.
    pub fn messages(&self) -> Vec<(String, String)> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.iter().cloned().zip(seen.iter().cloned()).collect()
    }

    /// Waits until the collector has connected `n` times (e.g. 2: it is back after its broker
    /// restarted), so what is published next finds it connected rather than queued for it.
    pub fn wait_connections(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.connections.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "the collector did not reconnect within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until all of `seq-0..count` arrived (or `WAIT` passes with nothing new) and says
    /// what is missing and duplicated.
    pub fn tally(&self, count: usize) -> Tally {
        let mut last_len = 0;
        let mut quiet_since = Instant::now();
        loop {
            let tally = Tally::of(&self.seen.lock().unwrap_or_else(|p| p.into_inner()), count);
            if tally.missing.is_empty() || quiet_since.elapsed() > WAIT {
                return tally;
            }
            if tally.received != last_len {
                last_len = tally.received;
                quiet_since = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SequenceCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What arrived of `seq-0..count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Messages received in all (duplicates included).
    pub received: usize,
    /// Sequence numbers that never arrived.
    pub missing: Vec<usize>,
    /// Arrivals beyond the first of each sequence number.
    pub duplicates: usize,
    /// Payloads that are not `seq-N` with N < count.
    pub unexpected: Vec<String>,
}

impl Tally {
    /// Counts `received` against `seq-0..count`.
    pub fn of(received: &[String], count: usize) -> Tally {
        let mut times: BTreeMap<usize, usize> = BTreeMap::new();
        let mut unexpected = Vec::new();
        for payload in received {
            match payload
                .strip_prefix("seq-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < count)
            {
                Some(n) => *times.entry(n).or_default() += 1,
                None => unexpected.push(payload.clone()),
            }
        }
        Tally {
            received: received.len(),
            missing: (0..count).filter(|n| !times.contains_key(n)).collect(),
            duplicates: times.values().map(|n| n - 1).sum(),
            unexpected,
        }
    }

    /// Fails the test unless nothing is missing, nothing unexpected arrived, and duplicates
    /// stay within `max_duplicates`.
    pub fn assert_complete(&self, what: &str, max_duplicates: usize) {
        eprintln!(
            "{what}: received {}, missing {}, duplicated {}",
            self.received,
            self.missing.len(),
            self.duplicates
        );
        assert!(
            self.missing.is_empty(),
            "{what}: {} records missing (first: {:?})",
            self.missing.len(),
            &self.missing[..self.missing.len().min(20)]
        );
        assert!(
            self.unexpected.is_empty(),
            "{what}: unexpected {:?}",
            self.unexpected
        );
        assert!(
            self.duplicates <= max_duplicates,
            "{what}: {} duplicates, more than the bound {max_duplicates}",
            self.duplicates
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_missing_and_duplicated_records() {
        let got: Vec<String> = [0, 1, 1, 3, 3, 3]
            .iter()
            .map(|i| seq_payload(*i))
            .chain(["noise".to_string()])
            .collect();
        let tally = Tally::of(&got, 5);
        assert_eq!(tally.missing, [2, 4]);
        assert_eq!(tally.duplicates, 3);
        assert_eq!(tally.unexpected, ["noise"]);
        assert_eq!(tally.received, 7);
    }
}
