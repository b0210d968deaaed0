//! Counters that running components update and operators read: records in and out, errors,
//! dead letters, UDF batch latency and failures by kind, connection state, consumer lag, the
//! last error. Rendered as Prometheus text by [`render_prometheus`] and read by the admin API's
//! status and the dashboard.
//!
//! Plain atomics: updating a counter is one relaxed add, cheap on the record path. This module
//! keeps the counters; `prometheus.rs` renders them.

mod prometheus;

pub use prometheus::{render_prometheus, render_shadows};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Upper bounds (seconds) of the UDF batch latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A cumulative latency histogram (Prometheus semantics).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The last error a component met, with when.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LastError {
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
    /// What happened.
    pub message: String,
}

/// Connection state of a component that talks to a broker (gauge values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Not a broker client (filter, UDF, console).
    NotApplicable = -1,
    /// Disconnected or never connected.
    Down = 0,
    /// Connected.
    Up = 1,
}

/// The part a component plays in its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads from a broker.
    Source,
    /// Turns records into records (UDF, filter).
    Transform,
    /// Writes to a destination.
    Sink,
}

impl Role {
    /// `source`, `transform` or `sink`, as in the API and the Prometheus labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

/// The counters of one component of one pipeline.
#[derive(Debug)]
pub struct ComponentMetrics {
    /// The pipeline.
    pub pipeline: Arc<str>,
    /// The component.
    pub component: Arc<str>,
    /// Source, transform or sink.
    pub role: Role,
    /// The component type (`mqtt`, `udf`...).
    pub kind: &'static str,
    /// Records received from upstream (for sources: from the broker).
    pub records_in: AtomicU64,
    /// Records sent downstream (for sinks: written and acknowledged by the destination).
    pub records_out: AtomicU64,
    /// Records this component could not process (sent to dead letters).
    pub errors: AtomicU64,
    /// UDF batch latency (UDF transforms only).
    pub batch_latency: Histogram,
    /// Failed UDF records by kind (`trap`, `timeout`...).
    failures_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// [`Connection`] as a number.
    connection: AtomicI64,
    /// Consumer lag in records (Kafka sources), -1 when unknown.
    lag: AtomicI64,
    /// What of a shared stream this source owns (see [`ComponentMetrics::set_owned`]).
    owned: Mutex<Option<String>>,
    last_error: Mutex<Option<LastError>>,
    /// Records a source emitted that are not delivered yet (sources only).
    pub unacked: Unacked,
    /// The source's journal, if it has one (sources only).
    pub journal: JournalGauges,
    /// Sources: subscribed and receiving (MQTT: the broker granted the subscription or resumed
    /// the session; Kafka: subscribed to its topics).
    ready: std::sync::atomic::AtomicBool,
}

/// A source's (or a sink buffer's) share of its pipeline's journal (`journal/`): set by the
/// journal, read here.
#[derive(Debug, Default)]
pub struct JournalGauges {
    /// The source journals what it receives.
    pub enabled: std::sync::atomic::AtomicBool,
    /// Entries held (received, not delivered everywhere yet).
    pub records: AtomicU64,
    /// Bytes held.
    pub bytes: AtomicU64,
    /// fsyncs that made this source's appends durable (one covers every append of its batch).
    pub fsyncs: AtomicU64,
}

/// The records of one source that are not acknowledged yet: how many, and since when the oldest
/// waits. An entry is added when a source emits a record and removed when its acknowledgement is
/// completed (see `flow::Ack`), or when the source's run ends ([`UnackedScope`]); an
/// acknowledgement dropped without being completed stays counted, since the broker still waits.
#[derive(Debug, Default)]
pub struct Unacked {
    next: AtomicU64,
    since: Mutex<BTreeMap<u64, std::time::Instant>>,
}

impl Unacked {
    /// Registers a new unacknowledged record; returns its ticket for [`Unacked::remove`].
    pub fn add(&self) -> u64 {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(ticket, std::time::Instant::now());
        ticket
    }

    /// The record of `ticket` is acknowledged (or will be redelivered): no longer waiting.
    pub fn remove(&self, ticket: u64) {
        self.lock().remove(&ticket);
    }

