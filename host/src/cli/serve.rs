//! `sluice serve`: a long-lived host with the admin API (pipelines, UDFs, metrics, tap, the
//! dashboard). Comes back from its state directory with the same pipelines and UDF versions;
//! with `--pipelines-dir`, the `.toml` files there are deployed and followed too.
//! Stops on Ctrl-C or SIGTERM after draining every pipeline (at most `--drain-timeout`; a second
//! signal stops at once). Exit status: 0 after a clean stop, 1 when it cannot start (state
//! directory, address in use...), 3 when records were left unacknowledged (as `sluice run`).

use super::run::{exit_after_drain, first_stop_signal, parse_duration};
use super::{default_cache_dir, default_state_dir};
use sluice::admin::{scores::Scoreboard, AdminState};
use sluice::control_plane::{ControlPlane, Env};
use sluice::flow::RunContext;
use sluice::metrics::HostMetrics;
use sluice::state_dir::StateDir;
use sluice::topology::Topology;
use sluice::udf_registry::UdfRegistry;
use sluice::udf_runtime::{RuntimeOptions, UdfRuntime};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The admin API's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// Arguments of `sluice serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address of the admin API and dashboard (port 0: any free port, printed at start).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Where deployed pipelines, uploaded UDFs, a generated admin token and the dead letters of
    /// pipelines without a dead-letter sink (`dead-letters/<pipeline>.jsonl`) are kept
    /// [default: $SLUICE_STATE_DIR, else $XDG_STATE_HOME/sluice, else ~/.local/state/sluice].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where UDF modules are looked up [default: STATE_DIR/udfs].
    #[arg(long, value_name = "DIR")]
    udf_dir: Option<PathBuf>,
    /// Also deploy the `.toml` files in this directory and follow their changes.
    #[arg(long, value_name = "DIR")]
    pipelines_dir: Option<PathBuf>,
    /// Do not watch the UDF directory for new module files (uploads still hot-reload).
    #[arg(long)]
    no_watch: bool,
    /// This host's identity, part of default MQTT client ids [default: $SLUICE_HOST_ID, else
    /// the one kept in STATE_DIR/host-id, generated once].
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// How long a stopping pipeline (shutdown, replace, undeploy) may take to deliver and
    /// acknowledge what is in flight; past it, unacknowledged records are left to redelivery.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: std::time::Duration,
    /// `/ready` fails when a source's oldest unacknowledged record has waited longer than this
    /// (a stuck sink, a lost acknowledgement).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    ready_max_unacked_age: std::time::Duration,
    /// `${VAR}` in pipelines deployed on this host expands only variables whose name starts
    /// with this (others count as unset: their `:-default` applies), so whoever holds the admin
    /// token cannot read the host's environment. An empty prefix allows every variable.
    #[arg(long, value_name = "PREFIX", default_value = "SLUICE_VAR_")]
    var_prefix: String,
    /// Deployed pipelines may point librdkafka's file options (`ssl.ca.location`,
    /// `ssl.certificate.location`, `ssl.key.location`...) at files under this directory
    /// (repeatable); elsewhere they are refused. Other librdkafka options are limited to a
    /// documented allowlist (README, Security).
    #[arg(long = "allow-path", value_name = "DIR")]
    allow_paths: Vec<PathBuf>,
    /// The size cap of each dead-letter file, in bytes; past it a failed record is not
    /// acknowledged (its broker delivers it again) until the file is moved away.
    #[arg(long, value_name = "BYTES", default_value_t = sluice::flow::DEFAULT_DEAD_LETTER_MAX_BYTES)]
    dead_letter_max_bytes: u64,
    /// How long compiling one uploaded or deployed UDF module may take (waiting for a turn
    /// included: at most two compile at once); past it the module is refused with 422.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = super::run::parse_duration)]
    udf_compile_timeout: std::time::Duration,
    /// The memory one UDF compilation may use, in MiB (it runs in a child process with this
    /// cap); past it the module is refused with 422.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    udf_compile_memory_mib: u64,
    /// Serve the admin API and dashboard over HTTPS with this certificate chain (PEM, leaf
    /// first); needs `--tls-key`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: ServeArgs) -> ExitCode {
    let drain_timeout = args.drain_timeout;
    match serve(args) {
        Ok(drained) => exit_after_drain(drained, drain_timeout),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: ServeArgs) -> Result<sluice::topology::Drained, String> {
    super::private_files();
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let state = StateDir::open(state_dir).map_err(|e| e.to_string())?;
    let explicit = std::env::var("SLUICE_ADMIN_TOKEN").ok();
    let (token, generated) = state.admin_token(explicit).map_err(|e| e.to_string())?;
    let runtime = UdfRuntime::new(RuntimeOptions {
        cache_dir: default_cache_dir(),
        fuel_metering: false,
        compile_timeout: Some(args.udf_compile_timeout),
        // A child process of our own executable, so the memory budget holds and a compile
        // past its time is killed, not left running.
        compiler: match std::env::current_exe() {
            Ok(program) => Some(sluice::udf_runtime::CompilerProcess {
                program,
                memory_bytes: args.udf_compile_memory_mib << 20,
            }),
            Err(err) => {
                tracing::warn!(error = %err, "cannot find this executable: UDFs compile in-process, without a memory budget");
                None
            }
        },
    })
    .map_err(|e| e.to_string())?;
    let udf_dir = args.udf_dir.clone().unwrap_or_else(|| state.udf_dir());
    let udfs = UdfRegistry::new(Arc::new(runtime), udf_dir);
    let _udf_watch = if args.no_watch {
        None
    } else {
        Some(udfs.watch()?)
    };
    let host_id = sluice::state_dir::host_id(
        state.root(),
        args.host_id
            .clone()
            .or_else(|| std::env::var("SLUICE_HOST_ID").ok()),
    )
    .map_err(|e| e.to_string())?;
    let host_metrics = Arc::new(HostMetrics {
        host_id: host_id.clone(),
        ..HostMetrics::default()
    });
    let context = RunContext {
        udfs,
        dead_letter_max_bytes: args.dead_letter_max_bytes,
        dead_letter_dir: state.dead_letter_dir(),
        host_id: host_id.into(),
        drain_timeout: args.drain_timeout,
        journals: Some(Arc::new(sluice::journal::JournalSet::new(
            state.journal_dir(),
        ))),
    };
    let topology = Topology::new(context, host_metrics);
    let env: Env = Arc::new(|name: &str| std::env::var(name).ok());
    let policy = sluice::control_plane::DeployPolicy {
        var_prefix: args.var_prefix.clone(),
        allowed_dirs: args.allow_paths.clone(),
    };
    let control = ControlPlane::new(topology.clone(), state.clone(), env, policy);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(sluice::admin::tls::server_config(cert, key)?),
        _ => None,
    };
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        eprintln!(
            "sluice serve: admin API and dashboard on {}://{address}/ (state: {})",
            if tls.is_some() { "https" } else { "http" },
            state.root().display()
        );
        if generated {
            eprintln!(
                "sluice serve: generated an admin token, saved in {} (mode 0600); it is shown only now:\n{token}",
                state.token_path().display()
            );
        }
        let scores = Arc::new(Scoreboard::default());
        let admin = Arc::new(AdminState {
            control: control.clone(),
            token,
            scores: scores.clone(),
            started: Default::default(),
            ready_max_unacked_age: args.ready_max_unacked_age,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = {
            let mut stop_rx = stop_rx.clone();
            let stopped = async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            };
            match tls {
                Some(config) => tokio::spawn(sluice::admin::serve_tls(
                    listener,
                    config,
                    admin.clone(),
                    stopped,
                )),
                None => tokio::spawn(sluice::admin::serve(listener, admin.clone(), stopped)),
            }
        };
        let follow = tokio::spawn(scores.follow(topology.clone()));
        let restored = control.restore().await;
        tracing::info!(pipelines = ?restored, "restored from the state directory");
        let _pipelines_watch = match &args.pipelines_dir {
            Some(dir) => Some(sluice::pipelines_dir::watch(dir.clone(), control.clone()).await?),
            None => None,
        };
        admin.started.store(true, Ordering::Release);
        eprintln!("sluice serve: ready");
        first_stop_signal().await;
        tracing::info!("shutting down: draining every pipeline");
        drop(_pipelines_watch);
        let drained = topology.shutdown().await;
        let _ = stop_tx.send(true);
        follow.abort();
        match server.await {
            Ok(Ok(())) => Ok(drained),
            Ok(Err(err)) => Err(format!("admin API: {err}")),
            Err(err) => Err(format!("admin API task: {err}")),
        }
    })
}
