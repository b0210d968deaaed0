//! Project automation, run as `cargo xtask <command>` (alias in `.cargo/config.toml`):
//!
//! - `build`: the host in release (`target/release/sluice`, `target/release/sluice-demo`) and every UDF under `guest-udfs/`
//!   for `wasm32-wasip2` (`target/udfs/<name>.wasm`; test fixtures in `target/test-udfs/`).
//!   Adds the `wasm32-wasip2` target with rustup when it is missing.
//! - `demo`: builds, then runs the ECG demo on the embedded default (`sluice-demo`).
//! - `test`: installs the test servers (Mosquitto from Debian, tansu into `target/tools`),
//!   builds, then runs every test of the workspace (one profile: release).
//! - `faults`: the fault-injection suite alone (`tests/tests/e2e/faults.rs`), with more cycles of
//!   each repeatable fault (`--cycles N`, default 5); `test` runs it once per fault.
//! - `bench`: builds, then the Wasm-vs-native throughput benchmark. `bench e2e [--records N]`:
//!   the end-to-end benchmark (`bench/e2e/run.py`): MQTT (Mosquitto defaults) -> anomaly UDF ->
//!   Kafka (tansu), Sluice against a Python bridge in the same run; Python packages from
//!   `bench/e2e/requirements.txt` into `target/tools/bench-venv`. `bench languages`: the same
//!   UDFs in Rust, Python and JavaScript (`bench/languages/run.py`): records/s, per-record
//!   cost, cold and cached start, hot reload.
//! - `lint`: `cargo fmt --check` and `cargo clippy --all-targets -- -D warnings`, for the host and
//!   again for the guests on `wasm32-wasip2`.
//! - `tidy`: the invariants of ARCHITECTURE.md that can be read off the source (see `tidy.rs`).
//! - `fuzz [--seconds S | --minutes M]`: installs cargo-fuzz into `target/tools`, seeds each
//!   target of `fuzz/` from the shipped pipelines, the test data and the invalid pipeline
//!   snapshots, and runs every target for that long (default 1 minute each); a crash fails it.
//!
//! Everything shares one target directory and the release profile, so nothing is built twice.

mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(HostBuild::Binaries).map(|_| ()),
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("faults") => faults(&args[1..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("e2e") => bench_e2e(&args[2..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("languages") => {
            bench_languages(&args[2..])
        }
        Some("bench") => bench(),
        Some("lint") => lint(),
        Some("tidy") => tidy(),
        Some("fuzz") => fuzz(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <build | demo | test [-- cargo test args] | faults [--cycles N] | bench [e2e [--records N] | languages [--reloads N]] | lint | tidy | fuzz [--seconds S | --minutes M]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A cargo command at the workspace root, without the variables `cargo run` set for xtask
/// itself. Build scripts (ring's, for one) rerun when such a variable changes, so leaving
/// `CARGO_MANIFEST_DIR=.../xtask` in place made every build through xtask and every plain
/// `cargo build` invalidate the other's artifacts.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Whether `cargo run` sets the variable `name` for the binary it runs (describing that binary).
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// The command as a shell would read it: the variables it sets, the program, its arguments
/// (the variables it removes are left out; see [`cargo`]).
fn describe(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(name, value)| {
            value.map(|value| format!("{}={:?}", name.to_string_lossy(), value))
        })
        .collect();
    words.push(format!("{:?}", cmd.get_program()));
    words.extend(cmd.get_args().map(|arg| format!("{arg:?}")));
    words.join(" ")
}

/// Adds the wasm32-wasip2 target when rustup does not list it (RUSTUP_AUTO_INSTALL=0 here).
fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run rustup (needed for the {WASM_TARGET} target): {e}"))?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .current_dir(root()))
}

/// A guest crate: its package name and whether it is a test fixture.
struct Guest {
    package: String,
    fixture: bool,
}

/// Every cdylib crate under `guest-udfs/` (fixtures under `guest-udfs/test-fixtures/`).
fn guests() -> Result<Vec<Guest>> {
    let mut found = Vec::new();
    for (dir, fixture) in [("guest-udfs", false), ("guest-udfs/test-fixtures", true)] {
        let entries = std::fs::read_dir(root().join(dir)).map_err(|e| format!("{dir}: {e}"))?;
        let mut crates: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        crates.sort();
        for krate in crates {
            let manifest = krate.join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            if !text.contains("\"cdylib\"") {
                continue;
            }
            let package = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = \""))
                .and_then(|rest| rest.split('"').next())
                .ok_or_else(|| format!("{}: no package name", manifest.display()))?;
            found.push(Guest {
                package: package.to_string(),
                fixture,
            });
        }
    }
    Ok(found)
}

/// What to build for the host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostBuild {
    /// The libraries and binaries of every workspace member (`sluice`, `sluice-demo`...). Not
    /// just the two binaries: with `--workspace`, cargo unifies dependency features across every
    /// member, as `cargo test --workspace` does, so each dependency is built with one feature set
    /// and the test run after a demo compiles none of them again (`--package sluice --package
    /// sluice-demo` left out features the guests' build tools turn on, e.g. anyhow's `std`,
    /// and wasmtime, cranelift and everything above anyhow were built twice).
    Binaries,
    /// Every target of the workspace, tests included: the same package and feature selection
    /// as `cargo test --workspace`, so the test run that follows compiles nothing again.
    ForTests,
}

