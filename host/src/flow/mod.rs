//! The vocabulary components are written in: a [`Record`] with its share of the source's
//! [`Ack`], a component's [`Outputs`] (fan-out, counting, backpressure), [`DeadLetters`], the
//! [`ComponentContext`] a component runs in and the [`RunContext`] it is built with, the
//! [`Probe`] that makes it observable, and [`Backoff`]. Components (`sources/`, `transforms/`,
//! `sinks/`) import this module and nothing of `topology/`, which wires and runs them.

mod ack;
pub mod dead_letter_file;
mod sink_buffer;

pub use ack::Ack;
pub use dead_letter_file::DeadLetterFile;
pub use dead_letter_file::DEFAULT_MAX_BYTES as DEFAULT_DEAD_LETTER_MAX_BYTES;
pub use sink_buffer::SinkBuffer;

use crate::message::Message;
use crate::metrics::{ComponentMetrics, Role};
use crate::udf_registry::UdfRegistry;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};

/// A running component: a future that ends when its input closes (or, for sources, at shutdown).
pub type ComponentTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Records waiting between two components.
pub const CHANNEL_CAPACITY: usize = 256;

/// Retry backoff for reconnects and redeliveries: 100 ms doubling to 10 s.
pub struct Backoff(std::time::Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(std::time::Duration::from_millis(100))
    }
}

impl Backoff {
    /// The next wait, doubling up to the cap.
    pub fn next_delay(&mut self) -> std::time::Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(std::time::Duration::from_secs(10));
        delay
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// Header naming why a record was dead-lettered.
pub const HEADER_ERROR: &str = "sluice-error";
/// Header naming the component that dead-lettered a record.
pub const HEADER_COMPONENT: &str = "sluice-component";
/// Header naming the pipeline that dead-lettered a record.
pub const HEADER_PIPELINE: &str = "sluice-pipeline";

/// A record in flight, with its share of the source's acknowledgement.
#[derive(Debug)]
pub struct Record {
    /// The message.
    pub msg: Message,
    /// Completed when the message is accepted downstream (or filtered out).
    pub ack: Ack,
}

/// Messages a tap subscriber may fall behind by before it misses some.
pub const TAP_CAPACITY: usize = 1024;

/// What can be observed of one running component: its counters and a live tap of the messages
/// leaving it (for sinks: entering it). Lives as long as the deployment, across restarts.
#[derive(Debug)]
pub struct Probe {
    /// Counters.
    pub metrics: Arc<ComponentMetrics>,
    /// Copies of the messages passing, for `sluice tap` and the dashboard. Costs nothing while
    /// nobody subscribes.
    pub tap: broadcast::Sender<Message>,
}

impl Probe {
    /// A probe around `metrics`.
    pub fn new(metrics: ComponentMetrics) -> Self {
        Probe {
            metrics: Arc::new(metrics),
            tap: broadcast::channel(TAP_CAPACITY).0,
        }
    }

    fn observe(&self, message: &Message) {
        if self.tap.receiver_count() > 0 {
            let _ = self.tap.send(message.clone());
        }
    }
}

/// The downstream inputs of one component (fan-out), counting what passes.
#[derive(Clone)]
pub struct Outputs {
    owner: Arc<Probe>,
    targets: Vec<Target>,
}

/// One downstream component: its input channel, its probe, and for a sink with a journal its
/// buffer (taken when the channel is full, so it never holds up the others).
#[derive(Clone)]
struct Target {
    input: mpsc::Sender<Record>,
    probe: Arc<Probe>,
    buffer: Option<Arc<SinkBuffer>>,
}

impl Outputs {
    /// Outputs of the component `owner` probes, with no targets yet.
    pub fn new(owner: Arc<Probe>) -> Self {
        Outputs {
            owner,
            targets: Vec::new(),
        }
    }

    /// Adds a downstream component: its input channel, its probe, and a sink's buffer if it
    /// has one (wiring only).
    pub fn add_target(
        &mut self,
        input: mpsc::Sender<Record>,
        probe: Arc<Probe>,
        buffer: Option<Arc<SinkBuffer>>,
    ) {
        self.targets.push(Target {
            input,
            probe,
            buffer,
        });
    }

