//! Running pipelines: each component is a tokio task, connected by bounded channels
//! (backpressure end to end), fan-out by forking records, fan-in by sharing a channel. The
//! vocabulary the components are written in lives in `flow/`; this module wires components into
//! pipelines (`wiring`), supervises them (`supervisor`) and stops them within a deadline.
//!
//! Shutdown drains: when `shutdown` resolves, sources stop taking new input and drop their
//! outputs; each downstream task finishes what is queued and closes its own outputs in turn;
//! sources wait for the acknowledgements of what they emitted before disconnecting.

pub mod supervisor;
mod wiring;

pub use supervisor::Topology;

use crate::flow::RunContext;
use crate::metrics::HostMetrics;
use crate::pipeline::PipelineSpec;
use std::future::Future;
use std::sync::Arc;

/// The default of `--drain-timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How a stop went: records still unacknowledged when the drain deadline passed (0: clean).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Records the sources emitted and never saw acknowledged; their brokers redeliver them.
    pub abandoned: usize,
    /// Pipelines that did not finish draining in time.
    pub timed_out: usize,
}

impl Drained {
    fn add(&mut self, other: Drained) {
        self.abandoned += other.abandoned;
        self.timed_out += other.timed_out;
    }
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

/// Runs `pipelines` until `shutdown` resolves, then drains and returns. Every pipeline is
/// built before any starts; a pipeline that fails at run time restarts with backoff.
/// With `ready_file`, that file is written (`ready`) once every source of every pipeline is
/// subscribed and receiving: a readiness signal for scripts and tests that is not a log line.
pub async fn run(
    pipelines: Vec<PipelineSpec>,
    context: RunContext,
    shutdown: impl Future<Output = ()>,
    ready_file: Option<std::path::PathBuf>,
) -> Result<Drained, BuildError> {
    let host_metrics = Arc::new(HostMetrics {
        host_id: context.host_id.to_string(),
        ..HostMetrics::default()
    });
    let topology = Topology::new(context, host_metrics);
    for spec in pipelines {
        if let Err(err) = topology.deploy(spec, None).await {
            topology.shutdown().await;
            return Err(err);
        }
    }
    tracing::info!(pipelines = topology.pipelines().len(), "running");
    let announce = ready_file.map(|file| tokio::spawn(announce_ready(topology.clone(), file)));
    shutdown.await;
    if let Some(announce) = announce {
        announce.abort();
    }
    tracing::info!("shutting down: draining in-flight records");
    let drained = topology.shutdown().await;
    tracing::info!(abandoned = drained.abandoned, "stopped");
    Ok(drained)
}

/// Writes `file` once every source is ready (checked every 20 ms).
async fn announce_ready(topology: Arc<Topology>, file: std::path::PathBuf) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
    loop {
        tick.tick().await;
        let all_ready = topology
            .component_metrics()
            .iter()
            .filter(|m| m.role == crate::metrics::Role::Source)
            .all(|m| m.is_ready());
        if all_ready {
            match crate::state_dir::write_atomically(&file, b"ready\n", None) {
                Ok(()) => tracing::info!(file = %file.display(), "every source is ready"),
                Err(err) => {
                    tracing::error!(file = %file.display(), error = %err, "cannot write the ready file")
                }
            }
            return;
        }
    }
}
