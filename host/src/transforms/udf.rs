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
    /// Memory cap per instance, in MiB (default 64).
    #[serde(default = "memory_mib")]
    pub memory_mib: u64,
    /// Wall-clock deadline per batch, in milliseconds (default 1000).
    #[serde(default = "deadline_ms")]
    pub deadline_ms: u64,
    /// Records per UDF call (default 64).
    #[serde(default = "batch_size")]
    pub batch_size: usize,
}

fn memory_mib() -> u64 {
    64
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
        if self.memory_mib == 0 || self.memory_mib > 4096 {
            problems.push((
                "memory_mib",
                format!("must be 1..=4096 MiB, not {}", self.memory_mib),
            ));
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

/// The running `udf` transform: one instance, fed batches on a blocking thread. When the module
/// is referenced by name, new versions from the registry are instantiated in the background and
/// swapped in between batches.
pub struct UdfTransform {
    worker: crate::udf_runtime::UdfWorker,
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
            memory_bytes: config.memory_mib.saturating_mul(1 << 20),
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
        let worker = module
            .instantiate(init.clone(), limits.clone())
            .map_err(|e| e.to_string())?;
        Ok(UdfTransform {
            worker,
            batch_size: config.batch_size,
            updates,
            init,
            limits,
        })
    }

    /// Processes records until the input closes: takes what is queued (up to a batch), runs it
    /// through the UDF off the async threads, forwards outputs and dead-letters failures.
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<crate::flow::Record>,
        outputs: crate::flow::Outputs,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        Box::pin(async move {
            let UdfTransform {
                mut worker,
                batch_size,
                mut updates,
                init,
                limits,
            } = self;
            let mut version = worker.module().version();
            let mut upgrade: Option<tokio::task::JoinHandle<_>> = None;
            loop {
                // Version changes first: under full load the input is always ready, and a swap
                // must not wait for a lull.
                let first = tokio::select! {
                    biased;
                    Some(module) = next_version(&mut updates) => {
                        // Instantiate and init the new version off the async threads while the
                        // old one keeps serving.
                        let (init, limits) = (init.clone(), limits.clone());
                        upgrade = Some(tokio::task::spawn_blocking(move || module.instantiate(init, limits)));
                        continue;
                    }
                    started = wait_for(&mut upgrade) => {
                        // Between batches: the new version takes over from the next record on.
                        if let Some(next) = adopt(started, &version, &ctx) {
                            worker = next;
                            version = worker.module().version();
                        }
                        continue;
                    }
                    record = input.recv() => match record {
                        Some(record) => record,
                        None => break,
                    },
                };
                let records = take_batch(first, &mut input, batch_size);
                let (messages, acks): (Vec<_>, Vec<_>) =
                    records.into_iter().map(|r| (r.msg, r.ack)).unzip();
                let Some((back, messages, results)) = process(worker, messages, &ctx).await else {
                    return;
                };
                worker = back;
                deliver(messages, acks, results, &version, &outputs, &ctx).await;
            }
        })
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

/// Runs one batch through the UDF on the blocking pool; gives the worker back with the inputs
/// and one result per input. `None` when the thread itself failed (a host bug: the worker never
/// panics on guest faults), which stops this transform.
async fn process(
    mut worker: UdfWorker,
    messages: Vec<crate::message::Message>,
    ctx: &crate::flow::ComponentContext,
) -> Option<(UdfWorker, Vec<crate::message::Message>, Vec<RecordResult>)> {
    let metrics = ctx.metrics.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let results = worker.process(&messages);
        metrics.batch_latency.observe(started.elapsed());
        (worker, messages, results)
    })
    .await;
    match joined {
        Ok(done) => Some(done),
        Err(err) => {
            tracing::error!(component = %ctx.component, "UDF thread failed: {err}; stopping this transform");
            ctx.metrics
                .report_error(&format!("UDF thread failed: {err}"));
            None
        }
    }
}

/// Sends each input's outputs on (tagged with the UDF version, each holding a fork of the
/// input's acknowledgement), and dead-letters each input whose call failed, with the reason.
async fn deliver(
    messages: Vec<crate::message::Message>,
    acks: Vec<crate::flow::Ack>,
    results: Vec<RecordResult>,
    version: &str,
    outputs: &crate::flow::Outputs,
    ctx: &crate::flow::ComponentContext,
) {
    use crate::flow::Record;
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
    started: Result<Result<UdfWorker, crate::udf_runtime::LoadError>, tokio::task::JoinError>,
    version: &str,
    ctx: &crate::flow::ComponentContext,
) -> Option<UdfWorker> {
    match started {
        Ok(Ok(next)) => {
            tracing::info!(component = %ctx.component, from = %version, to = %next.module().version(), "udf swapped between batches");
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
