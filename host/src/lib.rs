//! Sluice: a stream processor whose transforms are sandboxed WebAssembly UDFs.
//!
//! - [`message`]: the record type that flows through pipelines and into UDFs.
//! - [`pipeline`]: the pipeline model (TOML → validated `PipelineSpec`), pure.
//! - [`sql`]: ksqlDB's `CREATE STREAM` statements compiled into pipeline TOML, pure.
//! - [`sources`], [`transforms`], [`sinks`]: one file per component kind.
//! - [`codec`]: encodings at the edges (raw, json, delimited).
//! - [`mqtt_common`], [`kafka_common`]: what the MQTT and Kafka sources and sinks share.
//! - [`journal`]: the source journal on disk (acknowledge once durable, replay after a crash).
//! - [`flow`]: the vocabulary components are written in (records, acks, outputs, dead letters).
//! - [`topology`]: running pipelines (wiring, supervision, restart, drain within a deadline).
//! - [`udf_runtime`]: the Wasm UDF runtime (the only module that touches wasmtime).
//! - [`udf_registry`]: UDF modules by name and version, hot reload, pinning, rollback.
//! - [`udf_shadow`]: shadow versions run beside the live one, compared record by record.
//! - [`metrics`]: per-component counters, Prometheus text.
//! - [`control_plane`]: deploy/undeploy pipelines and push/roll back UDFs on a running host.
//! - [`state_dir`]: what `sluice serve` keeps across restarts.
//! - [`admin`]: the admin HTTP API and the dashboard (the only module that uses axum).
//! - [`api`]: the admin API's answer bodies, shared by the server and the CLI client.
//!
//! The library's errors are `thiserror` enums; `anyhow` would be allowed only in the binary
//! (`main.rs`, `cli/`), which needs none today (`cargo xtask tidy` checks both).

pub mod admin;
pub mod api;
pub mod codec;
pub mod control_plane;
pub mod flow;
pub mod journal;
pub mod kafka_common;
pub mod message;
pub mod metrics;
pub mod mqtt_common;
pub mod pipeline;
pub mod pipelines_dir;
pub mod sinks;
pub mod sources;
pub mod sql;
pub mod state_dir;
pub mod topology;
pub mod transforms;
pub mod udf_registry;
pub mod udf_runtime;
pub mod udf_shadow;

pub use message::Message;