    /// Sends the record to every downstream component; waits when they are full (backpressure).
    /// A closed downstream (shutdown) drops its share without acknowledging it.
    pub async fn send(&self, record: Record) {
        let metrics = &self.owner.metrics;
        if metrics.role == Role::Source {
            metrics.record_in();
        }
        metrics.record_out();
        self.owner.observe(&record.msg);
        let Some((last, rest)) = self.targets.split_last() else {
            record.ack.done(); // no consumers: validation forbids this, but never hang an ack
            return;
        };
        for target in rest {
            let fork = Record {
                msg: record.msg.clone(),
                ack: record.ack.fork(),
            };
            Self::deliver(target, fork).await;
        }
        Self::deliver(last, record).await;
    }

    async fn deliver(target: &Target, record: Record) {
        let metrics = &target.probe.metrics;
        metrics.record_in();
        if metrics.role == Role::Sink {
            target.probe.observe(&record.msg);
        }
        match &target.buffer {
            Some(buffer) => buffer.offer(&target.input, record).await,
            None => {
                let _ = target.input.send(record).await;
            }
        }
    }
}

/// Where records that cannot be processed go, with the reason in headers.
#[derive(Clone)]
pub struct DeadLetters {
    pipeline: Arc<str>,
    route: DeadLetterRoute,
}

/// A pipeline's dead-letter destination.
#[derive(Clone)]
pub enum DeadLetterRoute {
    /// The pipeline's dead-letter sink: its input and probe; the file if that sink is gone.
    Sink(mpsc::Sender<Record>, Arc<Probe>, Arc<DeadLetterFile>),
    /// A JSON-lines file (no dead-letter sink, or the dead-letter sink's own failures).
    File(Arc<DeadLetterFile>),
}

impl DeadLetters {
    /// Dead letters of `pipeline` go along `route`.
    pub fn new(pipeline: Arc<str>, route: DeadLetterRoute) -> Self {
        DeadLetters { pipeline, route }
    }

