//! The `udf` transform: runs each batch through a Wasm UDF (see `udf_runtime`), and through its
//! shadow version when one runs (`shadow.rs`).

pub mod scalar;
pub mod shadow;

use crate::udf_runtime::{RecordResult, UdfWorker};
use crate::udf_shadow::compare::Judge;
use crate::udf_shadow::{Shadow, ShadowOptions};
use serde::Deserialize;
use shadow::{ShadowContext, ShadowRun};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `[transforms.NAME] type = "udf"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdfTransformConfig {
    /// A module name (resolved in the UDF directory, default `target/udfs`) or a `.wasm` path.
    pub module: String,
    /// Passed to the UDF's `init` as key/value pairs.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Memory cap per instance, in MiB. Default: by the module's language, 64 for compiled
    /// modules (Rust), 128 for JavaScript and Python (an interpreter runs inside).
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Wall-clock deadline per batch, in milliseconds (default 1000).
    #[serde(default = "deadline_ms")]
    pub deadline_ms: u64,
    /// Records per UDF call (default 64).
    #[serde(default = "batch_size")]
    pub batch_size: usize,
    /// Instances run in parallel, each on its own batch: a number (default 1) or `"auto"` (the
    /// cores available). Outputs leave in input order whatever the count.
    #[serde(default)]
    pub workers: Workers,
    /// A version `NAME@SHA8` (the UDF directory's file or its archive) to run beside the live
    /// one as its shadow: given every live batch, compared record by record, never delivered
    /// (see `sluice udf shadow`). Needs `module` to be a name.
    #[serde(default)]
    pub shadow: Option<String>,
    /// A CEL rule over the shadow's figures; when it holds, the shadow is promoted (made live).
    #[serde(default)]
    pub shadow_promote_when: Option<String>,
    /// A CEL rule over the shadow's figures; when it holds, the shadow is dropped.
    #[serde(default)]
    pub shadow_drop_when: Option<String>,
    /// Records the shadow may fall behind before it is dropped (default 10000).
    #[serde(default)]
    pub shadow_max_lag: Option<u64>,
    /// Call this scalar function of the module (its `sluice:udf/scalar` export, e.g.
    /// `"ANOMALY"`) on each record instead of `process`: what SQL's function calls compile to.
    #[serde(default)]
    pub function: Option<String>,
    /// With `function`: its arguments, CEL expressions over the record's JSON fields.
    #[serde(default)]
    pub args: Vec<String>,
    /// With `function`: the field of the record's JSON object the result is written to.
    #[serde(default)]
    pub output: Option<String>,
}

/// `workers = N` or `workers = "auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// This many instances.
    Count(usize),
    /// One per core available to this process.
    Auto,
}

impl Default for Workers {
    fn default() -> Self {
        Workers::Count(1)
    }
}

impl Workers {
    /// Largest `workers = N` accepted.
    pub const MAX: usize = 64;

    /// How many instances to run here.
    pub fn count(self) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto => std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
                .min(Self::MAX),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(i64),
            Word(String),
        }
        match Raw::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a number of workers or \"auto\""))?
        {
            Raw::Count(n) if (1..=Workers::MAX as i64).contains(&n) => {
                Ok(Workers::Count(n as usize))
            }
            Raw::Count(n) => Err(serde::de::Error::custom(format!(
                "must be 1..={}, not {n}",
                Workers::MAX
            ))),
            Raw::Word(w) if w == "auto" => Ok(Workers::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected a number of workers or \"auto\", found {w:?}"
            ))),
        }
    }
}

fn deadline_ms() -> u64 {
    1000
}

fn batch_size() -> usize {
    64
}

