//! One UDF instance in its own `Store`, reused across batches, and the rules that keep a hostile
//! or buggy guest from taking the host down or losing a record:
//!
//! 1. Every call gets a fresh wall-clock deadline (epoch ticks), fuel (when metered) and a
//!    cleared memory-cap flag.
//! 2. A trap, timeout or memory-cap hit discards the `Store`; the next call re-instantiates
//!    and re-runs `init`.
//! 3. A batch that faults, or answers with the wrong number of results, is retried record by
//!    record, so only the poison record comes back as an error and every other record is processed.

use super::bindings::{self, WitMessage, WitMessageIn, WitUdfError, WitValue, WitValueIn};
use super::sandbox::HostState;
use super::sandbox::{arm, overslept};
use super::{RecordError, UdfLimits, UdfModule};
use crate::message::Message;
use wasmtime::{Store, Trap};

/// What one input record became: zero or more output messages, or why it failed.
pub type RecordResult = Result<Vec<Message>, RecordError>;

/// A SQL value crossing into or out of a scalar function (`sluice:udf/scalar`).
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarValue {
    /// SQL NULL.
    Null,
    /// BOOLEAN.
    Boolean(bool),
    /// INTEGER, BIGINT.
    Integer(i64),
    /// DOUBLE.
    Double(f64),
    /// VARCHAR.
    Text(String),
}

