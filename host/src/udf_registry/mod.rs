//! `UdfRegistry`: the UDF modules a host runs, by name, and their hot reload.
//!
//! A module's identity is its name plus the sha256 of its bytes (`NAME@SHA8` for short). The
//! registry holds the live version of every name a pipeline uses and publishes new versions to
//! the `udf` transforms through a `watch` channel; each transform swaps between batches.
//!
//! A new version (from a changed file in the UDF directory, or [`UdfRegistry::deploy`]) is
//! compiled and checked against the world, then instantiated and `init`ed with the config of
//! every transform that uses the name, all before anyone sees it. Anything failing refuses the
//! version: the old one keeps running, and the refusal is logged and kept for status. Every
//! accepted version is archived as `<udf_dir>/.versions/NAME@SHA8.wasm`, which is what
//! `module = "NAME@SHA8"` pins to and what [`UdfRegistry::rollback`] goes back to.
//!
//! `names.rs`: how modules are named and where a version is found; `watch_dir.rs`: the UDF
//! directory watch; this file: the live registry (subscriptions, trial `init`, swaps, history).

use crate::state_dir::write_atomically;
use crate::udf_runtime::{LoadError, UdfLimits, UdfModule, UdfRuntime};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

mod names;
mod watch_dir;

use names::{archived_file, VERSIONS_DIR};
pub use names::{find_version, ModuleRef};
pub use watch_dir::DirectoryWatch;

/// What status shows about one module name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdfStatus {
    /// The module name.
    pub name: String,
    /// `NAME@SHA8` of the live version.
    pub version: String,
    /// What built the live version: `compiled`, `python` or `javascript`.
    pub language: &'static str,
    /// Earlier versions, newest first (what rollback goes back to).
    pub previous: Vec<String>,
    /// The last refused version and why, if any.
    pub last_refusal: Option<String>,
}

/// A transform's `init` arguments, kept to try new versions before they go live.
#[derive(Clone)]
struct Subscriber {
    config: Vec<(String, String)>,
    limits: UdfLimits,
    /// Alive while the subscriber's [`UdfSubscription`] is: a stopped pipeline's config no
    /// longer decides whether a new version is accepted.
    alive: std::sync::Weak<()>,
}

impl Subscriber {
    fn same_arguments(&self, other: &Subscriber) -> bool {
        self.config == other.config && self.limits == other.limits
    }
}

/// A transform's hold on a module name: the live version and every version to come (it derefs
/// to the `watch::Receiver`). While it exists, new versions are tried with its `init` arguments.
pub struct UdfSubscription {
    receiver: watch::Receiver<UdfModule>,
    _alive: Arc<()>,
}

impl std::ops::Deref for UdfSubscription {
    type Target = watch::Receiver<UdfModule>;
    fn deref(&self) -> &Self::Target {
        &self.receiver
    }
}

impl std::ops::DerefMut for UdfSubscription {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.receiver
    }
}

struct Entry {
    live: watch::Sender<UdfModule>,
    previous: Vec<UdfModule>,
    subscribers: Vec<Subscriber>,
    last_refusal: Option<String>,
}

/// Counters of version changes, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdfSwapCounts {
    /// Versions that went live after the first (hot reloads, uploads, rollbacks).
    pub swaps: u64,
    /// Versions refused (did not compile, wrong world, `init` failed).
    pub refusals: u64,
}

/// The modules of one host, by name.
pub struct UdfRegistry {
    runtime: Arc<UdfRuntime>,
    dir: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
    /// Serialises changes of live versions (and subscriptions) so two versions of one name
    /// never race; see [`UdfRegistry::change`].
    deploying: Mutex<()>,
    /// Versions that went live after the first (reloads, uploads, rollbacks).
    swaps: AtomicU64,
    /// Versions refused.
    refusals: AtomicU64,
}

/// A change of live versions in progress (see [`UdfRegistry::change`]).
pub struct UdfChange<'a> {
    registry: &'a UdfRegistry,
    _exclusive: std::sync::MutexGuard<'a, ()>,
}

