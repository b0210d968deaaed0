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
use crate::udf_shadow::{Shadow, ShadowOptions, ShadowReport, ShadowState};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

mod names;
mod watch_dir;

use names::VERSIONS_DIR;
pub use names::{archived_file, find_version, ModuleRef};
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
    /// The shadow version running beside the live one, if any.
    pub shadow: Option<String>,
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
    /// The name's shadow version, when one runs (see `udf_shadow`).
    pub shadow: watch::Receiver<Option<Arc<Shadow>>>,
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
    /// The running shadow, if any.
    shadow: watch::Sender<Option<Arc<Shadow>>>,
    /// The last shadow that ended (promoted or dropped), for its report.
    ended_shadow: Option<Arc<Shadow>>,
}

impl Entry {
    fn new(live: watch::Sender<UdfModule>, previous: Vec<UdfModule>) -> Self {
        Entry {
            live,
            previous,
            subscribers: Vec::new(),
            last_refusal: None,
            shadow: watch::channel(None).0,
            ended_shadow: None,
        }
    }

    /// Ends the running shadow (if it is `version`, when given), logging the evidence.
    fn end_shadow(
        &mut self,
        name: &str,
        version: Option<&str>,
        state: ShadowState,
        reason: &str,
    ) -> Option<Arc<Shadow>> {
        let running = self.shadow.borrow().clone()?;
        if version.is_some_and(|v| v != running.version()) {
            return None;
        }
        self.shadow.send_replace(None);
        running.end(state, reason);
        let report = running.report(name, &self.live.borrow().version());
        let evidence = serde_json::to_string(&report.since_start).unwrap_or_default();
        tracing::info!(udf = name, shadow = %running.version(), ?state, %evidence, "shadow ended: {reason}");
        self.ended_shadow = Some(running.clone());
        Some(running)
    }
}

