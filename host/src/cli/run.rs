//! `sluice run FILE...`: run pipelines until Ctrl-C or SIGTERM, then drain in-flight records.
//! Exit status: 0 after a clean stop, 1 when a pipeline file is invalid or cannot start.

use super::{default_cache_dir, default_state_dir, default_udf_dir, load_pipeline, LoadFailure};
use sluice::state_dir::dead_letter_dir;
use sluice::topology::{self, RunContext};
use sluice::udf_registry::UdfRegistry;
use sluice::udf_runtime::{RuntimeOptions, UdfRuntime};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `sluice run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Pipeline TOML files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Where UDF module names are looked up [default: $SLUICE_UDF_DIR or target/udfs].
    #[arg(long, value_name = "DIR")]
    udf_dir: Option<PathBuf>,
    /// Do not watch the UDF directory for new module versions (no hot reload).
    #[arg(long)]
    no_watch: bool,
    /// Where pipelines without a dead-letter sink keep failed records, one JSON-lines file per
    /// pipeline [default: STATE_DIR/dead-letters, STATE_DIR as for `sluice serve`].
    #[arg(long, value_name = "DIR")]
    dead_letter_dir: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: RunArgs) -> ExitCode {
    let mut specs = Vec::new();
    let mut invalid = false;
    for file in &args.files {
        match load_pipeline(file) {
            Ok(spec) => specs.push(spec),
            Err(LoadFailure::Unreadable(message)) | Err(LoadFailure::Invalid(message)) => {
                invalid = true;
                eprintln!("{message}");
            }
        }
    }
    if invalid {
        return ExitCode::from(1);
    }
    let udf_runtime = match UdfRuntime::new(RuntimeOptions {
        cache_dir: default_cache_dir(),
        fuel_metering: false,
    }) {
        Ok(runtime) => Arc::new(runtime),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    let udfs = UdfRegistry::new(udf_runtime, args.udf_dir.unwrap_or_else(default_udf_dir));
    let context = RunContext {
        udfs: udfs.clone(),
        dead_letter_dir: args
            .dead_letter_dir
            .unwrap_or_else(|| dead_letter_dir(&default_state_dir())),
    };
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    // Hot reload: a changed module file in the UDF directory goes live between batches.
    let _watch = if args.no_watch {
        None
    } else {
        match udfs.watch() {
            Ok(watch) => Some(watch),
            Err(err) => {
                eprintln!("warning: UDF hot reload is off: {err}");
                None
            }
        }
    };
    match tokio.block_on(topology::run(specs, context, stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::warn!("cannot listen for SIGTERM: {err}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
