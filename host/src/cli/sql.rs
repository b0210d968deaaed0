//! `sluice sql explain FILE.sql`: prints the pipeline TOML a SQL file compiles to (what `run`,
//! `validate` and `deploy` use), or every error in it with file:line:column.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `sluice sql explain`.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// A SQL pipeline file.
    file: PathBuf,
    #[command(flatten)]
    sql: super::SqlArgs,
}

/// Runs the command: the TOML on stdout (exit 0), the errors on stderr (exit 1), or why the
/// file cannot be read (exit 2).
pub fn explain(args: ExplainArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{}: cannot read: {err}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let compiled = sluice::sql::compile(&args.file, &text, &args.sql.options()).and_then(|toml| {
        // What the TOML means is checked too, as `run` would (unset variables stay as written).
        let keep = |_: &str| None;
        sluice::pipeline::parse_pipeline(&args.file, &toml, &keep).map(|_| toml)
    });
    match compiled {
        Ok(toml) => {
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
    }
}
