//! Counters that running components update and operators read: records in and out, errors,
//! dead letters, UDF batch latency and failures by kind, connection state, consumer lag, the
//! last error. Rendered as Prometheus text by [`render_prometheus`] and read by the admin API's
//! status and the dashboard.
//!
//! Plain atomics: updating a counter is one relaxed add, cheap on the record path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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
#[derive(Debug, Clone, serde::Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
    last_error: Mutex<Option<LastError>>,
    /// Records a source emitted and has not acknowledged yet (sources only).
    pub unacked: Unacked,
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
            last_error: Mutex::new(None),
            unacked: Unacked::default(),
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

    /// Sets the consumer lag.
    pub fn set_lag(&self, records: i64) {
        self.lag.store(records, Ordering::Relaxed);
    }

    /// A point-in-time copy for status and the dashboard.
    pub fn snapshot(&self) -> ComponentSnapshot {
        ComponentSnapshot {
            name: self.component.to_string(),
            role: self.role,
            kind: self.kind,
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            connected: match self.connection.load(Ordering::Relaxed) {
                1 => Some(true),
                0 => Some(false),
                _ => None,
            },
            lag: Some(self.lag.load(Ordering::Relaxed)).filter(|lag| *lag >= 0),
            unacked: (self.role == Role::Source).then(|| self.unacked.count()),
            oldest_unacked_secs: (self.role == Role::Source)
                .then(|| self.unacked.oldest_age().as_secs_f64()),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// What [`ComponentMetrics::snapshot`] returns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentSnapshot {
    /// The component.
    pub name: String,
    /// `source`, `transform` or `sink`.
    pub role: Role,
    /// The component type.
    pub kind: &'static str,
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
    /// Sources: records emitted and not acknowledged yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unacked: Option<usize>,
    /// Sources: how long the oldest unacknowledged record has waited, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unacked_secs: Option<f64>,
    /// The last error, if any.
    pub last_error: Option<LastError>,
}

/// Host-wide counters that do not belong to one component.
#[derive(Debug, Default)]
pub struct HostMetrics {
    /// Pipeline deployments (new or replaced).
    pub deployments: AtomicU64,
    /// Pipeline restarts after a run-time failure.
    pub pipeline_restarts: AtomicU64,
}

/// Renders the counters of every component, plus the host's, as Prometheus text (format 0.0.4).
/// `udf_swaps` and `udf_refusals` come from the UDF registry.
pub fn render_prometheus(
    host: &HostMetrics,
    udf_swaps: u64,
    udf_refusals: u64,
    components: &[Arc<ComponentMetrics>],
) -> String {
    let mut out = String::new();
    let labels = |c: &ComponentMetrics| {
        format!(
            "pipeline=\"{}\",component=\"{}\",role=\"{}\",kind=\"{}\"",
            escape(&c.pipeline),
            escape(&c.component),
            c.role.as_str(),
            c.kind
        )
    };
    let counter = |f: fn(&ComponentMetrics) -> u64| {
        components
            .iter()
            .map(|c| (labels(c), f(c).to_string()))
            .collect::<Vec<_>>()
    };
    family(
        &mut out,
        "sluice_records_in_total",
        "counter",
        "Records received by a component.",
        counter(|c| c.records_in.load(Ordering::Relaxed)),
    );
    family(
        &mut out,
        "sluice_records_out_total",
        "counter",
        "Records a component passed on (sinks: written and acknowledged).",
        counter(|c| c.records_out.load(Ordering::Relaxed)),
    );
    family(
        &mut out,
        "sluice_records_errors_total",
        "counter",
        "Records a component could not process (each went to dead letters).",
        counter(|c| c.errors.load(Ordering::Relaxed)),
    );
    let mut dead_letters: BTreeMap<&str, u64> = BTreeMap::new();
    for c in components {
        *dead_letters.entry(&c.pipeline).or_default() += c.errors.load(Ordering::Relaxed);
    }
    family(
        &mut out,
        "sluice_dead_letters_total",
        "counter",
        "Records sent to a pipeline's dead-letter destination.",
        dead_letters
            .into_iter()
            .map(|(p, n)| (format!("pipeline=\"{}\"", escape(p)), n.to_string()))
            .collect(),
    );
    let mut traps = Vec::new();
    for c in components {
        let kinds = c.failures_by_kind.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, n) in kinds.iter() {
            traps.push((format!("{},failure=\"{kind}\"", labels(c)), n.to_string()));
        }
    }
    family(
        &mut out,
        "sluice_udf_failures_total",
        "counter",
        "UDF records that failed, by kind (trap, timeout, memory-limit, invalid-input...).",
        traps,
    );
    let mut histogram = Vec::new();
    for c in components.iter().filter(|c| c.kind == "udf") {
        let h = &c.batch_latency;
        for (bucket, bound) in h.buckets.iter().zip(LATENCY_BUCKETS) {
            histogram.push((
                format!("{},le=\"{bound}\"", labels(c)),
                bucket.load(Ordering::Relaxed).to_string(),
            ));
        }
        histogram.push((format!("{},le=\"+Inf\"", labels(c)), h.count().to_string()));
    }
    // Buckets, sum and count are one family in the exposition format.
    let _ = writeln!(
        out,
        "# HELP sluice_udf_batch_seconds Time one UDF batch (one process call) took.\n\
         # TYPE sluice_udf_batch_seconds histogram"
    );
    for (l, v) in histogram {
        let _ = writeln!(out, "sluice_udf_batch_seconds_bucket{{{l}}} {v}");
    }
    for c in components.iter().filter(|c| c.kind == "udf") {
        let h = &c.batch_latency;
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "sluice_udf_batch_seconds_sum{{{}}} {sum}", labels(c));
        let _ = writeln!(
            out,
            "sluice_udf_batch_seconds_count{{{}}} {}",
            labels(c),
            h.count()
        );
    }
    family(
        &mut out,
        "sluice_connection_up",
        "gauge",
        "1 when a broker client component is connected, 0 when not.",
        components
            .iter()
            .filter(|c| c.connection.load(Ordering::Relaxed) >= 0)
            .map(|c| (labels(c), c.connection.load(Ordering::Relaxed).to_string()))
            .collect(),
    );
    family(
        &mut out,
        "sluice_consumer_lag",
        "gauge",
        "Records between a Kafka source's position and the end of its partitions.",
        components
            .iter()
            .filter(|c| c.lag.load(Ordering::Relaxed) >= 0)
            .map(|c| (labels(c), c.lag.load(Ordering::Relaxed).to_string()))
            .collect(),
    );
    let sources = || components.iter().filter(|c| c.role == Role::Source);
    family(
        &mut out,
        "sluice_source_unacked_records",
        "gauge",
        "Records a source emitted that are not acknowledged to its broker yet.",
        sources()
            .map(|c| (labels(c), c.unacked.count().to_string()))
            .collect(),
    );
    family(
        &mut out,
        "sluice_source_oldest_unacked_seconds",
        "gauge",
        "How long a source's oldest unacknowledged record has waited (0 when none waits).",
        sources()
            .map(|c| (labels(c), c.unacked.oldest_age().as_secs_f64().to_string()))
            .collect(),
    );
    let host_counter = |v: &AtomicU64| vec![(String::new(), v.load(Ordering::Relaxed).to_string())];
    family(
        &mut out,
        "sluice_udf_reloads_total",
        "counter",
        "UDF versions that went live (hot reloads, uploads, rollbacks).",
        vec![(String::new(), udf_swaps.to_string())],
    );
    family(
        &mut out,
        "sluice_udf_refusals_total",
        "counter",
        "UDF versions refused (did not compile, wrong world, init failed).",
        vec![(String::new(), udf_refusals.to_string())],
    );
    family(
        &mut out,
        "sluice_pipeline_deployments_total",
        "counter",
        "Pipelines deployed or replaced.",
        host_counter(&host.deployments),
    );
    family(
        &mut out,
        "sluice_pipeline_restarts_total",
        "counter",
        "Pipelines restarted after a run-time failure.",
        host_counter(&host.pipeline_restarts),
    );
    out
}

/// Writes one metric family: help, type, and a line per (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, String)>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    fn prometheus_text_has_labelled_counters() {
        let c = Arc::new(ComponentMetrics::new(
            "p\"1".into(),
            "score".into(),
            Role::Transform,
            "udf",
        ));
        c.record_in();
        c.record_in();
        c.record_error("bad");
        c.udf_failure("trap");
        c.batch_latency.observe(Duration::from_millis(2));
        let text = render_prometheus(&HostMetrics::default(), 0, 0, &[c]);
        let labels = r#"pipeline="p\"1",component="score",role="transform",kind="udf""#;
        assert!(text.contains(&format!("sluice_records_in_total{{{labels}}} 2")));
        assert!(text.contains(&format!("sluice_records_errors_total{{{labels}}} 1")));
        assert!(text.contains(&format!(
            "sluice_udf_failures_total{{{labels},failure=\"trap\"}} 1"
        )));
        assert!(text.contains(&format!(
            "sluice_udf_batch_seconds_bucket{{{labels},le=\"+Inf\"}} 1"
        )));
        assert!(text.contains("sluice_dead_letters_total{pipeline=\"p\\\"1\"} 1"));
        assert!(text.contains("sluice_udf_reloads_total 0"));
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
