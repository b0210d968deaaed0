//! The `sluice` binary: command-line parsing and dispatch. Errors become exit codes here.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Sluice: a stream processor extended with sandboxed WebAssembly UDFs.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with UDF modules.
    #[command(subcommand)]
    Udf(UdfCommand),
    /// Check pipeline files without connecting to anything; reports every error at once.
    Validate(cli::validate::ValidateArgs),
    /// Run pipelines until Ctrl-C or SIGTERM, then drain in-flight records.
    Run(cli::run::RunArgs),
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
}

fn main() -> ExitCode {
    cli::init_tracing();
    match Cli::parse().command {
        Command::Udf(UdfCommand::Test(args)) => cli::udf_test::run(args),
        Command::Udf(UdfCommand::New(args)) => cli::udf_kit::new(args),
        Command::Udf(UdfCommand::Build(args)) => cli::udf_kit::build(args),
        Command::Udf(UdfCommand::Bench(args)) => cli::udf_bench::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Run(args) => cli::run::run(args),
    }
}
