//! A running `sluice serve` for the admin API tests: started on a free port with a fixed token
//! and its own state directory, ready once it printed `sluice serve: ready`. Requests go over a
//! plain HTTP/1.1 socket (no client library between the test and the wire), CLI commands run
//! the real `sluice` binary against it.

use crate::{free_port, log_lines, sluice_bin, wait_for_line};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;

/// The token every test host uses.
pub const TOKEN: &str = "test-token-0123456789";

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole answer.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to sluice serve");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    if body.starts_with(b"{") {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream
        .set_read_timeout(Some(crate::WAIT))
        .expect("socket timeout");
    stream.write_all(head.as_bytes()).expect("send request");
    stream.write_all(body).expect("send body");
    // Read the head, then exactly the body its headers announce: not every server closes the
    // connection when asked to (ChromeDriver keeps it alive).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&raw, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).expect("read the answer");
        assert!(n > 0, "connection closed before the end of the headers");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => {
                find(body, b"0\r\n\r\n").is_some_and(|i| i == 0 || body[..i].ends_with(b"\r\n"))
            }
            None => false,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if chunked { dechunk(&rest) } else { rest };
    Answer { status, body }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// A running `sluice serve`.
pub struct Serve {
    child: Child,
    log: mpsc::Receiver<String>,
    /// The admin API's port.
    pub port: u16,
    /// The state directory.
    pub state_dir: PathBuf,
}

impl Serve {
    /// Starts `sluice serve` with `state_dir` and `extra` arguments; returns once it is ready.
    pub fn start(state_dir: &Path, extra: &[&str]) -> Serve {
        Self::start_with_env(state_dir, extra, &[])
    }

    /// Like [`Serve::start`], with `env` added to its environment.
    pub fn start_with_env(state_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let port = free_port();
        let mut child = Command::new(sluice_bin())
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .env("SLUICE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice serve");
        let log = log_lines(child.stderr.take().expect("stderr"));
        wait_for_line(&log, "sluice serve: ready");
        Serve {
            child,
            log,
            port,
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// A request with the right token.
    pub fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Answer {
        http(self.port, method, path, Some(TOKEN), body)
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        wait_for_line(&self.log, needle)
    }

    /// The log lines printed so far and not yet waited on (for failure messages).
    pub fn log_so_far(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Runs `sluice ARGS` as a client of this host.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(sluice_bin())
            .args(args)
            .env(
                "SLUICE_ADMIN_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .output()
            .expect("run the sluice client")
    }

    /// Deploys a new pipeline `name` through `PUT /pipelines/{name}` and checks it was created
    /// (201).
    pub fn create_pipeline(&self, name: &str, toml: &str) {
        let answer = self.call("PUT", &format!("/pipelines/{name}"), Some(toml.as_bytes()));
        assert_eq!(answer.status, 201, "{}", answer.body);
    }

    /// The status of pipeline `name` (panics if it is not deployed).
    pub fn pipeline(&self, name: &str) -> serde_json::Value {
        let answer = self.call("GET", &format!("/pipelines/{name}"), None);
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }

    /// Polls `GET /pipelines` until `check` holds (bounded by [`crate::WAIT`]).
    pub fn wait_until(&self, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
        let deadline = std::time::Instant::now() + crate::WAIT;
        loop {
            let now = self.call("GET", "/pipelines", None).json();
            if check(&now) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never became true: {what}; last: {now}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the host to drain and exit (fails the test, after killing
    /// it, if it has not exited after [`crate::WAIT`]).
    pub fn stop(mut self) -> ExitStatus {
        crate::terminate(&mut self.child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of the deployed pipelines in a `GET /pipelines` answer.
pub fn pipeline_names(list: &serde_json::Value) -> Vec<String> {
    list["pipelines"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