    /// Forgets every waiting record: the source's run ended, so its broker will deliver them
    /// again to the next one.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many records wait.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// How long the oldest waiting record has waited (zero when none waits).
    pub fn oldest_age(&self) -> Duration {
        self.lock()
            .values()
            .next()
            .map(|since| since.elapsed())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, std::time::Instant>> {
        self.since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Clears a source's [`Unacked`] when its run ends, however it ends (returned, or aborted at a
/// drain deadline); see [`ComponentMetrics::unacked_scope`].
pub struct UnackedScope(Arc<ComponentMetrics>);

impl Drop for UnackedScope {
    fn drop(&mut self) {
        self.0.unacked.clear();
    }
}

impl ComponentMetrics {
    /// Held by a source for its run: what it leaves unacknowledged is forgotten when the run
    /// ends (the broker delivers it again to the next run).
    pub fn unacked_scope(self: &Arc<Self>) -> UnackedScope {
        UnackedScope(self.clone())
    }

    /// Fresh counters.
    pub fn new(pipeline: Arc<str>, component: Arc<str>, role: Role, kind: &'static str) -> Self {
        // Broker clients say so at wiring (`set_connection`); the kinds are declared in one
        // place, `pipeline::component_kinds!`.
        let connection = Connection::NotApplicable;
        ComponentMetrics {
            pipeline,
            component,
            role,
            kind,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            batch_latency: Histogram::default(),
            failures_by_kind: Mutex::new(BTreeMap::new()),
            connection: AtomicI64::new(connection as i64),
            lag: AtomicI64::new(-1),
            owned: Mutex::new(None),
            last_error: Mutex::new(None),
            unacked: Unacked::default(),
            journal: JournalGauges::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Counts a record received.
    pub fn record_in(&self) {
        self.records_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a record passed on.
    pub fn record_out(&self) {
        self.records_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a record that could not be processed and remembers why.
    pub fn record_error(&self, reason: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.report_error(reason);
    }

    /// Counts a failed UDF record by its kind.
    pub fn udf_failure(&self, kind: &'static str) {
        let mut kinds = self
            .failures_by_kind
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *kinds.entry(kind).or_default() += 1;
    }

    /// Remembers the last error (a connection failure, a rejected write...).
    pub fn report_error(&self, message: &str) {
        let at_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastError {
            at_unix,
            message: message.to_string(),
        });
    }

    /// Sets the connection state.
    pub fn set_connection(&self, state: Connection) {
        self.connection.store(state as i64, Ordering::Relaxed);
    }

    /// A source says it is subscribed and receiving.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the source said it is subscribed and receiving.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sets the consumer lag.
    pub fn set_lag(&self, records: i64) {
        self.lag.store(records, Ordering::Relaxed);
    }

    /// Sets what of a shared stream this source owns: a Kafka source's assigned partitions
    /// (`topic[0,3]`, empty between a revocation and the next assignment), an MQTT source's
    /// shared subscriptions (`$share/GROUP/topic`); `None` when the stream is not shared.
    pub fn set_owned(&self, owned: Option<String>) {
        *self.owned.lock().unwrap_or_else(|p| p.into_inner()) = owned;
    }

    /// What [`ComponentMetrics::set_owned`] set.
    pub fn owned(&self) -> Option<String> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A point-in-time copy for status and the dashboard.
    pub fn snapshot(&self) -> ComponentSnapshot {
        ComponentSnapshot {
            name: self.component.to_string(),
            role: self.role,
            kind: std::borrow::Cow::Borrowed(self.kind),
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            connected: match self.connection.load(Ordering::Relaxed) {
                1 => Some(true),
                0 => Some(false),
                _ => None,
            },
            lag: Some(self.lag.load(Ordering::Relaxed)).filter(|lag| *lag >= 0),
            owned: self.owned(),
            unacked: (self.role == Role::Source).then(|| self.unacked.count()),
            oldest_unacked_secs: (self.role == Role::Source)
                .then(|| self.unacked.oldest_age().as_secs_f64()),
            journal_records: self
                .journal
                .enabled
                .load(Ordering::Relaxed)
                .then(|| self.journal.records.load(Ordering::Relaxed)),
            journal_bytes: self
                .journal
                .enabled
                .load(Ordering::Relaxed)
                .then(|| self.journal.bytes.load(Ordering::Relaxed)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// What [`ComponentMetrics::snapshot`] returns.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ComponentSnapshot {
    /// The component.
    pub name: String,
    /// `source`, `transform` or `sink`.
    pub role: Role,
    /// The component type (borrowed when taken, owned when read from the API).
    pub kind: std::borrow::Cow<'static, str>,
    /// Records received.
    pub records_in: u64,
    /// Records passed on or written.
    pub records_out: u64,
    /// Records dead-lettered by this component.
    pub errors: u64,
    /// Broker connection state, for broker clients.
    pub connected: Option<bool>,
    /// Consumer lag, when known.
    pub lag: Option<i64>,
    /// Sources of a shared stream: what this host owns of it (Kafka: assigned partitions as
    /// `topic[0,3]`; MQTT: its shared subscriptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned: Option<String>,
    /// Sources: records emitted and not acknowledged yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unacked: Option<usize>,
    /// Sources: how long the oldest unacknowledged record has waited, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unacked_secs: Option<f64>,
    /// With a journal: entries a source holds, or a sink's buffer (how far behind it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_records: Option<u64>,
    /// With a journal: bytes a source or a sink's buffer holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_bytes: Option<u64>,
    /// The last error, if any.
    pub last_error: Option<LastError>,
}

/// Host-wide counters that do not belong to one component.
#[derive(Debug, Default)]
pub struct HostMetrics {
    /// This host's identity (`state_dir::host_id`), so scraped metrics say who does what.
    pub host_id: String,
    /// Pipeline deployments (new or replaced).
    pub deployments: AtomicU64,
    /// Pipeline restarts after a run-time failure.
    pub pipeline_restarts: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        assert_eq!(h.count(), 2);
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1); // <= 100 µs
        assert_eq!(h.buckets[5].load(Ordering::Relaxed), 2); // <= 5 ms
    }

    #[test]
    fn unacknowledged_records_are_counted_until_removed() {
        let c = Arc::new(ComponentMetrics::new(
            "p".into(),
            "in".into(),
            Role::Source,
            "mqtt",
        ));
        let first = c.unacked.add();
        let second = c.unacked.add();
        assert_eq!(c.unacked.count(), 2);
        c.unacked.remove(first);
        assert_eq!(c.snapshot().unacked, Some(1));
        let text = render_prometheus(&HostMetrics::default(), 0, 0, std::slice::from_ref(&c));
        let labels = r#"pipeline="p",component="in",role="source",kind="mqtt""#;
        assert!(text.contains(&format!("sluice_source_unacked_records{{{labels}}} 1")));
        c.unacked.remove(second);
        assert_eq!(c.unacked.count(), 0);
        assert_eq!(c.unacked.oldest_age(), Duration::ZERO);
    }
}
