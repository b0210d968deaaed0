//! Running pipelines: each component is a tokio task, connected by bounded channels
//! (backpressure end to end), fan-out by forking records, fan-in by sharing a channel.
//!
//! Shutdown drains: when `shutdown` resolves, sources stop taking new input and drop their
//! outputs; each downstream task finishes what is queued and closes its own outputs in turn;
//! sources wait for the acknowledgements of what they emitted before disconnecting.

mod ack;

pub use ack::Ack;

use crate::message::Message;
use crate::pipeline::{PipelineSpec, SinkConfig, SourceConfig, TransformConfig};
use crate::udf_registry::UdfRegistry;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

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

/// The downstream inputs of one component (fan-out).
#[derive(Clone, Default)]
pub struct Outputs {
    targets: Vec<mpsc::Sender<Record>>,
}

impl Outputs {
    /// Sends the record to every downstream component; waits when they are full (backpressure).
    /// A closed downstream (shutdown) drops its share without acknowledging it.
    pub async fn send(&self, record: Record) {
        let Some((last, rest)) = self.targets.split_last() else {
            record.ack.done(); // no consumers: validation forbids this, but never hang an ack
            return;
        };
        for target in rest {
            let fork = Record {
                msg: record.msg.clone(),
                ack: record.ack.fork(),
            };
            let _ = target.send(fork).await;
        }
        let _ = last.send(record).await;
    }
}

/// Where records that cannot be processed go, with the reason in headers.
#[derive(Clone)]
pub struct DeadLetters {
    pipeline: Arc<str>,
    target: Option<mpsc::Sender<Record>>,
}

impl DeadLetters {
    /// Sends `record` to the dead-letter sink with the reason and origin; without one, logs it.
    pub async fn send(&self, mut record: Record, component: &str, reason: &str) {
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
        match &self.target {
            Some(target) => {
                if let Err(returned) = target.send(record).await {
                    tracing::error!(pipeline = %self.pipeline, component, "dead-letter sink is gone; record dropped: {reason}");
                    drop(returned);
                }
            }
            None => {
                let preview: String = String::from_utf8_lossy(&record.msg.value)
                    .chars()
                    .take(200)
                    .collect();
                tracing::error!(
                    pipeline = %self.pipeline,
                    component,
                    value = %preview,
                    "no dead-letter sink configured; record logged and dropped: {reason}"
                );
                record.ack.done();
            }
        }
    }
}

/// What running components need from the host.
#[derive(Clone)]
pub struct RunContext {
    /// The UDF modules by name (and the Wasm runtime behind them), with hot reload.
    pub udfs: Arc<UdfRegistry>,
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
}

/// Why a pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[error("pipeline `{pipeline}`, component `{component}`: {reason}")]
pub struct BuildError {
    /// The pipeline.
    pub pipeline: String,
    /// The component.
    pub component: String,
    /// Why.
    pub reason: String,
}

/// Runs `pipelines` until `shutdown` resolves, then drains and returns.
pub async fn run(
    pipelines: Vec<PipelineSpec>,
    context: RunContext,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BuildError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for spec in &pipelines {
        start_pipeline(spec, &context, &stop_rx, &mut tasks)?;
    }
    tracing::info!(pipelines = pipelines.len(), "running");
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down: draining in-flight records"),
        Some(done) = tasks.join_next() => report(done),
    }
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        report(done);
    }
    tracing::info!("stopped");
    Ok(())
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        tracing::error!("a component task failed: {err}");
    }
}