/// Called with `(name, version)` after a shadow is promoted (the control plane saves the file).
pub type PromotionHook = Box<dyn Fn(&str, &str) + Send + Sync>;

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
    /// Run after a shadow went live.
    on_promote: std::sync::OnceLock<PromotionHook>,
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

    /// Runs `wasm` as the shadow of `name` (replacing a running shadow): refused unless it
    /// compiles, fits the world and `init`s with every user's config, and differs from the live
    /// version. Returns the shadow's version.
    pub fn shadow(
        &self,
        name: &str,
        wasm: &[u8],
        options: ShadowOptions,
    ) -> Result<String, RegistryError> {
        self.registry.shadow_exclusive(name, name, wasm, options)
    }

    /// Makes the shadow of `name` live (the same swap as a hot reload) and ends it.
    pub fn promote(&self, name: &str, reason: &str) -> Result<String, RegistryError> {
        self.registry.promote_exclusive(name, None, reason)
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
    /// The name has no shadow (to promote, drop or show).
    #[error("UDF `{0}` has no shadow")]
    NoShadow(String),
    /// The shadow cannot run (e.g. it is the live version).
    #[error("{0}")]
    Shadow(String),
    /// A promotion or drop rule does not compile or give a bool.
    #[error(transparent)]
    BadRule(#[from] crate::udf_shadow::rules::RuleError),
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
            on_promote: std::sync::OnceLock::new(),
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
                shadow: entry.shadow.subscribe(),
                _alive: alive,
            });
        }
        let path = self.dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read { path, source })?;
        let module = self.runtime.load(name, &bytes)?;
        self.archive(&module, &bytes);
        let previous = self.load_history(name, &module);
        let (live, receiver) = watch::channel(module);
        let mut entry = Entry::new(live, previous);
        entry.subscribers.push(subscriber);
        let shadow = entry.shadow.subscribe();
        self.lock().insert(name.to_string(), entry);
        Ok(UdfSubscription {
            receiver,
            shadow,
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
        if self
            .lock()
            .get(name)
            .is_some_and(|entry| entry.live.borrow().sha256() == module.sha256())
        {
            return Ok(None);
        }
        self.try_with_subscribers(name, &module)?;
        Ok(Some(module))
    }

    /// Instantiates and `init`s `module` with each distinct config of the live users of `name`.
    fn try_with_subscribers(&self, name: &str, module: &UdfModule) -> Result<(), RegistryError> {
        let subscribers = match self.lock().get(name) {
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
        Ok(())
    }

    fn shadow_exclusive(
        &self,
        name: &str,
        module_name: &str,
        wasm: &[u8],
        options: ShadowOptions,
    ) -> Result<String, RegistryError> {
        let module = self.runtime.load(module_name, wasm)?;
        let version = module.version();
        {
            let entries = self.lock();
            let entry = entries
                .get(name)
                .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
            if entry.live.borrow().sha256() == module.sha256() {
                return Err(RegistryError::Shadow(format!(
                    "{version} is the live version of `{name}`: nothing to compare"
                )));
            }
            let running = entry.shadow.borrow().clone();
            if let Some(running) = running {
                if running.module.sha256() == module.sha256() && running.options == options {
                    return Ok(version);
                }
            }
        }
        let shadow = Shadow::new(module.clone(), options)?;
        self.try_with_subscribers(name, &module)?;
        self.archive(&module, wasm);
        let mut entries = self.lock();
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        entry.end_shadow(
            name,
            None,
            ShadowState::Dropped,
            &format!("replaced by {version}"),
        );
        tracing::info!(udf = name, live = %entry.live.borrow().version(), shadow = %version, "shadow started");
        entry.shadow.send_replace(Some(Arc::new(shadow)));
        Ok(version)
    }

    /// Runs version `shadow_name@sha` (the current file or the archive) as the shadow of
    /// `name`, as a `udf` transform's `shadow` line asks: unless that version is live already, a
    /// shadow runs already (it stays), or that very version was the last shadow and ended (a
    /// rebuilt pipeline does not bring back what an operator dropped or promoted).
    pub fn shadow_version(
        &self,
        name: &str,
        shadow_name: &str,
        sha: &str,
        options: ShadowOptions,
    ) -> Result<Option<String>, RegistryError> {
        let change = self.change();
        let (_, bytes) = find_version(&self.dir, shadow_name, sha)?;
        let sha256 = crate::udf_runtime::sha256_hex(&bytes);
        {
            let entries = self.lock();
            let entry = entries
                .get(name)
                .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
            let running = entry.shadow.borrow().clone();
            if entry.live.borrow().sha256() == sha256
                || entry
                    .ended_shadow
                    .as_ref()
                    .is_some_and(|s| s.module.sha256() == sha256)
            {
                return Ok(None);
            }
            if let Some(running) = running {
                if running.module.sha256() != sha256 {
                    tracing::warn!(udf = name, running = %running.version(), "shadow {shadow_name}@{sha} not started: another shadow runs");
                }
                return Ok(None);
            }
        }
        let version = self.shadow_exclusive(name, shadow_name, &bytes, options)?;
        drop(change);
        Ok(Some(version))
    }

    fn promote_exclusive(
        &self,
        name: &str,
        version: Option<&str>,
        reason: &str,
    ) -> Result<String, RegistryError> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        let Some(shadow) = entry.shadow.borrow().clone() else {
            return Err(RegistryError::NoShadow(name.to_string()));
        };
        if version.is_some_and(|v| v != shadow.version()) {
            return Err(RegistryError::NoShadow(name.to_string()));
        }
        let promoted = shadow.version();
        // The evidence is logged by `end_shadow`, against the version it was compared with.
        entry.end_shadow(name, None, ShadowState::Promoted, reason);
        let old = entry.live.send_replace(shadow.module.clone());
        tracing::info!(udf = name, from = %old.version(), to = %promoted, "shadow promoted: udf version live");
        self.swaps.fetch_add(1, Ordering::Relaxed);
        entry.previous.insert(0, old);
        entry.previous.truncate(MAX_PREVIOUS);
        self.save_history(name, &entry.previous);
        drop(entries);
        if let Some(hook) = self.on_promote.get() {
            hook(name, &promoted);
        }
        Ok(promoted)
    }

    /// Promotes the shadow of `name` if it still is `version` (a rule fired).
    pub fn promote_shadow_if(&self, name: &str, version: &str, reason: &str) {
        let _change = self.change();
        if let Err(err) = self.promote_exclusive(name, Some(version), reason) {
            tracing::warn!(udf = name, shadow = version, "shadow not promoted: {err}");
        }
    }

    /// Stops the shadow of `name` if it still is `version` (a rule fired, or it fell behind).
    pub fn drop_shadow_if(&self, name: &str, version: &str, reason: &str) -> bool {
        let mut entries = self.lock();
        entries.get_mut(name).is_some_and(|entry| {
            entry
                .end_shadow(name, Some(version), ShadowState::Dropped, reason)
                .is_some()
        })
    }

    /// Stops the shadow of `name`; its final report.
    pub fn unshadow(&self, name: &str, reason: &str) -> Result<ShadowReport, RegistryError> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(name)
            .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        let ended = entry
            .end_shadow(name, None, ShadowState::Dropped, reason)
            .ok_or_else(|| RegistryError::NoShadow(name.to_string()))?;
        let live = entry.live.borrow().version();
        Ok(ended.report(name, &live))
    }

    /// The report of the shadow of `name`: the running one, else the last that ended.
    pub fn shadow_report(&self, name: &str) -> Result<ShadowReport, RegistryError> {
        let entries = self.lock();
        let entry = entries
            .get(name)
            .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        let shadow = entry
            .shadow
            .borrow()
            .clone()
            .or_else(|| entry.ended_shadow.clone())
            .ok_or_else(|| RegistryError::NoShadow(name.to_string()))?;
        let live = entry.live.borrow().version();
        Ok(shadow.report(name, &live))
    }

    /// The reports of every shadow running or ended, by name.
    pub fn shadow_reports(&self) -> Vec<ShadowReport> {
        let mut names = self.names();
        names.sort();
        names
            .iter()
            .filter_map(|name| self.shadow_report(name).ok())
            .collect()
    }

    /// Sets what runs after a promotion (once; later calls are ignored).
    pub fn on_promote(&self, hook: PromotionHook) {
        let _ = self.on_promote.set(hook);
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
                shadow: entry.shadow.borrow().as_ref().map(|s| s.version()),
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
