//! The Wasm UDF runtime: the only module in Sluice that touches wasmtime.
//!
//! - [`UdfRuntime`]: one wasmtime `Engine` (epoch interruption on; fuel metering optional), one
//!   `Linker` with WASI p2 and the `sluice:udf` host interface, an epoch ticker thread, and a
//!   cache of compiled components keyed by the sha256 of the module's bytes (in memory, and on
//!   disk as precompiled artifacts).
//! - [`UdfModule`]: a compiled, type-checked component (`InstancePre`), cheap to clone.
//! - [`UdfWorker`]: one `Store` + instance, reused across batches; traps, timeouts and memory-cap
//!   hits discard the store and isolate the poison record (see `worker.rs`).
//!
//! Every sandbox limit lives in `sandbox.rs`; wasmtime's types and errors stay in this module.

mod artifact_cache;
mod bindings;
mod guest_output;
mod sandbox;
mod worker;

pub use sandbox::UdfLimits;
pub use worker::{RecordResult, UdfWorker};

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

/// How to build a [`UdfRuntime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where precompiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Meter fuel (needed for [`UdfLimits::fuel`]; costs some speed for every UDF).
    pub fuel_metering: bool,
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
    #[error("UDF module `{name}` does not fit the sluice:udf@0.1.0 world: {reason}")]
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
    cache: ArtifactCache,
    compiled: Mutex<HashMap<String, Component>>,
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
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(options.fuel_metering);
        let engine = Engine::new(&config).map_err(|e| RuntimeError(format!("{e:#}")))?;

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
            cache,
            compiled: Mutex::new(HashMap::new()),
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
        let pre = bindings::UdfPre::new(pre).map_err(|e| LoadError::World {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        Ok(UdfModule {
            inner: Arc::new(ModuleInner {
                name: name.into(),
                sha256,
                pre,
                shared: self.shared.clone(),
            }),
        })
    }

    fn component(&self, name: &str, sha256: &str, wasm: &[u8]) -> Result<Component, LoadError> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(component) = compiled.get(sha256) {
            return Ok(component.clone());
        }
        let component = self
            .cache
            .compile(&self.shared.engine, name, sha256, wasm)?;
        compiled.insert(sha256.to_string(), component.clone());
        Ok(component)
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
    pre: bindings::UdfPre<HostState>,
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