/// Wires one pipeline: a channel per transform and sink, tasks for every component.
fn start_pipeline(
    spec: &PipelineSpec,
    context: &RunContext,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) -> Result<(), BuildError> {
    let pipeline: Arc<str> = spec.name.as_str().into();
    let fail = |component: &str, reason: String| BuildError {
        pipeline: spec.name.clone(),
        component: component.to_string(),
        reason,
    };

    // One input channel per transform and sink.
    let mut senders: HashMap<String, mpsc::Sender<Record>> = HashMap::new();
    let mut receivers: HashMap<String, mpsc::Receiver<Record>> = HashMap::new();
    let consumers = spec
        .transforms
        .iter()
        .map(|t| t.name.clone())
        .chain(spec.sinks.iter().map(|s| s.name.clone()));
    for name in consumers {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        senders.insert(name.clone(), tx);
        receivers.insert(name, rx);
    }
    let dead_letters = DeadLetters {
        pipeline: pipeline.clone(),
        target: spec
            .dead_letter
            .as_ref()
            .and_then(|name| senders.get(name).cloned()),
    };
    // Outputs of each source/transform: the channels of everything naming it as an input.
    let mut outputs: HashMap<&str, Outputs> = HashMap::new();
    for (consumer, inputs) in spec
        .transforms
        .iter()
        .map(|t| (&t.name, &t.inputs))
        .chain(spec.sinks.iter().map(|s| (&s.name, &s.inputs)))
    {
        for input in inputs {
            if let Some(tx) = senders.get(consumer) {
                outputs
                    .entry(input.as_str())
                    .or_default()
                    .targets
                    .push(tx.clone());
            }
        }
    }
    drop(senders); // channels close when their producers finish
    let ctx = |component: &str| ComponentContext {
        pipeline: pipeline.clone(),
        component: component.into(),
        dead_letters: if spec.dead_letter.as_deref() == Some(component) {
            // The dead-letter sink must not feed itself, or its channel would never close.
            DeadLetters {
                pipeline: pipeline.clone(),
                target: None,
            }
        } else {
            dead_letters.clone()
        },
        shutdown: shutdown.clone(),
    };

    // Build everything first, so a pipeline either starts whole or not at all.
    let mut starts: Vec<ComponentTask> = Vec::new();
    for sink in &spec.sinks {
        let input = receivers
            .remove(&sink.name)
            .ok_or_else(|| fail(&sink.name, "no input channel".into()))?;
        let c = ctx(&sink.name);
        let task = match &sink.config {
            SinkConfig::Console(config) => {
                crate::sinks::console::ConsoleSink::new(config.clone()).run(input, c)
            }
            SinkConfig::Mqtt(config) => crate::sinks::mqtt::MqttSink::build(config.clone(), &c)
                .map_err(|reason| fail(&sink.name, reason))?
                .run(input, c),
            SinkConfig::Kafka(config) => crate::sinks::kafka::KafkaSink::build(config.clone(), &c)
                .map_err(|reason| fail(&sink.name, reason))?
                .run(input, c),
            SinkConfig::Elasticsearch(config) => {
                crate::sinks::elasticsearch::ElasticsearchSink::build(config.clone())
                    .map_err(|reason| fail(&sink.name, reason))?
                    .run(input, c)
            }
        };
        starts.push(task);
    }
    for transform in &spec.transforms {
        let input = receivers
            .remove(&transform.name)
            .ok_or_else(|| fail(&transform.name, "no input channel".into()))?;
        let out = outputs.remove(transform.name.as_str()).unwrap_or_default();
        let c = ctx(&transform.name);
        let task = match &transform.config {
            TransformConfig::Udf(config) => {
                crate::transforms::udf::UdfTransform::build(config, context)
                    .map_err(|reason| fail(&transform.name, reason))?
                    .run(input, out, c)
            }
            TransformConfig::Filter(config) => crate::transforms::filter::Filter::build(config)
                .map_err(|reason| fail(&transform.name, reason))?
                .run(input, out, c),
        };
        starts.push(task);
    }
    for source in &spec.sources {
        let out = outputs.remove(source.name.as_str()).unwrap_or_default();
        let c = ctx(&source.name);
        let task = match &source.config {
            SourceConfig::Mqtt(config) => {
                crate::sources::mqtt::MqttSource::build(config.clone(), &c)
                    .map_err(|reason| fail(&source.name, reason))?
                    .run(out, c)
            }
            SourceConfig::Kafka(config) => {
                crate::sources::kafka::KafkaSource::build(config.clone(), &c)
                    .map_err(|reason| fail(&source.name, reason))?
                    .run(out, c)
            }
        };
        starts.push(task);
    }
    drop(dead_letters);
    for task in starts {
        tasks.spawn(task);
    }
    Ok(())
}