impl UdfTransformConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.module.trim().is_empty() {
            problems.push(("module", "name a UDF module".into()));
        }
        if let Some(mib) = self.memory_mib.filter(|mib| !(1..=4096).contains(mib)) {
            problems.push(("memory_mib", format!("must be 1..=4096 MiB, not {mib}")));
        }
        if self.deadline_ms == 0 {
            problems.push(("deadline_ms", "must be at least 1 ms".into()));
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            problems.push((
                "batch_size",
                format!("must be 1..=65536, not {}", self.batch_size),
            ));
        }
        use crate::udf_registry::ModuleRef;
        match &self.shadow {
            Some(shadow) => {
                if !matches!(ModuleRef::parse(shadow), ModuleRef::Pinned { .. }) {
                    problems.push((
                        "shadow",
                        format!("expected a version NAME@SHA8, found {shadow:?}"),
                    ));
                }
                if !matches!(ModuleRef::parse(&self.module), ModuleRef::Name(_)) {
                    problems.push((
                        "shadow",
                        "a shadow runs beside a module given by name (not NAME@SHA8 or a path)"
                            .into(),
                    ));
                }
            }
            None => {
                for (field, set) in [
                    ("shadow_promote_when", self.shadow_promote_when.is_some()),
                    ("shadow_drop_when", self.shadow_drop_when.is_some()),
                    ("shadow_max_lag", self.shadow_max_lag.is_some()),
                ] {
                    if set {
                        problems.push((field, "applies only with `shadow`".into()));
                    }
                }
            }
        }
        for (field, rule) in [
            ("shadow_promote_when", &self.shadow_promote_when),
            ("shadow_drop_when", &self.shadow_drop_when),
        ] {
            if let Some(Err(err)) = rule
                .as_deref()
                .map(|rule| crate::udf_shadow::rules::check(field, rule))
            {
                problems.push((field, err.reason));
            }
        }
        if self.shadow_max_lag == Some(0) {
            problems.push(("shadow_max_lag", "must be at least 1".into()));
        }
        match &self.function {
            Some(function) => {
                if function.trim().is_empty() {
                    problems.push(("function", "name the scalar function".into()));
                }
                if self.output.as_deref().is_none_or(str::is_empty) {
                    problems.push(("output", "name the field the result goes to".into()));
                }
                if self.shadow.is_some() {
                    problems.push((
                        "shadow",
                        "shadows run beside `process` only, not beside a scalar `function`".into(),
                    ));
                }
                for arg in &self.args {
                    if let Err(err) = cel::Program::compile(arg) {
                        problems.push((
                            "args",
                            format!("{arg:?} is not a valid CEL expression: {err}"),
                        ));
                    }
                }
            }
            None => {
                for (field, set) in [
                    ("args", !self.args.is_empty()),
                    ("output", self.output.is_some()),
                ] {
                    if set {
                        problems.push((field, "applies only with `function`".into()));
                    }
                }
            }
        }
        problems
    }

    /// The shadow options the `shadow_*` fields give.
    pub fn shadow_options(&self) -> ShadowOptions {
        ShadowOptions {
            promote_when: self.shadow_promote_when.clone(),
            drop_when: self.shadow_drop_when.clone(),
            max_lag: self
                .shadow_max_lag
                .unwrap_or(crate::udf_shadow::report::DEFAULT_MAX_LAG),
        }
    }
}

/// The header every UDF output carries: `NAME@SHA8` of the module version that produced it.
pub const HEADER_UDF: &str = "sluice-udf";

/// The running `udf` transform: `workers` instances, each fed batches on a blocking thread,
/// outputs forwarded in input order. When the module is referenced by name, new versions from
/// the registry are instantiated in the background and swapped in between batches.
pub struct UdfTransform {
    workers: Vec<UdfWorker>,
    batch_size: usize,
    /// New versions of the module (`None` when pinned or loaded from a path).
    updates: Option<crate::udf_registry::UdfSubscription>,
    init: Vec<(String, String)>,
    limits: crate::udf_runtime::UdfLimits,
    /// Where a shadow of the module would run (`None` when the module is pinned or a path).
    shadow: Option<Arc<ShadowContext>>,
    /// The scalar function called instead of `process`, if any.
    scalar: Option<Arc<scalar::ScalarCall>>,
}

