//! The Wasm UDF runtime: the only module in Sluice that touches wasmtime.
//!
//! - [`UdfRuntime`]: one wasmtime `Engine` (epoch interruption on; fuel metering optional), one
//!   `Linker` with WASI p2 and the `sluice:udf` host interface, an epoch ticker thread, and a
//!   cache of compiled components keyed by the sha256 of the module's bytes (in memory, and on
//!   disk as precompiled artifacts, both bounded). Compiling has a time budget and at most
//!   [`MAX_CONCURRENT_COMPILES`] run at once, each on a thread of its own, with no lock held.
//! - [`UdfModule`]: a compiled, type-checked component (`InstancePre`), cheap to clone.
//! - [`UdfWorker`]: one `Store` + instance, reused across batches; traps, timeouts and memory-cap
//!   hits discard the store and isolate the poison record (see `worker.rs`).
//!
//! Every sandbox limit lives in `sandbox.rs`; wasmtime's types and errors stay in this module.

mod artifact_cache;
mod bindings;
mod compile_process;
mod guest_output;
mod language;
mod sandbox;
mod worker;

pub use compile_process::{
    child_main as compile_child_main, CompilerProcess, SUBCOMMAND as COMPILE_SUBCOMMAND,
};
pub use language::GuestLanguage;
pub use sandbox::UdfLimits;
pub use worker::{RecordResult, ScalarResult, ScalarValue, UdfWorker};

use artifact_cache::ArtifactCache;
use sandbox::{HostState, EPOCH_TICK};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

/// How long compiling one module may take when nothing else is said.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);
/// Modules compiled at the same time; more wait for a turn (within their budget).
pub const MAX_CONCURRENT_COMPILES: usize = 2;
/// Compiled components kept in memory for reuse (those in use are kept by their users).
const MAX_COMPILED_IN_MEMORY: usize = 64;

/// How to build a [`UdfRuntime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where precompiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Meter fuel (needed for [`UdfLimits::fuel`]; costs some speed for every UDF).
    pub fuel_metering: bool,
    /// The time budget for compiling one module, waiting for a turn included
    /// (default [`DEFAULT_COMPILE_TIMEOUT`]); past it the module is refused.
    pub compile_timeout: Option<Duration>,
    /// Compile in a child process with a memory budget (killed at the time budget); `None`
    /// compiles on a thread of this process (tests, the authoring kit).
    pub compiler: Option<CompilerProcess>,
}

/// The engine settings, the same in the host and in a compiling child (a precompiled
/// component loads only into an engine configured alike).
fn engine_config(fuel_metering: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(fuel_metering);
    config
}

/// Why one record could not be processed. The worker survives all of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The guest rejected the record (`udf-error.invalid-input`).
    #[error("invalid-input: {0}")]
    InvalidInput(String),
    /// The guest failed on the record (`udf-error.failed`).
    #[error("failed: {0}")]
    Failed(String),
    /// The call ran past its wall-clock deadline.
    #[error("timeout: the UDF ran past its {deadline:?} deadline")]
    Timeout {
        /// The deadline that was exceeded.
        deadline: Duration,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("memory-limit: the UDF tried to grow its memory past the {limit_bytes}-byte cap")]
    MemoryLimit {
        /// The cap in bytes.
        limit_bytes: u64,
    },
    /// The guest used up its fuel.
    #[error("fuel-exhausted: the UDF used up its {fuel} units of fuel")]
    FuelExhausted {
        /// The fuel it was given.
        fuel: u64,
    },
    /// The guest trapped (a Rust panic, `unreachable`, out-of-bounds access...).
    #[error("trap: {reason}")]
    Trap {
        /// The trap and the guest's last stderr lines.
        reason: String,
    },
    /// The guest broke the contract (e.g. the wrong number of results).
    #[error("bad-output: {reason}")]
    BadOutput {
        /// What was wrong with the answer.
        reason: String,
    },
}

impl RecordError {
    /// The short kind name (`timeout`, `trap`, `invalid-input`...), as printed before the reason.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::InvalidInput(_) => "invalid-input",
            RecordError::Failed(_) => "failed",
            RecordError::Timeout { .. } => "timeout",
            RecordError::MemoryLimit { .. } => "memory-limit",
            RecordError::FuelExhausted { .. } => "fuel-exhausted",
            RecordError::Trap { .. } => "trap",
            RecordError::BadOutput { .. } => "bad-output",
        }
    }
}

