//! The UDF authoring kit: `sluice udf new NAME [--dir DIR]` scaffolds a guest crate on the SDK,
//! `sluice udf build [PATH]` builds one for `wasm32-wasip2`, checks it against the world and
//! copies it into the UDF directory (where a running host hot-reloads it).

use super::{default_cache_dir, default_udf_dir};
use sluice::udf_runtime::{RuntimeOptions, UdfRuntime};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";

/// Arguments of `sluice udf new`.
#[derive(clap::Args)]
pub struct UdfNewArgs {
    /// The UDF's name: lowercase letters, digits and `-`; also the module name in pipelines.
    name: String,
    /// Where to create the crate [default: the current directory]; it goes in DIR/NAME.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The `sluice-udf` SDK crate [default: the SDK of the source tree this binary was built from].
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// Arguments of `sluice udf build`.
#[derive(clap::Args)]
pub struct UdfBuildArgs {
    /// The UDF crate (a folder with Cargo.toml).
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Where the module goes [default: $SLUICE_UDF_DIR or target/udfs].
    #[arg(long, value_name = "DIR")]
    udf_dir: Option<PathBuf>,
}

/// Runs `sluice udf new`.
pub fn new(args: UdfNewArgs) -> ExitCode {
    match scaffold(&args) {
        Ok(dir) => {
            println!("created {}", dir.display());
            println!("next:");
            println!("  cd {} && cargo test", dir.display());
            println!("  sluice udf build {}", dir.display());
            println!(
                "  sluice udf test {} --input {}/samples/input.txt --expect {}/samples/expected.txt",
                args.name,
                dir.display(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn scaffold(args: &UdfNewArgs) -> Result<PathBuf, String> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(format!(
            "{name:?} is not a UDF name: use lowercase letters, digits and '-', starting with a letter"
        ));
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let sdk = match &args.sdk {
        Some(sdk) => sdk.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-udfs/sdk"),
    };
    let sdk = sdk.canonicalize().map_err(|e| {
        format!(
            "the sluice-udf SDK is not at {} ({e}); pass --sdk PATH",
            sdk.display()
        )
    })?;
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{type_name}", &type_name)
            .replace("{sdk}", &sdk.display().to_string())
    };
    let files = [
        (
            "Cargo.toml",
            fill(include_str!("templates/Cargo.toml.tmpl")),
        ),
        ("src/lib.rs", fill(include_str!("templates/lib.rs.tmpl"))),
        ("README.md", fill(include_str!("templates/README.md.tmpl"))),
        (
            "samples/input.txt",
            include_str!("templates/input.txt.tmpl").to_string(),
        ),
        (
            "samples/expected.txt",
            include_str!("templates/expected.txt.tmpl").to_string(),
        ),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(dir)
}

/// Runs `sluice udf build`.
pub fn build(args: UdfBuildArgs) -> ExitCode {
    match build_module(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn build_module(args: &UdfBuildArgs) -> Result<(), String> {
    let manifest = args.path.join("Cargo.toml");
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
    let wasm = std::fs::read(&artifact).map_err(|e| {
        format!(
            "{} was not produced ({e}); is the crate a cdylib?",
            artifact.display()
        )
    })?;
    // The same checks the host makes before running it: a component of our world that imports
    // nothing beyond what the host grants.
    let runtime = UdfRuntime::new(RuntimeOptions {
        cache_dir: default_cache_dir(),
        fuel_metering: false,
        compile_timeout: None,
        compiler: None,
    })
    .map_err(|e| e.to_string())?;
    let module = runtime.load(&name, &wasm).map_err(|e| e.to_string())?;
    let udf_dir = args.udf_dir.clone().unwrap_or_else(default_udf_dir);
    std::fs::create_dir_all(&udf_dir).map_err(|e| format!("{}: {e}", udf_dir.display()))?;
    let dest = udf_dir.join(format!("{name}.wasm"));
    // Atomically, so a watching host never reads a half-written module.
    sluice::state_dir::write_atomically(&dest, &wasm, None)
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    println!("name     {name}");
    println!("version  {}", module.version());
    println!("size     {} bytes", wasm.len());
    println!("path     {}", dest.display());
    Ok(())
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