impl UdfTransform {
    /// Loads (compiles or fetches from the cache) and instantiates the module; `init` runs here.
    /// `judge`: the pipeline's filter on this transform's output, which a shadow is judged by;
    /// `component`: `PIPELINE/TRANSFORM`.
    pub fn build(
        config: &UdfTransformConfig,
        context: &crate::flow::RunContext,
        judge: Judge,
        pipeline: &str,
        component: &str,
    ) -> Result<Self, String> {
        use crate::udf_registry::ModuleRef;
        let limits = crate::udf_runtime::UdfLimits {
            memory_bytes: config.memory_mib.map(|mib| mib.saturating_mul(1 << 20)),
            deadline: std::time::Duration::from_millis(config.deadline_ms),
            fuel: None,
        };
        let init: Vec<(String, String)> = config.config.clone().into_iter().collect();
        let registry = &context.udfs;
        let (module, updates) = match ModuleRef::parse(&config.module) {
            ModuleRef::Name(name) => {
                let mut updates = registry
                    .subscribe(&name, init.clone(), limits.clone())
                    .map_err(|e| {
                        format!("{e} (module {name:?} in {})", registry.dir().display())
                    })?;
                let module = updates.borrow_and_update().clone();
                (module, Some(updates))
            }
            ModuleRef::Pinned { name, sha } => (
                registry.pinned(&name, &sha).map_err(|e| e.to_string())?,
                None,
            ),
            ModuleRef::Path(path) => (
                registry
                    .runtime()
                    .load_file(&path, None)
                    .map_err(|e| e.to_string())?,
                None,
            ),
        };
        let scalar = scalar::ScalarCall::build(config)?.map(Arc::new);
        if let (Some(function), false) = (&config.function, module.has_scalar()) {
            return Err(format!(
                "module {} has no scalar functions (it does not export sluice:udf/scalar), so \
                 it cannot serve {function}: rebuild it with the current SDK and implement Udf::call",
                module.version()
            ));
        }
        let workers = instantiate_all(&module, config.workers.count(), &init, &limits)
            .map_err(|e| e.to_string())?;
        let shadow = match (ModuleRef::parse(&config.module), updates.is_some()) {
            (ModuleRef::Name(name), true) if scalar.is_none() => {
                if let Some(ModuleRef::Pinned {
                    name: shadow_name,
                    sha,
                }) = config.shadow.as_deref().map(ModuleRef::parse)
                {
                    registry
                        .shadow_version(&name, &shadow_name, &sha, config.shadow_options())
                        .map_err(|e| format!("shadow {shadow_name}@{sha}: {e}"))?;
                }
                Some(Arc::new(ShadowContext {
                    registry: registry.clone(),
                    name,
                    pipeline: pipeline.to_string(),
                    component: component.to_string(),
                    judge,
                }))
            }
            _ => None,
        };
        Ok(UdfTransform {
            workers,
            batch_size: config.batch_size,
            updates,
            init,
            limits,
            shadow,
            scalar,
        })
    }

