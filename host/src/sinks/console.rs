//! The console sink: writes each record on stdout, one line each, as its encoded value
//! (`format = "value"`, default) or as a JSON object with key, value, headers and timestamp
//! (`format = "json"`, handy to see why records were dead-lettered).

use crate::codec::EncodingConfig;
use crate::flow::{ComponentContext, Record};
use serde::Deserialize;
use std::io::Write;
use tokio::sync::mpsc;

/// What the console sink prints per record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleFormat {
    /// The encoded value.
    #[default]
    Value,
    /// `{"key":..,"value":..,"headers":{..},"timestamp_ms":..}` (bytes as UTF-8, lossy).
    Json,
}

/// `[sinks.NAME] type = "console"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// How values are encoded (default raw).
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// `value` (default) or `json`.
    #[serde(default)]
    pub format: ConsoleFormat,
}

impl ConsoleSinkConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        self.encoding
            .validate()
            .into_iter()
            .map(|(_, e)| ("encoding", e))
            .collect()
    }
}

/// The running console sink.
pub struct ConsoleSink {
    config: ConsoleSinkConfig,
}

impl ConsoleSink {
    /// Builds the sink (nothing to connect).
    pub fn new(config: ConsoleSinkConfig) -> Self {
        ConsoleSink { config }
    }

    /// Prints records until the input closes.
    pub fn run(
        self,
        mut input: mpsc::Receiver<Record>,
        ctx: ComponentContext,
    ) -> crate::flow::ComponentTask {
        Box::pin(async move {
            while let Some(record) = input.recv().await {
                match self.line(&record) {
                    Ok(line) => {
                        let mut out = std::io::stdout().lock();
                        let written = out
                            .write_all(&line)
                            .and_then(|_| out.write_all(b"\n"))
                            .and_then(|_| out.flush());
                        match written {
                            Ok(()) => {
                                ctx.metrics.record_out();
                                record.ack.done()
                            }
                            Err(err) => {
                                tracing::error!(component = %ctx.component, "cannot write to stdout: {err}");
                                ctx.metrics
                                    .report_error(&format!("cannot write to stdout: {err}"));
                            }
                        }
                    }
                    Err(reason) => ctx.dead_letters.send(record, &ctx.metrics, &reason).await,
                }
            }
        })
    }

    fn line(&self, record: &Record) -> Result<Vec<u8>, String> {
        let value = self.config.encoding.encode(&record.msg.value)?;
        Ok(match self.config.format {
            ConsoleFormat::Value => value,
            ConsoleFormat::Json => {
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                let headers: serde_json::Map<String, serde_json::Value> = record
                    .msg
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(text(v))))
                    .collect();
                serde_json::json!({
                    "key": record.msg.key.as_deref().map(text),
                    "value": text(&value),
                    "headers": headers,
                    "timestamp_ms": record.msg.timestamp_ms,
                })
                .to_string()
                .into_bytes()
            }
        })
    }
}
