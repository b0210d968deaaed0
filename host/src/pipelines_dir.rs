//! `sluice serve --pipelines-dir DIR`: the `.toml` files in a directory are the pipelines.
//! A new file deploys, a changed one replaces, a removed one undeploys. Changes are picked up
//! by a file watch (notify) after writes settle; an invalid file is logged with every error and
//! changes nothing (the running version, if any, stays).

use crate::control_plane::{ControlPlane, Origin};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long writes must be quiet before the directory is read again.
const SETTLE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops watching.
pub struct PipelinesDirWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PipelinesDirWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What was deployed from each file: (pipeline name, TOML text).
type Known = BTreeMap<PathBuf, (String, String)>;

/// Deploys every pipeline in `dir` now, then follows changes until the watch is dropped.
pub async fn watch(dir: PathBuf, control: Arc<ControlPlane>) -> Result<PipelinesDirWatch, String> {
    use notify::Watcher;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| {
            matches!(
                e.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Remove(_)
            )
        }) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    let mut known = Known::new();
    sync(&dir, &control, &mut known).await;
    tracing::info!(dir = %dir.display(), "watching pipeline files for changes");
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of writes (editor save, copy) settle, then read the directory once.
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            sync(&dir, &control, &mut known).await;
        }
    });
    Ok(PipelinesDirWatch {
        _watcher: watcher,
        task,
    })
}

/// Makes the running pipelines match the files: deploy new and changed, undeploy removed.
async fn sync(dir: &Path, control: &ControlPlane, known: &mut Known) {
    let files = match toml_files(dir) {
        Ok(files) => files,
        Err(err) => {
            tracing::error!(dir = %dir.display(), "cannot read the pipelines directory: {err}");
            return;
        }
    };
    for (path, text) in &files {
        if known.get(path).is_some_and(|(_, old)| old == text) {
            continue;
        }
        match control
            .deploy_toml(path, text, None, Origin::PipelinesDir)
            .await
        {
            Ok((spec, deployed)) => {
                tracing::info!(file = %path.display(), pipeline = %spec.name, ?deployed, "pipeline file applied");
                if let Some((old_name, _)) = known.get(path) {
                    if *old_name != spec.name {
                        // The file now names another pipeline: the old one goes.
                        let _ = control.undeploy(old_name).await;
                    }
                }
                known.insert(path.clone(), (spec.name, text.clone()));
            }
            Err(err) => {
                tracing::error!(file = %path.display(), "pipeline file not applied: {err}")
            }
        }
    }
    let removed: Vec<PathBuf> = known
        .keys()
        .filter(|path| !files.contains_key(*path))
        .cloned()
        .collect();
    for path in removed {
        if let Some((name, _)) = known.remove(&path) {
            match control.undeploy(&name).await {
                Ok(()) => {
                    tracing::info!(file = %path.display(), pipeline = %name, "pipeline file removed: undeployed")
                }
                Err(err) => tracing::warn!(file = %path.display(), "{err}"),
            }
        }
    }
}

/// The `.toml` files in `dir` (not hidden ones: editors and atomic writers use those).
fn toml_files(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let visible = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        if visible && path.extension().is_some_and(|e| e == "toml") {
            if let Ok(text) = std::fs::read_to_string(&path) {
                files.insert(path, text);
            }
        }
    }
    Ok(files)
}
