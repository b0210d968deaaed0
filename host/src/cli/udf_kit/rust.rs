//! Rust UDFs: a cdylib crate on the `sluice-udf` SDK, built with cargo for `wasm32-wasip2`.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

/// The SDK path the scaffold's Cargo.toml names: `--sdk`, else the source tree's SDK.
pub fn sdk_path(given: Option<&Path>) -> Result<String, String> {
    let sdk = match given {
        Some(sdk) => sdk.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-udfs/sdk"),
    };
    let sdk = sdk.canonicalize().map_err(|e| {
        format!(
            "the sluice-udf SDK is not at {} ({e}); pass --sdk PATH",
            sdk.display()
        )
    })?;
    Ok(sdk.display().to_string())
}

/// The scaffold's files: `(path, text)`, templates filled by `fill`.
pub fn scaffold_files(fill: &dyn Fn(&str) -> String) -> Vec<(String, String)> {
    vec![
        (
            "Cargo.toml".into(),
            fill(include_str!("../templates/Cargo.toml.tmpl")),
        ),
        (
            "src/lib.rs".into(),
            fill(include_str!("../templates/lib.rs.tmpl")),
        ),
        (
            "README.md".into(),
            fill(include_str!("../templates/README.md.tmpl")),
        ),
    ]
}

/// Builds the crate in `dir`; answers the package name and the component's path.
pub fn build(dir: &Path) -> Result<(String, PathBuf), String> {
    let manifest = dir.join("Cargo.toml");
    let metadata = cargo_metadata(&manifest)?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|p| p.first())
        .ok_or_else(|| format!("{}: no package", manifest.display()))?;
    let name = package["name"]
        .as_str()
        .ok_or_else(|| format!("{}: no package name", manifest.display()))?
        .to_string();
    let target_dir = PathBuf::from(metadata["target_directory"].as_str().unwrap_or("target"));
    ensure_wasm_target()?;
    let status = Command::new(cargo())
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build of {} failed ({status})",
            manifest.display()
        ));
    }
    let artifact = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !artifact.is_file() {
        return Err(format!(
            "{} was not produced; is the crate a cdylib?",
            artifact.display()
        ));
    }
    Ok((name, artifact))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo_metadata(manifest: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))
}

/// Adds the wasm32-wasip2 target when rustup does not list it.
fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup (needed for the {WASM_TARGET} target): {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if added.success() {
        Ok(())
    } else {
        Err(format!("rustup target add {WASM_TARGET} failed"))
    }
}
