//! JavaScript UDFs: a folder with `package.json` (the name) and `app.js`, an ES module whose
//! default export is the UDF class, next to its copy of the SDK (`sluice_udf.js`). The build
//! writes an entry module (`.sluice/entry.js`) that exports the `scalar-udf` world's `init`,
//! `process` and `scalar.call` around that class, and builds it with componentize-js, without `wasi:http` and the
//! fetch event (the host grants neither).

use super::toolchain;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The module componentize-js builds: the world's exports around `app.js`'s default export.
const ENTRY: &str = "\
// Written by `sluice udf build`: the `sluice:udf` world around app.js's default export.
import Udf from '../app.js';
import { exportUdf } from '../sluice_udf.js';
import { log } from 'sluice:udf/host@0.1.1';

const udf = exportUdf(Udf, log);

export function init(config) {
  udf.init(config);
}

export function process(batch) {
  return udf.process(batch);
}

export const scalar = {
  call(functionName, rows) {
    return udf.call(functionName, rows);
  },
};
";

/// The scaffold's files: `(path, text)`, templates filled by `fill`.
pub fn scaffold_files(fill: &dyn Fn(&str) -> String) -> Vec<(String, String)> {
    vec![
        (
            "app.js".to_string(),
            fill(include_str!("../templates/js/app.js.tmpl")),
        ),
        (
            "app.test.js".into(),
            fill(include_str!("../templates/js/app.test.js.tmpl")),
        ),
        (
            "package.json".into(),
            fill(include_str!("../templates/js/package.json.tmpl")),
        ),
        (
            "README.md".into(),
            fill(include_str!("../templates/js/README.md.tmpl")),
        ),
        ("sluice_udf.js".into(), toolchain::JS_SDK.to_string()),
        (".gitignore".into(), ".sluice/\nnode_modules/\n".into()),
    ]
}

/// The UDF's name: `name` of `package.json`.
pub fn name(dir: &Path) -> Result<String, String> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    doc["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no \"name\"", path.display()))
}

/// Builds `dir/app.js` into a component; answers its path.
pub fn build(dir: &Path, name: &str) -> Result<PathBuf, String> {
    for (file, what) in [
        ("app.js", "the UDF class as the default export"),
        ("sluice_udf.js", "the SDK, as `sluice udf new` writes it"),
    ] {
        if !dir.join(file).is_file() {
            return Err(format!("{}: no {file} ({what})", dir.display()));
        }
    }
    let componentize = toolchain::componentize_js()?;
    let wit = toolchain::wit_dir()?;
    let out_dir = dir.join(".sluice");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let entry = out_dir.join("entry.js");
    std::fs::write(&entry, ENTRY).map_err(|e| format!("{}: {e}", entry.display()))?;
    let out = out_dir.join(format!("{name}.wasm"));
    // componentize-js resolves the entry's imports against its working directory: run it in
    // the folder, with the entry by its relative path.
    let status = Command::new(&componentize)
        .current_dir(dir)
        .arg(Path::new(".sluice").join("entry.js"))
        .arg("--wit")
        .arg(&wit)
        .args([
            "--world-name",
            "scalar-udf",
            "--disable",
            "http",
            "fetch-event",
        ])
        .arg("--out")
        .arg(std::path::absolute(&out).map_err(|e| format!("{}: {e}", out.display()))?)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", componentize.display()))?;
    if !status.success() {
        return Err(format!(
            "componentize-js could not build {} ({status})",
            dir.join("app.js").display()
        ));
    }
    Ok(out)
}