/// Builds the host and every guest; returns the UDF directory.
fn build(host: HostBuild) -> Result<PathBuf> {
    ensure_wasm_target()?;
    install_build_dependencies()?;
    match host {
        HostBuild::Binaries => run(cargo().args(["build", "--release", "--workspace"]))?,
        HostBuild::ForTests => {
            run(cargo().args(["build", "--release", "--workspace", "--all-targets"]))?
        }
    }
    let guests = guests()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", WASM_TARGET]);
    for guest in &guests {
        cmd.args(["--package", &guest.package]);
    }
    run(&mut cmd)?;
    let target = target_dir();
    let built = target.join(WASM_TARGET).join("release");
    for guest in &guests {
        let dest_dir = target.join(if guest.fixture { "test-udfs" } else { "udfs" });
        std::fs::create_dir_all(&dest_dir).map_err(|e| format!("{}: {e}", dest_dir.display()))?;
        let file = format!("{}.wasm", guest.package.replace('-', "_"));
        let from = built.join(&file);
        let to = dest_dir.join(format!("{}.wasm", guest.package));
        std::fs::copy(&from, &to)
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
        eprintln!("xtask: {}", to.display());
    }
    // Second builds of two guests, with a feature: the hot-reload tests need the tagger with
    // another tag; the benchmark needs the anomaly crate's per-stage UDF; the shadow tests a
    // scorer whose scores differ.
    let variants = [
        ("tagger", "variant-b", "tagger-b.wasm"),
        ("anomaly", "bench-stages", "anomaly-stages.wasm"),
        ("anomaly", "double-score", "anomaly-double.wasm"),
    ];
    // One build each: two features of one package in one build would be unified.
    for (package, feature, file) in variants {
        let mut cmd = cargo();
        cmd.args(["build", "--release", "--target", WASM_TARGET]);
        cmd.args([
            "--package",
            package,
            "--features",
            &format!("{package}/{feature}"),
        ]);
        run(&mut cmd)?;
        let to = target.join("test-udfs").join(file);
        std::fs::copy(built.join(format!("{package}.wasm")), &to)
            .map_err(|e| format!("copying {package} ({feature}) to {}: {e}", to.display()))?;
        eprintln!("xtask: {}", to.display());
    }
    Ok(target.join("udfs"))
}

/// Where `sluice udf build` installs its Python and JavaScript toolchains for the tests and
/// benchmarks (`SLUICE_KIT_DIR`): once per checkout.
fn udf_kit_dir() -> PathBuf {
    target_dir().join("tools/udf-kit")
}

