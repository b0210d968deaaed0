//! Sluice: a stream processor whose transforms are sandboxed WebAssembly UDFs.
//!
//! - [`message`]: the record type that flows through pipelines and into UDFs.
//! - [`pipeline`]: the pipeline model (TOML → validated `PipelineSpec`), pure.
//! - [`sources`], [`transforms`], [`sinks`]: one file per component kind.
//! - [`codec`]: encodings at the edges (raw, json, delimited).
//! - [`topology`]: running pipelines (tasks, bounded channels, acks, dead letters, drain).
//! - [`udf_runtime`]: the Wasm UDF runtime (the only module that touches wasmtime).
//! - [`udf_registry`]: UDF modules by name and version, hot reload, pinning, rollback.
//!
//! The `sluice` binary (`main.rs`, `cli/`) is the only place that uses `anyhow`.

pub mod codec;
pub mod message;
pub mod mqtt_common;
pub mod pipeline;
pub mod sinks;
pub mod sources;
pub mod topology;
pub mod transforms;
pub mod udf_registry;
pub mod udf_runtime;

pub use message::Message;
