//! Helpers for end-to-end tests against real servers: a Mosquitto broker on a free port, a
//! `sluice run` process whose log can be waited on, an MQTT collector, and the ECG data.
//!
//! Nothing here sleeps to synchronise: readiness is a port that accepts connections, a log line
//! that appeared, or a message that arrived; timeouts only bound how long a failure takes.

pub mod faults;
pub mod kafka;
pub mod serve;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sluice` binary (`SLUICE_BIN`, else `target/release/sluice`).
pub fn sluice_bin() -> PathBuf {
    let path = std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/sluice"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test`",
        path.display()
    );
    path
}

/// The built UDFs (`SLUICE_TEST_UDF_DIR`, else `target/udfs`).
pub fn udf_dir() -> PathBuf {
    std::env::var_os("SLUICE_TEST_UDF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/udfs"))
}

/// The test fixture UDFs (`SLUICE_TEST_FIXTURE_DIR`, else `target/test-udfs`).
pub fn fixture_dir() -> PathBuf {
    std::env::var_os("SLUICE_TEST_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-udfs"))
}

/// Replaces `dir/name` with `bytes` atomically (write a temporary file, then rename), as a
/// deployment tool would.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write temporary file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

/// The 23 reference payloads, `EVENTID,v1#...#v210`.
pub fn ecg_messages() -> Vec<String> {
    read_data("ecg_discord_test.msgs")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `EVENTID,MSE` as H2O printed it, per reference payload.
pub fn expected_scores() -> Vec<String> {
    read_data("ecg_test_expected_mse.tsv")
        .lines()
        .map(|l| l.replacen('\t', ",", 1))
        .collect()
}

fn read_data(name: &str) -> String {
    let path = root().join("tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The payload as the original demo's sensors write it: a space after every separator.
pub fn spaced(payload: &str) -> String {
    payload.replacen(',', ", ", 1).replace('#', "# ")
}

/// What the end-to-end tests publish: the 23 reference rows, the odd ones spaced as the
/// original sensors send them, and two malformed messages after row 12.
pub fn demo_payloads() -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    for (i, row) in ecg_messages().iter().enumerate() {
        payloads.push(if i % 2 == 0 { spaced(row) } else { row.clone() }.into_bytes());
        if i == 11 {
            payloads.push(b"99, 1.0# 2.0".to_vec());
            payloads.push(b"not an ecg event".to_vec());
        }
    }
    payloads
}

/// A pipeline TOML written to a temporary directory (removed on drop).
pub struct PipelineFile {
    _dir: tempfile::TempDir,
    /// The file; its stem is the pipeline's default name.
    pub path: PathBuf,
}

impl PipelineFile {
    /// Writes `toml` as `<dir>/<file_name>`.
    pub fn new(file_name: &str, toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file_name);
        std::fs::write(&path, toml).expect("write pipeline");
        PipelineFile { _dir: dir, path }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    sluice_demo::free_port().expect("a free port")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16) {
    if let Err(err) = sluice_demo::wait_for_port(port, WAIT) {
        panic!("nothing listens on port {port}: {err}");
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
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("mosquitto");
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
pub struct Collector {
    rx: mpsc::Receiver<(String, Vec<u8>)>,
}

impl Collector {
    /// Subscribes at QoS 1 and returns once the broker confirmed the subscription.
    pub fn subscribe(port: u16, topics: &[&str]) -> Self {
        let mut options =
            rumqttc::MqttOptions::new(format!("collector-{}", free_port()), "127.0.0.1", port);
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 100);
        for topic in topics {
            client
                .subscribe(*topic, rumqttc::QoS::AtLeastOnce)
                .expect("subscribe");
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
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        ready_rx
            .recv_timeout(WAIT)
            .expect("the broker confirms the subscription");
        Collector { rx }
    }

    /// The next `n` messages (fails the test if they do not arrive in time).
    pub fn take(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + WAIT;
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                self.rx
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("only {i} of {n} messages arrived"))
            })
            .collect()
    }
}

/// Publishes payloads at QoS 1 and returns when the broker acknowledged all of them.
pub fn publish_all(port: u16, topic: &str, payloads: &[Vec<u8>]) {
    let client_id = format!("publisher-{}", free_port());
    if let Err(err) = sluice_demo::mqtt::publish_all(port, &client_id, topic, payloads) {
        panic!("publisher: {err}");
    }
}

/// A running `sluice run`, with its stdout and log lines readable as they come.
pub struct SluiceRun {
    child: Child,
    stdout: mpsc::Receiver<String>,
    log: mpsc::Receiver<String>,
    /// Holds the `--ready-file`.
    ready_dir: tempfile::TempDir,
}

impl SluiceRun {
    /// Starts `sluice run FILE` with logs at info level.
    pub fn start(pipeline: &Path) -> Self {
        Self::start_with_udf_dir(pipeline, &udf_dir())
    }

    /// Starts `sluice run FILE --udf-dir DIR` with logs at info level.
    pub fn start_with_udf_dir(pipeline: &Path, udf_dir: &Path) -> Self {
        Self::start_with_args(pipeline, &[OsStr::new("--udf-dir"), udf_dir.as_os_str()])
    }

    /// Starts `sluice run FILE ARGS...` with logs at info level.
    pub fn start_with_args(pipeline: &Path, args: &[&OsStr]) -> Self {
        Self::start_files(&[pipeline], args)
    }

    /// Starts `sluice run FILES... ARGS...` with logs at info level.
    pub fn start_files(pipelines: &[&Path], args: &[&OsStr]) -> Self {
        let ready_dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(sluice_bin())
            .arg("run")
            .args(pipelines)
            .args(args)
            .arg("--ready-file")
            .arg(ready_dir.path().join("ready"))
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let log = lines(child.stderr.take().expect("stderr"));
        SluiceRun {
            child,
            stdout,
            log,
            ready_dir,
        }
    }

    /// Waits until every source of the run is subscribed and receiving (`sluice run
    /// --ready-file`), failing the test if it has not happened within [`WAIT`] or the process
    /// exited first.
    pub fn wait_ready(&mut self) {
        let file = self.ready_dir.path().join("ready");
        let deadline = Instant::now() + WAIT;
        while !file.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log: Vec<String> = self.log.try_iter().collect();
                panic!(
                    "sluice exited ({status}) before it was ready:\n{}",
                    log.join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "sluice was not ready within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        wait_for_line(&self.log, needle)
    }

    /// The next `n` stdout lines.
    pub fn stdout_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                self.stdout
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("only {i} of {n} stdout lines arrived"))
            })
            .collect()
    }

    /// Kills the process at once (SIGKILL): no drain, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to drain and exit (fails the test if it has not
    /// exited after [`WAIT`]: a hang must not hang CI).
    pub fn stop(mut self) -> ExitStatus {
        terminate(&mut self.child)
    }

    /// Sends SIGTERM, and returns its stderr lines from then on with the exit status.
    pub fn stop_with_log(mut self) -> (ExitStatus, Vec<String>) {
        let status = terminate(&mut self.child);
        let lines = self.log.try_iter().collect();
        (status, lines)
    }

    /// Sends a signal (`TERM`, `INT`...) without waiting.
    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Waits for the process to exit by itself, at most `limit` (then kills it and fails).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        wait_exit(&mut self.child, limit)
    }
}

/// Sends signal `name` to `child`.
fn signal(child: &Child, name: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -{name} {pid}");
}

impl Drop for SluiceRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `child` and waits for it to exit (fails the test, after killing it, if it
/// has not exited after [`WAIT`]: a hang must not hang CI).
pub fn terminate(child: &mut Child) -> ExitStatus {
    signal(child, "TERM");
    wait_exit(child, WAIT)
}

/// Waits for `child` to exit by itself, at most `limit` (then kills it and fails the test).
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the process did not exit within {limit:?} (killed)");
            }
        }
    }
}

/// Lines of a child's output as they come.
pub fn log_lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    lines(stream)
}

/// Waits for a line containing `needle` (panics with what was seen if it never comes).
pub fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("never saw {needle:?}; saw:\n{}", seen.join("\n")),
        }
    }
}

fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