impl UdfChange<'_> {
    /// [`UdfRegistry::deploy`], within this change.
    pub fn deploy(&self, name: &str, wasm: &[u8]) -> Result<Option<String>, RegistryError> {
        self.registry.deploy_exclusive(name, wasm)
    }

    /// [`UdfRegistry::rollback`], within this change.
    pub fn rollback(&self, name: &str) -> Result<String, RegistryError> {
        self.registry.rollback_exclusive(name)
    }
}

/// Why a version was refused or a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The module could not be loaded, does not fit the world, or failed `init`.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A pinned version is neither the current file nor archived.
    #[error(
        "UDF version {name}@{sha} not found (looked at {dir}/{name}.wasm and {dir}/.versions/)"
    )]
    NoSuchVersion {
        /// The module name.
        name: String,
        /// The requested hash prefix.
        sha: String,
        /// The UDF directory.
        dir: String,
    },
    /// Nothing to roll back to.
    #[error("{0}")]
    Rollback(String),
    /// No UDF of that name is in use.
    #[error("no UDF named `{0}` is in use")]
    Unknown(String),
}

impl UdfRegistry {
    /// A registry resolving names in `dir`.
    pub fn new(runtime: Arc<UdfRuntime>, dir: PathBuf) -> Arc<Self> {
        Arc::new(UdfRegistry {
            runtime,
            dir,
            entries: Mutex::new(HashMap::new()),
            deploying: Mutex::new(()),
            swaps: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        })
    }

    /// The UDF directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Wasm runtime.
    pub fn runtime(&self) -> &Arc<UdfRuntime> {
        &self.runtime
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live version of `name` (loaded from `<dir>/<name>.wasm` on first use) and its future
    /// versions. `config` and `limits` are how the caller will `init` it: new versions are tried
    /// with them before they go live.
    pub fn subscribe(
        &self,
        name: &str,
        config: Vec<(String, String)>,
        limits: UdfLimits,
    ) -> Result<UdfSubscription, RegistryError> {
        // A first use compiles before taking the lock (the load under it is then a memory
        // hit), so a slow module never holds up other changes; a file that cannot be read or
        // compiled here is reported below, under the lock, as before.
        if self.lock().get(name).is_none() {
            if let Ok(bytes) = std::fs::read(self.dir.join(format!("{name}.wasm"))) {
                let _ = self.runtime.load(name, &bytes);
            }
        }
        let _deploying = self.deploying.lock().unwrap_or_else(|p| p.into_inner());
        let alive = Arc::new(());
        let subscriber = Subscriber {
            config,
            limits,
            alive: Arc::downgrade(&alive),
        };
        if let Some(entry) = self.lock().get_mut(name) {
            entry.subscribers.retain(|s| s.alive.strong_count() > 0);
            entry.subscribers.push(subscriber);
            return Ok(UdfSubscription {
                receiver: entry.live.subscribe(),
                _alive: alive,
            });
        }
        let path = self.dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read { path, source })?;
        let module = self.runtime.load(name, &bytes)?;
        self.archive(&module, &bytes);
        let previous = self.load_history(name, &module);
        let (live, receiver) = watch::channel(module);
        self.lock().insert(
            name.to_string(),
            Entry {
                live,
                previous,
                subscribers: vec![subscriber],
                last_refusal: None,
            },
        );
        Ok(UdfSubscription {
            receiver,
            _alive: alive,
        })
    }

    /// Exactly version `name@sha` (a prefix of the sha256): the current file if it matches,
    /// else the archived copy.
    pub fn pinned(&self, name: &str, sha: &str) -> Result<UdfModule, RegistryError> {
        let (_, bytes) = find_version(&self.dir, name, sha)?;
        Ok(self.runtime.load(name, &bytes)?)
    }