/// The UDFs in Python and JavaScript (folders under `guest-udfs/` and its `test-fixtures/`
/// with a `pyproject.toml` or `package.json`), built by `sluice udf build` itself, as a user
/// would: its first run installs componentize-py (PyPI) and componentize-js (npm) into
/// [`udf_kit_dir`]. A module newer than every file of its folder is not built again.
fn build_language_guests() -> Result<()> {
    for (dir, dest) in [
        ("guest-udfs", "udfs"),
        ("guest-udfs/test-fixtures", "test-udfs"),
    ] {
        let entries = std::fs::read_dir(root().join(dir)).map_err(|e| format!("{dir}: {e}"))?;
        let mut folders: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        folders.sort();
        for folder in folders {
            let name = if folder.join("pyproject.toml").is_file() {
                manifest_name(&folder.join("pyproject.toml"), "name = \"")
            } else if folder.join("package.json").is_file() {
                manifest_name(&folder.join("package.json"), "\"name\": \"")
            } else {
                continue;
            }?;
            let module = target_dir().join(dest).join(format!("{name}.wasm"));
            if newer_than_sources(&module, &folder) {
                continue;
            }
            run(Command::new(sluice_bin())
                .args(["udf", "build"])
                .arg(&folder)
                .arg("--udf-dir")
                .arg(target_dir().join(dest))
                .env("SLUICE_KIT_DIR", udf_kit_dir()))?;
        }
    }
    Ok(())
}

/// The value of the first line of `manifest` that starts with `prefix` (up to the next `"`).
fn manifest_name(manifest: &Path, prefix: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no name", manifest.display()))
}

/// Whether `module` exists and is newer than every file under `folder`, the SDKs and the WIT
/// (what the binary that builds it embeds).
fn newer_than_sources(module: &Path, folder: &Path) -> bool {
    fn newest(dir: &Path, newest_so_far: &mut std::time::SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == ".sluice" || name == "__pycache__" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                newest(&path, newest_so_far);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                *newest_so_far = (*newest_so_far).max(modified);
            }
        }
    }
    let Ok(built) = std::fs::metadata(module).and_then(|m| m.modified()) else {
        return false;
    };
    let mut latest = std::time::SystemTime::UNIX_EPOCH;
    newest(folder, &mut latest);
    newest(&root().join("guest-udfs/sdk-python"), &mut latest);
    newest(&root().join("guest-udfs/sdk-js"), &mut latest);
    newest(&root().join("wit"), &mut latest);
    built > latest
}

fn sluice_bin() -> PathBuf {
    target_dir().join("release").join("sluice")
}

/// The ECG demo on the embedded default: `sluice-demo` starts in-process MQTT brokers, Kafka and
/// an Elasticsearch stand-in, runs `pipelines/ecg-ingest.toml` and `ecg-detect.toml` with
/// `sluice run` against them and prints the results live (see `demo/src/main.rs`).
fn demo() -> Result<()> {
    let udfs = build(HostBuild::Binaries)?;
    run(
        Command::new(target_dir().join("release").join("sluice-demo"))
            .current_dir(root())
            .arg("--sluice")
            .arg(sluice_bin())
            .arg("--udf-dir")
            .arg(&udfs)
            .arg("--log")
            .arg(target_dir().join("demo").join("sluice.log")),
    )
}

/// Installs what the end-to-end tests need and this machine lacks (Debian packages):
/// Mosquitto, and headless Chromium with ChromeDriver (and a font) for the dashboard test.
fn install_test_servers() -> Result<()> {
    ensure_debian_packages(&[
        ("/usr/sbin/mosquitto", "mosquitto"),
        // `ip netns`: the scale-out test's separate hosts.
        ("/usr/sbin/ip", "iproute2"),
        // Building the Python and JavaScript UDFs (`sluice udf build` installs the rest).
        ("/usr/bin/node", "nodejs"),
        ("/usr/bin/npm", "npm"),
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
        (
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "fonts-dejavu-core",
        ),
    ])
}

/// What building the host needs beyond Rust: OpenSSL headers and pkg-config, for librdkafka's
/// TLS and SASL support.
fn install_build_dependencies() -> Result<()> {
    ensure_debian_packages(&[
        ("/usr/include/openssl/ssl.h", "libssl-dev"),
        ("/usr/bin/pkg-config", "pkg-config"),
    ])
}

/// Installs each `(file it provides, Debian package)` whose file is missing, with apt-get.
fn ensure_debian_packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut cmd = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;
    match wanted.iter().find(|(file, _)| !Path::new(file).exists()) {
        None => Ok(()),
        Some((file, package)) => Err(format!(
            "{file} is still missing after apt-get install {package}"
        )),
    }
}

/// tansu, a Kafka-protocol broker, for the end-to-end tests: built once into `target/tools`
/// (about ten minutes on two cores), reused afterwards.
const TANSU_VERSION: &str = "0.6.0";

fn tansu_bin() -> PathBuf {
    target_dir().join("tools/bin/tansu")
}