    /// Processes records until the input closes: takes what is queued (up to a batch), runs it
    /// through an idle instance off the async threads, and forwards the outputs of the batches
    /// in the order they were taken (failures to dead letters), so several instances never
    /// reorder records.
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<crate::flow::Record>,
        outputs: crate::flow::Outputs,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        Box::pin(async move {
            let UdfTransform {
                workers,
                batch_size,
                mut updates,
                init,
                limits,
                shadow: shadow_context,
                scalar,
            } = self;
            // The shadow of the module: announced on the subscription, started in the
            // background on instances of its own, fed every live batch once it is done.
            let mut shadows = updates.as_ref().map(|u| u.shadow.clone());
            let mut shadow_start: Option<tokio::task::JoinHandle<_>> = None;
            let mut shadow_run: Option<ShadowRun> = None;
            if let Some(shadow) = shadows.as_mut().and_then(|s| s.borrow_and_update().clone()) {
                shadow_start = Some(start_shadow(shadow, workers.len(), &init, &limits));
            }
            let count = workers.len();
            let mut version = workers
                .first()
                .map(|w| w.module().version())
                .unwrap_or_default();
            // Instances come back here as soon as their batch is done, whatever its place.
            let (back, mut returned) = tokio::sync::mpsc::unbounded_channel::<UdfWorker>();
            let mut pool = Pool {
                idle: workers,
                running: Default::default(),
                back,
                batch_size,
                scalar,
            };
            let mut upgrade: Option<tokio::task::JoinHandle<_>> = None;
            let mut input_open = true;
            loop {
                if !input_open && pool.running.is_empty() {
                    break;
                }
                // Version changes first: under full load the input is always ready, and a swap
                // must not wait for a lull.
                tokio::select! {
                    biased;
                    Some(module) = next_version(&mut updates) => {
                        // Instantiate and init the new version off the async threads while the
                        // old one keeps serving.
                        let (init, limits) = (init.clone(), limits.clone());
                        upgrade = Some(tokio::task::spawn_blocking(move || {
                            instantiate_all(&module, count, &init, &limits)
                        }));
                    }
                    started = wait_for(&mut upgrade) => {
                        // Between batches: the new version takes every batch from the next on;
                        // batches already running finish on the old one.
                        if let Some(next) = adopt(started, &version, &ctx) {
                            version = next.first().map(|w| w.module().version()).unwrap_or_default();
                            pool.idle = next;
                        }
                    }
                    Some(next) = next_shadow(&mut shadows) => {
                        shadow_run = None;
                        shadow_start = next.map(|s| start_shadow(s, count, &init, &limits));
                    }
                    started = wait_for(&mut shadow_start) => {
                        shadow_run = shadow_context
                            .as_ref()
                            .and_then(|context| run_shadow(started, context));
                    }
                    Some(worker) = returned.recv() => {
                        // An instance of a replaced version is dropped when it comes back; a
                        // current one takes what is queued at once, even while an older batch
                        // still runs elsewhere.
                        if worker.module().version() == version {
                            pool.idle.push(worker);
                        }
                        input_open &= pool.start_queued(&mut input, &ctx);
                    }
                    done = oldest(&mut pool.running) => {
                        let Some(batch) = done else { return };
                        if let Some(run) = &shadow_run {
                            if !run.offer(&batch.messages, &batch.results, batch.elapsed) {
                                shadow_run = None;
                            }
                        }
                        deliver(batch, &outputs, &ctx).await;
                    }
                    record = input.recv(), if input_open && !pool.idle.is_empty() => match record {
                        Some(first) => pool.start(first, &mut input, &ctx),
                        None => input_open = false,
                    },
                }
            }
        })
    }
}

/// The instances of a `udf` transform and the batches they are working on.
struct Pool {
    /// Instances of the live version waiting for a batch.
    idle: Vec<UdfWorker>,
    /// Batches being processed, oldest first: delivered in this order.
    running: std::collections::VecDeque<Running>,
    /// Where a busy instance is sent back when its batch is done.
    back: tokio::sync::mpsc::UnboundedSender<UdfWorker>,
    batch_size: usize,
    /// The scalar function called instead of `process`, if any.
    scalar: Option<Arc<scalar::ScalarCall>>,
}

impl Pool {
    /// Starts a batch of `first` and what is queued behind it on an idle instance.
    fn start(
        &mut self,
        first: crate::flow::Record,
        input: &mut tokio::sync::mpsc::Receiver<crate::flow::Record>,
        ctx: &crate::flow::ComponentContext,
    ) {
        let records = take_batch(first, input, self.batch_size);
        if let Some(worker) = self.idle.pop() {
            self.running.push_back(process(
                worker,
                records,
                &self.back,
                self.scalar.clone(),
                ctx,
            ));
        }
    }

