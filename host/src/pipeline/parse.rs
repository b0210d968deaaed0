//! TOML text → [`PipelineSpec`], keeping every value's span so each error names its file,
//! line, column and dotted field path.
//!
//! How spans survive: the text is parsed into toml's spanned tree (`DeTable`); each component's
//! `type` and `inputs` are read by hand, and the rest of its table is deserialized into the
//! kind's config struct (`deny_unknown_fields`) straight from the spanned tree, through
//! `serde_path_to_error` for the field path. No internally tagged enums, no `flatten`.

use super::error::{ConfigErrors, ErrorSink};
use super::graph::{check_graph, Node, Section};
use super::interpolate::interpolate;
use super::{Component, ComponentConfig, JournalConfig, PipelineSpec, ReadConfig};
use super::{SinkConfig, SourceConfig, TransformConfig};
use serde::de::{DeserializeOwned, IntoDeserializer};
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

type Span = Range<usize>;

/// Parses and validates one pipeline file. `env` resolves `${VAR}` references.
pub fn parse_pipeline(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PipelineSpec, ConfigErrors> {
    let mut errors = ErrorSink::new(file, text);
    let (mut root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for err in syntax {
            errors.push(err.span().unwrap_or(0..0), "", err.message().to_string());
        }
        return Err(ConfigErrors(errors.finish()));
    }
    interpolate_table(root.get_mut(), "", env, &mut errors);

    let mut name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline")
        .to_string();
    let mut dead_letter: Option<(String, Span)> = None;
    let mut journal = JournalConfig::default();
    let mut nodes: Vec<Node> = Vec::new();
    let mut tables: Vec<Spanned<DeValue<'_>>> = Vec::new();
    // Components whose header is already reported: references to them are not "unknown".
    let mut broken: Vec<String> = Vec::new();

    for (key, value) in root.into_inner() {
        let key_name = key.get_ref().to_string();
        match key_name.as_str() {
            "pipeline" => {
                if let Some(table) = as_table(&value, "pipeline", &mut errors) {
                    for (k, v) in table {
                        let path = format!("pipeline.{}", k.get_ref());
                        match k.get_ref().as_ref() {
                            "name" => name = string(v, &path, &mut errors).map(|(s, _)| s).unwrap_or(name),
                            "dead_letter" => dead_letter = string(v, &path, &mut errors),
                            "description" => {
                                string(v, &path, &mut errors);
                            }
                            other => errors.push(
                                k.span(),
                                "pipeline",
                                format!("unknown field `{other}`, expected one of `name`, `dead_letter`, `description`"),
                            ),
                        }
                    }
                }
            }
            "journal" => {
                if let Some(config) = typed::<JournalConfig>(&value, "journal", &mut errors) {
                    if config.max_bytes == 0 {
                        errors.push(value.span(), "journal.max_bytes", "must be more than 0");
                    }
                    journal = config;
                }
            }
            "sources" | "transforms" | "sinks" => {
                let section = match key_name.as_str() {
                    "sources" => Section::Source,
                    "transforms" => Section::Transform,
                    _ => Section::Sink,
                };
                let span = value.span();
                let DeValue::Table(components) = value.into_inner() else {
                    errors.push(span, key_name.as_str(), format!("`{key_name}` must be a table of named components"));
                    continue;
                };
                for (cname, cvalue) in components {
                    match component_header(section, &cname, &cvalue, &mut errors) {
                        Some(node) => {
                            nodes.push(node);
                            tables.push(cvalue);
                        }
                        None => broken.push(cname.get_ref().to_string()),
                    }
                }
            }
            other => errors.push(
                key.span(),
                "",
                format!("unknown top-level table `{other}`, expected `pipeline`, `journal`, `sources`, `transforms` or `sinks`"),
            ),
        }
    }

    let order = check_graph(&nodes, &broken, dead_letter.as_ref(), &mut errors);

    let mut sources = Vec::new();
    let mut transforms = Vec::new();
    let mut sinks = Vec::new();
    for (node, table) in nodes.iter().zip(tables) {
        let path = format!("{}.{}", node.section.table(), node.name);
        let kind = node.kind.as_str();
        let mut reader = Reader {
            table: &table,
            path: &path,
            errors: &mut errors,
        };
        let read = match node.section {
            Section::Source => SourceConfig::read(kind, &mut reader)
                .map(|config| sources.extend(config.map(|config| component(node, config)))),
            Section::Transform => TransformConfig::read(kind, &mut reader)
                .map(|config| transforms.extend(config.map(|config| component(node, config)))),
            Section::Sink => SinkConfig::read(kind, &mut reader)
                .map(|config| sinks.extend(config.map(|config| component(node, config)))),
        };
        if read.is_none() {
            let kinds = match node.section {
                Section::Source => SourceConfig::KINDS,
                Section::Transform => TransformConfig::KINDS,
                Section::Sink => SinkConfig::KINDS,
            };
            let expected = kinds
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            errors.push(
                node.kind_span.clone(),
                format!("{path}.type"),
                format!(
                    "unknown {} type `{kind}`, expected one of {expected}",
                    node.section.singular()
                ),
            );
        }
    }

    let errors = errors.finish();
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    // Transforms in dependency order, so the runtime can wire them front to back.
    transforms
        .sort_by_key(|t: &Component<TransformConfig>| order.iter().position(|n| *n == t.name));
    Ok(PipelineSpec {
        name,
        file: file.to_path_buf(),
        dead_letter: dead_letter.map(|(name, _)| name),
        sources,
        transforms,
        sinks,
        journal,
    })
}

/// Where the value at `dotted` (e.g. `transforms.work.module`) is in `text`, as an error there
/// with `message`: for checks made after parsing, on the spec, that still point at the file.
pub fn error_at(
    file: &Path,
    text: &str,
    dotted: &str,
    message: String,
) -> super::error::ConfigError {
    let (first, rest) = dotted.split_once('.').unwrap_or((dotted, ""));
    let span = DeTable::parse(text)
        .ok()
        .and_then(|root| {
            let (_, value) = root.get_ref().iter().find(|(k, _)| k.get_ref() == first)?;
            if rest.is_empty() {
                Some(value.span())
            } else {
                field_span(value, rest)
            }
        })
        .unwrap_or(0..0);
    let mut errors = ErrorSink::new(file, text);
    errors.push(span, dotted, message);
    errors.finish().remove(0)
}

fn component<C>(node: &Node, config: C) -> Component<C> {
    Component {
        name: node.name.clone(),
        inputs: node.inputs.iter().map(|(name, _)| name.clone()).collect(),
        config,
    }
}

/// Reads a component's name, `type` and `inputs`, and removes those two keys from its table.
fn component_header(
    section: Section,
    name: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    errors: &mut ErrorSink,
) -> Option<Node> {
    let path = format!("{}.{}", section.table(), name.get_ref());
    if name.get_ref().is_empty()
        || !name
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        errors.push(
            name.span(),
            path.as_str(),
            format!(
                "component name {:?} may only use letters, digits, `_` and `-`",
                name.get_ref()
            ),
        );
    }
    let table = as_table(value, &path, errors)?;
    let mut kind = None;
    let mut has_type = false;
    let mut inputs = None;
    for (k, v) in table {
        match k.get_ref().as_ref() {
            "type" => {
                has_type = true;
                kind = string(v, &format!("{path}.type"), errors);
            }
            "inputs" => inputs = Some(string_list(v, &format!("{path}.inputs"), errors)),
            _ => {}
        }
    }
    let Some((kind, kind_span)) = kind else {
        if !has_type {
            errors.push(value.span(), path.as_str(), "missing field `type`");
        }
        return None;
    };
    let inputs = match (section, inputs) {
        (Section::Source, Some(_)) => {
            let span = key_span(table, "inputs").unwrap_or(value.span());
            errors.push(span, format!("{path}.inputs"), "sources have no inputs");
            Vec::new()
        }
        (Section::Source, None) => Vec::new(),
        (_, Some(inputs)) => inputs,
        (_, None) => Vec::new(), // the graph check reports it
    };
    Some(Node {
        section,
        name: name.get_ref().to_string(),
        name_span: name.span(),
        kind,
        kind_span,
        inputs,
        inputs_span: key_span(table, "inputs").unwrap_or(value.span()),
    })
}