/// Why a module could not be loaded or started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module file could not be read.
    #[error("cannot read UDF module {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("UDF module `{name}` is not a valid WebAssembly component: {reason}")]
    Compile {
        /// The module name.
        name: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// The component does not fit the `sluice:udf` world or imports what the host does not grant.
    #[error("UDF module `{name}` does not fit the sluice:udf@0.1.1 world: {reason}")]
    World {
        /// The module name.
        name: String,
        /// What does not fit.
        reason: String,
    },
    /// Instantiation or `init` failed.
    #[error("UDF `{name}` failed to start: {error}")]
    Init {
        /// The module name.
        name: String,
        /// What `init` (or instantiation) answered.
        error: RecordError,
    },
    /// The limits ask for something this runtime cannot do.
    #[error("UDF `{name}`: {reason}")]
    Limits {
        /// The module name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The runtime could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the Wasm runtime: {0}")]
pub struct RuntimeError(String);

/// One wasmtime engine and everything shared by the UDFs it runs.
pub struct UdfRuntime {
    shared: Arc<Shared>,
    cache: Arc<ArtifactCache>,
    /// Compiled components by sha256, with the order they were last used in (oldest first).
    compiled: Mutex<(
        HashMap<String, Component>,
        std::collections::VecDeque<String>,
    )>,
    compile_timeout: Duration,
    compiler: Option<CompilerProcess>,
    /// Compilations running (each on a thread of its own), at most [`MAX_CONCURRENT_COMPILES`].
    compiling: Arc<(Mutex<usize>, std::sync::Condvar)>,
}

/// What modules and workers keep alive: the engine, the linker and the epoch ticker.
struct Shared {
    engine: Engine,
    linker: Linker<HostState>,
    fuel_metering: bool,
    _ticker: EpochTicker,
}

impl UdfRuntime {
    /// Builds the engine, links WASI p2 and the host interface, and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let engine = Engine::new(&engine_config(options.fuel_metering))
            .map_err(|e| RuntimeError(format!("{e:#}")))?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError(format!("linking WASI: {e:#}")))?;
        // The guest's monotonic clock is ours: its waits end at the call's deadline (sandbox.rs).
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<
            HostState,
            sandbox::HasDeadlineClock,
        >(&mut linker, HostState::clock)
        .map_err(|e| RuntimeError(format!("linking the monotonic clock: {e:#}")))?;
        linker.allow_shadowing(false);
        bindings::Udf::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError(format!("linking the host interface: {e:#}")))?;

        let cache = ArtifactCache::new(options.cache_dir, &engine);
        let ticker = EpochTicker::start(engine.clone());
        Ok(UdfRuntime {
            shared: Arc::new(Shared {
                engine,
                linker,
                fuel_metering: options.fuel_metering,
                _ticker: ticker,
            }),
            cache: Arc::new(cache),
            compiled: Mutex::default(),
            compile_timeout: options.compile_timeout.unwrap_or(DEFAULT_COMPILE_TIMEOUT),
            compiler: options.compiler,
            compiling: Arc::default(),
        })
    }

    /// Loads a module from a file; `name` defaults to the file stem.
    pub fn load_file(&self, path: &Path, name: Option<&str>) -> Result<UdfModule, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("udf");
        self.load(name.unwrap_or(stem), &bytes)
    }

    /// Compiles (or fetches from the cache) and type-checks a component against the world.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<UdfModule, LoadError> {
        let sha256 = sha256_hex(wasm);
        let component = self.component(name, &sha256, wasm)?;
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::World {
                name: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        // `None`: a module of the plain `udf` world (no scalar functions for SQL).
        let scalar = bindings::ScalarIndices::new(&pre).ok();
        let pre = bindings::UdfPre::new(pre).map_err(|e| LoadError::World {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        Ok(UdfModule {
            inner: Arc::new(ModuleInner {
                name: name.into(),
                sha256,
                language: GuestLanguage::detect(wasm),
                pre,
                scalar,
                shared: self.shared.clone(),
            }),
        })
    }

    /// The compiled component of `wasm`: from memory, else from the disk cache or Cranelift
    /// on a thread of its own, within the compile budget and without holding any lock, so a
    /// slow module never holds up other loads. Past the budget the module is refused; its
    /// compilation finishes in the background and is thrown away, still holding its turn.
    fn component(&self, name: &str, sha256: &str, wasm: &[u8]) -> Result<Component, LoadError> {
        if let Some(component) = self.remembered(sha256) {
            return Ok(component);
        }
        let refuse = |reason: String| LoadError::Compile {
            name: name.to_string(),
            reason,
        };
        let deadline = std::time::Instant::now() + self.compile_timeout;
        let turn = CompileTurn::take(&self.compiling, deadline).ok_or_else(|| {
            refuse(format!(
                "{MAX_CONCURRENT_COMPILES} other modules were compiling for the whole {:?} compile budget; try again",
                self.compile_timeout
            ))
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, cache) = (self.shared.engine.clone(), self.cache.clone());
        let (owned_name, owned_sha, owned_wasm) =
            (name.to_string(), sha256.to_string(), wasm.to_vec());
        let (compiler, fuel) = (self.compiler.clone(), self.shared.fuel_metering);
        let budget = self.compile_timeout;
        std::thread::Builder::new()
            .name("sluice-udf-compile".into())
            .spawn(move || {
                let compile = |wasm: &[u8]| {
                    let how = Compile {
                        compiler: compiler.as_ref(),
                        fuel_metering: fuel,
                        deadline,
                        budget,
                    };
                    compile_now(&engine, &how, &owned_name, wasm)
                };
                let compiled =
                    cache.compile(&engine, &owned_name, &owned_sha, &owned_wasm, compile);
                drop(turn);
                let _ = tx.send(compiled);
            })
            .map_err(|e| refuse(format!("cannot start a compilation thread: {e}")))?;
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let component = match rx.recv_timeout(wait) {
            Ok(compiled) => compiled?,
            Err(_) => {
                tracing::warn!(udf = name, budget = ?self.compile_timeout, "UDF compilation over budget: refused");
                return Err(refuse(format!(
                    "compiling took longer than the {:?} compile budget (`sluice serve --udf-compile-timeout`)",
                    self.compile_timeout
                )));
            }
        };
        self.remember(sha256, &component);
        Ok(component)
    }

    fn remembered(&self, sha256: &str) -> Option<Component> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let (by_sha, order) = &mut *compiled;
        let component = by_sha.get(sha256)?.clone();
        order.retain(|s| s != sha256);
        order.push_back(sha256.to_string());
        Some(component)
    }

    fn remember(&self, sha256: &str, component: &Component) {
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let (by_sha, order) = &mut *compiled;
        if by_sha
            .insert(sha256.to_string(), component.clone())
            .is_none()
        {
            order.push_back(sha256.to_string());
        }
        while order.len() > MAX_COMPILED_IN_MEMORY {
            if let Some(oldest) = order.pop_front() {
                by_sha.remove(&oldest);
            }
        }
    }
}

/// How a cache miss is compiled.
struct Compile<'a> {
    /// In a child process with a memory budget, killed at `deadline`; `None`: here.
    compiler: Option<&'a CompilerProcess>,
    fuel_metering: bool,
    deadline: std::time::Instant,
    budget: Duration,
}