/// What one row of a scalar call gave: a value, or why it failed.
pub type ScalarResult = Result<ScalarValue, RecordError>;

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
    scalar: Option<bindings::ScalarGuest>,
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
        self.isolated(batch, Self::call)
    }

    /// Calls the scalar function `function` on each row of arguments: one result per row, in
    /// order, with the same isolation as [`Self::process`]. A module without the `scalar`
    /// export answers every row with that error.
    pub fn call_scalar(&mut self, function: &str, rows: &[Vec<ScalarValue>]) -> Vec<ScalarResult> {
        self.isolated(rows, |worker, rows| worker.call_scalar_once(function, rows))
    }

    /// `call` on the whole batch; when the call faults, again record by record, so only the
    /// poison record comes back as an error.
    fn isolated<I, O>(
        &mut self,
        batch: &[I],
        mut call: impl FnMut(&mut Self, &[I]) -> Result<Vec<Result<O, RecordError>>, RecordError>,
    ) -> Vec<Result<O, RecordError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        match call(self, batch) {
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
                    .map(|record| match call(self, std::slice::from_ref(record)) {
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

    /// The live instance, started again if a fault discarded it, armed for one call.
    fn live(&mut self) -> Result<&mut Live, RecordError> {
        if self.live.is_none() {
            self.restarts += 1;
            self.live = Some(self.instantiate()?);
        }
        let limits = self.limits.clone();
        match self.live.as_mut() {
            Some(live) => {
                arm(&mut live.store, &limits);
                Ok(live)
            }
            None => Err(RecordError::Trap {
                reason: "the UDF instance is gone".into(),
            }),
        }
    }

    /// What a finished guest call means for the instance: a timeout if it overslept (the
    /// instance is discarded), a warning if it hit its memory cap and recovered.
    fn after_call(&mut self, called_ok: bool) -> Result<(), RecordError> {
        let Some(live) = self.live.as_ref() else {
            return Ok(());
        };
        if overslept(&live.store) {
            // It waited past its deadline (and woke up there): a timeout, whatever it answered.
            self.live = None;
            return Err(RecordError::Timeout {
                deadline: self.limits.deadline,
            });
        }
        if called_ok && live.store.data().memory.hit {
            // An interpreter turns a refused growth into an exception (Python's MemoryError)
            // and carries on: the cap held, the records that hit it failed alone.
            tracing::warn!(
                udf = %self.module.version(),
                limit_bytes = self.limits.memory_cap(),
                "the UDF reached its memory cap in this batch and recovered; raise memory_mib if it needs more"
            );
        }
        Ok(())
    }

    /// One `scalar.call`. `Err` is a fault of the whole call.
    fn call_scalar_once(
        &mut self,
        function: &str,
        rows: &[Vec<ScalarValue>],
    ) -> Result<Vec<ScalarResult>, RecordError> {
        let version = self.module.version();
        let live = self.live()?;
        let Some(scalar) = live.scalar.as_ref() else {
            return Ok(rows
                .iter()
                .map(|_| {
                    Err(RecordError::InvalidInput(format!(
                        "{version} has no scalar functions: it does not export sluice:udf/scalar (rebuild it with the current SDK and implement Udf::call)"
                    )))
                })
                .collect());
        };
        let input: Vec<Vec<WitValueIn>> = rows
            .iter()
            .map(|row| row.iter().map(to_wit_value).collect())
            .collect();
        let input: Vec<&[WitValueIn]> = input.iter().map(Vec::as_slice).collect();
        let called = scalar.call_call(&mut live.store, function, &input);
        self.after_call(called.is_ok())?;
        self.answers(called, rows.len(), "scalar call", "rows", from_wit_value)
    }

    /// Classifies a guest error and discards the instance: after a trap it may be half-updated.
    fn fault(&mut self, err: &wasmtime::Error) -> RecordError {
        match self.live.take() {
            Some(live) => classify(err, &live.store, &self.limits),
            None => RecordError::Trap {
                reason: format!("{err:#}"),
            },
        }
    }

    /// One `process` call. `Err` is a fault of the whole call (trap, timeout, contract breach).
    fn call(&mut self, batch: &[Message]) -> Result<Vec<RecordResult>, RecordError> {
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
        let live = self.live()?;
        let called = live.udf.call_process(&mut live.store, &input);
        self.after_call(called.is_ok())?;
        self.answers(called, batch.len(), "process", "messages", |messages| {
            messages.into_iter().map(from_wit).collect()
        })
    }

    /// A guest call's answers as one result per input (`expected` of them, else a contract
    /// breach naming `call` and `inputs`), or the fault that ended the call.
    fn answers<W, O>(
        &mut self,
        called: wasmtime::Result<Vec<Result<W, WitUdfError>>>,
        expected: usize,
        call: &str,
        inputs: &str,
        convert: impl Fn(W) -> O,
    ) -> Result<Vec<Result<O, RecordError>>, RecordError> {
        match called {
            Ok(results) if results.len() == expected => Ok(results
                .into_iter()
                .map(|result| match result {
                    Ok(output) => Ok(convert(output)),
                    Err(WitUdfError::InvalidInput(reason)) => {
                        Err(RecordError::InvalidInput(reason))
                    }
                    Err(WitUdfError::Failed(reason)) => Err(RecordError::Failed(reason)),
                })
                .collect()),
            Ok(results) => Err(RecordError::BadOutput {
                reason: format!(
                    "{call} returned {} results for {expected} {inputs}",
                    results.len()
                ),
            }),
            Err(err) => Err(self.fault(&err)),
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
        let instance = inner
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|err| classify(&err, &store, &self.limits))?;
        let udf = bindings::Udf::new(&mut store, &instance)
            .map_err(|err| classify(&err, &store, &self.limits))?;
        let scalar = match &inner.scalar {
            Some(indices) => Some(
                indices
                    .load(&mut store, &instance)
                    .map_err(|err| classify(&err, &store, &self.limits))?,
            ),
            None => None,
        };
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
            Ok(Ok(())) => Ok(Live { store, udf, scalar }),
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

fn to_wit_value(value: &ScalarValue) -> WitValueIn<'_> {
    match value {
        ScalarValue::Null => WitValueIn::Null,
        ScalarValue::Boolean(b) => WitValueIn::Boolean(*b),
        ScalarValue::Integer(i) => WitValueIn::Integer(*i),
        ScalarValue::Double(d) => WitValueIn::Double(*d),
        ScalarValue::Text(t) => WitValueIn::Text(t),
    }
}

fn from_wit_value(value: WitValue) -> ScalarValue {
    match value {
        WitValue::Null => ScalarValue::Null,
        WitValue::Boolean(b) => ScalarValue::Boolean(b),
        WitValue::Integer(i) => ScalarValue::Integer(i),
        WitValue::Double(d) => ScalarValue::Double(d),
        WitValue::Text(t) => ScalarValue::Text(t),
    }
}
