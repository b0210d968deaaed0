//! The UDF directory watch: a changed `<name>.wasm` of a name in use is reloaded once its
//! writes settle.

use super::UdfRegistry;
use std::path::PathBuf;
use std::sync::Arc;

impl UdfRegistry {
    /// Watches the UDF directory: a changed `<name>.wasm` of a name in use is reloaded (after
    /// writes settle). Stops when the returned watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<DirectoryWatch, String> {
        use notify::Watcher;
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if matches!(
                        event.kind,
                        notify::EventKind::Create(_)
                            | notify::EventKind::Modify(_)
                            | notify::EventKind::Remove(_)
                    ) {
                        for path in event.paths {
                            let _ = tx.send(path);
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot watch {}: {e}", self.dir.display()))?;
        watcher
            .watch(&self.dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", self.dir.display()))?;
        let registry = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("udf-watch".into())
            .spawn(move || reload_changed(registry, rx))
            .map_err(|e| format!("cannot start the UDF watcher: {e}"))?;
        tracing::info!(dir = %self.dir.display(), "watching UDF modules for changes");
        Ok(DirectoryWatch { _watcher: watcher })
    }
}

/// How long a file must be quiet before it is read: copies arrive in several writes.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Keeps the directory watch alive.
pub struct DirectoryWatch {
    _watcher: notify::RecommendedWatcher,
}

fn reload_changed(
    registry: std::sync::Weak<UdfRegistry>,
    changes: std::sync::mpsc::Receiver<PathBuf>,
) {
    while let Ok(first) = changes.recv() {
        let mut changed = vec![first];
        // Collect until the directory is quiet, so a file is read once it is complete.
        while let Ok(path) = changes.recv_timeout(SETTLE) {
            changed.push(path);
        }
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let mut names: Vec<String> = changed
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        let in_use = registry.names();
        for name in names.into_iter().filter(|n| in_use.contains(n)) {
            // A refusal is logged and kept for status inside `reload`.
            if let Ok(Some(version)) = registry.reload(&name) {
                tracing::info!(udf = %name, %version, "reloaded from file");
            }
        }
    }
}