    /// Reads `<dir>/<name>.wasm` again; deploys it if its bytes changed. Returns the new version.
    pub fn reload(&self, name: &str) -> Result<Option<String>, RegistryError> {
        // Read under the change lock: a file read before a concurrent change saved its own file
        // would put an older version back.
        let change = self.change();
        let path = self.dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read { path, source })?;
        change.deploy(name, &bytes)
    }

    /// Makes `wasm` the live version of `name` if it compiles, fits the world and `init`s with
    /// every user's config; otherwise refuses it and keeps the old one. `Ok(None)`: these bytes
    /// are already live, or nobody uses the name (it is archived for later either way).
    pub fn deploy(&self, name: &str, wasm: &[u8]) -> Result<Option<String>, RegistryError> {
        self.change().deploy(name, wasm)
    }

    /// Puts the previous version of `name` live again.
    pub fn rollback(&self, name: &str) -> Result<String, RegistryError> {
        self.change().rollback(name)
    }

    /// Compiles `wasm` ahead of a change (outside its lock), so the change itself finds it
    /// compiled; an error is the one the change would give.
    pub fn prepare(&self, name: &str, wasm: &[u8]) -> Result<(), RegistryError> {
        self.runtime.load(name, wasm)?;
        Ok(())
    }

    /// Starts a change of live versions: exclusive with every other change and with the
    /// directory watcher's reloads until dropped. A caller that also writes `<dir>/<name>.wasm`
    /// (the control plane saving what it deployed) holds it across the write, so the watcher
    /// never reads the older file after the newer version went live and puts the older back.
    pub fn change(&self) -> UdfChange<'_> {
        UdfChange {
            registry: self,
            _exclusive: self.deploying.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    fn deploy_exclusive(&self, name: &str, wasm: &[u8]) -> Result<Option<String>, RegistryError> {
        let candidate = match self.try_candidate(name, wasm) {
            Ok(candidate) => candidate,
            Err(err) => {
                let reason = format!("{err}");
                tracing::error!(
                    udf = name,
                    "new version refused, the old one keeps running: {reason}"
                );
                if let Some(entry) = self.lock().get_mut(name) {
                    entry.last_refusal = Some(reason);
                }
                self.refusals.fetch_add(1, Ordering::Relaxed);
                return Err(err);
            }
        };
        let Some(module) = candidate else {
            return Ok(None);
        };
        self.archive(&module, wasm);
        let version = module.version();
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            return Ok(None);
        };
        let old = entry.live.send_replace(module);
        tracing::info!(udf = name, from = %old.version(), to = %version, "udf version live");
        self.swaps.fetch_add(1, Ordering::Relaxed);
        entry.previous.insert(0, old);
        entry.previous.truncate(MAX_PREVIOUS);
        self.save_history(name, &entry.previous);
        Ok(Some(version))
    }

    /// Loads and tries `wasm`; `None` when it is already live.
    fn try_candidate(&self, name: &str, wasm: &[u8]) -> Result<Option<UdfModule>, RegistryError> {
        let module = self.runtime.load(name, wasm)?;
        let subscribers = match self.lock().get(name) {
            Some(entry) if entry.live.borrow().sha256() == module.sha256() => return Ok(None),
            Some(entry) => entry.subscribers.clone(),
            None => Vec::new(),
        };
        // Each distinct set of `init` arguments of a running transform, once.
        let mut distinct: Vec<Subscriber> = Vec::new();
        for subscriber in subscribers {
            if subscriber.alive.strong_count() > 0
                && !distinct.iter().any(|d| d.same_arguments(&subscriber))
            {
                distinct.push(subscriber);
            }
        }
        for subscriber in distinct {
            // Instantiate and init exactly as the transform will; dropped right after.
            module.instantiate(subscriber.config, subscriber.limits)?;
        }
        Ok(Some(module))
    }

    fn rollback_exclusive(&self, name: &str) -> Result<String, RegistryError> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        if entry.previous.is_empty() {
            return Err(RegistryError::Rollback(format!(
                "UDF `{name}` has no previous version"
            )));
        }
        let back = entry.previous.remove(0);
        self.save_history(name, &entry.previous);
        let version = back.version();
        let replaced = entry.live.send_replace(back);
        tracing::info!(udf = name, from = %replaced.version(), to = %version, "udf rolled back");
        self.swaps.fetch_add(1, Ordering::Relaxed);
        Ok(version)
    }

    /// Every module in use, sorted by name.
    pub fn status(&self) -> Vec<UdfStatus> {
        let entries = self.lock();
        let mut status: Vec<UdfStatus> = entries
            .iter()
            .map(|(name, entry)| UdfStatus {
                name: name.clone(),
                version: entry.live.borrow().version(),
                language: entry.live.borrow().language().name(),
                previous: entry.previous.iter().map(UdfModule::version).collect(),
                last_refusal: entry.last_refusal.clone(),
            })
            .collect();
        status.sort_by(|a, b| a.name.cmp(&b.name));
        status
    }

    /// How many versions went live after the first, and how many were refused.
    pub fn swap_counts(&self) -> UdfSwapCounts {
        UdfSwapCounts {
            swaps: self.swaps.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
        }
    }

    /// The names in use.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn versions_dir(&self) -> PathBuf {
        self.dir.join(VERSIONS_DIR)
    }

    /// Where version `NAME@SHA8` is archived.
    pub fn archived_path(&self, version: &str) -> PathBuf {
        archived_file(&self.dir, version)
    }

    /// Where the rollback history of `name` is kept: previous versions, newest first.
    fn history_path(&self, name: &str) -> PathBuf {
        self.versions_dir().join(format!("{name}.history"))
    }

    /// Records the rollback history so a restarted host can still roll back.
    fn save_history(&self, name: &str, previous: &[UdfModule]) {
        let text: String = previous.iter().map(|m| m.version() + "\n").collect();
        let path = self.history_path(name);
        let written = std::fs::create_dir_all(self.versions_dir())
            .and_then(|()| write_atomically(&path, text.as_bytes(), None));
        if let Err(err) = written {
            tracing::warn!(udf = name, "cannot save {}: {err}", path.display());
        }
    }

    /// The saved rollback history of `name`, loaded from the archive (versions that no longer
    /// load, or equal the live one, are left out).
    fn load_history(&self, name: &str, live: &UdfModule) -> Vec<UdfModule> {
        let Ok(text) = std::fs::read_to_string(self.history_path(name)) else {
            return Vec::new();
        };
        text.lines()
            .filter(|version| *version != live.version())
            .filter_map(|version| {
                let bytes = std::fs::read(self.archived_path(version)).ok()?;
                self.runtime.load(name, &bytes).ok()
            })
            .take(MAX_PREVIOUS)
            .collect()
    }

    /// Keeps a copy of an accepted version for pinning and rollback across restarts.
    fn archive(&self, module: &UdfModule, wasm: &[u8]) {
        let path = self.archived_path(&module.version());
        if path.exists() {
            return;
        }
        let written = std::fs::create_dir_all(self.versions_dir())
            .and_then(|()| write_atomically(&path, wasm, None));
        if let Err(err) = written {
            tracing::warn!(
                udf = module.name(),
                "cannot archive {}: {err}",
                path.display()
            );
        }
    }
}

/// Versions kept for rollback, per name.
const MAX_PREVIOUS: usize = 5;

#[cfg(test)]
mod tests {
    use super::ModuleRef;
    use std::path::PathBuf;

    #[test]
    fn module_references() {
        assert_eq!(
            ModuleRef::parse("anomaly"),
            ModuleRef::Name("anomaly".into())
        );
        assert_eq!(
            ModuleRef::parse("anomaly@1A2b3c4d"),
            ModuleRef::Pinned {
                name: "anomaly".into(),
                sha: "1a2b3c4d".into()
            }
        );
        assert_eq!(
            ModuleRef::parse("x/y.wasm"),
            ModuleRef::Path(PathBuf::from("x/y.wasm"))
        );
        assert_eq!(ModuleRef::parse("a@b"), ModuleRef::Name("a@b".into()));
    }
}