fn install_tansu() -> Result<()> {
    if tansu_bin().is_file() {
        return Ok(());
    }
    eprintln!("xtask: building tansu {TANSU_VERSION} (a Kafka-protocol broker for the tests) into target/tools");
    let root = target_dir().join("tools");
    run(cargo()
        .args(["install", "--locked", "--features", "dynostore", "--root"])
        .arg(&root)
        .arg(format!("tansu@{TANSU_VERSION}")))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn test(extra: &[String]) -> Result<()> {
    let mut cmd = test_command()?;
    cmd.args(["--workspace"]);
    cmd.args(extra);
    run_counting_tests(&mut cmd)
}

/// The fault-injection suite alone, `--cycles N` times each repeatable fault (default 5).
fn faults(args: &[String]) -> Result<()> {
    let cycles = match args {
        [] => "5".to_string(),
        [flag, n] if flag == "--cycles" && n.parse::<u32>().is_ok_and(|n| n > 0) => n.clone(),
        _ => return Err("usage: cargo xtask faults [--cycles N]".into()),
    };
    let mut cmd = test_command()?;
    cmd.args([
        "--package",
        "sluice-harness",
        "--test",
        "e2e",
        "--",
        "faults::",
    ])
    .env("SLUICE_FAULT_CYCLES", cycles);
    run_counting_tests(&mut cmd)
}

/// `cargo test --release` with the test servers installed, everything built, and the
/// variables the tests read set; the caller adds what to test.
fn test_command() -> Result<Command> {
    install_test_servers()?;
    install_tansu()?;
    // The admin API is checked against its OpenAPI document by schemathesis (`api_schema`).
    let schemathesis = python_venv("schemathesis-venv", "tests/schemathesis/requirements.txt")?
        .with_file_name("schemathesis");
    let udfs = build(HostBuild::ForTests)?;
    build_language_guests()?;
    let mut cmd = cargo();
    cmd.args(["test", "--release"])
        .env("SLUICE_KIT_DIR", udf_kit_dir())
        .env("SLUICE_BIN", sluice_bin())
        .env("SLUICE_TEST_SCHEMATHESIS", schemathesis)
        .env("SLUICE_TEST_TANSU", tansu_bin())
        .env("SLUICE_TEST_UDF_DIR", &udfs)
        .env("SLUICE_TEST_FIXTURE_DIR", target_dir().join("test-udfs"));
    Ok(cmd)
}

/// Runs `cargo test`, passing its output through, and closes with one total line,
/// `tests: N passed, N failed, N ignored`, so CI sees the whole run rather than the last crate.
fn run_counting_tests(cmd: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: running {}", describe(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            println!("{line}");
            if let Some(summary) = line.strip_prefix("test result: ") {
                passed += count(summary, " passed");
                failed += count(summary, " failed");
                ignored += count(summary, " ignored");
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo test: {e}"))?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if status.success() && failed == 0 {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
}

/// The number before `label` in `ok. 3 passed; 0 failed; ...`.
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The same build as `test` and a `--workspace` bench: the same packages and features, so the
/// bench and the tests reuse each other's artifacts (with `--package sluice`, the native anomaly
/// crate and everything above it were built again each way).
fn bench() -> Result<()> {
    build(HostBuild::ForTests)?;
    run(cargo()
        .args(["bench", "--workspace", "--bench", "udf_throughput"])
        .env("SLUICE_TEST_UDF_DIR", target_dir().join("udfs"))
        .env("SLUICE_TEST_FIXTURE_DIR", target_dir().join("test-udfs")))
}

/// A Python virtual environment `target/tools/NAME` with the packages of `requirements` (a
/// path from the root) installed; returns its `python`.
fn python_venv(name: &str, requirements: &str) -> Result<PathBuf> {
    let venv = target_dir().join("tools").join(name);
    let python = venv.join("bin/python");
    if !python.is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(root().join(requirements)))?;
    Ok(python)
}

/// The end-to-end benchmark against a Python bridge; its table is printed and written to
/// `target/bench/e2e.json`.
fn bench_e2e(extra: &[String]) -> Result<()> {
    install_test_servers()?;
    install_tansu()?;
    let udfs = build(HostBuild::Binaries)?;
    let python = python_venv("bench-venv", "bench/e2e/requirements.txt")?;
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    run(Command::new(&python)
        .arg(root().join("bench/e2e/run.py"))
        .arg("--sluice")
        .arg(sluice_bin())
        .arg("--tansu")
        .arg(tansu_bin())
        .arg("--udf-dir")
        .arg(&udfs)
        .arg("--data")
        .arg(root().join("tests/data/ecg_discord_test.msgs"))
        .arg("--model")
        .arg(root().join("guest-udfs/anomaly/model/ecg_autoencoder.json"))
        .arg("--out")
        .arg(out.join("e2e.json"))
        .args(extra))
}

/// The per-language UDF benchmark (`bench/languages/run.py`): the unit converter in Rust,
/// Python and JavaScript and the ECG scorer in Rust and Python, through `sluice udf bench`,
/// cold and cached starts, and hot reloads into a running `sluice run`.
fn bench_languages(extra: &[String]) -> Result<()> {
    install_test_servers()?;
    let udfs = build(HostBuild::Binaries)?;
    build_language_guests()?;
    let python = python_venv("bench-venv", "bench/e2e/requirements.txt")?;
    run(Command::new(&python)
        .arg(root().join("bench/languages/run.py"))
        .arg("--sluice")
        .arg(sluice_bin())
        .arg("--udf-dir")
        .arg(&udfs)
        .arg("--data")
        .arg(root().join("tests/data"))
        .args(extra))
}

fn tidy() -> Result<()> {
    let found = tidy::check(&root());
    for violation in &found {
        eprintln!("{violation}");
    }
    if found.is_empty() {
        eprintln!("xtask: tidy: every checked invariant holds");
        Ok(())
    } else {
        Err(format!("tidy: {} violations", found.len()))
    }
}

fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The guests again for their own target: code such as the anomaly UDF's simd128 lanes only
    // exists there.
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args(["clippy", "--release", "--target", WASM_TARGET]);
    for guest in guests()? {
        cmd.args(["--package", &guest.package]);
    }
    run(cmd.args(["--", "-D", "warnings"]))
}

