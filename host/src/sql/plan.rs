//! The compiler proper: a catalog of streams, each statement's components, and the TOML text.

use super::expr::{canonical, field, CallStep, Scope, SqlType, Typed};
use super::statements::{self, Directive, Property, Statement};
use super::{errors, SqlError};
use crate::pipeline::ConfigErrors;
use sqlparser::ast::{GroupByExpr, Ident, Query, SelectItem, SetExpr, Spanned, TableFactor};
use sqlparser::tokenizer::Location;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// What the SQL does not say: where Kafka is, and which module serves a function.
#[derive(Debug, Clone, Default)]
pub struct SqlOptions {
    /// Kafka bootstrap servers (`--kafka-brokers`), taken literally.
    pub kafka_brokers: Option<String>,
    /// Without `kafka_brokers`: a `${VAR:-default}` template read when the pipeline is
    /// (default `${KAFKA_BROKERS:-127.0.0.1:9092}`; `sluice serve` uses its variable prefix).
    pub default_brokers: Option<String>,
    /// `FUNCTION` (upper-cased) → UDF module, from `--function NAME=MODULE`; a function not
    /// mapped here or by a `-- sluice: function.NAME = MODULE` comment is the module named
    /// like it, lower-cased (`ANOMALY` → `anomaly`).
    pub functions: BTreeMap<String, String>,
}

/// The default Kafka bootstrap servers of a compiled pipeline (interpolated when it is read).
const DEFAULT_BROKERS: &str = "${KAFKA_BROKERS:-127.0.0.1:9092}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delimited,
    Json,
    Kafka,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Delimited => "DELIMITED",
            Kind::Json => "JSON",
            Kind::Kafka => "KAFKA",
        }
    }
}

/// Why `columns` cannot be written in `format`: KAFKA holds exactly one INTEGER, BIGINT,
/// DOUBLE or VARCHAR column.
fn kafka_problem(format: &Format, columns: &[(String, SqlType)]) -> Option<String> {
    if format.kind != Kind::Kafka {
        return None;
    }
    match columns {
        [(_, SqlType::Boolean)] => {
            Some("value_format KAFKA has no BOOLEAN (INTEGER, BIGINT, DOUBLE, VARCHAR)".into())
        }
        [_] => None,
        _ => Some(format!(
            "value_format KAFKA holds exactly one column, not {}",
            columns.len()
        )),
    }
}

#[derive(Debug, Clone)]
struct Format {
    kind: Kind,
    delimiter: Option<String>,
}

#[derive(Debug, Clone)]
struct Stream {
    columns: Vec<(String, SqlType)>,
    format: Format,
    topic: String,
    /// The component its records come from: a Kafka source (made when first read) for a
    /// declared stream, the `select` of a derived one.
    component: Option<String>,
    declared: bool,
}

struct Plan<'a> {
    pipeline: String,
    brokers: String,
    offset_reset: Option<String>,
    dead_letter_topic: String,
    workers: String,
    functions: BTreeMap<String, String>,
    streams: BTreeMap<String, Stream>,
    /// Streams whose statement failed: reading them is not reported again.
    broken: Vec<String>,
    blocks: Vec<String>,
    errors: Vec<SqlError>,
    counter: usize,
    file: &'a Path,
    /// The SQL, kept in the TOML's header (`#| ` lines) so a push query can be typed later.
    source: &'a str,
}

/// Compiles a SQL file into pipeline TOML, or every error in it.
pub fn compile(file: &Path, text: &str, options: &SqlOptions) -> Result<String, ConfigErrors> {
    let plan = plan(file, text, options);
    if !plan.errors.is_empty() {
        return Err(errors(file, plan.errors));
    }
    Ok(plan.toml())
}

/// The prefix of the SQL source lines in a compiled pipeline's header.
pub const SOURCE_PREFIX: &str = "#| ";

