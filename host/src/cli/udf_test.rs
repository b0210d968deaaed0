//! `sluice udf test MODULE [--config KEY=VALUE]... [--input FILE]`: run a UDF over input lines.
//!
//! Each input line is one message value. Every output message value is printed on its own line
//! (stdout, input order); each failed record prints `line N: <kind>: <reason>` on stderr.
//! Exit status: 0 all records succeeded, 1 some failed, 2 the module could not be loaded or
//! initialised (the message names the module and why).

use super::{default_cache_dir, default_udf_dir, parse_key_value};
use sluice::transforms::udf::resolve_module;
use sluice::udf_runtime::{RuntimeOptions, UdfLimits, UdfRuntime, UdfWorker};
use sluice::Message;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `sluice udf test`.
#[derive(clap::Args)]
pub struct UdfTestArgs {
    /// A `.wasm` path, or a module name looked up in the UDF directory.
    module: String,
    /// A config entry passed to the UDF's `init` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// Read message values from this file (one per line) instead of stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Messages per `process` call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Where module names are looked up [default: $SLUICE_UDF_DIR or target/udfs].
    #[arg(long, value_name = "DIR")]
    udf_dir: Option<PathBuf>,
    /// Memory cap per instance, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: u64,
    /// Wall-clock deadline per batch, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// Fuel per batch (turns on fuel metering).
    #[arg(long)]
    fuel: Option<u64>,
}

/// Runs the command; the exit status follows the contract in the module docs.
pub fn run(args: UdfTestArgs) -> ExitCode {
    let udf_dir = args.udf_dir.clone().unwrap_or_else(default_udf_dir);
    let path = resolve_module(&args.module, &udf_dir);
    let worker = match start(&args, &path) {
        Ok(worker) => worker,
        Err(reason) => {
            eprintln!(
                "error: cannot load UDF module `{}` ({}): {reason}",
                args.module,
                path.display()
            );
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
    match feed(worker, input, args.batch_size as usize) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn start(args: &UdfTestArgs, path: &std::path::Path) -> Result<UdfWorker, String> {
    if !path.is_file() {
        return Err(
            "no such file (module names are looked up as <udf-dir>/<name>.wasm; \
             build them with `cargo xtask build`, or pass a path)"
                .to_string(),
        );
    }
    let runtime = UdfRuntime::new(RuntimeOptions {
        cache_dir: default_cache_dir(),
        fuel_metering: args.fuel.is_some(),
    })
    .map_err(|e| e.to_string())?;
    let module = runtime.load_file(path, None).map_err(|e| e.to_string())?;
    let limits = UdfLimits {
        memory_bytes: args.memory_mib.saturating_mul(1 << 20),
        deadline: Duration::from_millis(args.deadline_ms),
        fuel: args.fuel,
    };
    module
        .instantiate(args.config.clone(), limits)
        .map_err(|e| e.to_string())
}

/// Streams input lines through the worker in batches; returns how many records failed.
fn feed(
    mut worker: UdfWorker,
    mut input: Box<dyn BufRead>,
    batch_size: usize,
) -> io::Result<usize> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
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
