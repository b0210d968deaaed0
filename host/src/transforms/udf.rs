//! The `udf` transform: runs each batch through a Wasm UDF (see `udf_runtime`).

use crate::udf_runtime::{RecordResult, UdfWorker};
use serde::Deserialize;
use std::collections::BTreeMap;

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
        problems
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
}

impl UdfTransform {
    /// Loads (compiles or fetches from the cache) and instantiates the module; `init` runs here.
    pub fn build(
        config: &UdfTransformConfig,
        context: &crate::flow::RunContext,
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
        let workers = instantiate_all(&module, config.workers.count(), &init, &limits)
            .map_err(|e| e.to_string())?;
        Ok(UdfTransform {
            workers,
            batch_size: config.batch_size,
            updates,
            init,
            limits,
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
            } = self;
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
            self.running
                .push_back(process(worker, records, &self.back, ctx));
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

/// A batch on its way through an instance.
type Running = tokio::task::JoinHandle<Batch>;

/// A processed batch: the inputs with their acknowledgements, one result each, and the version
/// that made them.
struct Batch {
    messages: Vec<crate::message::Message>,
    acks: Vec<crate::flow::Ack>,
    results: Vec<RecordResult>,
    version: String,
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
    ctx: &crate::flow::ComponentContext,
) -> Running {
    let back = back.clone();
    let metrics = ctx.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let (messages, acks): (Vec<_>, Vec<_>) =
            records.into_iter().map(|r| (r.msg, r.ack)).unzip();
        let started = std::time::Instant::now();
        let results = worker.process(&messages);
        metrics.batch_latency.observe(started.elapsed());
        let version = worker.module().version();
        // The transform may have stopped; then the instance is simply dropped.
        let _ = back.send(worker);
        Batch {
            messages,
            acks,
            results,
            version,
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
