//! The pipelines of a running host, each under its own supervisor: deploy (new or replace),
//! undeploy, status, restart with backoff after a run-time failure, drain at shutdown.
//!
//! Pipelines are independent: each has its own stop signal and tasks, so replacing or removing
//! one never touches the others. A replacement is built first (a build error leaves the old
//! pipeline running), then the old one drains (sources stop, everything queued is delivered and
//! acknowledged), then the new one starts and takes over the sources.

use super::wiring::{build_pipeline, probes_for};
use super::{BuildError, Probe, RunContext};
use crate::metrics::{ComponentMetrics, HostMetrics};
use crate::pipeline::PipelineSpec;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Where a pipeline is in its life.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PipelineState {
    /// Every component is running.
    Running,
    /// A component failed at run time; the pipeline restarts after a backoff.
    Restarting {
        /// Why it stopped.
        reason: String,
        /// Restarts so far.
        attempt: u32,
    },
    /// Draining after undeploy, replace or shutdown.
    Stopping,
}

/// What [`Topology::deploy`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deployed {
    /// A new pipeline started.
    Created,
    /// An existing pipeline of that name was drained and replaced.
    Replaced,
    /// The same spec is already running; nothing changed.
    Unchanged,
}

/// One deployed pipeline.
struct Deployment {
    spec: Arc<PipelineSpec>,
    /// Its original text (for persistence and `GET`), when it came from TOML.
    source: Option<String>,
    stop: watch::Sender<bool>,
    /// Taken when a drain starts.
    supervisor: Option<JoinHandle<()>>,
    probes: Vec<Arc<Probe>>,
    state: Arc<Mutex<PipelineState>>,
    deployed_at: SystemTime,
}

/// A read-only view of one deployed pipeline.
#[derive(Clone)]
pub struct PipelineView {
    /// The validated spec.
    pub spec: Arc<PipelineSpec>,
    /// The TOML it was deployed from, if any.
    pub source: Option<String>,
    /// Its state.
    pub state: PipelineState,
    /// When it was deployed.
    pub deployed_at: SystemTime,
    /// The components' probes (counters and taps), in source, transform, sink order.
    pub probes: Vec<Arc<Probe>>,
}

/// The pipelines of one host.
pub struct Topology {
    context: RunContext,
    metrics: Arc<HostMetrics>,
    pipelines: Mutex<BTreeMap<String, Deployment>>,
    /// Serialises deploy and undeploy so two changes to one name never interleave.
    changing: tokio::sync::Mutex<()>,
}

