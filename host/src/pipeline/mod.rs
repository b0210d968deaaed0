//! The pipeline model: TOML pipeline files → a validated [`PipelineSpec`].
//!
//! A file has three tables of named components, Vector-style: `[sources.NAME]`,
//! `[transforms.NAME]`, `[sinks.NAME]`, each with a `type`; transforms and sinks have
//! `inputs = [...]` naming upstream components. An optional `[pipeline]` table names the
//! pipeline and its dead-letter sink.
//!
//! Everything here is pure: no I/O (the caller reads files and passes the environment in), no
//! tokio, no brokers. Errors are values with file, line, column and dotted field path, and
//! validation reports every problem it finds, not just the first.

mod error;
mod graph;
mod interpolate;
mod parse;

pub use error::{ConfigError, ConfigErrors};
pub use interpolate::interpolate;
pub use parse::parse_pipeline;

use crate::sinks::{
    console::ConsoleSinkConfig, elasticsearch::ElasticsearchSinkConfig, kafka::KafkaSinkConfig,
    mqtt::MqttSinkConfig,
};
use crate::sources::{kafka::KafkaSourceConfig, mqtt::MqttSourceConfig};
use crate::transforms::{filter::FilterConfig, udf::UdfTransformConfig};
use std::path::PathBuf;

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// The pipeline's name (`[pipeline] name`, default the file stem).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The sink that receives records that could not be processed, if any.
    pub dead_letter: Option<String>,
    /// Sources, in file order.
    pub sources: Vec<Component<SourceConfig>>,
    /// Transforms, in an order where every transform comes after its inputs.
    pub transforms: Vec<Component<TransformConfig>>,
    /// Sinks, in file order (the dead-letter sink included).
    pub sinks: Vec<Component<SinkConfig>>,
}

impl PipelineSpec {
    /// Settings that are valid but probably not meant, as `file: sources.NAME.field: message`
    /// lines (`sluice validate` prints them; `run` and `serve` log them).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut add = |kind: &str, name: &str, field: &str, message: String| {
            warnings.push(format!(
                "{}: {kind}.{name}.{field}: warning: {message}",
                self.file.display()
            ))
        };
        for source in &self.sources {
            if let SourceConfig::Mqtt(mqtt) = &source.config {
                for (field, message) in mqtt.warnings() {
                    add("sources", &source.name, field, message);
                }
            }
        }
        for sink in &self.sinks {
            if let SinkConfig::Mqtt(mqtt) = &sink.config {
                if mqtt.broker.clean_session == Some(false) {
                    add(
                        "sinks",
                        &sink.name,
                        "broker.clean_session",
                        "ignored: an MQTT sink always starts a clean session and sends again \
                         whatever the broker did not acknowledge"
                            .into(),
                    );
                }
            }
        }
        warnings
    }
}

/// One named component and where its records come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Component<C> {
    /// The component's name (the key under `sources`, `transforms` or `sinks`).
    pub name: String,
    /// Upstream component names (empty for sources and the dead-letter sink).
    pub inputs: Vec<String>,
    /// The kind-specific settings.
    pub config: C,
}

/// The kinds of source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// `type = "mqtt"`.
    Mqtt(MqttSourceConfig),
    /// `type = "kafka"`.
    Kafka(KafkaSourceConfig),
}

/// The kinds of transform.
#[derive(Debug, Clone, PartialEq)]
pub enum TransformConfig {
    /// `type = "udf"`.
    Udf(UdfTransformConfig),
    /// `type = "filter"`.
    Filter(FilterConfig),
}

/// The kinds of sink.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// `type = "mqtt"`.
    Mqtt(MqttSinkConfig),
    /// `type = "kafka"`.
    Kafka(KafkaSinkConfig),
    /// `type = "elasticsearch"`.
    Elasticsearch(ElasticsearchSinkConfig),
    /// `type = "console"`.
    Console(ConsoleSinkConfig),
}

impl SourceConfig {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Mqtt(_) => "mqtt",
            SourceConfig::Kafka(_) => "kafka",
        }
    }
}

impl TransformConfig {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            TransformConfig::Udf(_) => "udf",
            TransformConfig::Filter(_) => "filter",
        }
    }
}

impl SinkConfig {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Mqtt(_) => "mqtt",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            SinkConfig::Console(_) => "console",
        }
    }
}