/// The SQL a compiled pipeline's TOML came from (its `#| ` header lines), if any.
pub fn source_of(toml: &str) -> Option<String> {
    let lines: Vec<&str> = toml
        .lines()
        .filter_map(|l| {
            l.strip_prefix(SOURCE_PREFIX)
                .or_else(|| (l == "#|").then_some(""))
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Every statement planned, errors included.
fn plan<'a>(file: &'a Path, text: &'a str, options: &SqlOptions) -> Plan<'a> {
    let (statements, directives, parse_errors) = statements::parse(text);
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sql")
        .to_string();
    let mut plan = Plan {
        pipeline: stem,
        // A value given is taken as it is; the default is interpolated when the TOML is read.
        brokers: match &options.kafka_brokers {
            Some(brokers) => toml_string(brokers),
            None => format!(
                "\"{}\"",
                options
                    .default_brokers
                    .as_deref()
                    .unwrap_or(DEFAULT_BROKERS)
            ),
        },
        offset_reset: None,
        dead_letter_topic: "sluice-dead-letters".into(),
        workers: "\"auto\"".into(),
        functions: BTreeMap::new(),
        streams: BTreeMap::new(),
        broken: Vec::new(),
        blocks: Vec::new(),
        errors: parse_errors,
        counter: 0,
        file,
        source: text,
    };
    for directive in &directives {
        plan.directive(directive);
    }
    // Flags win over comments.
    for (name, module) in &options.functions {
        plan.functions
            .insert(name.to_ascii_uppercase(), module.clone());
    }
    // SETs apply to the whole file, as they would to the queries after them in ksqlDB.
    for statement in &statements {
        if let Statement::Set { key, value, at } = statement {
            plan.set(key, value, *at);
        }
    }
    let mut derived = 0;
    for statement in statements {
        match statement {
            Statement::Declare {
                name,
                columns,
                with,
                at,
            } => plan.declare(&name, &columns, &with, at),
            Statement::Derive {
                name,
                with,
                query,
                at,
            } => {
                derived += 1;
                plan.derive(&name, &with, &query, at)
            }
            Statement::Set { .. } => {}
            Statement::Push { at, .. } => plan.errors.push(SqlError::at(
                at,
                "a push query (SELECT ... EMIT CHANGES) runs with `sluice tap`, not in a pipeline file",
            )),
        }
    }
    if derived == 0 && plan.errors.is_empty() {
        plan.errors.push(SqlError::at(
            Location { line: 1, column: 1 },
            "nothing to run: the file has no CREATE STREAM ... AS SELECT",
        ));
    }
    plan
}

/// A push query for `sluice tap`: the stream it reads, its WHERE and its columns as CEL
/// (every column of the stream when it says `*`).
#[derive(Debug, Clone)]
pub struct PushQuery {
    /// The stream, as its canonical name (`ANOMALYDETECTIONWITHFILTER`).
    pub stream: String,
    /// The WHERE condition, as CEL.
    pub condition: Option<String>,
    /// Output columns and their CEL; empty for `*`.
    pub columns: Vec<(String, String)>,
}

/// Reads `SELECT ... FROM stream [WHERE ...] EMIT CHANGES`, typed against the streams of
/// `pipeline_sql` (the SQL of the pipeline it taps) when given; otherwise every column is of a
/// type known only at run time. Function calls are refused.
pub fn push_query(text: &str, pipeline_sql: Option<&str>) -> Result<PushQuery, String> {
    let (mut statements, _, errors) = statements::parse(text);
    let describe = |e: &SqlError| format!("{}:{}: {}", e.line, e.column, e.message);
    if let Some(err) = errors.first() {
        return Err(describe(err));
    }
    let query = match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Push { query, .. }), true) => query,
        _ => {
            return Err(
                "expected one push query: SELECT ... FROM STREAM [WHERE ...] EMIT CHANGES".into(),
            )
        }
    };
    let (from, qualifiers) = from_of(&query).map_err(|e| describe(&e))?;
    let catalog = pipeline_sql
        .map(|sql| plan(Path::new("pipeline.sql"), sql, &SqlOptions::default()).streams);
    let columns = catalog
        .as_ref()
        .and_then(|streams| streams.get(&canonical(&from)))
        .map(|stream| stream.columns.clone());
    let functions = BTreeMap::new();
    let mut counter = 0;
    let mut scope = Scope {
        columns: columns.as_deref().unwrap_or(&[]),
        qualifiers,
        functions: &functions,
        steps: Vec::new(),
        counter: &mut counter,
        open: columns.is_none(),
    };
    let projection = project(&query, &mut scope).map_err(|e| describe(&e))?;
    if !scope.steps.is_empty() || !projection.where_steps.is_empty() {
        return Err("function calls are not supported in a push query: call them in the stream's CREATE STREAM ... AS SELECT".into());
    }
    Ok(PushQuery {
        stream: canonical(&from),
        condition: projection.condition.map(|c| c.cel),
        columns: if projection.wildcard {
            Vec::new()
        } else {
            projection
                .columns
                .into_iter()
                .map(|(name, typed)| (name, typed.cel))
                .collect()
        },
    })
}

