//! How modules are named: `NAME`, `NAME@SHA8` or a path ([`ModuleRef`]), and where a version
//! is found in the UDF directory (the current file or the `.versions/` archive).

use super::RegistryError;
use std::path::{Path, PathBuf};

/// How a pipeline names a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRef {
    /// `anomaly`: the live version of `<udf_dir>/anomaly.wasm`, hot-reloaded.
    Name(String),
    /// `anomaly@1a2b3c4d`: exactly that version, never reloaded.
    Pinned {
        /// The module name.
        name: String,
        /// The first 8 hex digits of its sha256 (or more).
        sha: String,
    },
    /// A path to a `.wasm` file: loaded once, never reloaded.
    Path(PathBuf),
}

impl ModuleRef {
    /// A module argument is a path when it names a `.wasm` file or contains a path separator;
    /// `NAME@HEX` pins a version; anything else is a name.
    pub fn parse(module: &str) -> ModuleRef {
        if module.ends_with(".wasm") || module.contains(std::path::MAIN_SEPARATOR) {
            return ModuleRef::Path(PathBuf::from(module));
        }
        if let Some((name, sha)) = module.split_once('@') {
            if !name.is_empty() && sha.len() >= 8 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return ModuleRef::Pinned {
                    name: name.to_string(),
                    sha: sha.to_ascii_lowercase(),
                };
            }
        }
        ModuleRef::Name(module.to_string())
    }
}

/// Where accepted versions are archived, inside the UDF directory.
pub(super) const VERSIONS_DIR: &str = ".versions";

/// Where version `NAME@SHA8` is archived in the UDF directory `dir`.
pub fn archived_file(dir: &Path, version: &str) -> PathBuf {
    dir.join(VERSIONS_DIR).join(format!("{version}.wasm"))
}

/// The file in the UDF directory `dir` that holds version `name@sha` (`sha`: at least the first
/// 8 hex digits of its sha256, lowercase), with its bytes: `<dir>/<name>.wasm` when it matches,
/// else the archived `<dir>/.versions/NAME@SHA8.wasm`. Files are hashed, not compiled, so a
/// broken current file does not hide an archived version.
pub fn find_version(
    dir: &Path,
    name: &str,
    sha: &str,
) -> Result<(PathBuf, Vec<u8>), RegistryError> {
    let current = dir.join(format!("{name}.wasm"));
    let archived = sha
        .get(..8)
        .map(|sha8| archived_file(dir, &format!("{name}@{sha8}")));
    [Some(current), archived]
        .into_iter()
        .flatten()
        .find_map(|candidate| {
            let bytes = std::fs::read(&candidate).ok()?;
            crate::udf_runtime::sha256_hex(&bytes)
                .starts_with(sha)
                .then_some((candidate, bytes))
        })
        .ok_or_else(|| RegistryError::NoSuchVersion {
            name: name.to_string(),
            sha: sha.to_string(),
            dir: dir.display().to_string(),
        })
}
