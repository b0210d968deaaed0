//! Guest stdout/stderr, line by line into `tracing` (tagged with the UDF name), never to the
//! host's own stdio. The last stderr lines are kept so a trap can say what the guest said
//! (a Rust panic message, for instance).

use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces.
const MAX_LINE: usize = 4096;
/// How many stderr lines a trap report quotes.
const TAIL_LINES: usize = 4;

#[derive(Clone, Copy)]
enum Which {
    Stdout,
    Stderr,
}

struct Inner {
    udf: Arc<str>,
    which: Which,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl Inner {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[..pos]);
            self.emit();
            bytes = &bytes[pos + 1..];
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() >= MAX_LINE {
            self.emit();
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial)
            .trim_end()
            .to_string();
        self.partial.clear();
        match self.which {
            Which::Stdout => tracing::info!(udf = %self.udf, stream = "stdout", "{line}"),
            Which::Stderr => {
                tracing::warn!(udf = %self.udf, stream = "stderr", "{line}");
                if self.tail.len() == TAIL_LINES {
                    self.tail.pop_front();
                }
                self.tail.push_back(line);
            }
        }
    }
}

/// One guest output stream (stdout or stderr). Clones share the same line buffer.
#[derive(Clone)]
pub(super) struct GuestOutput(Arc<Mutex<Inner>>);

impl GuestOutput {
    pub(super) fn stdout(udf: Arc<str>) -> Self {
        Self::new(udf, Which::Stdout)
    }

    pub(super) fn stderr(udf: Arc<str>) -> Self {
        Self::new(udf, Which::Stderr)
    }

    fn new(udf: Arc<str>, which: Which) -> Self {
        GuestOutput(Arc::new(Mutex::new(Inner {
            udf,
            which,
            partial: Vec::new(),
            tail: VecDeque::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned buffer only means a log line may be cut; keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Flushes a pending partial line and returns (and forgets) the last stderr lines.
    pub(super) fn take_tail(&self) -> Vec<String> {
        let mut inner = self.lock();
        if !inner.partial.is_empty() {
            inner.emit();
        }
        inner.tail.drain(..).collect()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.lock().write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.lock().write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_stderr_lines_and_flushes_partials() {
        let err = GuestOutput::stderr("t".into());
        let mut stream = err.clone();
        for i in 0..6 {
            OutputStream::write(&mut stream, Bytes::from(format!("line {i}\n"))).unwrap();
        }
        OutputStream::write(&mut stream, Bytes::from_static(b"partial")).unwrap();
        assert_eq!(err.take_tail(), ["line 3", "line 4", "line 5", "partial"]);
        assert!(err.take_tail().is_empty());
    }
}