/// A checked SELECT: its WHERE (and the calls it needs first), its columns (and theirs).
struct Projection {
    where_steps: Vec<CallStep>,
    condition: Option<Typed>,
    columns: Vec<(String, Typed)>,
    wildcard: bool,
}

/// The FROM stream of a query and the names its columns may be qualified with; refuses every
/// shape but `SELECT ... FROM one_stream [WHERE ...]`.
fn from_of(query: &Query) -> Result<(Ident, Vec<String>), SqlError> {
    let at = query.span().start;
    let refuse =
        |at: Location, what: &str| Err(SqlError::at(at, format!("{what} is not supported")));
    if query.with.is_some() {
        return refuse(at, "WITH (common table expressions)");
    }
    if let Some(order) = &query.order_by {
        return refuse(order.span().start, "ORDER BY");
    }
    if let Some(limit) = &query.limit_clause {
        return refuse(limit.span().start, "LIMIT");
    }
    if query.fetch.is_some() || !query.locks.is_empty() {
        return refuse(at, "FETCH or FOR UPDATE");
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return refuse(at, "UNION, INTERSECT, EXCEPT or VALUES");
    };
    if select.distinct.is_some() {
        return refuse(at, "SELECT DISTINCT");
    }
    if select.top.is_some() || select.into.is_some() {
        return refuse(at, "TOP or SELECT INTO");
    }
    match &select.group_by {
        GroupByExpr::Expressions(exprs, _) if exprs.is_empty() => {}
        group => return refuse(group_at(group, at), "GROUP BY (aggregation)"),
    }
    if let Some(having) = &select.having {
        return refuse(having.span().start, "HAVING");
    }
    if !select.named_window.is_empty() || select.qualify.is_some() {
        return refuse(at, "WINDOW or QUALIFY");
    }
    if !select.lateral_views.is_empty()
        || !select.sort_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
    {
        return refuse(at, "LATERAL VIEW, SORT BY, CLUSTER BY or DISTRIBUTE BY");
    }
    let [from] = select.from.as_slice() else {
        return match select.from.get(1) {
            Some(second) => refuse(second.relation.span().start, "a join (FROM a, b)"),
            None => Err(SqlError::at(at, "a query needs FROM a stream")),
        };
    };
    if let Some(join) = from.joins.first() {
        return refuse(join.relation.span().start, "JOIN");
    }
    match &from.relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let [sqlparser::ast::ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
                return refuse(name.span().start, "a qualified stream name");
            };
            let mut qualifiers = vec![canonical(ident)];
            if let Some(alias) = alias {
                qualifiers.push(canonical(&alias.name));
            }
            Ok((ident.clone(), qualifiers))
        }
        TableFactor::Derived { .. } => refuse(from.relation.span().start, "a subquery in FROM"),
        other => refuse(other.span().start, "this FROM clause"),
    }
}

fn group_at(group: &GroupByExpr, at: Location) -> Location {
    match group {
        GroupByExpr::Expressions(exprs, _) => exprs.first().map_or(at, |e| e.span().start),
        GroupByExpr::All(_) => at,
    }
}

