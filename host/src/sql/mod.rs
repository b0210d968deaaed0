//! SQL pipelines: ksqlDB's `CREATE STREAM` statements compiled into a pipeline, as TOML that
//! the ordinary pipeline parser then reads (so `sluice sql explain` prints exactly what runs).
//!
//! - `CREATE STREAM S (col type, ...) WITH (kafka_topic=..., value_format=...)` declares a
//!   topic's schema; a query reading `S` gets a Kafka source decoding it.
//! - `CREATE STREAM D [WITH (...)] AS SELECT ... FROM S [WHERE ...]` becomes, in order: `udf`
//!   steps for the function calls in WHERE, a `filter`, `udf` steps for the calls in the
//!   SELECT list, a `select`, and a Kafka sink to `D`'s topic (its name, or `kafka_topic`), in
//!   `value_format` (inherited from `S` unless given).
//! - A derived stream read by a later statement of the same file is read in-process from its
//!   `select`, not back from its topic: the same records, once each.
//!
//! Parsing is sqlparser's (`statements.rs` reads the ksqlDB-only forms around it); everything
//! else is refused with the construct's name at its line and column, every error at once.

mod dialect;
mod expr;
mod plan;
mod statements;

pub use plan::{compile, component_name, push_query, source_of, PushQuery, SqlOptions};

use crate::pipeline::{ConfigError, ConfigErrors};
use sqlparser::tokenizer::Location;
use std::path::Path;

/// One problem in a SQL file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

impl SqlError {
    fn at(location: Location, message: impl Into<String>) -> Self {
        SqlError {
            line: location.line,
            column: location.column,
            message: message.into(),
        }
    }

    fn into_config_error(self, file: &Path) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: self.line.max(1) as usize,
            column: self.column.max(1) as usize,
            path: String::new(),
            message: self.message,
        }
    }
}

/// Whether `file` is a SQL pipeline (by its `.sql` extension).
pub fn is_sql(file: &Path) -> bool {
    file.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
}

/// Compiles `text` (a SQL file) and parses the result as a pipeline.
pub fn parse_sql_pipeline(
    file: &Path,
    text: &str,
    options: &SqlOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<crate::pipeline::PipelineSpec, ConfigErrors> {
    let toml = compile(file, text, options)?;
    crate::pipeline::parse_pipeline(file, &toml, env)
}

fn errors(file: &Path, errors: Vec<SqlError>) -> ConfigErrors {
    let mut errors: Vec<ConfigError> = errors
        .into_iter()
        .map(|e| e.into_config_error(file))
        .collect();
    errors.sort_by_key(|e| (e.line, e.column));
    ConfigErrors(errors)
}