/// The cargo-fuzz release `fuzz` installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The targets of `fuzz/fuzz_targets/`, each with where its seed corpus comes from.
const FUZZ_TARGETS: &[&str] = &[
    "pipeline_toml",
    "interpolate",
    "codecs",
    "anomaly_payload",
    "dead_letter",
    "journal_entry",
    "sql",
];

/// Runs every fuzz target for the time asked (per target), one after the other, and prints
/// each one's runs and CPU seconds; a crash (or a leak of the time limit) fails the command,
/// and libFuzzer leaves the input that crashed in `target/fuzz/artifacts/TARGET/`.
fn fuzz(args: &[String]) -> Result<()> {
    let seconds: u64 = match args {
        [] => 60,
        [flag, n] if flag == "--seconds" => n.parse().map_err(|_| format!("--seconds {n}?"))?,
        [flag, n] if flag == "--minutes" => {
            n.parse::<u64>().map_err(|_| format!("--minutes {n}?"))? * 60
        }
        _ => return Err("usage: cargo xtask fuzz [--seconds S | --minutes M]".into()),
    };
    let tools = target_dir().join("tools");
    let cargo_fuzz = tools.join("bin/cargo-fuzz");
    if !cargo_fuzz.is_file() {
        run(cargo()
            .args(["install", "--locked", "--root"])
            .arg(&tools)
            .arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}")))?;
    }
    let fuzz_dir = root().join("fuzz");
    let fuzz_target = target_dir().join("fuzz");
    // The fuzz workspace resolves its dependencies as the main one does.
    std::fs::copy(root().join("Cargo.lock"), fuzz_dir.join("Cargo.lock"))
        .map_err(|e| format!("copying Cargo.lock into fuzz/: {e}"))?;
    // `-s none`: no sanitizer, so a stable toolchain builds it (Rust code is memory-safe
    // outside `unsafe`; what is looked for is panics, overflows and assertion failures).
    let fuzz_cmd = |subcommand: &str| {
        let mut cmd = cargo();
        cmd.current_dir(&fuzz_dir)
            .arg("fuzz")
            .arg(subcommand)
            .args(["-s", "none", "--target-dir"])
            .arg(&fuzz_target)
            .env("PATH", path_with(&tools.join("bin")));
        cmd
    };
    run(&mut fuzz_cmd("build"))?;
    let mut report = Vec::new();
    for target in FUZZ_TARGETS {
        let corpus = target_dir().join("fuzz-corpus").join(target);
        seed_corpus(target, &corpus)?;
        let started = cpu_seconds_of_children();
        let mut cmd = fuzz_cmd("run");
        cmd.arg(target).arg(&corpus).args([
            "--".to_string(),
            format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048".into(),
            "-timeout=10".into(),
            "-print_final_stats=1".into(),
        ]);
        let outcome = run(&mut cmd);
        let cpu = cpu_seconds_of_children() - started;
        report.push(format!(
            "{target}: {} after {cpu:.0} CPU seconds",
            if outcome.is_ok() {
                "no crash"
            } else {
                "FAILED"
            }
        ));
        if let Err(err) = outcome {
            println!("{}", report.join("\n"));
            return Err(format!(
                "fuzz target {target}: {err}; the input is in {}",
                fuzz_dir.join("artifacts").join(target).display()
            ));
        }
    }
    println!("fuzz:\n  {}", report.join("\n  "));
    Ok(())
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// User plus system CPU seconds of the children waited for so far.
fn cpu_seconds_of_children() -> f64 {
    let output = Command::new("sh")
        .args(["-c", "cat /proc/$PPID/stat"])
        .output();
    // Fields 16 and 17 (cutime, cstime) in clock ticks, after the `(comm)` field.
    output
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let rest = text.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After `)` come field 3 (state) onwards: cutime and cstime are fields 16 and 17.
            let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some((ticks(13)? + ticks(14)?) as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// Fills `corpus` with seeds for `target` from files the project ships (kept across runs:
/// what the fuzzer finds stays and is built on).
fn seed_corpus(target: &str, corpus: &Path) -> Result<()> {
    std::fs::create_dir_all(corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let root = root();
    let files_in = |dir: &str, ext: &str| -> Vec<PathBuf> {
        std::fs::read_dir(root.join(dir))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == ext))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    match target {
        "pipeline_toml" | "interpolate" => {
            for dir in [
                "pipelines",
                "host/tests/pipeline_specs/valid",
                "host/tests/pipeline_specs/invalid",
            ] {
                for file in files_in(dir, "toml") {
                    seeds.push(
                        std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?,
                    );
                }
            }
            if target == "interpolate" {
                seeds.extend(
                    ["${SLUICE_VAR_A}", "$${X}", "${A:-d}", "${", "a$b", "${1X}"]
                        .map(|s| s.as_bytes().to_vec()),
                );
            }
        }
        "sql" => {
            for file in files_in("pipelines", "sql") {
                seeds.push(std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?);
            }
            // The refused constructs of the compiler's snapshot test, one case per seed.
            let refused = root.join("host/tests/sql_specs/refused.txt");
            let text = std::fs::read_to_string(&refused)
                .map_err(|e| format!("{}: {e}", refused.display()))?;
            for case in text.split("### ").skip(1) {
                let sql = case.split("\n-->\n").next().unwrap_or("");
                let sql = sql.split_once('\n').map_or("", |(_, sql)| sql);
                seeds.push(sql.as_bytes().to_vec());
            }
        }
        "anomaly_payload" => {
            let msgs = root.join("tests/data/ecg_discord_test.msgs");
            let text =
                std::fs::read_to_string(&msgs).map_err(|e| format!("{}: {e}", msgs.display()))?;
            seeds.extend(text.lines().take(5).map(|l| l.as_bytes().to_vec()));
        }
        _ => {}
    }
    for (i, seed) in seeds.iter().enumerate() {
        let path = corpus.join(format!("seed-{i}"));
        std::fs::write(&path, seed).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_commands_do_not_inherit_what_cargo_run_set_for_xtask() {
        // `cargo test` sets these for this test binary, as `cargo run` does for xtask.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let cmd = cargo();
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|n| n == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(removed.iter().any(|n| n == "CARGO_PKG_NAME"), "{removed:?}");
        // The cargo to run and the target directory are the caller's, and stay.
        assert!(!set_by_cargo_run("CARGO"));
        assert!(!set_by_cargo_run("CARGO_TARGET_DIR"));
        assert!(!set_by_cargo_run("CARGO_HOME"));
    }
}