    /// Sends `record` to the dead-letter destination with the reason and origin.
    /// `from` is the component that gives up on the record (its error count goes up).
    pub async fn send(&self, mut record: Record, from: &ComponentMetrics, reason: &str) {
        let component: &str = &from.component;
        from.record_error(reason);
        tracing::warn!(pipeline = %self.pipeline, component, "dead-lettering a record: {reason}");
        record
            .msg
            .headers
            .push((HEADER_ERROR.into(), reason.as_bytes().to_vec()));
        record
            .msg
            .headers
            .push((HEADER_COMPONENT.into(), component.as_bytes().to_vec()));
        record
            .msg
            .headers
            .push((HEADER_PIPELINE.into(), self.pipeline.as_bytes().to_vec()));
        let file = match &self.route {
            DeadLetterRoute::Sink(target, probe, file) => {
                probe.metrics.record_in();
                probe.observe(&record.msg);
                match target.send(record).await {
                    Ok(()) => return,
                    Err(mpsc::error::SendError(returned)) => {
                        tracing::error!(pipeline = %self.pipeline, component, "dead-letter sink is gone");
                        record = returned;
                        file
                    }
                }
            }
            DeadLetterRoute::File(file) => file,
        };
        if let Err(err) = file.append(&record.msg) {
            // Not kept anywhere, so not acknowledged: the source's broker redelivers it (the
            // source's unacknowledged count and age show it waiting).
            let message = format!(
                "cannot write the dead-letter file {}: {err}; the record is left unacknowledged \
                 (redelivered after a restart): {reason}",
                file.path().display()
            );
            tracing::error!(pipeline = %self.pipeline, component, error = %err, "{message}");
            from.report_error(&message);
            drop(record);
            return;
        }
        record.ack.done();
    }
}

/// What running components need from the host.
#[derive(Clone)]
pub struct RunContext {
    /// The UDF modules by name (and the Wasm runtime behind them), with hot reload.
    pub udfs: Arc<UdfRegistry>,
    /// Where pipelines without a dead-letter sink keep failed records (`<pipeline>.jsonl`, see
    /// [`DeadLetterFile`]); also where a dead-letter sink's own failures go.
    pub dead_letter_dir: std::path::PathBuf,
    /// The size cap of each dead-letter file (see [`DeadLetterFile`]).
    pub dead_letter_max_bytes: u64,
    /// This host's identity (`state_dir::host_id`); default MQTT client ids include it.
    pub host_id: Arc<str>,
    /// How long a stopping pipeline (shutdown, replace, undeploy) may drain before what is still
    /// unacknowledged is abandoned to redelivery.
    pub drain_timeout: std::time::Duration,
    /// The pipelines' source journals (`STATE_DIR/journal`); `None`: no journal anywhere.
    pub journals: Option<Arc<crate::journal::JournalSet>>,
}

/// What a component task needs to know about where it runs.
#[derive(Clone)]
pub struct ComponentContext {
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The component's name.
    pub component: Arc<str>,
    /// Records it could not process go here.
    pub dead_letters: DeadLetters,
    /// Resolves (becomes true) when the host shuts down. Only sources watch it.
    pub shutdown: watch::Receiver<bool>,
    /// The component's counters.
    pub metrics: Arc<ComponentMetrics>,
    /// This host's identity (see [`RunContext::host_id`]).
    pub host_id: Arc<str>,
}

impl ComponentContext {
    /// The client id a broker client uses unless configured: `sluice-HOST-PIPELINE-COMPONENT`,
    /// the same across restarts of this host (persistent sessions resume) and different on
    /// another host (replicas never take each other's session).
    pub fn default_client_id(&self) -> String {
        format!(
            "sluice-{}-{}-{}",
            self.host_id, self.pipeline, self.component
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn record(value: &str) -> (Record, Arc<AtomicBool>) {
        let acked = Arc::new(AtomicBool::new(false));
        let flag = acked.clone();
        let record = Record {
            msg: Message::from_value(value),
            ack: Ack::new(move || flag.store(true, Ordering::SeqCst)),
        };
        (record, acked)
    }

    fn metrics(component: &str, role: Role) -> ComponentMetrics {
        ComponentMetrics::new("p".into(), component.into(), role, "console")
    }

    #[tokio::test]
    async fn a_gone_dead_letter_sink_falls_back_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeadLetterFile::new(dir.path(), "p"));
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let probe = Arc::new(Probe::new(metrics("dead", Role::Sink)));
        let route = DeadLetterRoute::Sink(tx, probe, file.clone());
        let dead_letters = DeadLetters::new("p".into(), route);
        let (record, acked) = record("bad");
        let from = metrics("score", Role::Transform);
        dead_letters.send(record, &from, "not a number").await;

        assert!(
            acked.load(Ordering::SeqCst),
            "kept in the file, so acknowledged"
        );
        let line = std::fs::read_to_string(file.path()).unwrap();
        let json: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(json["value"], "bad");
        assert_eq!(
            json["headers"][0],
            serde_json::json!({"name": HEADER_ERROR, "value": "not a number"})
        );
        assert_eq!(from.errors.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_unwritable_dead_letter_file_withholds_the_acknowledgement() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: appending fails, as on a full disk.
        let file = Arc::new(DeadLetterFile::new(dir.path(), "p"));
        std::fs::create_dir_all(file.path()).unwrap();
        let dead_letters = DeadLetters::new("p".into(), DeadLetterRoute::File(file.clone()));
        let (record, acked) = record("bad");
        let from = metrics("score", Role::Transform);
        dead_letters.send(record, &from, "not a number").await;
        assert!(
            !acked.load(Ordering::SeqCst),
            "kept nowhere, so never acknowledged"
        );
        let last = from.snapshot().last_error.unwrap().message;
        assert!(last.contains("cannot write the dead-letter file"), "{last}");
    }

    #[tokio::test]
    async fn a_live_dead_letter_sink_gets_the_record_with_its_headers() {
        let (tx, mut rx) = mpsc::channel(1);
        let probe = Arc::new(Probe::new(metrics("dead", Role::Sink)));
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeadLetterFile::new(dir.path(), "p"));
        let dead_letters =
            DeadLetters::new("p".into(), DeadLetterRoute::Sink(tx, probe, file.clone()));
        let (record, acked) = record("bad");
        dead_letters
            .send(record, &metrics("score", Role::Transform), "why")
            .await;
        let got = rx.recv().await.unwrap();
        assert_eq!(got.msg.header(HEADER_ERROR), Some(&b"why"[..]));
        assert_eq!(got.msg.header(HEADER_COMPONENT), Some(&b"score"[..]));
        assert_eq!(got.msg.header(HEADER_PIPELINE), Some(&b"p"[..]));
        assert!(
            !acked.load(Ordering::SeqCst),
            "the sink acknowledges, not the router"
        );
        got.ack.done();
        assert!(acked.load(Ordering::SeqCst));
        assert!(
            !file.path().exists(),
            "nothing in the file while the sink takes records"
        );
    }
}
