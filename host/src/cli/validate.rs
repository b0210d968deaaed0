//! `sluice validate FILE...`: parse and check pipeline files without connecting to anything.
//! Prints every error as `file:line:column: field.path: message`; exit 0 when all are valid,
//! 1 when any is not, 2 when a file cannot be read.

use super::{load_pipeline, LoadFailure};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `sluice validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Pipeline files: TOML, or SQL (`.sql`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    sql: super::SqlArgs,
}

/// Runs the command.
pub fn run(args: ValidateArgs) -> ExitCode {
    let mut invalid = false;
    for file in &args.files {
        match load_pipeline(file, &args.sql) {
            Ok(spec) => {
                for warning in spec.warnings() {
                    eprintln!("{warning}");
                }
                println!(
                    "{}: ok: pipeline `{}` ({} sources, {} transforms, {} sinks)",
                    file.display(),
                    spec.name,
                    spec.sources.len(),
                    spec.transforms.len(),
                    spec.sinks.len()
                )
            }
            Err(LoadFailure::Unreadable(message)) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
            Err(LoadFailure::Invalid(errors)) => {
                invalid = true;
                eprintln!("{errors}");
            }
        }
    }
    if invalid {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
