//! The pipelines of a running host, each under its own supervisor: deploy (new or replace),
//! undeploy, status, restart with backoff after a run-time failure, drain at shutdown.
//!
//! Pipelines are independent: each has its own stop signal and tasks, so replacing or removing
//! one never touches the others. A replacement is built first (a build error leaves the old
//! pipeline running), then the old one drains (sources stop, everything queued is delivered and
//! acknowledged), then the new one starts and takes over the sources.

use super::wiring::{build_pipeline_blocking, probes_for};
use super::{BuildError, Drained};
use crate::flow::{Backoff, ComponentTask, Probe, RunContext};
use crate::metrics::{ComponentMetrics, HostMetrics};
use crate::pipeline::PipelineSpec;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Where a pipeline is in its life.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// One lock per pipeline name: two changes to one name never interleave, and a pipeline
    /// that is slow to drain never holds up changes to the others.
    changing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Topology {
    /// A host with no pipelines yet.
    pub fn new(context: RunContext, metrics: Arc<HostMetrics>) -> Arc<Self> {
        Arc::new(Topology {
            context,
            metrics,
            pipelines: Mutex::new(BTreeMap::new()),
            changing: Mutex::new(HashMap::new()),
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

    /// The lock that serialises changes to the pipeline `name`.
    fn name_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.changing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Starts `spec`, or replaces the running pipeline of the same name: the new one is built
    /// first (a build error changes nothing), the old one drains, then the new one starts.
    pub async fn deploy(
        &self,
        spec: PipelineSpec,
        source: Option<String>,
    ) -> Result<Deployed, BuildError> {
        let name = spec.name.clone();
        let name_lock = self.name_lock(&name);
        let _changing = name_lock.lock().await;
        if let Some(existing) = self.lock().get(&name) {
            if *existing.spec == spec && existing.source == source {
                return Ok(Deployed::Unchanged);
            }
        }
        let spec = Arc::new(spec);
        let probes = probes_for(&spec);
        // Build before touching the old pipeline: a bad config leaves it running.
        let (attempt_stop, attempt_stop_rx) = watch::channel(false);
        let tasks = build_pipeline_blocking(
            spec.clone(),
            self.context.clone(),
            probes.clone(),
            attempt_stop_rx,
        )
        .await?;
        // The old version stays listed (as stopping) until the new one takes its place.
        let replaced = self
            .lock()
            .get_mut(&name)
            .map(|old| (old.begin_drain(), old.probes.clone()));
        let outcome = match replaced {
            Some((draining, old_probes)) => {
                tracing::info!(pipeline = %name, "replacing: draining the old version first");
                finish_drain(&name, draining, &old_probes, self.context.drain_timeout).await;
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

    /// Drains and stops the pipeline `name` (within the drain deadline); `None` when there is
    /// none.
    pub async fn undeploy(&self, name: &str) -> Option<Drained> {
        let name_lock = self.name_lock(name);
        let _changing = name_lock.lock().await;
        let old = self.lock().remove(name)?;
        let drained = old.drain(self.context.drain_timeout).await;
        tracing::info!(pipeline = %name, abandoned = drained.abandoned, "pipeline undeployed");
        Some(drained)
    }

    /// Drains and stops every pipeline (concurrently, each within the drain deadline); says
    /// what was left unacknowledged.
    pub async fn shutdown(&self) -> Drained {
        let all: Vec<Deployment> = std::mem::take(&mut *self.lock()).into_values().collect();
        let mut draining = JoinSet::new();
        for deployment in all {
            draining.spawn(deployment.drain(self.context.drain_timeout));
        }
        let mut total = Drained::default();
        while let Some(done) = draining.join_next().await {
            total.add(done.unwrap_or_default());
        }
        total
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

    /// Signals stop and waits until every record in flight was delivered and acknowledged, or
    /// the deadline passed.
    async fn drain(mut self, timeout: std::time::Duration) -> Drained {
        let draining = self.begin_drain();
        finish_drain(&self.spec.name, draining, &self.probes, timeout).await
    }

    /// Marks it stopping and signals stop; returns the supervisor to wait for.
    fn begin_drain(&mut self) -> Option<JoinHandle<()>> {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = PipelineState::Stopping;
        let _ = self.stop.send(true);
        self.supervisor.take()
    }
}

/// Waits for a draining pipeline's supervisor to finish, at most `timeout`. Past it, the
/// pipeline's tasks are stopped where they are: what its sources emitted and did not see
/// acknowledged stays unacknowledged, so their brokers deliver it again (to the next version,
/// or at the next start). Says how many records that was.
async fn finish_drain(
    name: &str,
    supervisor: Option<JoinHandle<()>>,
    probes: &[Arc<Probe>],
    timeout: std::time::Duration,
) -> Drained {
    let Some(mut supervisor) = supervisor else {
        return Drained::default();
    };
    match tokio::time::timeout(timeout, &mut supervisor).await {
        Ok(Ok(())) => Drained::default(),
        Ok(Err(err)) => {
            tracing::error!(pipeline = %name, "pipeline supervisor failed: {err}");
            Drained::default()
        }
        Err(_) => {
            let abandoned = probes
                .iter()
                .filter(|p| p.metrics.role == crate::metrics::Role::Source)
                .map(|p| p.metrics.unacked.count())
                .sum();
            tracing::warn!(
                pipeline = %name,
                abandoned,
                ?timeout,
                "drain deadline passed: stopping with {abandoned} records unacknowledged; their brokers deliver them again"
            );
            supervisor.abort();
            let _ = supervisor.await;
            Drained {
                abandoned,
                timed_out: 1,
            }
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
    first: (watch::Sender<bool>, Vec<ComponentTask>),
    mut stop: watch::Receiver<bool>,
) {
    let set_state = |s: PipelineState| *state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    let mut backoff = Backoff::default();
    let mut attempt = 0u32;
    let (mut attempt_stop, first_tasks) = first;
    let mut next = Some(first_tasks);
    loop {
        let tasks = match next.take() {
            Some(tasks) => tasks,
            None => {
                let (tx, rx) = watch::channel(false);
                attempt_stop = tx;
                match build_pipeline_blocking(spec.clone(), context.clone(), probes.clone(), rx)
                    .await
                {
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
