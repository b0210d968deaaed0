//! From SQL text to statements: sqlparser's tokenizer, then one statement per `;`. The
//! ksqlDB-only forms are read here, token by token (`CREATE STREAM name (cols) WITH (...)`,
//! `SET 'auto.offset.reset'`, a trailing `EMIT CHANGES`); everything inside them (types,
//! literals, the whole `SELECT`) is sqlparser's own parsing. Anything else is refused naming
//! the construct, at its line and column.

use super::dialect::KsqlDialect;
use super::SqlError;
use sqlparser::ast::{DataType, Ident, Query};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace, Word};

/// One statement of a SQL file.
#[derive(Debug)]
pub enum Statement {
    /// `CREATE STREAM name (col type, ...) WITH (...)`.
    Declare {
        name: Ident,
        columns: Vec<(Ident, DataType, Location)>,
        with: Vec<Property>,
        at: Location,
    },
    /// `CREATE STREAM name [WITH (...)] AS SELECT ...`.
    Derive {
        name: Ident,
        with: Vec<Property>,
        query: Box<Query>,
        at: Location,
    },
    /// `SET 'auto.offset.reset' = 'earliest'`.
    Set {
        key: String,
        value: String,
        at: Location,
    },
    /// `SELECT ... EMIT CHANGES` (a push query: `sluice tap`).
    Push { query: Box<Query>, at: Location },
}

/// One `key = value` of a `WITH (...)`.
#[derive(Debug, Clone)]
pub struct Property {
    /// The key, upper-cased (`KAFKA_TOPIC`).
    pub key: String,
    /// The value as written, without quotes.
    pub value: String,
    /// Where the key is.
    pub at: Location,
}

/// A `-- sluice: key = value` comment.
#[derive(Debug, Clone)]
pub struct Directive {
    /// The key (`function.ANOMALY`, `name`...), as written.
    pub key: String,
    /// The value.
    pub value: String,
    /// Where the comment is.
    pub at: Location,
}

/// Every statement and directive of `text`, and every error (parsing goes on after one).
pub fn parse(text: &str) -> (Vec<Statement>, Vec<Directive>, Vec<SqlError>) {
    let mut errors = Vec::new();
    let mut directives = Vec::new();
    let tokens = match Tokenizer::new(&KsqlDialect, text).tokenize_with_location() {
        Ok(tokens) => tokens,
        Err(err) => {
            errors.push(SqlError::at(err.location, err.message));
            return (Vec::new(), directives, errors);
        }
    };
    for token in &tokens {
        if let Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) = &token.token {
            if let Some(rest) = comment.trim().strip_prefix("sluice:") {
                match rest.split_once('=') {
                    Some((key, value)) => directives.push(Directive {
                        key: key.trim().to_string(),
                        value: value.trim().to_string(),
                        at: token.span.start,
                    }),
                    None => errors.push(SqlError::at(
                        token.span.start,
                        format!(
                            "a `-- sluice:` comment is `-- sluice: key = value`, found {:?}",
                            rest.trim()
                        ),
                    )),
                }
            }
        }
    }
    let mut statements = Vec::new();
    for group in split(tokens) {
        match statement(group) {
            Ok(Some(statement)) => statements.push(statement),
            Ok(None) => {}
            Err(err) => errors.push(err),
        }
    }
    (statements, directives, errors)
}

