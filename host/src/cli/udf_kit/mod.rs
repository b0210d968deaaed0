//! The UDF authoring kit. `sluice udf new NAME [--lang rust|python|js] [--dir DIR]` scaffolds a
//! UDF on its language's SDK; `sluice udf build [PATH]` recognises the language of the folder
//! (`Cargo.toml`, `pyproject.toml` or `package.json`), builds a component, checks it against
//! the world and copies it into the UDF directory (where a running host hot-reloads it). Every
//! other command (`udf test`, `bench`, `push`, hot reload, pinning) only sees a component.

mod js;
mod python;
mod rust;
mod toolchain;

use super::{default_cache_dir, default_udf_dir};
use sluice::udf_runtime::{RuntimeOptions, UdfRuntime};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The language of a UDF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust on the `sluice-udf` crate, built with cargo for `wasm32-wasip2`.
    Rust,
    /// Python 3 on the `sluice_udf` package, built with componentize-py.
    Python,
    /// JavaScript (ES modules) on `sluice_udf.js`, built with componentize-js.
    Js,
}

impl Lang {
    /// The language of the UDF folder `dir`, from its manifest.
    fn of(dir: &Path) -> Result<Lang, String> {
        let found = [
            ("Cargo.toml", Lang::Rust),
            ("pyproject.toml", Lang::Python),
            ("package.json", Lang::Js),
        ]
        .into_iter()
        .find(|(manifest, _)| dir.join(manifest).is_file());
        found.map(|(_, lang)| lang).ok_or_else(|| {
            format!(
                "{} holds no Cargo.toml, pyproject.toml or package.json: not a UDF folder (start one with `sluice udf new NAME --lang rust|python|js`)",
                dir.display()
            )
        })
    }

    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// Arguments of `sluice udf new`.
#[derive(clap::Args)]
pub struct UdfNewArgs {
    /// The UDF's name: lowercase letters, digits and `-`; also the module name in pipelines.
    name: String,
    /// The language of the scaffold.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create the folder [default: the current directory]; it goes in DIR/NAME.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The `sluice-udf` SDK crate, for Rust [default: the SDK of the source tree this binary
    /// was built from]. Python and JavaScript scaffolds get a copy of their SDK.
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// Arguments of `sluice udf build`.
#[derive(clap::Args)]
pub struct UdfBuildArgs {
    /// The UDF folder (with Cargo.toml, pyproject.toml or package.json).
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
            let dir = dir.display();
            println!("created {dir}");
            println!("next:");
            match args.lang {
                Lang::Rust => println!("  cd {dir} && cargo test"),
                Lang::Python => println!("  cd {dir} && python3 -m unittest"),
                Lang::Js => println!("  cd {dir} && node --test"),
            }
            println!("  sluice udf build {dir}");
            println!(
                "  sluice udf test {} --input {dir}/samples/input.txt --expect {dir}/samples/expected.txt",
                args.name,
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Whether `name` is a UDF name: lowercase letters, digits and `-`, starting with a letter.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a UDF name: use lowercase letters, digits and '-', starting with a letter"
        ))
    }
}

fn scaffold(args: &UdfNewArgs) -> Result<PathBuf, String> {
    let name = &args.name;
    check_name(name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
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
    let sdk = match args.lang {
        Lang::Rust => rust::sdk_path(args.sdk.as_deref())?,
        Lang::Python | Lang::Js => String::new(),
    };
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{type_name}", &type_name)
            .replace("{sdk}", &sdk)
    };
    let mut files = match args.lang {
        Lang::Rust => rust::scaffold_files(&fill),
        Lang::Python => python::scaffold_files(&fill),
        Lang::Js => js::scaffold_files(&fill),
    };
    // The same samples in every language: the scaffolds all upper-case.
    files.push((
        "samples/input.txt".into(),
        include_str!("../templates/input.txt.tmpl").into(),
    ));
    files.push((
        "samples/expected.txt".into(),
        include_str!("../templates/expected.txt.tmpl").into(),
    ));
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
    let dir = &args.path;
    let lang = Lang::of(dir)?;
    let (name, artifact) = match lang {
        Lang::Rust => rust::build(dir)?,
        Lang::Python => {
            let name = python::name(dir)?;
            check_name(&name)?;
            let artifact = python::build(dir, &name)?;
            (name, artifact)
        }
        Lang::Js => {
            let name = js::name(dir)?;
            check_name(&name)?;
            let artifact = js::build(dir, &name)?;
            (name, artifact)
        }
    };
    let wasm = std::fs::read(&artifact)
        .map_err(|e| format!("{} was not produced ({e})", artifact.display()))?;
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
    println!("language {}", lang.name());
    println!("version  {}", module.version());
    println!("size     {} bytes", wasm.len());
    println!(
        "memory   {} MiB by default",
        module.language().default_memory_bytes() >> 20
    );
    println!("path     {}", dest.display());
    Ok(())
}