    /// Starts a batch of what is already queued on each idle instance; `false` once the input
    /// is closed (and empty).
    fn start_queued(
        &mut self,
        input: &mut tokio::sync::mpsc::Receiver<crate::flow::Record>,
        ctx: &crate::flow::ComponentContext,
    ) -> bool {
        use tokio::sync::mpsc::error::TryRecvError;
        while !self.idle.is_empty() {
            match input.try_recv() {
                Ok(first) => self.start(first, input, ctx),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }
}

/// `count` instances of `module`, each initialised with `init`.
fn instantiate_all(
    module: &crate::udf_runtime::UdfModule,
    count: usize,
    init: &[(String, String)],
    limits: &crate::udf_runtime::UdfLimits,
) -> Result<Vec<UdfWorker>, crate::udf_runtime::LoadError> {
    (0..count.max(1))
        .map(|_| module.instantiate(init.to_vec(), limits.clone()))
        .collect()
}

/// A shadow and its instances for one transform, or why they did not start.
type ShadowStarted = (
    Arc<Shadow>,
    Result<Vec<UdfWorker>, crate::udf_runtime::LoadError>,
);

/// Instantiates and `init`s `count` instances of a shadow off the async threads.
fn start_shadow(
    shadow: Arc<Shadow>,
    count: usize,
    init: &[(String, String)],
    limits: &crate::udf_runtime::UdfLimits,
) -> tokio::task::JoinHandle<ShadowStarted> {
    let (init, limits) = (init.to_vec(), limits.clone());
    tokio::task::spawn_blocking(move || {
        let workers = instantiate_all(&shadow.module, count, &init, &limits);
        (shadow, workers)
    })
}

/// The shadow run once its instances started; a refusal is counted on the shadow and logged.
fn run_shadow(
    started: Result<ShadowStarted, tokio::task::JoinError>,
    context: &Arc<ShadowContext>,
) -> Option<ShadowRun> {
    match started {
        Ok((shadow, Ok(workers))) if !shadow.has_ended() => {
            Some(ShadowRun::start(shadow, workers, context.clone()))
        }
        Ok((_, Ok(_))) => None,
        Ok((shadow, Err(err))) => {
            tracing::error!(component = %context.component, shadow = %shadow.version(), "shadow refused here: {err}");
            shadow.stats.refused(&context.component, &err.to_string());
            None
        }
        Err(err) => {
            tracing::error!(component = %context.component, "shadow failed to start: {err}");
            None
        }
    }
}

/// The next shadow announced (`None`: the shadow ended); pending forever when there are none
/// to come.
async fn next_shadow(
    shadows: &mut Option<tokio::sync::watch::Receiver<Option<Arc<Shadow>>>>,
) -> Option<Option<Arc<Shadow>>> {
    let Some(receiver) = shadows else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        *shadows = None;
        return std::future::pending().await;
    }
    Some(receiver.borrow_and_update().clone())
}

/// A batch on its way through an instance.
type Running = tokio::task::JoinHandle<Batch>;

/// A processed batch: the inputs with their acknowledgements, one result each, and the version
/// that made them.
struct Batch {
    messages: Vec<crate::message::Message>,
    acks: Vec<crate::flow::Ack>,
    results: Vec<RecordResult>,
    version: String,
    /// How long the instance took.
    elapsed: std::time::Duration,
}

/// The oldest running batch once it is done; pending forever when none runs; `None` when its
/// thread failed (a host bug: the worker never panics on guest faults), which stops this
/// transform.
async fn oldest(running: &mut std::collections::VecDeque<Running>) -> Option<Batch> {
    let Some(front) = running.front_mut() else {
        return std::future::pending().await;
    };
    let joined = front.await;
    running.pop_front();
    match joined {
        Ok(done) => Some(done),
        Err(err) => {
            tracing::error!(error = %err, "UDF thread failed; stopping this transform");
            None
        }
    }
}

/// `first` and whatever else is queued already, up to `batch_size` records.
fn take_batch(
    first: crate::flow::Record,
    input: &mut tokio::sync::mpsc::Receiver<crate::flow::Record>,
    batch_size: usize,
) -> Vec<crate::flow::Record> {
    let mut records = vec![first];
    while records.len() < batch_size {
        match input.try_recv() {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
    }
    records
}

/// Starts one batch through `worker` on the blocking pool: the worker goes back on `back` as
/// soon as it is done, and the task gives the batch with one result per input.
fn process(
    mut worker: UdfWorker,
    records: Vec<crate::flow::Record>,
    back: &tokio::sync::mpsc::UnboundedSender<UdfWorker>,
    scalar: Option<Arc<scalar::ScalarCall>>,
    ctx: &crate::flow::ComponentContext,
) -> Running {
    let back = back.clone();
    let metrics = ctx.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let (messages, acks): (Vec<_>, Vec<_>) =
            records.into_iter().map(|r| (r.msg, r.ack)).unzip();
        let started = std::time::Instant::now();
        let results = match &scalar {
            Some(call) => call.run(&mut worker, &messages),
            None => worker.process(&messages),
        };
        let elapsed = started.elapsed();
        metrics.batch_latency.observe(elapsed);
        let version = worker.module().version();
        // The transform may have stopped; then the instance is simply dropped.
        let _ = back.send(worker);
        Batch {
            messages,
            acks,
            results,
            version,
            elapsed,
        }
    })
}