/// The WHERE and the SELECT list of `query`, compiled in `scope` (whose steps collect the
/// SELECT list's calls; the WHERE's are kept apart, to run before the filter).
fn project(query: &Query, scope: &mut Scope) -> Result<Projection, SqlError> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(SqlError::at(query.span().start, "expected SELECT"));
    };
    let condition = match &select.selection {
        Some(selection) => {
            let condition = scope.compile(selection)?;
            if !matches!(condition.ty, SqlType::Boolean | SqlType::Any) {
                return Err(SqlError::at(
                    selection.span().start,
                    format!(
                        "WHERE needs a condition (BOOLEAN), not {}",
                        condition.ty.name()
                    ),
                ));
            }
            Some(condition)
        }
        None => None,
    };
    let where_steps = std::mem::take(&mut scope.steps);
    let mut columns: Vec<(String, Typed)> = Vec::new();
    let mut wildcard = false;
    let mut unnamed = 0;
    for item in &select.projection {
        let at = item.span().start;
        let (name, typed) = match item {
            SelectItem::UnnamedExpr(expr) => {
                let typed = scope.compile(expr)?;
                let name = match expr {
                    sqlparser::ast::Expr::Identifier(ident) => canonical(ident),
                    sqlparser::ast::Expr::CompoundIdentifier(parts) => {
                        parts.last().map(canonical).unwrap_or_default()
                    }
                    _ => {
                        let name = format!("KSQL_COL_{unnamed}");
                        unnamed += 1;
                        name
                    }
                };
                (name, typed)
            }
            SelectItem::ExprWithAlias { expr, alias } => (canonical(alias), scope.compile(expr)?),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                wildcard = true;
                for (name, ty) in scope.columns.iter().filter(|(n, _)| !n.starts_with('_')) {
                    columns.push((
                        name.clone(),
                        Typed {
                            cel: field(name),
                            ty: *ty,
                        },
                    ));
                }
                continue;
            }
            _ => return Err(SqlError::at(at, "this SELECT item is not supported")),
        };
        if columns.iter().any(|(n, _)| *n == name) {
            return Err(SqlError::at(
                at,
                format!("the column {name} is selected twice: give one an alias (AS ...)"),
            ));
        }
        columns.push((name, typed));
    }
    Ok(Projection {
        where_steps,
        condition,
        columns,
        wildcard,
    })
}

