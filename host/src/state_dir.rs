//! The state directory of `sluice serve`: what a restarted host needs to come back as it was.
//!
//! ```text
//! STATE/
//!   admin-token          the admin API's bearer token (mode 0600), when generated here
//!   host-id              this host's identity: default MQTT client ids derive from it
//!   pipelines/NAME.toml  every pipeline deployed through the admin API, as deployed
//!   udfs/NAME.wasm       the live version of every UDF (the default UDF directory)
//!   udfs/.versions/      every version ever accepted (pinning, rollback)
//! ```
//!
//! Every write goes to a temporary file first and is renamed into place, so a crash never
//! leaves half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
#[error("state directory {path}: {source}")]
pub struct StateError {
    /// The file or directory involved.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// A host's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// Names of pipelines and UDFs become file names: letters, digits, `-`, `_` and `.` only
/// (not starting with `.`), at most 128 characters.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(is_name_char)
}

/// A character [`is_valid_name`] allows: an ASCII letter or digit, `-`, `_` or `.`.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// The dead-letter directory of the state directory at `root` (see [`StateDir::dead_letter_dir`]);
/// `sluice run` uses it without opening the state directory.
pub fn dead_letter_dir(root: &Path) -> PathBuf {
    root.join("dead-letters")
}

/// Where the pipelines' source journals are under state directory `root`: `journal/PIPELINE/`.
pub fn journal_dir(root: &Path) -> PathBuf {
    root.join("journal")
}

impl StateDir {
    /// Opens (creating if needed) the state directory at `root`.
    pub fn open(root: PathBuf) -> Result<Self, StateError> {
        let state = StateDir { root };
        for dir in [state.root.clone(), state.pipelines_dir(), state.udf_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| StateError { path: dir, source })?;
        }
        Ok(state)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where deployed pipelines are kept.
    pub fn pipelines_dir(&self) -> PathBuf {
        self.root.join("pipelines")
    }

    /// The default UDF directory of `sluice serve`.
    pub fn udf_dir(&self) -> PathBuf {
        self.root.join("udfs")
    }

    /// Where pipelines without a dead-letter sink keep failed records (created on first use).
    pub fn dead_letter_dir(&self) -> PathBuf {
        dead_letter_dir(&self.root)
    }

    /// `journal/`: the pipelines' source journals.
    pub fn journal_dir(&self) -> PathBuf {
        journal_dir(&self.root)
    }

    /// Saves a deployed pipeline's TOML.
    pub fn save_pipeline(&self, name: &str, toml: &str) -> Result<(), StateError> {
        let path = self.pipelines_dir().join(format!("{name}.toml"));
        write_atomically(&path, toml.as_bytes(), None).map_err(|source| StateError { path, source })
    }

    /// Forgets an undeployed pipeline.
    pub fn remove_pipeline(&self, name: &str) -> Result<(), StateError> {
        let path = self.pipelines_dir().join(format!("{name}.toml"));
        match std::fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError { path, source })
            }
            _ => Ok(()),
        }
    }

    /// The saved pipelines as (file, TOML), sorted by file name.
    pub fn saved_pipelines(&self) -> Result<Vec<(PathBuf, String)>, StateError> {
        let dir = self.pipelines_dir();
        let entries = std::fs::read_dir(&dir).map_err(|source| StateError {
            path: dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| match std::fs::read_to_string(&path) {
                Ok(text) => Ok((path, text)),
                Err(source) => Err(StateError { path, source }),
            })
            .collect()
    }

    /// The admin token: `explicit` if given, else the one saved here, else a new random one
    /// saved here with mode 0600. The flag is true when it was generated just now.
    pub fn admin_token(&self, explicit: Option<String>) -> Result<(String, bool), StateError> {
        if let Some(token) = explicit.filter(|t| !t.trim().is_empty()) {
            return Ok((token.trim().to_string(), false));
        }
        let path = self.token_path();
        match std::fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => return Ok((token.trim().to_string(), false)),
            Ok(_) => {}
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(StateError { path, source })
            }
            Err(_) => {}
        }
        let token = random_token().map_err(|source| StateError {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
        write_atomically(&path, token.as_bytes(), Some(0o600))
            .map_err(|source| StateError { path, source })?;
        Ok((token, true))
    }

    /// Where a generated admin token is kept.
    pub fn token_path(&self) -> PathBuf {
        self.root.join("admin-token")
    }
}

/// This host's identity, kept as `<root>/host-id`: `explicit` if given (`--host-id`,
/// `SLUICE_HOST_ID`), else the one saved there, else a new random one saved there. Stable across
/// restarts of one host (so persistent MQTT sessions resume) and distinct between hosts (so two
/// replicas never take each other's client id). Only name characters ([`is_name_char`]).
pub fn host_id(root: &Path, explicit: Option<String>) -> Result<String, StateError> {
    if let Some(id) = explicit
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
    {
        if id.chars().all(is_name_char) && id.len() <= 64 {
            return Ok(id);
        }
        return Err(StateError {
            path: PathBuf::from("--host-id"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{id:?}: a host id is 1 to 64 letters, digits, '-', '_' or '.'"),
            ),
        });
    }
    let path = root.join("host-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() && id.trim().chars().all(is_name_char) => {
            return Ok(id.trim().to_string())
        }
        Ok(_) => {}
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            return Err(StateError { path, source })
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(root).map_err(|source| StateError {
        path: root.to_path_buf(),
        source,
    })?;
    let id = random_token()
        .map_err(|source| StateError {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?
        .chars()
        .take(12)
        .collect::<String>();
    write_atomically(&path, id.as_bytes(), None).map_err(|source| StateError { path, source })?;
    Ok(id)
}

/// 32 random bytes from the OS, hex-encoded.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so a reader
/// (a watching host, a restart after a crash) never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_id_is_kept_and_can_be_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let first = host_id(dir.path(), None).unwrap();
        assert_eq!(first.len(), 12);
        assert_eq!(host_id(dir.path(), None).unwrap(), first, "stable");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(host_id(other.path(), None).unwrap(), first, "distinct");
        assert_eq!(
            host_id(dir.path(), Some("edge-7".into())).unwrap(),
            "edge-7"
        );
        assert!(host_id(dir.path(), Some("a b".into())).is_err());
    }

    #[test]
    fn names_that_are_safe_file_names() {
        assert!(is_valid_name("ecg-anomaly_2.v1"));
        for bad in ["", "../x", "a/b", ".hidden", "sp ace", &"x".repeat(129)] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn generated_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("state")).unwrap();
        let (token, generated) = state.admin_token(None).unwrap();
        assert!(generated);
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.token_path()).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        assert_eq!(state.admin_token(None).unwrap(), (token, false));
        assert_eq!(
            state.admin_token(Some("given".into())).unwrap(),
            ("given".to_string(), false)
        );
    }

    #[test]
    fn pipelines_are_saved_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().to_path_buf()).unwrap();
        state.save_pipeline("b", "B").unwrap();
        state.save_pipeline("a", "A").unwrap();
        let saved = state.saved_pipelines().unwrap();
        let texts: Vec<&str> = saved.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["A", "B"]);
        state.remove_pipeline("a").unwrap();
        state.remove_pipeline("a").unwrap(); // already gone is fine
        assert_eq!(state.saved_pipelines().unwrap().len(), 1);
    }
}