/// Compiles `wasm` (a cache miss) as `how` says.
fn compile_now(
    engine: &Engine,
    how: &Compile<'_>,
    name: &str,
    wasm: &[u8],
) -> Result<Component, LoadError> {
    let refuse = |reason: String| LoadError::Compile {
        name: name.to_string(),
        reason,
    };
    let Some(compiler) = how.compiler else {
        return Component::new(engine, wasm).map_err(|e| refuse(format!("{e:#}")));
    };
    let bytes = compile_process::compile(compiler, how.fuel_metering, wasm, how.deadline)
        .map_err(|failure| {
            refuse(match failure {
                compile_process::ChildFailure::Timeout => format!(
                    "compiling took longer than the {:?} compile budget (`sluice serve --udf-compile-timeout`)",
                    how.budget
                ),
                compile_process::ChildFailure::Memory => format!(
                    "compiling needed more than the {} MiB compile memory budget (`sluice serve --udf-compile-memory-mib`)",
                    compiler.memory_bytes >> 20
                ),
                compile_process::ChildFailure::Refused(reason) => reason,
            })
        })?;
    // SAFETY: the bytes come from our own executable's `__compile-udf` child, compiled with
    // the same engine settings; wasmtime still checks the header, the settings and the version.
    unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| {
        refuse(format!(
            "the compiler process's output does not load: {e:#}"
        ))
    })
}

