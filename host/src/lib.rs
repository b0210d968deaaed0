//! Sluice: a stream processor whose transforms are sandboxed WebAssembly UDFs.
//!
//! - [`message`]: the record type that flows through pipelines and into UDFs.
//! - [`udf_runtime`]: the Wasm UDF runtime (the only module that touches wasmtime).
//!
//! The `sluice` binary (`main.rs`, `cli/`) is the only place that uses `anyhow`.

pub mod message;
pub mod udf_runtime;

pub use message::Message;