impl Plan<'_> {
    fn directive(&mut self, d: &Directive) {
        let key = d.key.to_ascii_lowercase();
        match key.as_str() {
            "name" => self.pipeline = d.value.clone(),
            "dead_letter_topic" => self.dead_letter_topic = d.value.clone(),
            "workers" => self.workers = match d.value.parse::<u32>() {
                Ok(n) => n.to_string(),
                Err(_) => toml_string(&d.value),
            },
            _ => match key.strip_prefix("function.") {
                Some(function) if !function.is_empty() && !d.value.is_empty() => {
                    self.functions
                        .insert(function.to_ascii_uppercase(), d.value.clone());
                }
                _ => self.errors.push(SqlError::at(
                    d.at,
                    format!(
                        "unknown `-- sluice:` setting {:?} (name, dead_letter_topic, workers, function.NAME)",
                        d.key
                    ),
                )),
            },
        }
    }

    fn set(&mut self, key: &str, value: &str, at: Location) {
        match (key, value.to_ascii_lowercase().as_str()) {
            ("auto.offset.reset", v @ ("earliest" | "latest")) => {
                self.offset_reset = Some(v.into())
            }
            ("auto.offset.reset", _) => self.errors.push(SqlError::at(
                at,
                format!("auto.offset.reset is earliest or latest, not {value:?}"),
            )),
            _ => self.errors.push(SqlError::at(
                at,
                format!("SET {key:?} is not supported (only 'auto.offset.reset')"),
            )),
        }
    }

    /// The format and topic a `WITH` gives, over what is inherited.
    fn with(
        &mut self,
        with: &[Property],
        mut format: Option<Format>,
        mut topic: Option<String>,
    ) -> Option<(Format, Option<String>)> {
        let mut ok = true;
        let mut delimiter = None;
        for property in with {
            match property.key.as_str() {
                "KAFKA_TOPIC" => topic = Some(property.value.clone()),
                "VALUE_FORMAT" | "FORMAT" => {
                    match property.value.to_ascii_uppercase().as_str() {
                        "DELIMITED" => {
                            format = Some(Format {
                                kind: Kind::Delimited,
                                delimiter: None,
                            })
                        }
                        "JSON" => {
                            format = Some(Format {
                                kind: Kind::Json,
                                delimiter: None,
                            })
                        }
                        "KAFKA" => {
                            format = Some(Format {
                                kind: Kind::Kafka,
                                delimiter: None,
                            })
                        }
                        other => {
                            ok = false;
                            self.errors.push(SqlError::at(
                            property.at,
                            format!("value_format {other} is not supported (DELIMITED, JSON, KAFKA)"),
                        ));
                        }
                    }
                }
                "VALUE_DELIMITER" => {
                    delimiter = Some(match property.value.to_ascii_uppercase().as_str() {
                        "TAB" => "\t".to_string(),
                        "SPACE" => " ".to_string(),
                        _ => property.value.clone(),
                    })
                }
                // Topic creation settings: Sluice does not create topics.
                "PARTITIONS" | "REPLICAS" | "RETENTION_MS" | "KEY_FORMAT" => {}
                other => {
                    ok = false;
                    self.errors.push(SqlError::at(
                        property.at,
                        format!(
                            "the WITH property {other} is not supported (KAFKA_TOPIC, VALUE_FORMAT, VALUE_DELIMITER; PARTITIONS and REPLICAS are ignored)"
                        ),
                    ));
                }
            }
        }
        let Some(mut format) = format else {
            if ok {
                self.errors.push(SqlError::at(
                    with.first()
                        .map_or(Location { line: 0, column: 0 }, |p| p.at),
                    "WITH needs VALUE_FORMAT ('DELIMITED', 'JSON' or 'KAFKA')",
                ));
            }
            return None;
        };
        if delimiter.is_some() {
            format.delimiter = delimiter;
        }
        ok.then_some((format, topic))
    }

    fn declare(
        &mut self,
        name: &Ident,
        columns: &[(Ident, sqlparser::ast::DataType, Location)],
        with: &[Property],
        at: Location,
    ) {
        let stream = canonical(name);
        if self.taken(&stream, at) {
            return;
        }
        let mut typed = Vec::new();
        let mut ok = true;
        for (column, data_type, column_at) in columns {
            match SqlType::of(data_type) {
                Ok(ty) => typed.push((canonical(column), ty)),
                Err(message) => {
                    ok = false;
                    self.errors.push(SqlError::at(
                        *column_at,
                        format!("{}: {message}", canonical(column)),
                    ));
                }
            }
        }
        let Some((format, topic)) = self.with(with, None, None) else {
            self.broken.push(stream);
            return;
        };
        let Some(topic) = topic else {
            self.errors.push(SqlError::at(
                at,
                format!("CREATE STREAM {stream} needs WITH (KAFKA_TOPIC='...')"),
            ));
            self.broken.push(stream);
            return;
        };
        if let Some(problem) = kafka_problem(&format, &typed).filter(|_| ok) {
            ok = false;
            self.errors.push(SqlError::at(
                at,
                format!("CREATE STREAM {stream}: {problem}"),
            ));
        }
        if !ok {
            self.broken.push(stream);
            return;
        }
        self.streams.insert(
            stream,
            Stream {
                columns: typed,
                format,
                topic,
                component: None,
                declared: true,
            },
        );
    }

    /// Whether `stream` is already declared (reported).
    fn taken(&mut self, stream: &str, at: Location) -> bool {
        if self.streams.contains_key(stream) || self.broken.iter().any(|b| b == stream) {
            self.errors.push(SqlError::at(
                at,
                format!("the stream {stream} is already declared"),
            ));
            return true;
        }
        false
    }

    fn derive(&mut self, name: &Ident, with: &[Property], query: &Query, at: Location) {
        let stream = canonical(name);
        if self.taken(&stream, at) {
            return;
        }
        match self.derive_inner(&stream, with, query) {
            Ok(()) => {}
            Err(err) => {
                if let Some(err) = err {
                    self.errors.push(err);
                }
                self.broken.push(stream);
            }
        }
    }

    /// `Err(None)`: failed, already reported (or a broken input).
    fn derive_inner(
        &mut self,
        stream: &str,
        with: &[Property],
        query: &Query,
    ) -> Result<(), Option<SqlError>> {
        let (from, qualifiers) = from_of(query)?;
        let from_name = canonical(&from);
        if self.broken.contains(&from_name) {
            return Err(None);
        }
        let Some(input) = self.streams.get(&from_name).cloned() else {
            let known: Vec<&str> = self.streams.keys().map(String::as_str).collect();
            return Err(Some(SqlError::at(
                from.span.start,
                format!(
                    "unknown stream {from_name} (declared so far: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            )));
        };
        let functions = self.functions.clone();
        let mut counter = self.counter;
        let mut scope = Scope {
            columns: &input.columns,
            qualifiers,
            functions: &functions,
            steps: Vec::new(),
            counter: &mut counter,
            open: false,
        };
        let projection = project(query, &mut scope)?;
        let select_steps = std::mem::take(&mut scope.steps);
        self.counter = counter;
        let (format, topic) = self
            .with(with, Some(input.format.clone()), None)
            .ok_or(None)?;
        let topic = topic.unwrap_or_else(|| stream.to_string());
        let output: Vec<(String, SqlType)> = projection
            .columns
            .iter()
            .map(|(n, t)| (n.clone(), t.ty))
            .collect();
        if let Some(problem) = kafka_problem(&format, &output) {
            return Err(Some(SqlError::at(
                query.span().start,
                format!("CREATE STREAM {stream}: {problem}"),
            )));
        }
        let base = component_name(stream);
        let mut upstream = self.source_of(&from_name);
        for step in projection.where_steps.iter().chain(&select_steps) {
            let _ = step;
        }
        for step in &projection.where_steps {
            upstream = self.udf_block(&base, &upstream, step);
        }
        if let Some(condition) = &projection.condition {
            let name = format!("{base}_where");
            let mut block = self.header("transforms", &name, &upstream, "filter");
            let _ = writeln!(block, "condition = {}", toml_string(&condition.cel));
            self.blocks.push(block);
            upstream = name;
        }
        for step in &select_steps {
            upstream = self.udf_block(&base, &upstream, step);
        }
        let mut block = self.header("transforms", &base, &upstream, "select");
        block.push_str("columns = [\n");
        for (name, typed) in &projection.columns {
            let _ = writeln!(
                block,
                "  {{ name = {}, expr = {} }},",
                toml_string(name),
                toml_string(&typed.cel)
            );
        }
        block.push_str("]\n");
        self.blocks.push(block);
        let sink = format!("{base}_to_kafka");
        let mut block = self.header("sinks", &sink, &base, "kafka");
        let _ = writeln!(block, "brokers = {}", self.brokers.clone());
        let _ = writeln!(block, "topic = {}", toml_string(&topic));
        let names: Vec<String> = projection
            .columns
            .iter()
            .map(|(n, _)| toml_string(n))
            .collect();
        // The kafka codec writes each type its own way; the others need no types to write.
        let types: Vec<String> = output
            .iter()
            .map(|(_, t)| toml_string(t.field_type()))
            .collect();
        let types = (format.kind == Kind::Kafka).then_some(types.as_slice());
        let _ = writeln!(block, "encoding = {}", encoding(&format, &names, types));
        self.blocks.push(block);
        self.streams.insert(
            stream.to_string(),
            Stream {
                columns: projection
                    .columns
                    .iter()
                    .map(|(n, t)| (n.clone(), t.ty))
                    .collect(),
                format,
                topic,
                component: Some(base),
                declared: false,
            },
        );
        Ok(())
    }

    /// The component a query on `stream` reads: its `select`, or its Kafka source (made now).
    fn source_of(&mut self, stream: &str) -> String {
        let Some(info) = self.streams.get(stream).cloned() else {
            return String::new();
        };
        if let Some(component) = &info.component {
            return component.clone();
        }
        let name = component_name(stream);
        let mut block = format!(
            "# CREATE STREAM {}: the topic {} in {}\n[sources.{name}]\ntype = \"kafka\"\n",
            comment(stream),
            comment(&info.topic),
            info.format.kind.name()
        );
        let _ = writeln!(block, "brokers = {}", self.brokers.clone());
        let _ = writeln!(block, "topics = [{}]", toml_string(&info.topic));
        let _ = writeln!(
            block,
            "group_id = {}",
            toml_string(&format!("{}-{name}", self.pipeline))
        );
        if let Some(reset) = &self.offset_reset {
            let _ = writeln!(block, "auto_offset_reset = {}", toml_string(reset));
        }
        let names: Vec<String> = info.columns.iter().map(|(n, _)| toml_string(n)).collect();
        let types: Vec<String> = info
            .columns
            .iter()
            .map(|(_, t)| toml_string(t.field_type()))
            .collect();
        let _ = writeln!(
            block,
            "decoding = {}",
            encoding(&info.format, &names, Some(&types))
        );
        self.blocks.push(block);
        if let Some(s) = self.streams.get_mut(stream) {
            s.component = Some(name.clone());
        }
        name
    }

    fn header(&self, section: &str, name: &str, input: &str, kind: &str) -> String {
        format!(
            "[{section}.{name}]\ntype = \"{kind}\"\ninputs = [{}]\n",
            toml_string(input)
        )
    }

    fn udf_block(&mut self, base: &str, input: &str, step: &CallStep) -> String {
        let name = format!("{base}{}", step.output.to_ascii_lowercase());
        let mut block = self.header("transforms", &name, input, "udf");
        let _ = writeln!(block, "module = {}", toml_string(&step.module));
        let _ = writeln!(block, "function = {}", toml_string(&step.function));
        let args: Vec<String> = step.args.iter().map(|a| toml_string(a)).collect();
        let _ = writeln!(block, "args = [{}]", args.join(", "));
        let _ = writeln!(block, "output = {}", toml_string(&step.output));
        let _ = writeln!(block, "workers = {}", self.workers);
        self.blocks.push(block);
        name
    }

    fn toml(&self) -> String {
        let mut out = format!(
            "# Compiled by Sluice from {}: edit the SQL, not this. The SQL:\n",
            comment(&self.file.display().to_string())
        );
        for line in self.source.lines() {
            out.push_str(SOURCE_PREFIX.trim_end());
            if !line.is_empty() {
                out.push(' ');
                out.push_str(&comment(line));
            }
            out.push('\n');
        }
        let _ = write!(
            out,
            "\n[pipeline]\nname = {}\ndead_letter = \"dead_letters\"\n",
            toml_string(&self.pipeline)
        );
        for block in &self.blocks {
            out.push('\n');
            out.push_str(block);
        }
        let _ = write!(
            out,
            "\n# Records that cannot be processed, with the reason in headers.\n[sinks.dead_letters]\ntype = \"kafka\"\ninputs = []\nbrokers = {}\ntopic = {}\n",
            self.brokers.clone(),
            toml_string(&self.dead_letter_topic)
        );
        let unread: Vec<&String> = self
            .streams
            .iter()
            .filter(|(_, s)| s.declared && s.component.is_none())
            .map(|(n, _)| n)
            .collect();
        if !unread.is_empty() {
            let _ = writeln!(
                out,
                "\n# Declared and not read: {}",
                comment(
                    &unread
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            );
        }
        out
    }
}

/// The codec table of a format.
fn encoding(format: &Format, names: &[String], types: Option<&[String]>) -> String {
    let codec = match format.kind {
        Kind::Delimited => "delimited",
        Kind::Json => "json",
        Kind::Kafka => "kafka",
    };
    let mut out = format!("{{ codec = \"{codec}\", fields = [{}]", names.join(", "));
    if let Some(types) = types {
        let _ = write!(out, ", types = [{}]", types.join(", "));
    }
    if let Some(delimiter) = &format.delimiter {
        let _ = write!(out, ", delimiter = {}", toml_string(delimiter));
    }
    out.push_str(" }");
    out
}

/// A component name for a stream: lower-case, anything but letters, digits and `_` as `_`.
pub fn component_name(stream: &str) -> String {
    stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `text` fit for a TOML comment: a control character (which a comment may not hold, and a
/// line break would end it) becomes U+FFFD; tabs stay.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// A TOML basic string holding `text` literally: `$` is doubled, so that nothing from the SQL
/// is read as a `${VAR}` reference when the pipeline is interpolated.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '$' => out.push_str("$$"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
