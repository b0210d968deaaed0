//! The `sluice` binary: command-line parsing and dispatch. Errors become exit codes here.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Sluice: a stream processor extended with sandboxed WebAssembly UDFs.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Log format on stderr (the level comes from SLUICE_LOG, e.g. `info`).
    #[arg(long, global = true, value_enum, default_value_t = cli::LogFormat::Text)]
    log_format: cli::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with UDF modules.
    #[command(subcommand)]
    Udf(UdfCommand),
    /// SQL pipelines (ksqlDB's CREATE STREAM statements).
    #[command(subcommand)]
    Sql(SqlCommand),
    /// Check pipeline files without connecting to anything; reports every error at once.
    Validate(cli::validate::ValidateArgs),
    /// Run pipelines until Ctrl-C or SIGTERM, then drain in-flight records.
    Run(cli::run::RunArgs),
    /// Run a long-lived host with the admin API, metrics and dashboard.
    Serve(cli::serve::ServeArgs),
    /// Deploy pipeline files to a running host (or replace them, draining the old version).
    Deploy(cli::admin_client::DeployArgs),
    /// Drain and stop a pipeline on a running host.
    Undeploy(cli::admin_client::UndeployArgs),
    /// Show a running host's pipelines (components, counters, last errors) and UDFs.
    Status(cli::admin_client::StatusArgs),
    /// Stream the messages passing one component of a running host (PIPELINE.COMPONENT).
    Tap(cli::admin_client::TapArgs),
    /// Internal: compile a UDF module read on stdin for `sluice serve`, within its budget.
    #[command(name = "__compile-udf", hide = true)]
    CompileUdf {
        /// Fuel metering on, as in the host's engine.
        #[arg(long)]
        fuel: bool,
    },
}

#[derive(Subcommand)]
enum SqlCommand {
    /// Print the pipeline TOML a SQL file compiles to.
    Explain(cli::sql::ExplainArgs),
}

#[derive(Subcommand)]
enum UdfCommand {
    /// Run a UDF over input lines (one message value per line) and print its outputs.
    Test(cli::udf_test::UdfTestArgs),
    /// Scaffold a new UDF crate on the SDK (example body, unit test, samples, README).
    New(cli::udf_kit::UdfNewArgs),
    /// Build a UDF crate for wasm32-wasip2, check it, and copy it into the UDF directory.
    Build(cli::udf_kit::UdfBuildArgs),
    /// Measure a UDF's throughput (records/s) and latency percentiles on sample input.
    Bench(cli::udf_bench::UdfBenchArgs),
    /// Upload a module to a running host: it goes live (hot reload) if it passes the checks.
    Push(cli::admin_client::UdfPushArgs),
    /// Put a UDF on a running host back to its previous version.
    Rollback(cli::admin_client::UdfRollbackArgs),
    /// How the shadow of a UDF compares with its live version (outputs, deltas, alerts).
    Shadow(cli::udf_shadow::ShadowArgs),
    /// Make the shadow of a UDF live (between batches, nothing lost).
    Promote(cli::udf_shadow::NameArgs),
    /// Stop the shadow of a UDF.
    Unshadow(cli::udf_shadow::NameArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(cli.log_format);
    match cli.command {
        Command::Udf(UdfCommand::Test(args)) => cli::udf_test::run(args),
        Command::Udf(UdfCommand::New(args)) => cli::udf_kit::new(args),
        Command::Udf(UdfCommand::Build(args)) => cli::udf_kit::build(args),
        Command::Udf(UdfCommand::Bench(args)) => cli::udf_bench::run(args),
        Command::Sql(SqlCommand::Explain(args)) => cli::sql::explain(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Deploy(args) => cli::admin_client::deploy(args),
        Command::Undeploy(args) => cli::admin_client::undeploy(args),
        Command::Status(args) => cli::admin_client::status(args),
        Command::Tap(args) => cli::admin_client::tap(args),
        Command::CompileUdf { fuel } => {
            ExitCode::from(u8::try_from(sluice::udf_runtime::compile_child_main(fuel)).unwrap_or(1))
        }
        Command::Udf(UdfCommand::Push(args)) => cli::admin_client::udf_push(args),
        Command::Udf(UdfCommand::Rollback(args)) => cli::admin_client::udf_rollback(args),
        Command::Udf(UdfCommand::Shadow(args)) => cli::udf_shadow::show(args),
        Command::Udf(UdfCommand::Promote(args)) => cli::udf_shadow::promote(args),
        Command::Udf(UdfCommand::Unshadow(args)) => cli::udf_shadow::unshadow(args),
    }
}