/// The tokens of each statement, without comments and whitespace, `;` dropped.
fn split(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut groups = vec![Vec::new()];
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => groups.push(Vec::new()),
            _ => groups.last_mut().map_or((), |g| g.push(token)),
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn word(token: &TokenWithSpan) -> Option<&Word> {
    match &token.token {
        Token::Word(word) if word.quote_style.is_none() => Some(word),
        _ => None,
    }
}

fn is_word(token: Option<&TokenWithSpan>, text: &str) -> bool {
    token
        .and_then(word)
        .is_some_and(|w| w.value.eq_ignore_ascii_case(text))
}

/// One statement; `Err` names what is wrong or refused, where.
fn statement(mut tokens: Vec<TokenWithSpan>) -> Result<Option<Statement>, SqlError> {
    let at = tokens[0].span.start;
    // ksqlDB's constructs that sqlparser would misread: refused by name, where they are.
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1);
        if is_word(Some(token), "JOIN") {
            return Err(SqlError::at(
                token.span.start,
                "JOIN is not supported: a query reads one stream",
            ));
        }
        if is_word(Some(token), "WINDOW") {
            return Err(SqlError::at(
                token.span.start,
                "windows (WINDOW TUMBLING/HOPPING/SESSION) are not supported: Sluice SQL has no aggregation",
            ));
        }
        if is_word(Some(token), "PARTITION") && is_word(next, "BY") {
            return Err(SqlError::at(
                token.span.start,
                "PARTITION BY is not supported: a derived stream is written without a key",
            ));
        }
        if is_word(Some(token), "EMIT") && is_word(next, "FINAL") {
            return Err(SqlError::at(
                token.span.start,
                "EMIT FINAL is not supported: it belongs to windowed aggregations",
            ));
        }
    }
    // A trailing `EMIT CHANGES`: a push query (or a persistent one that says so).
    let n = tokens.len();
    let emit =
        n >= 2 && is_word(tokens.get(n - 2), "EMIT") && is_word(tokens.get(n - 1), "CHANGES");
    if emit {
        tokens.truncate(n - 2);
    }
    let first = tokens
        .first()
        .and_then(word)
        .map(|w| w.value.to_ascii_uppercase());
    let words: Vec<String> = tokens
        .iter()
        .take(4)
        .map_while(word)
        .map(|w| w.value.to_ascii_uppercase())
        .collect();
    let head = |k: usize| words.iter().take(k).cloned().collect::<Vec<_>>().join(" ");
    let mut parser = Parser::new(&KsqlDialect).with_tokens_with_locations(tokens);
    match first.as_deref() {
        Some("CREATE") => {
            let mut i = 1;
            if words.get(1).map(String::as_str) == Some("OR") {
                i = 3; // OR REPLACE
            }
            if words.get(i).map(String::as_str) == Some("SOURCE") {
                i += 1;
            }
            match words.get(i).map(String::as_str) {
                Some("STREAM") => create_stream(&mut parser, i + 1, at).map(Some),
                Some("TABLE") => Err(SqlError::at(
                    at,
                    "tables (CREATE TABLE) are not supported: Sluice SQL has streams only",
                )),
                _ => Err(SqlError::at(
                    at,
                    format!(
                        "{} is not supported: Sluice SQL accepts CREATE STREAM",
                        head(3)
                    ),
                )),
            }
        }
        Some("SET") => set(&mut parser, at).map(Some),
        Some("SELECT") => {
            let query = parser.parse_query().map_err(parse_error)?;
            expect_end(&mut parser)?;
            if emit {
                Ok(Some(Statement::Push { query, at }))
            } else {
                Err(SqlError::at(
                    at,
                    "pull queries are not supported: a push query ends with EMIT CHANGES",
                ))
            }
        }
        Some("INSERT") => Err(SqlError::at(
            at,
            "INSERT INTO is not supported: write one CREATE STREAM ... AS SELECT per output",
        )),
        Some(_) => Err(SqlError::at(
            at,
            format!(
                "{} is not supported: a Sluice SQL file holds CREATE STREAM and SET statements",
                head(2)
            ),
        )),
        None => Err(SqlError::at(
            at,
            "expected a statement such as CREATE STREAM",
        )),
    }
}

