//! `sluice run FILE...`: run pipelines until Ctrl-C or SIGTERM, then drain in-flight records
//! (at most `--drain-timeout`; a second signal stops at once).
//! Exit status: 0 after a clean stop, 1 when a pipeline file is invalid or cannot start, 3 when
//! the drain deadline passed or a second signal came with records still unacknowledged (their
//! brokers deliver them again at the next start).

use super::{default_cache_dir, default_state_dir, default_udf_dir, load_pipeline, LoadFailure};
use sluice::flow::RunContext;
use sluice::state_dir::{dead_letter_dir, host_id, journal_dir};
use sluice::topology;
use sluice::udf_registry::UdfRegistry;
use sluice::udf_runtime::{RuntimeOptions, UdfRuntime};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `sluice run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Pipeline files: TOML, or SQL (`.sql`, compiled as `sluice sql explain` shows).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    sql: super::SqlArgs,
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
    /// Where this host keeps its identity (`host-id`), its pipelines' source journals
    /// (`journal/PIPELINE/`) and, by default, its dead letters [default: $SLUICE_STATE_DIR, else $XDG_STATE_HOME/sluice, else ~/.local/state/sluice].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// This host's identity, part of default MQTT client ids [default: $SLUICE_HOST_ID, else
    /// the one kept in STATE_DIR/host-id, generated once].
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// Write this file (`ready`) once every source is subscribed and receiving; removed first
    /// if it exists.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// How long stopping may take to deliver and acknowledge what is in flight; past it,
    /// unacknowledged records are left to their brokers' redelivery and the exit status is 3.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: std::time::Duration,
    /// The size cap of each dead-letter file, in bytes; past it a failed record is not
    /// acknowledged (its broker delivers it again) until the file is moved away.
    #[arg(long, value_name = "BYTES", default_value_t = sluice::flow::DEFAULT_DEAD_LETTER_MAX_BYTES)]
    dead_letter_max_bytes: u64,
    /// Kafka `options` file locations (`ssl.ca.location`, ...) may point under this directory
    /// (repeatable), as for `sluice serve`; elsewhere they are refused.
    #[arg(long = "allow-path", value_name = "DIR")]
    allow_paths: Vec<PathBuf>,
    /// Pass every Kafka `options` entry to librdkafka unchecked (the file is your own): by
    /// default they are held to the allowlist a deployed pipeline has (README, Security), since
    /// some load code, run commands, read files or switch TLS verification off.
    #[arg(long)]
    allow_any_kafka_option: bool,
}

/// `30s`, `500ms`, `2m` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit is ms, s or m")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Exit status when stopping left records unacknowledged.
pub const EXIT_ABANDONED: u8 = 3;

/// The exit status after a stop that drained as `drained` (`run` and `serve` alike): 0 when
/// everything drained in time, else [`EXIT_ABANDONED`] saying how many records were left.
pub fn exit_after_drain(
    drained: sluice::topology::Drained,
    drain_timeout: std::time::Duration,
) -> ExitCode {
    if drained.abandoned == 0 && drained.timed_out == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "error: the drain deadline ({drain_timeout:?}) passed with {} records unacknowledged; their brokers deliver them again at the next start",
        drained.abandoned
    );
    ExitCode::from(EXIT_ABANDONED)
}

/// Runs the command.
pub fn run(args: RunArgs) -> ExitCode {
    super::private_files();
    let mut specs = Vec::new();
    let mut invalid = false;
    for file in &args.files {
        match load_pipeline(file, &args.sql) {
            Ok(spec) if !args.allow_any_kafka_option => {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                let refused = sluice::kafka_common::pipeline_option_problems(
                    &spec,
                    file,
                    &text,
                    &args.allow_paths,
                );
                if refused.is_empty() {
                    for warning in spec.warnings() {
                        eprintln!("{warning}");
                    }
                    specs.push(spec);
                    continue;
                }
                invalid = true;
                for err in refused {
                    eprintln!("{err}");
                }
                eprintln!(
                    "{}: librdkafka options outside the allowlist (README, Security); \
                     `--allow-path DIR` allows files under DIR, `--allow-any-kafka-option` \
                     passes every option to librdkafka",
                    file.display()
                );
            }
            Ok(spec) => {
                for warning in spec.warnings() {
                    eprintln!("{warning}");
                }
                specs.push(spec)
            }
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
        compile_timeout: None,
        compiler: None,
    }) {
        Ok(runtime) => Arc::new(runtime),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    let udfs = UdfRegistry::new(udf_runtime, args.udf_dir.unwrap_or_else(default_udf_dir));
    let state_dir = args.state_dir.unwrap_or_else(default_state_dir);
    let host_id = match host_id(
        &state_dir,
        args.host_id
            .or_else(|| std::env::var("SLUICE_HOST_ID").ok()),
    ) {
        Ok(id) => id,
        Err(err) => {
            eprintln!("error: host id: {err}");
            return ExitCode::from(1);
        }
    };
    let context = RunContext {
        udfs: udfs.clone(),
        dead_letter_max_bytes: args.dead_letter_max_bytes,
        dead_letter_dir: args
            .dead_letter_dir
            .unwrap_or_else(|| dead_letter_dir(&state_dir)),
        host_id: host_id.into(),
        drain_timeout: args.drain_timeout,
        journals: Some(std::sync::Arc::new(sluice::journal::JournalSet::new(
            journal_dir(&state_dir),
        ))),
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
    if let Some(file) = &args.ready_file {
        let _ = std::fs::remove_file(file);
    }
    match tokio.block_on(topology::run(
        specs,
        context,
        first_stop_signal(),
        args.ready_file.clone(),
    )) {
        Ok(drained) => exit_after_drain(drained, args.drain_timeout),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on the first Ctrl-C or SIGTERM, and arms the second: it exits at once, leaving
/// what is unacknowledged to redelivery.
pub async fn first_stop_signal() {
    stop_signal().await;
    eprintln!(
        "sluice: stopping (draining in-flight records; a second Ctrl-C or SIGTERM stops at once)"
    );
    tokio::spawn(async {
        stop_signal().await;
        eprintln!("sluice: second stop signal: exiting now; unacknowledged records are delivered again at the next start");
        std::process::exit(i32::from(EXIT_ABANDONED));
    });
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
