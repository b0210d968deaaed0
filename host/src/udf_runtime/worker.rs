//! One UDF instance in its own `Store`, reused across batches, and the rules that keep a hostile
//! or buggy guest from taking the host down or losing a record:
//!
//! 1. Every call gets a fresh wall-clock deadline (epoch ticks), fuel (when metered) and a
//!    cleared memory-cap flag.
//! 2. A trap, timeout or memory-cap hit discards the `Store`; the next call re-instantiates
//!    and re-runs `init`.
//! 3. A batch that faults, or answers with the wrong number of results, is retried record by
//!    record, so only the poison record comes back as an error and every other record is processed.

use super::bindings::{self, WitMessage, WitMessageIn, WitUdfError};
use super::sandbox::HostState;
use super::sandbox::{arm, overslept};
use super::{RecordError, UdfLimits, UdfModule};
use crate::message::Message;
use wasmtime::{Store, Trap};

/// What one input record became: zero or more output messages, or why it failed.
pub type RecordResult = Result<Vec<Message>, RecordError>;

/// A live UDF instance that processes batches. Not shared between threads: use one per worker.
pub struct UdfWorker {
    module: UdfModule,
    config: Vec<(String, String)>,
    limits: UdfLimits,
    live: Option<Live>,
    restarts: u64,
}

struct Live {
    store: Store<HostState>,
    udf: bindings::Udf,
}

impl UdfWorker {
    pub(super) fn start(
        module: UdfModule,
        config: Vec<(String, String)>,
        limits: UdfLimits,
    ) -> Result<Self, RecordError> {
        let limits = limits.for_language(module.language());
        let mut worker = UdfWorker {
            module,
            config,
            limits,
            live: None,
            restarts: 0,
        };
        worker.live = Some(worker.instantiate()?);
        Ok(worker)
    }

    /// The module this worker runs.
    pub fn module(&self) -> &UdfModule {
        &self.module
    }

