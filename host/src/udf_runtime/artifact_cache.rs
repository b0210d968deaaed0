//! Compiled components on disk, keyed by the module's sha256 and the engine's compatibility hash,
//! so a module is compiled by Cranelift once per machine and loaded in milliseconds afterwards.
//!
//! The cache is best-effort: a missing, stale or unreadable artifact means "compile again".

use super::LoadError;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

pub(super) struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ArtifactCache {
    pub(super) fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `wasm`, from the cache when possible.
    pub(super) fn compile(
        &self,
        engine: &Engine,
        name: &str,
        sha256: &str,
        wasm: &[u8],
    ) -> Result<Component, LoadError> {
        let path = self.path(sha256);
        // Read into memory rather than mmap the file: a cache file truncated or rewritten while
        // mapped would crash the host (SIGBUS).
        if let Some(bytes) = path.as_deref().and_then(|p| std::fs::read(p).ok()) {
            // SAFETY: artifacts are only ever written by `store` below, into the cache directory
            // the operator chose for this host; wasmtime still checks the header, the engine
            // configuration and the version before it uses the code.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => return Ok(component),
                Err(err) => tracing::debug!(udf = name, "ignoring cached artifact: {err:#}"),
            }
        }
        let component = Component::new(engine, wasm).map_err(|e| LoadError::Compile {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        if let Some(path) = path {
            if let Err(err) = store(&component, &path) {
                tracing::warn!(udf = name, path = %path.display(), "cannot cache compiled UDF: {err}");
            }
        }
        Ok(component)
    }
}

fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write then rename, so a concurrent reader never maps a half-written file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
