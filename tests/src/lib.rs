//! The test harness, one crate for everything that runs Sluice against real servers: the
//! end-to-end tests (`tests/e2e`), the host's integration tests (a dev-dependency) and the
//! embedded demo (`sluice-demo`).
//!
//! - [`data`]: the ECG reference data and the built UDFs;
//! - [`process`]: a `sluice run` child process, its log and readiness, bounded stops;
//! - [`mqtt`]: an in-process broker (rumqttd), Mosquitto, a publisher and a collector;
//! - [`kafka`]: an in-process cluster (librdkafka's mock), tansu, a producer and a topic reader;
//! - [`elasticsearch`]: the `_bulk` stand-in;
//! - [`serve`]: `sluice serve` and its admin API;
//! - [`faults`]: restartable brokers, steady publishers and the missing/duplicate checker.
//!
//! Nothing here sleeps to synchronise: readiness is a port that accepts connections, a file
//! that appeared, or a message that arrived; timeouts only bound how long a failure takes.
//! Functions named `try_*` (and the embedded servers) return errors, for the demo; the others
//! fail the test with a message, for tests.

pub mod data;
pub mod elasticsearch;
pub mod faults;
pub mod kafka;
pub mod mqtt;
pub mod netns;
pub mod process;
pub mod serve;
pub mod tls;
pub mod wasm;

pub use data::{demo_payloads, ecg_messages, expected_scores, spaced};
pub use mqtt::{publish_all, Collector, Mosquitto};
pub use process::{log_lines, terminate, wait_exit, wait_for_line, SluiceRun};

use std::path::{Path, PathBuf};
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

/// A shipped UDF, e.g. `target/udfs/anomaly.wasm` (fails the test if it was not built).
pub fn udf(name: &str) -> PathBuf {
    built(udf_dir(), name)
}

/// A test fixture UDF, e.g. `target/test-udfs/hostile.wasm` (fails the test if it was not built).
pub fn fixture(name: &str) -> PathBuf {
    built(fixture_dir(), name)
}

fn built(dir: PathBuf, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test` (or `cargo xtask build`) first",
        path.display()
    );
    path
}

/// Replaces `dir/name` with `bytes` atomically (write a temporary file, then rename), as a
/// deployment tool would.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write temporary file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
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

/// A free TCP port on 127.0.0.1 (for servers that cannot report the port they bound).
pub fn try_free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `port`, for at most `limit`.
pub fn try_wait_for_port(port: u16, limit: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    try_free_port().expect("a free port")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16) {
    if let Err(err) = try_wait_for_port(port, WAIT) {
        panic!("nothing listens on port {port}: {err}");
    }
}