    /// How many times the instance was discarded and started again after a fault.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Processes a batch: one result per input record, in order. Never panics, never drops a record.
    pub fn process(&mut self, batch: &[Message]) -> Vec<RecordResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        match self.call(batch) {
            Ok(results) => results,
            Err(fault) if batch.len() == 1 => vec![Err(fault)],
            Err(fault) => {
                tracing::warn!(
                    udf = %self.module.version(),
                    records = batch.len(),
                    "batch failed ({fault}); retrying record by record to isolate the poison record"
                );
                batch
                    .iter()
                    .map(|record| match self.call(std::slice::from_ref(record)) {
                        Ok(mut one) => one.pop().unwrap_or_else(|| {
                            Err(RecordError::BadOutput {
                                reason: "no result for the record".into(),
                            })
                        }),
                        Err(fault) => Err(fault),
                    })
                    .collect()
            }
        }
    }

    /// One `process` call. `Err` is a fault of the whole call (trap, timeout, contract breach).
    fn call(&mut self, batch: &[Message]) -> Result<Vec<RecordResult>, RecordError> {
        if self.live.is_none() {
            self.restarts += 1;
            self.live = Some(self.instantiate()?);
        }
        let Some(live) = self.live.as_mut() else {
            return Err(RecordError::Trap {
                reason: "the UDF instance is gone".into(),
            });
        };
        arm(&mut live.store, &self.limits);
        // Headers as borrowed pairs (no allocation for a record without headers).
        let headers: Vec<Vec<(&str, &[u8])>> = batch.iter().map(borrowed_headers).collect();
        let input: Vec<WitMessageIn> = batch
            .iter()
            .zip(&headers)
            .map(|(message, headers)| WitMessageIn {
                key: message.key.as_deref(),
                value: &message.value,
                headers,
                timestamp_ms: message.timestamp_ms,
            })
            .collect();
        let called = live.udf.call_process(&mut live.store, &input);
        if overslept(&live.store) {
            // It waited past its deadline (and woke up there): a timeout, whatever it answered.
            self.live = None;
            return Err(RecordError::Timeout {
                deadline: self.limits.deadline,
            });
        }
        if called.is_ok() && live.store.data().memory.hit {
            // An interpreter turns a refused growth into an exception (Python's MemoryError)
            // and carries on: the cap held, the records that hit it failed alone.
            tracing::warn!(
                udf = %self.module.version(),
                limit_bytes = self.limits.memory_cap(),
                "the UDF reached its memory cap in this batch and recovered; raise memory_mib if it needs more"
            );
        }
        match called {
            Ok(results) if results.len() == batch.len() => Ok(results
                .into_iter()
                .map(|result| match result {
                    Ok(messages) => Ok(messages.into_iter().map(from_wit).collect()),
                    Err(WitUdfError::InvalidInput(reason)) => {
                        Err(RecordError::InvalidInput(reason))
                    }
                    Err(WitUdfError::Failed(reason)) => Err(RecordError::Failed(reason)),
                })
                .collect()),
            Ok(results) => Err(RecordError::BadOutput {
                reason: format!(
                    "process returned {} results for {} messages",
                    results.len(),
                    batch.len()
                ),
            }),
            Err(err) => {
                let fault = classify(&err, &live.store, &self.limits);
                // After a trap the instance may be half-updated: never call it again.
                self.live = None;
                Err(fault)
            }
        }
    }

    /// A fresh store and instance, with `init` run under the same limits as a batch.
    fn instantiate(&self) -> Result<Live, RecordError> {
        let inner = &self.module.inner;
        let state = HostState::new(inner.name.clone(), self.limits.memory_cap());
        let mut store = Store::new(&inner.shared.engine, state);
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_trap();
        arm(&mut store, &self.limits);
        let udf = inner
            .pre
            .instantiate(&mut store)
            .map_err(|err| classify(&err, &store, &self.limits))?;
        arm(&mut store, &self.limits);
        let config: Vec<(&str, &str)> = self
            .config
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let called = udf.call_init(&mut store, &config);
        if overslept(&store) {
            return Err(RecordError::Timeout {
                deadline: self.limits.deadline,
            });
        }
        match called {
            Ok(Ok(())) => Ok(Live { store, udf }),
            Ok(Err(WitUdfError::InvalidInput(reason))) => Err(RecordError::InvalidInput(reason)),
            Ok(Err(WitUdfError::Failed(reason))) => Err(RecordError::Failed(reason)),
            Err(err) => Err(classify(&err, &store, &self.limits)),
        }
    }
}

/// Turns wasmtime's error into the typed reason, using what the sandbox observed.
fn classify(err: &wasmtime::Error, store: &Store<HostState>, limits: &UdfLimits) -> RecordError {
    let trap = err.downcast_ref::<Trap>();
    match trap {
        Some(Trap::Interrupt) => RecordError::Timeout {
            deadline: limits.deadline,
        },
        Some(Trap::OutOfFuel) => RecordError::FuelExhausted {
            fuel: limits.fuel.unwrap_or(0),
        },
        _ if store.data().memory.hit => RecordError::MemoryLimit {
            limit_bytes: limits.memory_cap(),
        },
        _ => {
            let mut reason = match trap {
                Some(trap) => trap.to_string(),
                None => format!("{err:#}"),
            };
            let said = store.data().stderr.take_tail();
            if !said.is_empty() {
                reason.push_str("; guest stderr: ");
                reason.push_str(&said.join(" | "));
            }
            RecordError::Trap { reason }
        }
    }
}

/// A message's headers as the borrowed pairs the bindings lower.
fn borrowed_headers(message: &Message) -> Vec<(&str, &[u8])> {
    message
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_slice()))
        .collect()
}

fn from_wit(message: WitMessage) -> Message {
    Message {
        key: message.key,
        value: message.value,
        headers: message.headers,
        timestamp_ms: message.timestamp_ms,
    }
}