impl Topology {
    /// A host with no pipelines yet.
    pub fn new(context: RunContext, metrics: Arc<HostMetrics>) -> Arc<Self> {
        Arc::new(Topology {
            context,
            metrics,
            pipelines: Mutex::new(BTreeMap::new()),
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// The host-wide counters.
    pub fn host_metrics(&self) -> &Arc<HostMetrics> {
        &self.metrics
    }

    /// The run context (UDF registry).
    pub fn context(&self) -> &RunContext {
        &self.context
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Deployment>> {
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `spec`, or replaces the running pipeline of the same name: the new one is built
    /// first (a build error changes nothing), the old one drains, then the new one starts.
    pub async fn deploy(
        &self,
        spec: PipelineSpec,
        source: Option<String>,
    ) -> Result<Deployed, BuildError> {
        let _changing = self.changing.lock().await;
        let name = spec.name.clone();
        if let Some(existing) = self.lock().get(&name) {
            if *existing.spec == spec && existing.source == source {
                return Ok(Deployed::Unchanged);
            }
        }
        let spec = Arc::new(spec);
        let probes = probes_for(&spec);
        // Build before touching the old pipeline: a bad config leaves it running.
        let (attempt_stop, attempt_stop_rx) = watch::channel(false);
        let tasks = build_pipeline(&spec, &self.context, &probes, &attempt_stop_rx)?;
        // The old version stays listed (as stopping) until the new one takes its place.
        let replaced = self.lock().get_mut(&name).map(Deployment::begin_drain);
        let outcome = match replaced {
            Some(draining) => {
                tracing::info!(pipeline = %name, "replacing: draining the old version first");
                finish_drain(&name, draining).await;
                Deployed::Replaced
            }
            None => Deployed::Created,
        };
        let (stop, stop_rx) = watch::channel(false);
        let state = Arc::new(Mutex::new(PipelineState::Running));
        let supervisor = tokio::spawn(supervise(
            spec.clone(),
            self.context.clone(),
            probes.clone(),
            state.clone(),
            self.metrics.clone(),
            (attempt_stop, tasks),
            stop_rx,
        ));
        self.lock().insert(
            name.clone(),
            Deployment {
                spec,
                source,
                stop,
                supervisor: Some(supervisor),
                probes,
                state,
                deployed_at: SystemTime::now(),
            },
        );
        self.metrics.deployments.fetch_add(1, Ordering::Relaxed);
        tracing::info!(pipeline = %name, ?outcome, "pipeline deployed");
        Ok(outcome)
    }

    /// Drains and stops the pipeline `name`; `false` when there is none.
    pub async fn undeploy(&self, name: &str) -> bool {
        let _changing = self.changing.lock().await;
        let Some(old) = self.lock().remove(name) else {
            return false;
        };
        old.drain().await;
        tracing::info!(pipeline = %name, "pipeline undeployed");
        true
    }

    /// Drains and stops every pipeline (concurrently).
    pub async fn shutdown(&self) {
        let _changing = self.changing.lock().await;
        let all: Vec<Deployment> = std::mem::take(&mut *self.lock()).into_values().collect();
        let mut draining = JoinSet::new();
        for deployment in all {
            draining.spawn(deployment.drain());
        }
        while draining.join_next().await.is_some() {}
    }

    /// The deployed pipelines, by name.
    pub fn pipelines(&self) -> Vec<PipelineView> {
        self.lock().values().map(Deployment::view).collect()
    }

    /// One deployed pipeline.
    pub fn pipeline(&self, name: &str) -> Option<PipelineView> {
        self.lock().get(name).map(Deployment::view)
    }

    /// Every component's counters, for `/metrics`.
    pub fn component_metrics(&self) -> Vec<Arc<ComponentMetrics>> {
        self.lock()
            .values()
            .flat_map(|d| d.probes.iter().map(|p| p.metrics.clone()))
            .collect()
    }
}

impl PipelineView {
    /// The probe of component `name`, if the pipeline has one.
    pub fn probe(&self, name: &str) -> Option<&Arc<Probe>> {
        self.probes.iter().find(|p| *p.metrics.component == *name)
    }
}

impl Deployment {
    fn view(&self) -> PipelineView {
        PipelineView {
            spec: self.spec.clone(),
            source: self.source.clone(),
            state: self.state.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            deployed_at: self.deployed_at,
            probes: self.probes.clone(),
        }
    }

    /// Signals stop and waits until every record in flight was delivered and acknowledged.
    async fn drain(mut self) {
        let draining = self.begin_drain();
        finish_drain(&self.spec.name, draining).await;
    }

    /// Marks it stopping and signals stop; returns the supervisor to wait for.
    fn begin_drain(&mut self) -> Option<JoinHandle<()>> {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = PipelineState::Stopping;
        let _ = self.stop.send(true);
        self.supervisor.take()
    }
}

/// Waits for a draining pipeline's supervisor to finish.
async fn finish_drain(name: &str, supervisor: Option<JoinHandle<()>>) {
    if let Some(supervisor) = supervisor {
        if let Err(err) = supervisor.await {
            tracing::error!(pipeline = %name, "pipeline supervisor failed: {err}");
        }
    }
}

/// Runs one pipeline until `stop`; when a component ends on its own (a failure: components
/// only end when their input closes at shutdown), drains the rest and restarts with backoff.
async fn supervise(
    spec: Arc<PipelineSpec>,
    context: RunContext,
    probes: Vec<Arc<Probe>>,
    state: Arc<Mutex<PipelineState>>,
    metrics: Arc<HostMetrics>,
    first: (watch::Sender<bool>, Vec<super::ComponentTask>),
    mut stop: watch::Receiver<bool>,
) {
    let set_state = |s: PipelineState| *state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    let mut backoff = super::Backoff::default();
    let mut attempt = 0u32;
    let (mut attempt_stop, first_tasks) = first;
    let mut next = Some(first_tasks);
    loop {
        let tasks = match next.take() {
            Some(tasks) => tasks,
            None => {
                let (tx, rx) = watch::channel(false);
                attempt_stop = tx;
                match build_pipeline(&spec, &context, &probes, &rx) {
                    Ok(tasks) => tasks,
                    Err(err) => {
                        attempt += 1;
                        let reason = err.to_string();
                        tracing::error!(pipeline = %spec.name, "cannot restart: {reason}");
                        set_state(PipelineState::Restarting { reason, attempt });
                        if wait_or_stop(&mut stop, backoff.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let mut running = JoinSet::new();
        for task in tasks {
            running.spawn(task);
        }
        if attempt > 0 {
            metrics.pipeline_restarts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(pipeline = %spec.name, attempt, "pipeline restarted");
        }
        set_state(PipelineState::Running);
        let failure = tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => None,
            Some(done) = running.join_next() => Some(match done {
                Ok(()) => "a component stopped unexpectedly".to_string(),
                Err(err) => format!("a component task failed: {err}"),
            }),
        };
        let _ = attempt_stop.send(true);
        while let Some(done) = running.join_next().await {
            if let Err(err) = done {
                tracing::error!(pipeline = %spec.name, "a component task failed while draining: {err}");
            }
        }
        let Some(reason) = failure else {
            return; // stopped on purpose, drained
        };
        if *stop.borrow() {
            return;
        }
        attempt += 1;
        tracing::error!(pipeline = %spec.name, attempt, "pipeline failed: {reason}; restarting after backoff");
        set_state(PipelineState::Restarting { reason, attempt });
        if wait_or_stop(&mut stop, backoff.next_delay()).await {
            return;
        }
    }
}

/// Waits `delay`; `true` when stop was signalled first.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: std::time::Duration) -> bool {
    tokio::select! {
        _ = stop.wait_for(|stopping| *stopping) => true,
        _ = tokio::time::sleep(delay) => false,
    }
}