/// Sends each input's outputs on (tagged with the UDF version, each holding a fork of the
/// input's acknowledgement), and dead-letters each input whose call failed, with the reason.
async fn deliver(
    batch: Batch,
    outputs: &crate::flow::Outputs,
    ctx: &crate::flow::ComponentContext,
) {
    use crate::flow::Record;
    let Batch {
        messages,
        acks,
        results,
        version,
        ..
    } = batch;
    let version = version.as_str();
    for ((message, ack), result) in messages.into_iter().zip(acks).zip(results) {
        match result {
            Ok(produced) => {
                for mut out in produced {
                    out.headers.retain(|(k, _)| k != HEADER_UDF);
                    out.headers
                        .push((HEADER_UDF.into(), version.as_bytes().to_vec()));
                    outputs
                        .send(Record {
                            msg: out,
                            ack: ack.fork(),
                        })
                        .await;
                }
                ack.done();
            }
            Err(err) => {
                ctx.metrics.udf_failure(err.kind());
                let record = Record { msg: message, ack };
                ctx.dead_letters
                    .send(record, &ctx.metrics, &format!("udf {version}: {err}"))
                    .await;
            }
        }
    }
}

/// The worker of a new version that finished starting in the background, if it started;
/// a refusal is logged and reported, and `version` keeps running.
fn adopt(
    started: Result<Result<Vec<UdfWorker>, crate::udf_runtime::LoadError>, tokio::task::JoinError>,
    version: &str,
    ctx: &crate::flow::ComponentContext,
) -> Option<Vec<UdfWorker>> {
    match started {
        Ok(Ok(next)) => {
            let to = next
                .first()
                .map(|w| w.module().version())
                .unwrap_or_default();
            tracing::info!(component = %ctx.component, from = %version, %to, workers = next.len(), "udf swapped between batches");
            Some(next)
        }
        Ok(Err(err)) => {
            tracing::error!(component = %ctx.component, "new UDF version refused here, {version} keeps running: {err}");
            ctx.metrics.report_error(&format!(
                "new UDF version refused here, {version} keeps running: {err}"
            ));
            None
        }
        Err(err) => {
            tracing::error!(component = %ctx.component, "new UDF version failed to start: {err}");
            None
        }
    }
}

/// The outcome of the background start of a new version; pending forever when there is none.
/// Takes the task once it finished.
async fn wait_for<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    let Some(handle) = task.as_mut() else {
        return std::future::pending().await;
    };
    let outcome = handle.await;
    *task = None;
    outcome
}

/// The next version published for the module; pending forever when there are none to come.
async fn next_version(
    updates: &mut Option<crate::udf_registry::UdfSubscription>,
) -> Option<crate::udf_runtime::UdfModule> {
    let Some(receiver) = updates else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        *updates = None;
        return std::future::pending().await;
    }
    Some(receiver.borrow_and_update().clone())
}

#[cfg(test)]
mod tests {
    use super::{UdfTransformConfig, Workers};

    fn parse(workers: &str) -> Result<UdfTransformConfig, String> {
        toml::from_str(&format!("module = \"m\"\nworkers = {workers}\n")).map_err(|e| e.to_string())
    }

    #[test]
    fn workers_is_a_count_or_auto() {
        assert_eq!(parse("3").map(|c| c.workers), Ok(Workers::Count(3)));
        assert_eq!(parse("\"auto\"").map(|c| c.workers), Ok(Workers::Auto));
        assert!(Workers::Auto.count() >= 1);
        let default: UdfTransformConfig = toml::from_str("module = \"m\"").expect("parses");
        assert_eq!(default.workers, Workers::Count(1));
        for bad in ["0", "65", "-1", "\"many\"", "1.5"] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.contains("must be 1..=64") || err.contains("expected a number of workers"),
                "{bad}: {err}"
            );
        }
    }
}
