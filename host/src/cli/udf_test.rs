//! `sluice udf test MODULE [--config KEY=VALUE]... [--input FILE] [--expect FILE]`: run a UDF
//! over input lines.
//!
//! Each input line is one message value. Every output message value is printed on its own line
//! (stdout, input order); each failed record prints `line N: <kind>: <reason>` on stderr.
//! With `--expect`, the outputs are compared line by line with the file instead (a golden test):
//! every difference is shown on stderr.
//! Exit status: 0 all records succeeded (and matched), 1 some failed (or did not match), 2 the
//! module could not be loaded or initialised (the message names the module and why).

use super::{default_cache_dir, default_udf_dir, parse_key_value};
use sluice::udf_registry::{find_version, ModuleRef};
use sluice::udf_runtime::{RuntimeOptions, UdfLimits, UdfRuntime, UdfWorker};
use sluice::Message;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Which UDF to load and the sandbox it runs in: shared by `udf test` and `udf bench`.
#[derive(clap::Args)]
pub struct UdfModuleArgs {
    /// A `.wasm` path, a module name looked up in the UDF directory, or `NAME@SHA8` for exactly
    /// that version (the current file or an archived one), as in a pipeline's `module`.
    pub module: String,
    /// A config entry passed to the UDF's `init` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Messages per `process` call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Where module names are looked up [default: $SLUICE_UDF_DIR or target/udfs].
    #[arg(long, value_name = "DIR")]
    pub udf_dir: Option<PathBuf>,
    /// Memory cap per instance, in MiB [default: by the module's language: 64 compiled,
    /// 128 JavaScript, 128 Python].
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Wall-clock deadline per batch, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub deadline_ms: u64,
    /// Fuel per batch (turns on fuel metering).
    #[arg(long)]
    pub fuel: Option<u64>,
}

/// The file MODULE names: an existing file as given; otherwise a pipeline's `module` rules
/// ([`ModuleRef::parse`]): a `.wasm` or separated path, a name as `<udf_dir>/<name>.wasm`, and
/// `NAME@SHA8` as that version in the UDF directory, current or archived.
fn module_file(module: &str, udf_dir: &Path) -> Result<PathBuf, String> {
    if Path::new(module).is_file() {
        return Ok(PathBuf::from(module));
    }
    match ModuleRef::parse(module) {
        ModuleRef::Path(path) => Ok(path),
        ModuleRef::Name(name) => Ok(udf_dir.join(format!("{name}.wasm"))),
        ModuleRef::Pinned { name, sha } => find_version(udf_dir, &name, &sha)
            .map(|(path, _)| path)
            .map_err(|err| err.to_string()),
    }
}

impl UdfModuleArgs {
    /// Loads, compiles and `init`s the module; `Err` is the line to print (exit status 2).
    pub fn load(&self) -> Result<UdfWorker, String> {
        let udf_dir = self.udf_dir.clone().unwrap_or_else(default_udf_dir);
        let path = module_file(&self.module, &udf_dir).map_err(|reason| {
            format!("error: cannot load UDF module `{}`: {reason}", self.module)
        })?;
        self.start(&path).map_err(|reason| {
            format!(
                "error: cannot load UDF module `{}` ({}): {reason}",
                self.module,
                path.display()
            )
        })
    }

    fn start(&self, path: &std::path::Path) -> Result<UdfWorker, String> {
        if !path.is_file() {
            return Err(
                "no such file (module names are looked up as <udf-dir>/<name>.wasm; \
                 build them with `cargo xtask build`, or pass a path)"
                    .to_string(),
            );
        }
        let runtime = UdfRuntime::new(RuntimeOptions {
            cache_dir: default_cache_dir(),
            fuel_metering: self.fuel.is_some(),
            compile_timeout: None,
            compiler: None,
        })
        .map_err(|e| e.to_string())?;
        let module = runtime.load_file(path, None).map_err(|e| e.to_string())?;
        let limits = UdfLimits {
            memory_bytes: self.memory_mib.map(|mib| mib.saturating_mul(1 << 20)),
            deadline: Duration::from_millis(self.deadline_ms),
            fuel: self.fuel,
        };
        module
            .instantiate(self.config.clone(), limits)
            .map_err(|e| e.to_string())
    }
}

/// Arguments of `sluice udf test`.
#[derive(clap::Args)]
pub struct UdfTestArgs {
    #[command(flatten)]
    udf: UdfModuleArgs,
    /// Read message values from this file (one per line) instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Compare the output lines with this file instead of printing them; show the differences.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
}

