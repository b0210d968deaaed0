//! What a UDF instance may touch: the per-`Store` state, with every sandbox limit set here.
//!
//! - WASI p2 with an empty context: no preopened directories, no environment, no arguments,
//!   no network, no stdin; stdout/stderr go to `tracing` (see `guest_output`).
//! - Linear memory capped per instance by [`MemoryCap`], which records that the cap was hit so
//!   the resulting trap is reported as a memory-limit error, not a generic trap.
//! - The `host` interface of `sluice:udf` (logging) forwards to `tracing` with the UDF name.

use super::bindings::{self, Level};
use super::guest_output::GuestOutput;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The longest `host.log` message passed on; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;
/// Table elements an instance may hold (Rust guests need a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The state of one `Store`: one live UDF instance.
pub(super) struct HostState {
    udf: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) stderr: GuestOutput,
}

impl HostState {
    pub(super) fn new(udf: Arc<str>, memory_bytes: u64) -> Self {
        let stderr = GuestOutput::stderr(udf.clone());
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::stdout(udf.clone()))
            .stderr(stderr.clone())
            .build();
        HostState {
            udf,
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap::new(memory_bytes),
            stderr,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::sluice::udf::types::Host for HostState {}

impl bindings::sluice::udf::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let udf = &*self.udf;
        match level {
            Level::Trace => tracing::trace!(udf, "{message}"),
            Level::Debug => tracing::debug!(udf, "{message}"),
            Level::Info => tracing::info!(udf, "{message}"),
            Level::Warn => tracing::warn!(udf, "{message}"),
            Level::Error => tracing::error!(udf, "{message}"),
        }
    }
}

/// Caps an instance's linear memory and remembers whether a growth was refused.
pub(super) struct MemoryCap {
    limit_bytes: u64,
    pub(super) hit: bool,
}

impl MemoryCap {
    fn new(limit_bytes: u64) -> Self {
        MemoryCap {
            limit_bytes,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.limit_bytes;
        if !allowed {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
