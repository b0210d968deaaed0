//! The pipeline model: TOML pipeline files → a validated [`PipelineSpec`].
//!
//! A file has three tables of named components, Vector-style: `[sources.NAME]`,
//! `[transforms.NAME]`, `[sinks.NAME]`, each with a `type`; transforms and sinks have
//! `inputs = [...]` naming upstream components. An optional `[pipeline]` table names the
//! pipeline and its dead-letter sink; an optional `[journal]` table sets the source journal.
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
pub use parse::{error_at, parse_pipeline};

use crate::sinks::{
    console::ConsoleSinkConfig, elasticsearch::ElasticsearchSinkConfig, kafka::KafkaSinkConfig,
    mqtt::MqttSinkConfig,
};
use crate::sources::{kafka::KafkaSourceConfig, mqtt::MqttSourceConfig};
use crate::transforms::{filter::FilterConfig, select::SelectConfig, udf::UdfTransformConfig};
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
    /// The source journal (`[journal]`).
    pub journal: JournalConfig,
}

/// `[journal]`: records of sources that acknowledge (MQTT at QoS 1 or 2) are written to a
/// journal on disk and acknowledged to their broker once it is durable; they leave the journal
/// once every sink accepted everything derived from them. Kafka sources do not use it (Kafka
/// keeps the data; offsets are committed after delivery).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Journal before acknowledging (default true). `false`: a record is acknowledged only once
    /// every sink accepted it, so the broker's in-flight window bounds throughput.
    #[serde(default = "journal_enabled")]
    pub enabled: bool,
    /// The most the pipeline's journal holds, in bytes (default 1 GiB). When full, sources stop
    /// acknowledging (the broker holds back) until sinks catch up; nothing is dropped.
    #[serde(default = "journal_max_bytes")]
    pub max_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            enabled: journal_enabled(),
            max_bytes: journal_max_bytes(),
        }
    }
}

fn journal_enabled() -> bool {
    true
}

fn journal_max_bytes() -> u64 {
    1 << 30
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

/// Declares a section's component kinds in one place, the registration site of every connector:
/// the enum, each kind's `type` name, whether it is a client of a broker or cluster (its
/// connection is shown in status and metrics), the list of kinds the parser offers in "expected
/// one of", and the dispatch that reads a kind's config. Each config type must have a pure
/// `validate(&self) -> Vec<(&'static str, String)>` (field, message).
macro_rules! component_kinds {
    (
        $(#[$meta:meta])*
        $enum:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $name:literal, client = $client:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        // Configs are read once per deployment; boxing the large ones would buy nothing.
        #[allow(clippy::large_enum_variant)]
        pub enum $enum {
            $( $(#[$vmeta])* $variant($ty), )*
        }

        impl $enum {
            /// Every `type` name of this section, in declaration order.
            pub const KINDS: &'static [&'static str] = &[$($name),*];

            /// The `type` name.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $enum::$variant(_) => $name, )*
                }
            }

            /// Whether it talks to a broker or cluster (its connection state is shown).
            pub fn is_client(&self) -> bool {
                match self {
                    $( $enum::$variant(_) => $client, )*
                }
            }

            /// The config of `type = kind` as `read` reads it; `None` when `kind` is not one of
            /// [`Self::KINDS`].
            pub(crate) fn read<R: ReadConfig>(kind: &str, read: &mut R) -> Option<Option<Self>> {
                match kind {
                    $( $name => Some(read.read::<$ty>().map($enum::$variant)), )*
                    _ => None,
                }
            }
        }

        $(
            impl ComponentConfig for $ty {
                fn problems(&self) -> Vec<(&'static str, String)> {
                    <$ty>::validate(self)
                }
            }
        )*
    };
}

/// What the parser needs of every component config: serde, and a pure validation.
pub trait ComponentConfig: serde::de::DeserializeOwned {
    /// Problems as `(field, message)`, found without I/O.
    fn problems(&self) -> Vec<(&'static str, String)>;
}

/// How the parser reads one component's config (see `parse.rs`).
pub(crate) trait ReadConfig {
    /// The config as `T`, validated; `None` after reporting why not.
    fn read<T: ComponentConfig>(&mut self) -> Option<T>;
}

component_kinds! {
    /// The kinds of source.
    SourceConfig {
        /// `type = "mqtt"`.
        Mqtt(MqttSourceConfig) = "mqtt", client = true;
        /// `type = "kafka"`.
        Kafka(KafkaSourceConfig) = "kafka", client = true;
    }
}

component_kinds! {
    /// The kinds of transform.
    TransformConfig {
        /// `type = "udf"`.
        Udf(UdfTransformConfig) = "udf", client = false;
        /// `type = "filter"`.
        Filter(FilterConfig) = "filter", client = false;
        /// `type = "select"`.
        Select(SelectConfig) = "select", client = false;
    }
}

component_kinds! {
    /// The kinds of sink.
    SinkConfig {
        /// `type = "mqtt"`.
        Mqtt(MqttSinkConfig) = "mqtt", client = true;
        /// `type = "kafka"`.
        Kafka(KafkaSinkConfig) = "kafka", client = true;
        /// `type = "elasticsearch"`.
        Elasticsearch(ElasticsearchSinkConfig) = "elasticsearch", client = true;
        /// `type = "console"`.
        Console(ConsoleSinkConfig) = "console", client = false;
    }
}

/// `FIELD > NUMBER` (or `>=`) as (field, number): the condition of a threshold filter, such as
/// the ECG pipeline's `anomaly_val > 1.5`; `None` for any other condition.
pub fn threshold(condition: &str) -> Option<(String, f64)> {
    let (field, threshold) = condition.split_once('>')?;
    let threshold = threshold.trim_start_matches('=').trim().parse().ok()?;
    let field = field.trim();
    let is_ident =
        !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_ident.then(|| (field.to_string(), threshold))
}