/// Deserializes a component table (minus `type` and `inputs`) into its config struct.
///
/// serde stops at the first bad field, so each failing top-level field is reported, removed,
/// and the rest deserialized again: every bad field of a component is reported in one run.
/// Reads one component's config from its table, validates it, and reports every problem at its
/// place (see `ReadConfig`).
struct Reader<'a, 'v, 'f> {
    table: &'a Spanned<DeValue<'v>>,
    path: &'a str,
    errors: &'a mut ErrorSink<'f>,
}

impl ReadConfig for Reader<'_, '_, '_> {
    fn read<T: ComponentConfig>(&mut self) -> Option<T> {
        let config = typed::<T>(self.table, self.path, self.errors)?;
        report(self.table, self.path, config.problems(), self.errors);
        Some(config)
    }
}

fn typed<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut ErrorSink,
) -> Option<T> {
    let span = value.span();
    let DeValue::Table(table) = value.get_ref() else {
        errors.push(span, path, "expected a table");
        return None;
    };
    let mut rest = DeTable::new();
    for (k, v) in table.iter() {
        if !matches!(k.get_ref().as_ref(), "type" | "inputs") {
            rest.insert(k.clone(), v.clone());
        }
    }
    let mut removed: Vec<String> = Vec::new();
    let mut failed = false;
    for _ in 0..=table.len() {
        let attempt = Spanned::new(span.clone(), DeValue::Table(rest.clone()));
        match serde_path_to_error::deserialize::<_, T>(attempt.into_deserializer()) {
            Ok(config) => return (!failed).then_some(config),
            Err(err) => {
                let field = err.path().to_string();
                let inner = err.into_inner();
                let message = inner.message().to_string();
                let top = field.split(['.', '[']).next().unwrap_or("").to_string();
                // A field we removed ourselves is now "missing": already reported.
                let echo = removed
                    .iter()
                    .any(|r| message == format!("missing field `{r}`"));
                if !echo {
                    let full = if field == "." {
                        path.to_string()
                    } else {
                        format!("{path}.{field}")
                    };
                    errors.push(inner.span().unwrap_or(span.clone()), full, message);
                }
                failed = true;
                let before = rest.len();
                rest = rest
                    .into_iter()
                    .filter(|(k, _)| k.get_ref().as_ref() != top.as_str())
                    .collect();
                if echo || rest.len() == before {
                    return None; // nothing left to peel off
                }
                removed.push(top);
            }
        }
    }
    None
}