/// Runs the command; the exit status follows the contract in the module docs.
pub fn run(args: UdfTestArgs) -> ExitCode {
    let worker = match args.udf.load() {
        Ok(worker) => worker,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let input: Box<dyn BufRead> = match &args.input {
        Some(file) => match File::open(file) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(err) => {
                eprintln!("error: cannot read input {}: {err}", file.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(io::stdin().lock()),
    };
    let expected = match &args.expect {
        Some(file) => match std::fs::read(file) {
            Ok(bytes) => Some((file, bytes)),
            Err(err) => {
                eprintln!(
                    "error: cannot read expected output {}: {err}",
                    file.display()
                );
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let fed = match &expected {
        None => feed(
            worker,
            input,
            args.udf.batch_size as usize,
            io::stdout().lock(),
        ),
        Some((file, want)) => {
            let mut got = Vec::new();
            feed(worker, input, args.udf.batch_size as usize, &mut got)
                .map(|failed| failed + usize::from(!matches_expected(&got, want, file)))
        }
    };
    match fed {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

/// Compares output lines with the expected file's, printing each difference on stderr.
fn matches_expected(got: &[u8], want: &[u8], file: &std::path::Path) -> bool {
    let lines = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect()
    };
    let (got, want) = (lines(got), lines(want));
    let mut differences = 0;
    for i in 0..got.len().max(want.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if w == g => {}
            (Some(w), Some(g)) => {
                eprintln!(
                    "output line {}:\n  - expected: {w}\n  + got:      {g}",
                    i + 1
                );
                differences += 1;
            }
            (Some(w), None) => {
                eprintln!("output line {}: missing\n  - expected: {w}", i + 1);
                differences += 1;
            }
            (None, Some(g)) => {
                eprintln!("output line {}: unexpected\n  + got:      {g}", i + 1);
                differences += 1;
            }
            (None, None) => {}
        }
    }
    if differences == 0 {
        eprintln!("ok: {} output lines match {}", got.len(), file.display());
    } else {
        eprintln!(
            "FAILED: {differences} of {} output lines differ from {}",
            got.len().max(want.len()),
            file.display()
        );
    }
    differences == 0
}

/// Streams input lines through the worker in batches; returns how many records failed.
fn feed(
    mut worker: UdfWorker,
    mut input: Box<dyn BufRead>,
    batch_size: usize,
    output: impl Write,
) -> io::Result<usize> {
    let mut out = BufWriter::new(output);
    let mut failed = 0;
    let mut batch: Vec<Message> = Vec::with_capacity(batch_size);
    let mut first_line = 1usize;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let eof = input.read_until(b'\n', &mut buf)? == 0;
        if !eof {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            batch.push(Message::from_value(buf.as_slice()));
        }
        if batch.len() == batch_size || (eof && !batch.is_empty()) {
            for (i, result) in worker.process(&batch).into_iter().enumerate() {
                match result {
                    Ok(messages) => {
                        for message in messages {
                            out.write_all(&message.value)?;
                            out.write_all(b"\n")?;
                        }
                    }
                    Err(err) => {
                        failed += 1;
                        out.flush()?;
                        eprintln!("line {}: {err}", first_line + i);
                    }
                }
            }
            first_line += batch.len();
            batch.clear();
        }
        if eof {
            break;
        }
    }
    out.flush()?;
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::module_file;
    use std::path::Path;

    #[test]
    fn module_names_and_paths() {
        let dir = Path::new("udfs");
        assert_eq!(
            module_file("anomaly", dir).unwrap(),
            Path::new("udfs/anomaly.wasm")
        );
        assert_eq!(module_file("x/y.wasm", dir).unwrap(), Path::new("x/y.wasm"));
        assert_eq!(module_file("y.wasm", dir).unwrap(), Path::new("y.wasm"));
        // An existing file, named without `.wasm`, is taken as it is.
        let file = tempfile::NamedTempFile::new_in(".").unwrap();
        let name = file.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(module_file(name, dir).unwrap(), Path::new(name));
        // A pinned version that the directory does not hold is an error naming where it looked.
        let err = module_file("anomaly@0123abcd", dir).unwrap_err();
        assert!(
            err.contains("anomaly@0123abcd") && err.contains("udfs/.versions/"),
            "{err}"
        );
    }
}
