//! What a UDF instance may touch and for how long: every sandbox limit, in one place. The
//! limits a pipeline sets ([`UdfLimits`]: memory, deadline, fuel) and their defaults, the
//! per-call arming of them ([`arm`]), and the per-`Store` state that enforces the rest:
//!
//! - WASI p2 with an empty context: no preopened directories, no environment, no arguments,
//!   no network, no stdin; stdout/stderr go to `tracing` (see `guest_output`).
//! - Linear memory capped per instance by [`MemoryCap`]: the sum over all of the instance's
//!   memories (a module declaring many memories does not get the cap many times over), at most
//!   [`MAX_MEMORIES`] of them. It records that the cap was hit so the resulting trap is
//!   reported as a memory-limit error, not a generic trap.
//! - The `host` interface of `sluice:udf` (logging) forwards to `tracing` with the UDF name.
//! - Waiting is bounded by the call's deadline: the monotonic clock WASI gives the guest
//!   ([`DeadlineClock`]) ends every wait (`sleep`, `poll` on a timer) at the latest when the
//!   current call's deadline passes, and a wait cut short that way marks the call as timed out
//!   (`HostState::overslept`), whatever the guest does after it wakes. Nothing else in this
//!   WASI context can block (no files, sockets or stdin; guest output is written at once), so
//!   a call's wall-clock time is bounded whatever it waits on.

use super::bindings::{self, Level};
use super::guest_output::GuestOutput;
use super::GuestLanguage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{subscribe, DynPollable, Pollable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Linear memories an instance may create (a Rust component has one or two).
pub(super) const MAX_MEMORIES: usize = 8;
/// The longest `host.log` message passed on; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;
/// Table elements an instance may hold (Rust guests need a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// How often the epoch advances; deadlines are rounded up to whole ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-UDF sandbox limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdfLimits {
    /// Linear memory an instance may grow to, in bytes (all its memories together); `None`:
    /// the default of the module's language ([`GuestLanguage::default_memory_bytes`]).
    pub memory_bytes: Option<u64>,
    /// Wall-clock time one `process` call (one batch) may take.
    pub deadline: Duration,
    /// Wasm fuel per call, when the runtime was built with fuel metering.
    pub fuel: Option<u64>,
}

impl Default for UdfLimits {
    fn default() -> Self {
        UdfLimits {
            memory_bytes: None,
            deadline: Duration::from_secs(1),
            fuel: None,
        }
    }
}

impl UdfLimits {
    /// These limits for `language`: its default memory cap when none is set.
    pub fn for_language(self, language: GuestLanguage) -> UdfLimits {
        UdfLimits {
            memory_bytes: Some(
                self.memory_bytes
                    .unwrap_or_else(|| language.default_memory_bytes()),
            ),
            ..self
        }
    }

    /// The memory cap in bytes (the compiled default when unresolved).
    pub fn memory_cap(&self) -> u64 {
        self.memory_bytes
            .unwrap_or_else(|| GuestLanguage::Compiled.default_memory_bytes())
    }
}

/// Epoch ticks that cover `deadline` (at least one full deadline passes before the trap).
fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}

/// Resets the per-call limits: deadline, fuel and the memory-cap flag.
pub(super) fn arm(store: &mut Store<HostState>, limits: &UdfLimits) {
    store.set_epoch_deadline(deadline_ticks(limits.deadline));
    store.data_mut().call_deadline = std::time::Instant::now()
        .checked_add(limits.deadline)
        .unwrap_or_else(|| std::time::Instant::now() + std::time::Duration::from_secs(86_400));
    if let Some(fuel) = limits.fuel {
        if let Err(err) = store.set_fuel(fuel) {
            tracing::error!("cannot set fuel: {err:#}");
        }
    }
    store.data_mut().memory.hit = false;
    store
        .data()
        .overslept
        .store(false, std::sync::atomic::Ordering::Release);
    store.data().stderr.take_tail();
}

/// Whether the current call waited until its deadline (see `sandbox::DeadlineClock`).
pub(super) fn overslept(store: &Store<HostState>) -> bool {
    store
        .data()
        .overslept
        .load(std::sync::atomic::Ordering::Acquire)
}

