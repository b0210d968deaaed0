//! The `sluice` subcommands, one file each, plus what they share (logging, UDF lookup).

pub mod admin_client;
pub mod run;
pub mod serve;
pub mod sql;
pub mod udf_bench;
pub mod udf_kit;
pub mod udf_shadow;
pub mod udf_test;
pub mod validate;

use std::path::{Path, PathBuf};
use tracing_subscriber::EnvFilter;

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, span).
    Json,
}

/// Logs to stderr; the filter comes from `SLUICE_LOG` (e.g. `info`, `sluice=debug`), default `warn`.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// The state directory of `sluice serve`: `SLUICE_STATE_DIR`, else `$XDG_STATE_HOME/sluice`,
/// else `~/.local/state/sluice`, else `.sluice-state`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return Path::new(&dir).join("sluice");
    }
    std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".local/state/sluice"))
        .unwrap_or_else(|| PathBuf::from(".sluice-state"))
}

/// The UDF directory: `--udf-dir`, else `SLUICE_UDF_DIR`, else `target/udfs`.
pub fn default_udf_dir() -> PathBuf {
    std::env::var_os("SLUICE_UDF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/udfs"))
}

/// Where compiled UDFs are cached: `SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`,
/// else `~/.cache/sluice`, else none (compile every time).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(Path::new(&dir).join("sluice"));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/sluice"))
}

/// Makes every file and directory this process creates private to its user (umask 077): a
/// host's state directory holds the admin token, pipelines (with their credentials), UDFs,
/// journals and dead letters. Called by the commands that run a host.
pub fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// How `.sql` pipelines are compiled: what the SQL does not say.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SqlArgs {
    /// For `.sql` pipelines: the Kafka bootstrap servers [default: $KAFKA_BROKERS, else
    /// 127.0.0.1:9092].
    #[arg(long, value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,
    /// For `.sql` pipelines: the UDF module serving a SQL function, `NAME=MODULE` (repeat for
    /// more) [default: the module named like the function, lower-cased].
    #[arg(long = "function", value_name = "NAME=MODULE", value_parser = parse_key_value)]
    pub functions: Vec<(String, String)>,
}

impl SqlArgs {
    /// The compiler's options.
    pub fn options(&self) -> sluice::sql::SqlOptions {
        sluice::sql::SqlOptions {
            kafka_brokers: self.kafka_brokers.clone(),
            default_brokers: None,
            functions: self.functions.iter().cloned().collect(),
        }
    }
}

/// Reads and parses one pipeline file (TOML, or SQL compiled with `sql`) with the process
/// environment for `${VAR}`. `Err` is the message to print: the file could not be read, or
/// every config error in it.
pub fn load_pipeline(
    file: &Path,
    sql: &SqlArgs,
) -> Result<sluice::pipeline::PipelineSpec, LoadFailure> {
    let text = std::fs::read_to_string(file).map_err(|err| {
        LoadFailure::Unreadable(format!("{}: cannot read: {err}", file.display()))
    })?;
    let env = |name: &str| std::env::var(name).ok();
    let parsed = if sluice::sql::is_sql(file) {
        sluice::sql::parse_sql_pipeline(file, &text, &sql.options(), &env)
    } else {
        sluice::pipeline::parse_pipeline(file, &text, &env)
    };
    parsed.map_err(|errors| LoadFailure::Invalid(errors.to_string()))
}

/// Why a pipeline file could not be loaded.
pub enum LoadFailure {
    /// The file could not be read.
    Unreadable(String),
    /// The file has config errors (all of them, one per line).
    Invalid(String),
}

/// Parses `KEY=VALUE` for `--config`.
pub fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, found {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