/// Reports `validate()` problems at the span of the named (dotted) field.
fn report(
    table: &Spanned<DeValue<'_>>,
    path: &str,
    problems: Vec<(&'static str, String)>,
    errors: &mut ErrorSink,
) {
    for (field, message) in problems {
        let span = field_span(table, field).unwrap_or(table.span());
        errors.push(span, format!("{path}.{field}"), message);
    }
}

fn field_span(value: &Spanned<DeValue<'_>>, dotted: &str) -> Option<Span> {
    let mut current = value;
    for part in dotted.split('.') {
        let DeValue::Table(table) = current.get_ref() else {
            return None;
        };
        current = table
            .iter()
            .find(|(k, _)| k.get_ref() == part)
            .map(|(_, v)| v)?;
    }
    Some(current.span())
}

fn key_span(table: &DeTable<'_>, key: &str) -> Option<Span> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v.span())
}

fn as_table<'a, 'i>(
    value: &'a Spanned<DeValue<'i>>,
    path: &str,
    errors: &mut ErrorSink,
) -> Option<&'a DeTable<'i>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(table),
        _ => {
            errors.push(value.span(), path, "expected a table");
            None
        }
    }
}

fn string(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut ErrorSink,
) -> Option<(String, Span)> {
    match value.get_ref() {
        DeValue::String(s) => Some((s.to_string(), value.span())),
        _ => {
            errors.push(value.span(), path, "expected a string");
            None
        }
    }
}

fn string_list(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut ErrorSink,
) -> Vec<(String, Span)> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| string(item, path, errors))
            .collect(),
        _ => {
            errors.push(value.span(), path, "expected a list of component names");
            Vec::new()
        }
    }
}

/// Applies `${VAR}` interpolation to every string value (not keys), in place.
fn interpolate_table(
    table: &mut DeTable<'_>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut ErrorSink,
) {
    for (key, value) in table.iter_mut() {
        let path = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{path}.{}", key.get_ref())
        };
        interpolate_value(value, &path, env, errors);
    }
}

fn interpolate_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut ErrorSink,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match interpolate(s, env) {
            Ok(done) => *s = std::borrow::Cow::Owned(done),
            Err(err) => errors.push(span, path, err),
        },
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        DeValue::Table(table) => interpolate_table(table, path, env, errors),
        _ => {}
    }
}