/// `CREATE [OR REPLACE] [SOURCE] STREAM name ...`, after `skip` words.
fn create_stream(parser: &mut Parser, skip: usize, at: Location) -> Result<Statement, SqlError> {
    for _ in 0..skip {
        parser.next_token();
    }
    let name = parser.parse_identifier().map_err(parse_error)?;
    let mut columns = Vec::new();
    if parser.consume_token(&Token::LParen) {
        loop {
            let column = parser.parse_identifier().map_err(parse_error)?;
            let data_type = parser.parse_data_type().map_err(parse_error)?;
            let next = parser.peek_token();
            if let Some(w) = word(&next) {
                let what = w.value.to_ascii_uppercase();
                if ["KEY", "PRIMARY", "HEADERS", "HEADER"].contains(&what.as_str()) {
                    return Err(SqlError::at(
                        next.span.start,
                        format!(
                            "{what} columns are not supported: Sluice SQL reads record values (the key passes through unread)"
                        ),
                    ));
                }
            }
            columns.push((column.clone(), data_type, column.span.start));
            if parser.consume_token(&Token::RParen) {
                break;
            }
            parser.expect_token(&Token::Comma).map_err(parse_error)?;
        }
    }
    let with = if parser.parse_keyword(Keyword::WITH) {
        properties(parser)?
    } else {
        Vec::new()
    };
    if parser.parse_keyword(Keyword::AS) {
        if !columns.is_empty() {
            return Err(SqlError::at(
                at,
                "CREATE STREAM ... AS SELECT takes its columns from the SELECT, not a column list",
            ));
        }
        let query = parser.parse_query().map_err(parse_error)?;
        expect_end(parser)?;
        return Ok(Statement::Derive {
            name,
            with,
            query,
            at,
        });
    }
    expect_end(parser)?;
    if columns.is_empty() {
        return Err(SqlError::at(
            at,
            "CREATE STREAM needs a column list `(col type, ...)` or `AS SELECT ...` (schema inference is not supported)",
        ));
    }
    Ok(Statement::Declare {
        name,
        columns,
        with,
        at,
    })
}

/// `( key = value, ... )` after `WITH`.
fn properties(parser: &mut Parser) -> Result<Vec<Property>, SqlError> {
    parser.expect_token(&Token::LParen).map_err(parse_error)?;
    let mut with = Vec::new();
    loop {
        let key = parser.parse_identifier().map_err(parse_error)?;
        parser.expect_token(&Token::Eq).map_err(parse_error)?;
        let token = parser.next_token();
        let value = match &token.token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.clone(),
            Token::Number(n, _) => n.clone(),
            Token::Word(w) => w.value.clone(),
            other => {
                return Err(SqlError::at(
                    token.span.start,
                    format!("expected a value for {}, found {other}", key.value),
                ))
            }
        };
        with.push(Property {
            key: key.value.to_ascii_uppercase(),
            value,
            at: key.span.start,
        });
        if parser.consume_token(&Token::RParen) {
            return Ok(with);
        }
        parser.expect_token(&Token::Comma).map_err(parse_error)?;
    }
}

/// `SET 'key' = 'value'`.
fn set(parser: &mut Parser, at: Location) -> Result<Statement, SqlError> {
    parser.next_token();
    let string = |parser: &mut Parser| {
        let token = parser.next_token();
        match token.token {
            Token::SingleQuotedString(s) => Ok(s),
            other => Err(SqlError::at(
                token.span.start,
                format!("expected a quoted property such as 'auto.offset.reset', found {other}"),
            )),
        }
    };
    let key = string(parser)?;
    parser.expect_token(&Token::Eq).map_err(parse_error)?;
    let value = string(parser)?;
    expect_end(parser)?;
    Ok(Statement::Set { key, value, at })
}

fn expect_end(parser: &mut Parser) -> Result<(), SqlError> {
    let next = parser.peek_token();
    match next.token {
        Token::EOF => Ok(()),
        other => Err(SqlError::at(
            next.span.start,
            format!("unexpected {other} after the end of the statement"),
        )),
    }
}

/// sqlparser's error, with the position it names taken out of the message.
fn parse_error(err: ParserError) -> SqlError {
    let text = match err {
        ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".into(),
    };
    match text.rsplit_once(" at Line: ") {
        Some((message, place)) => {
            let mut numbers = place
                .split(", Column: ")
                .map(|n| n.trim().parse::<u64>().unwrap_or(0));
            let line = numbers.next().unwrap_or(0);
            let column = numbers.next().unwrap_or(0);
            SqlError::at(Location { line, column }, message.to_string())
        }
        None => SqlError::at(Location { line: 0, column: 0 }, text),
    }
}
