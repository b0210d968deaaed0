//! The toolchains `sluice udf build` installs for Python and JavaScript UDFs, pinned, into the
//! kit directory (`SLUICE_KIT_DIR`, else `<cache dir>/kit`): componentize-py from PyPI in a venv
//! of its own, componentize-js from npm with the lockfile in `guest-udfs/sdk-js/toolchain/`
//! (install scripts off, so its optional ahead-of-time compiler downloads nothing). Each
//! install runs once, under a file lock that parallel builds wait on, and counts only once it
//! finished. The WIT package and the Python SDK come from this binary, written next to them.

use super::super::default_cache_dir;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned PyPI requirement of the Python toolchain.
const PYTHON_REQUIREMENTS: &str =
    include_str!("../../../../guest-udfs/sdk-python/toolchain/requirements.txt");
/// The npm manifest and lockfile of the JavaScript toolchain.
const JS_PACKAGE: &str = include_str!("../../../../guest-udfs/sdk-js/toolchain/package.json");
const JS_LOCK: &str = include_str!("../../../../guest-udfs/sdk-js/toolchain/package-lock.json");
/// The `sluice:udf` WIT package this host implements.
pub const WIT: &str = include_str!("../../../../wit/udf.wit");
/// The Python SDK (`sluice_udf`), file by file.
pub const PYTHON_SDK: [(&str, &str); 2] = [
    (
        "sluice_udf/__init__.py",
        include_str!("../../../../guest-udfs/sdk-python/sluice_udf/__init__.py"),
    ),
    (
        "sluice_udf/_native.py",
        include_str!("../../../../guest-udfs/sdk-python/sluice_udf/_native.py"),
    ),
];
/// The JavaScript SDK (`sluice_udf.js`).
pub const JS_SDK: &str = include_str!("../../../../guest-udfs/sdk-js/sluice_udf.js");

/// Where the kit keeps its toolchains: `SLUICE_KIT_DIR`, else `<cache dir>/kit`, else
/// `.sluice-kit`; absolute, since the toolchains run in the UDF's folder.
pub fn kit_dir() -> PathBuf {
    let dir = match std::env::var_os("SLUICE_KIT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => default_cache_dir()
            .map(|dir| dir.join("kit"))
            .unwrap_or_else(|| PathBuf::from(".sluice-kit")),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The first 8 hex digits of the sha256 of `parts`: names a directory after its content.
fn tag(parts: &[&str]) -> String {
    let mut all = Vec::new();
    for part in parts {
        all.extend_from_slice(part.as_bytes());
        all.push(0);
    }
    sluice::udf_runtime::sha256_hex(&all)[..8].to_string()
}

/// A directory of the kit holding `files`, written once (named after their content).
fn written(prefix: &str, files: &[(&str, &str)]) -> Result<PathBuf, String> {
    let texts: Vec<&str> = files.iter().flat_map(|(p, t)| [*p, *t]).collect();
    let dir = kit_dir().join(format!("{prefix}-{}", tag(&texts)));
    for (path, text) in files {
        let path = dir.join(path);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(*text) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        sluice::state_dir::write_atomically(&path, text.as_bytes(), None)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(dir)
}

/// The WIT package, as a directory for `-d`/`--wit`.
pub fn wit_dir() -> Result<PathBuf, String> {
    written("wit", &[("udf.wit", WIT)])
}

/// The Python SDK, as a directory for componentize-py's `-p`.
pub fn python_sdk_dir() -> Result<PathBuf, String> {
    written("python-sdk", &PYTHON_SDK)
}

/// The `componentize-py` executable, installed on first use.
pub fn componentize_py() -> Result<PathBuf, String> {
    let dir = kit_dir().join(format!("python-{}", tag(&[PYTHON_REQUIREMENTS])));
    install_once(&dir, "componentize-py (from PyPI)", |dir| {
        std::fs::write(dir.join("requirements.txt"), PYTHON_REQUIREMENTS)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into());
        step(
            Command::new(&python)
                .args(["-m", "venv"])
                .arg(dir.join("venv")),
            &format!("{python} -m venv (Python 3 with venv is needed to build Python UDFs)"),
        )?;
        step(
            Command::new(dir.join("venv/bin/pip"))
                .args([
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                    "--requirement",
                ])
                .arg(dir.join("requirements.txt")),
            "pip install componentize-py",
        )
    })?;
    Ok(dir.join("venv/bin/componentize-py"))
}

/// The `componentize-js` executable, installed on first use.
pub fn componentize_js() -> Result<PathBuf, String> {
    let dir = kit_dir().join(format!("js-{}", tag(&[JS_PACKAGE, JS_LOCK])));
    install_once(&dir, "componentize-js (from npm)", |dir| {
        std::fs::write(dir.join("package.json"), JS_PACKAGE)
            .and_then(|()| std::fs::write(dir.join("package-lock.json"), JS_LOCK))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        step(
            Command::new("npm")
                .args([
                    "ci",
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .current_dir(dir),
            "npm ci (Node.js 18 or later with npm is needed to build JavaScript UDFs)",
        )
    })?;
    Ok(dir.join("node_modules/.bin/componentize-js"))
}

/// Runs `install` into `dir` unless a finished install is there; under `<kit>/install.lock`,
/// so concurrent builds install once and the others wait. A half-done install is redone.
fn install_once(
    dir: &Path,
    what: &str,
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(());
    }
    let kit = kit_dir();
    std::fs::create_dir_all(&kit).map_err(|e| format!("{}: {e}", kit.display()))?;
    let _lock = FileLock::take(&kit.join("install.lock"))?;
    if done.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    eprintln!("installing {what} into {} (once)", dir.display());
    install(dir)?;
    std::fs::write(&done, b"").map_err(|e| format!("{}: {e}", done.display()))
}

fn step(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
struct FileLock {
    _file: File,
}

impl FileLock {
    fn take(path: &Path) -> Result<Self, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; it blocks until the lock is free.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if taken != 0 {
            return Err(format!(
                "{}: cannot lock: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(FileLock { _file: file })
    }
}
