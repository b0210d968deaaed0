//! ksqlDB's lexical rules for sqlparser: identifiers quoted with backticks (or double quotes),
//! unquoted identifiers case-insensitive (upper-cased by the compiler, as ksqlDB does).
//! The ksqlDB-only statement forms (`CREATE STREAM ... WITH`, `EMIT CHANGES`) are read by
//! `statements.rs` around sqlparser's own expression and query parsers.

use sqlparser::dialect::Dialect;

/// The ksqlDB dialect.
#[derive(Debug, Default)]
pub struct KsqlDialect;

impl Dialect for KsqlDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_' || ch == '@' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }
}