/// One of the [`MAX_CONCURRENT_COMPILES`] turns to compile, given back when dropped.
struct CompileTurn(Arc<(Mutex<usize>, std::sync::Condvar)>);

impl CompileTurn {
    /// Waits for a turn until `deadline`; `None` if none came.
    fn take(
        gate: &Arc<(Mutex<usize>, std::sync::Condvar)>,
        deadline: std::time::Instant,
    ) -> Option<CompileTurn> {
        let (running, freed) = &**gate;
        let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
        while *running >= MAX_CONCURRENT_COMPILES {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            running = freed
                .wait_timeout(running, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *running += 1;
        Some(CompileTurn(gate.clone()))
    }
}

impl Drop for CompileTurn {
    fn drop(&mut self) {
        let (running, freed) = &*self.0;
        *running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// The sha256 of a module's bytes, in hex: half of a module's identity (with its name).
pub fn sha256_hex(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// A compiled UDF module, ready to instantiate. Clones share the compiled code.
#[derive(Clone)]
pub struct UdfModule {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    name: Arc<str>,
    sha256: String,
    language: GuestLanguage,
    pre: bindings::UdfPre<HostState>,
    /// Where the `scalar` export is, when the module has one.
    scalar: Option<bindings::ScalarIndices>,
    shared: Arc<Shared>,
}

impl UdfModule {
    /// The module's name (as referenced by pipelines).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The sha256 of the module's bytes, in hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// What built the module, for its default limits.
    pub fn language(&self) -> GuestLanguage {
        self.inner.language
    }

    /// Whether the module exports scalar functions (`sluice:udf/scalar`, for SQL).
    pub fn has_scalar(&self) -> bool {
        self.inner.scalar.is_some()
    }

    /// `NAME@SHA8`: the version tag of this exact module.
    pub fn version(&self) -> String {
        format!("{}@{}", self.inner.name, &self.inner.sha256[..8])
    }

    /// Instantiates the module in a fresh sandbox and calls `init` with `config`.
    pub fn instantiate(
        &self,
        config: Vec<(String, String)>,
        limits: UdfLimits,
    ) -> Result<UdfWorker, LoadError> {
        if limits.fuel.is_some() && !self.inner.shared.fuel_metering {
            return Err(LoadError::Limits {
                name: self.name().to_string(),
                reason: "a fuel limit needs a runtime built with fuel metering".into(),
            });
        }
        UdfWorker::start(self.clone(), config, limits).map_err(|error| LoadError::Init {
            name: self.name().to_string(),
            error,
        })
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the epoch thread: UDF deadlines will not fire");
        }
        EpochTicker { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled components kept in memory are bounded; the least recently used goes
    /// first (a lookup counts as a use).
    #[test]
    fn compiled_components_in_memory_are_bounded() {
        let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
        let empty =
            Component::new(&runtime.shared.engine, b"\0asm\x0d\0\x01\0").expect("component");
        for i in 0..MAX_COMPILED_IN_MEMORY {
            runtime.remember(&format!("sha-{i}"), &empty);
        }
        assert!(runtime.remembered("sha-0").is_some(), "all kept so far");
        // sha-0 was just used: sha-1 is now the least recently used.
        runtime.remember("one-more", &empty);
        assert!(
            runtime.remembered("sha-1").is_none(),
            "the least recently used went"
        );
        assert!(runtime.remembered("sha-0").is_some());
        assert!(runtime.remembered("one-more").is_some());
        let kept = runtime.compiled.lock().expect("lock").0.len();
        assert_eq!(kept, MAX_COMPILED_IN_MEMORY);
    }

    #[test]
    fn record_error_kinds_prefix_their_messages() {
        let errors = [
            RecordError::InvalidInput("x".into()),
            RecordError::Timeout {
                deadline: Duration::from_secs(1),
            },
            RecordError::MemoryLimit { limit_bytes: 1 },
            RecordError::Trap { reason: "x".into() },
            RecordError::BadOutput { reason: "x".into() },
        ];
        for err in errors {
            assert!(err.to_string().starts_with(err.kind()), "{err}");
        }
    }
}
