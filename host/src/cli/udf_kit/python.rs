//! Python UDFs: a folder with `pyproject.toml` (the name) and `app.py` (`WitWorld = export(...)`
//! on the `sluice_udf` SDK), built by componentize-py against the kit's WIT. The folder comes
//! first on the Python path, then the kit's SDK (used when the folder has no copy of its own).

use super::toolchain;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The scaffold's files: `(path, text)`, templates filled by `fill`.
pub fn scaffold_files(fill: &dyn Fn(&str) -> String) -> Vec<(String, String)> {
    let mut files = vec![
        (
            "app.py".to_string(),
            fill(include_str!("../templates/python/app.py.tmpl")),
        ),
        (
            "test_app.py".into(),
            fill(include_str!("../templates/python/test_app.py.tmpl")),
        ),
        (
            "pyproject.toml".into(),
            fill(include_str!("../templates/python/pyproject.toml.tmpl")),
        ),
        (
            "README.md".into(),
            fill(include_str!("../templates/python/README.md.tmpl")),
        ),
        (".gitignore".into(), "__pycache__/\n.sluice/\n".into()),
    ];
    for (path, text) in toolchain::PYTHON_SDK {
        files.push((path.to_string(), text.to_string()));
    }
    files
}

/// The UDF's name: `[project] name` of `pyproject.toml`.
pub fn name(dir: &Path) -> Result<String, String> {
    let path = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    doc.get("project")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no `[project] name`", path.display()))
}

/// Builds `dir/app.py` into a component; answers its path.
pub fn build(dir: &Path, name: &str) -> Result<PathBuf, String> {
    if !dir.join("app.py").is_file() {
        return Err(format!(
            "{}: no app.py (a Python UDF's module, ending `WitWorld = export(MyUdf)`)",
            dir.display()
        ));
    }
    let componentize = toolchain::componentize_py()?;
    let (wit, sdk) = (toolchain::wit_dir()?, toolchain::python_sdk_dir()?);
    let out_dir = dir.join(".sluice");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let out = out_dir.join(format!("{name}.wasm"));
    // componentize-py reports a Python error with the file and line, then (when asked for
    // backtraces) its own Rust stack, which says nothing about the UDF: leave that out.
    let status = Command::new(&componentize)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .arg("--wit-path")
        .arg(&wit)
        .args(["--world", "sluice:udf/scalar-udf", "componentize", "app"])
        .arg("--python-path")
        .arg(dir)
        .arg("--python-path")
        .arg(&sdk)
        .arg("--output")
        .arg(&out)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", componentize.display()))?;
    if !status.success() {
        return Err(format!(
            "componentize-py could not build {} ({status})",
            dir.join("app.py").display()
        ));
    }
    Ok(out)
}