/// The state of one `Store`: one live UDF instance.
pub(super) struct HostState {
    udf: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) stderr: GuestOutput,
    /// When the current call (`init` or `process`) must end; set when the call is armed.
    pub(super) call_deadline: Instant,
    /// Set when a wait of the current call was cut short at its deadline: the call timed out.
    pub(super) overslept: Arc<AtomicBool>,
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
            call_deadline: Instant::now(),
            overslept: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The guest's monotonic clock, bounded by the current call's deadline.
    pub(super) fn clock(&mut self) -> DeadlineClock<'_> {
        DeadlineClock {
            table: &mut self.table,
            deadline: self.call_deadline,
            overslept: &self.overslept,
        }
    }
}

/// `wasi:clocks/monotonic-clock` for a UDF: real time, but every wait it hands out ends at the
/// latest at the current call's deadline (see the module docs). It replaces WASI's own clock in
/// the linker (`UdfRuntime::new`).
pub(super) struct DeadlineClock<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
    overslept: &'a Arc<AtomicBool>,
}

/// Linker glue: [`HostState::clock`] is how the monotonic clock reaches a store's state.
pub(super) struct HasDeadlineClock;

impl wasmtime::component::HasData for HasDeadlineClock {
    type Data<'a> = DeadlineClock<'a>;
}

/// The origin of the guest's monotonic clock (process start; only differences mean anything).
fn clock_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl DeadlineClock<'_> {
    fn wait_until(&mut self, when: Instant) -> wasmtime::Result<Resource<DynPollable>> {
        let wait = self.table.push(BoundedWait {
            until: when.min(self.deadline),
            cut_short: (when > self.deadline).then(|| self.overslept.clone()),
        })?;
        subscribe(self.table, wait)
    }
}

impl monotonic_clock::Host for DeadlineClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(u64::try_from(clock_origin().elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let when = clock_origin()
            .checked_add(Duration::from_nanos(when))
            .unwrap_or(self.deadline);
        self.wait_until(when)
    }

    fn subscribe_duration(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let when = Instant::now()
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.deadline);
        self.wait_until(when)
    }
}

/// A timer that is ready at `until` (already capped at the call's deadline). When the guest
/// asked for later than the deadline, `cut_short` is the flag to raise when the wait ends.
struct BoundedWait {
    until: Instant,
    cut_short: Option<Arc<AtomicBool>>,
}

#[async_trait::async_trait]
impl Pollable for BoundedWait {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.until.into()).await;
        if let Some(flag) = &self.cut_short {
            flag.store(true, Ordering::Release);
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

/// Caps the linear memory of an instance, all its memories together, and remembers whether a
/// growth was refused.
pub(super) struct MemoryCap {
    limit_bytes: u64,
    /// Bytes of every memory of the instance, as granted.
    used: u64,
    /// The last growth granted, taken back if the engine then fails to grow.
    last_grant: u64,
    pub(super) hit: bool,
}

impl MemoryCap {
    fn new(limit_bytes: u64) -> Self {
        MemoryCap {
            limit_bytes,
            used: 0,
            last_grant: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Creating a memory is a growth from 0 to its initial size.
        let grant = (desired as u64).saturating_sub(current as u64);
        let allowed = self.used.saturating_add(grant) <= self.limit_bytes;
        if allowed {
            self.used += grant;
            self.last_grant = grant;
        } else {
            self.hit = true;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self
            .used
            .saturating_sub(std::mem::take(&mut self.last_grant));
        Ok(())
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The cap is the instance's, over all its memories: a module declaring several memories
    /// must not get it once per memory.
    #[test]
    fn the_memory_cap_counts_every_memory_of_the_instance() {
        const MIB: usize = 1 << 20;
        let mut cap = MemoryCap::new(10 * MIB as u64);
        assert!(cap.memory_growing(0, 6 * MIB, None).expect("first memory"));
        assert!(
            !cap.memory_growing(0, 6 * MIB, None).expect("second memory"),
            "6 + 6 MiB is over a 10 MiB cap"
        );
        assert!(cap.hit);
        assert!(cap
            .memory_growing(0, 3 * MIB, None)
            .expect("a smaller second"));
        assert!(!cap
            .memory_growing(6 * MIB, 8 * MIB, None)
            .expect("first grows"));
        assert!(cap
            .memory_growing(6 * MIB, 7 * MIB, None)
            .expect("to exactly 10"));
        // A growth granted but then failed in the engine is taken back.
        cap.memory_grow_failed(wasmtime::Error::msg("mmap failed"))
            .expect("noted");
        assert!(cap.memory_growing(6 * MIB, 7 * MIB, None).expect("again"));
        assert_eq!(cap.memories(), MAX_MEMORIES);
    }

    #[test]
    fn deadline_rounds_up_to_whole_ticks_plus_one() {
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(5)), 2);
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 201);
    }
}
