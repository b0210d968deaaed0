//! The pipeline as a graph: names unique across the three tables, inputs that exist (with a
//! "did you mean"), no cycles, nothing unconsumed, a well-formed dead-letter sink. Returns the
//! transforms in dependency order.

use super::error::ErrorSink;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

type Span = Range<usize>;

/// Which table a component is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Source,
    Transform,
    Sink,
}

impl Section {
    pub(super) fn table(self) -> &'static str {
        match self {
            Section::Source => "sources",
            Section::Transform => "transforms",
            Section::Sink => "sinks",
        }
    }

    pub(super) fn singular(self) -> &'static str {
        match self {
            Section::Source => "source",
            Section::Transform => "transform",
            Section::Sink => "sink",
        }
    }
}

/// A component as the graph sees it.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) section: Section,
    pub(super) name: String,
    pub(super) name_span: Span,
    pub(super) kind: String,
    pub(super) kind_span: Span,
    pub(super) inputs: Vec<(String, Span)>,
    pub(super) inputs_span: Span,
}

impl Node {
    fn path(&self) -> String {
        format!("{}.{}", self.section.table(), self.name)
    }
}

/// Checks the graph; returns transform names in dependency order. `broken` names components
/// whose own errors were already reported (references to them are not "unknown").
pub(super) fn check_graph(
    nodes: &[Node],
    broken: &[String],
    dead_letter: Option<&(String, Span)>,
    errors: &mut ErrorSink,
) -> Vec<String> {
    let mut by_name: HashMap<&str, &Node> = HashMap::new();
    for node in nodes {
        if let Some(first) = by_name.get(node.name.as_str()) {
            errors.push(
                node.name_span.clone(),
                node.path(),
                format!(
                    "duplicate component name `{}` (already used by {})",
                    node.name,
                    first.path()
                ),
            );
        } else {
            by_name.insert(&node.name, node);
        }
    }
    if !nodes.iter().any(|n| n.section == Section::Source) {
        errors.push(0..0, "sources", "a pipeline needs at least one source");
    }
    if !nodes.iter().any(|n| n.section == Section::Sink) {
        errors.push(0..0, "sinks", "a pipeline needs at least one sink");
    }

    let dead_letter_name = dead_letter.map(|(name, _)| name.as_str());
    if let Some((name, span)) = dead_letter {
        match by_name.get(name.as_str()) {
            Some(node) if node.section == Section::Sink => {
                if !node.inputs.is_empty() {
                    errors.push(
                        node.inputs_span.clone(),
                        format!("{}.inputs", node.path()),
                        "the dead-letter sink receives failed records only: leave its inputs empty",
                    );
                }
            }
            Some(node) => errors.push(
                span.clone(),
                "pipeline.dead_letter",
                format!("`{name}` is a {}, not a sink", node.section.singular()),
            ),
            None => errors.push(
                span.clone(),
                "pipeline.dead_letter",
                format!(
                    "unknown sink {name:?}{}",
                    suggestion(name, nodes, Some(Section::Sink))
                ),
            ),
        }
    }

    let mut consumed: HashSet<&str> = HashSet::new();
    for node in nodes.iter().filter(|n| n.section != Section::Source) {
        let path = format!("{}.inputs", node.path());
        if node.inputs.is_empty() && Some(node.name.as_str()) != dead_letter_name {
            errors.push(
                node.inputs_span.clone(),
                path.as_str(),
                format!(
                    "`{}` needs at least one input (`inputs = [\"...\"]`)",
                    node.name
                ),
            );
        }
        for (input, span) in &node.inputs {
            match by_name.get(input.as_str()) {
                Some(upstream) if upstream.section == Section::Sink => errors.push(
                    span.clone(),
                    path.as_str(),
                    format!("`{input}` is a sink; only sources and transforms can be inputs"),
                ),
                Some(_) => {
                    consumed.insert(input);
                }
                None if broken.contains(input) => {}
                None => errors.push(
                    span.clone(),
                    path.as_str(),
                    format!(
                        "unknown component {input:?}{}",
                        suggestion(input, nodes, None)
                    ),
                ),
            }
        }
    }
    for node in nodes.iter().filter(|n| n.section != Section::Sink) {
        if !consumed.contains(node.name.as_str()) {
            errors.push(
                node.name_span.clone(),
                node.path(),
                format!(
                    "nothing consumes `{}`: name it in a transform's or sink's `inputs`, or remove it",
                    node.name
                ),
            );
        }
    }
    transform_order(nodes, errors)
}

/// Kahn's algorithm over transforms; anything left over sits on a cycle.
fn transform_order(nodes: &[Node], errors: &mut ErrorSink) -> Vec<String> {
    let transforms: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.section == Section::Transform)
        .collect();
    let names: HashSet<&str> = transforms.iter().map(|n| n.name.as_str()).collect();
    let mut done: Vec<String> = Vec::new();
    let mut placed: HashSet<&str> = HashSet::new();
    loop {
        let ready: Vec<&Node> = transforms
            .iter()
            .copied()
            .filter(|n| !placed.contains(n.name.as_str()))
            .filter(|n| {
                n.inputs
                    .iter()
                    .all(|(i, _)| !names.contains(i.as_str()) || placed.contains(i.as_str()))
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        for node in ready {
            placed.insert(&node.name);
            done.push(node.name.clone());
        }
    }
    for node in transforms
        .iter()
        .filter(|n| !placed.contains(n.name.as_str()))
    {
        errors.push(
            node.inputs_span.clone(),
            format!("{}.inputs", node.path()),
            format!(
                "`{}` is part of a cycle: records would loop forever",
                node.name
            ),
        );
    }
    done
}

/// ` (did you mean "score"?)` when a component name is close enough.
fn suggestion(unknown: &str, nodes: &[Node], only: Option<Section>) -> String {
    nodes
        .iter()
        .filter(|n| {
            only.is_none_or(|s| s == n.section) && (only.is_some() || n.section != Section::Sink)
        })
        .map(|n| (strsim::damerau_levenshtein(unknown, &n.name), &n.name))
        .filter(|(distance, name)| *distance <= 2.max(name.len() / 3))
        .min()
        .map(|(_, name)| format!(" (did you mean {name:?}?)"))
        .unwrap_or_default()
}
