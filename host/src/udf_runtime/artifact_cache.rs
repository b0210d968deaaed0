//! Compiled components on disk, keyed by the module's sha256 and the engine's compatibility hash,
//! so a module is compiled by Cranelift once per machine and loaded in milliseconds afterwards.
//!
//! The cache is best-effort: a missing, stale or unreadable artifact means "compile again".
//! It is bounded ([`MAX_FILES`], [`MAX_BYTES`]): after each write the least recently used
//! artifacts are removed (a hit counts as a use), so uploading module after module cannot fill
//! the disk.

use super::LoadError;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Most artifacts kept.
pub const MAX_FILES: usize = 128;
/// Most bytes of artifacts kept (one larger artifact alone is still kept).
pub const MAX_BYTES: u64 = 1 << 30;

pub(super) struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
    max_files: usize,
    max_bytes: u64,
}

impl ArtifactCache {
    pub(super) fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
            max_files: MAX_FILES,
            max_bytes: MAX_BYTES,
        }
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `wasm`, from the cache when possible, else from `compile`.
    pub(super) fn compile(
        &self,
        engine: &Engine,
        name: &str,
        sha256: &str,
        wasm: &[u8],
        compile: impl FnOnce(&[u8]) -> Result<Component, LoadError>,
    ) -> Result<Component, LoadError> {
        let path = self.path(sha256);
        // Read into memory rather than mmap the file: a cache file truncated or rewritten while
        // mapped would crash the host (SIGBUS).
        if let Some(bytes) = path.as_deref().and_then(|p| std::fs::read(p).ok()) {
            // SAFETY: artifacts are only ever written by `store` below, into the cache directory
            // the operator chose for this host; wasmtime still checks the header, the engine
            // configuration and the version before it uses the code.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => {
                    if let Some(path) = &path {
                        touch(path);
                    }
                    return Ok(component);
                }
                Err(err) => tracing::debug!(udf = name, "ignoring cached artifact: {err:#}"),
            }
        }
        tracing::info!(udf = name, bytes = wasm.len(), "compiling UDF module");
        let component = compile(wasm)?;
        if let Some(path) = path {
            if let Err(err) = store(&component, &path) {
                tracing::warn!(udf = name, path = %path.display(), "cannot cache compiled UDF: {err}");
            }
            self.evict(&path);
        }
        Ok(component)
    }

    /// Removes the least recently used artifacts past the bounds, never `kept` (just written).
    fn evict(&self, kept: &Path) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut artifacts: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let entry = e.ok()?;
                let path = entry.path();
                if path.extension()? != "cwasm" || path == kept {
                    return None;
                }
                let meta = entry.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), path))
            })
            .collect();
        artifacts.sort();
        let kept_bytes = std::fs::metadata(kept).map_or(0, |m| m.len());
        let mut files = artifacts.len() + 1;
        let mut bytes = kept_bytes + artifacts.iter().map(|(_, len, _)| len).sum::<u64>();
        for (_, len, path) in artifacts {
            if files <= self.max_files && bytes <= self.max_bytes {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "compiled UDF evicted from the cache")
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), "cannot evict a compiled UDF: {err}")
                }
            }
            files -= 1;
            bytes -= len;
        }
    }
}

/// Marks an artifact used now (eviction removes the least recently used first).
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: its header alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn cached(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("cache dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".cwasm"))
            .map(|n| n.split('-').next().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_within_its_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::default();
        let mut cache = ArtifactCache::new(Some(dir.path().to_path_buf()), &engine);
        cache.max_files = 2;
        let compile = |cache: &ArtifactCache, sha: &str| {
            cache
                .compile(&engine, "empty", sha, EMPTY_COMPONENT, |wasm| {
                    Ok(Component::new(&engine, wasm).expect("an empty component"))
                })
                .expect("compiles");
            // Modification times in order, whatever the file system's resolution.
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        compile(&cache, "a");
        compile(&cache, "b");
        compile(&cache, "c");
        assert_eq!(cached(dir.path()), ["b", "c"], "the oldest went");
        compile(&cache, "b"); // a hit: b is now the most recently used
        compile(&cache, "d");
        assert_eq!(cached(dir.path()), ["b", "d"]);
        // Bytes bound the cache too.
        cache.max_files = 100;
        cache.max_bytes = 1;
        compile(&cache, "e");
        assert_eq!(
            cached(dir.path()),
            ["e"],
            "one artifact over the bound alone stays"
        );
    }
}
