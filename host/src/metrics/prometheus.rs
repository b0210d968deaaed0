//! The Prometheus text exposition (format 0.0.4) of every component's counters and the host's.

use super::{ComponentMetrics, HostMetrics, Role, LATENCY_BUCKETS};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
        "sluice_host_info",
        "gauge",
        "This host's identity (`--host-id`): always 1.",
        vec![(format!("host_id=\"{}\"", escape(&host.host_id)), "1".into())],
    );
    family(
        &mut out,
        "sluice_source_owned",
        "gauge",
        "What of a shared stream a source owns on this host (Kafka: assigned partitions as \
         topic[0,3]; MQTT: shared subscriptions): always 1.",
        sources()
            .filter_map(|c| {
                let owned = c.owned()?;
                Some((
                    format!(
                        "{},host_id=\"{}\",owned=\"{}\"",
                        labels(c),
                        escape(&host.host_id),
                        escape(&owned)
                    ),
                    "1".into(),
                ))
            })
            .collect(),
    );
    family(
        &mut out,
        "sluice_source_unacked_records",
        "gauge",
        "Records a source emitted that are not delivered everywhere yet (without a journal, \
         also not acknowledged to its broker).",
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
    // Sources: what they received and is not delivered everywhere; sinks: their buffer, what
    // they could not take yet (how far behind the others they are).
    let journaled = || {
        components
            .iter()
            .filter(|c| c.journal.enabled.load(Ordering::Relaxed))
    };
    family(
        &mut out,
        "sluice_journal_records",
        "gauge",
        "Entries in the pipeline's journal: a source's (received, not delivered everywhere) or \
         a sink's buffer (records it could not take yet: how far behind it is).",
        journaled()
            .map(|c| {
                (
                    labels(c),
                    c.journal.records.load(Ordering::Relaxed).to_string(),
                )
            })
            .collect(),
    );
    family(
        &mut out,
        "sluice_journal_bytes",
        "gauge",
        "Bytes a source or a sink's buffer holds in the pipeline's journal.",
        journaled()
            .map(|c| {
                (
                    labels(c),
                    c.journal.bytes.load(Ordering::Relaxed).to_string(),
                )
            })
            .collect(),
    );
    family(
        &mut out,
        "sluice_journal_fsyncs_total",
        "counter",
        "fsyncs that made a source's (or a sink buffer's) appends durable (one covers a batch).",
        journaled()
            .map(|c| {
                (
                    labels(c),
                    c.journal.fsyncs.load(Ordering::Relaxed).to_string(),
                )
            })
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

/// Renders the shadows' comparisons (running ones, and the last ended one of each UDF) as
/// Prometheus text: records by outcome, errors by side and kind, the alert decision table,
/// deltas per field, per-record latency on each side, and the lag.
pub fn render_shadows(reports: &[crate::udf_shadow::ShadowReport]) -> String {
    use crate::udf_shadow::ShadowState;
    let mut out = String::new();
    let base = |r: &crate::udf_shadow::ShadowReport| {
        format!(
            "udf=\"{}\",shadow=\"{}\"",
            escape(&r.name),
            escape(&r.shadow)
        )
    };
    let mut running = Vec::new();
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut alerts = Vec::new();
    let mut delta_max = Vec::new();
    let mut delta_p99 = Vec::new();
    let mut latency = Vec::new();
    let mut lag = Vec::new();
    for r in reports {
        let l = base(r);
        let f = &r.since_start;
        running.push((
            l.clone(),
            u8::from(r.state == ShadowState::Running).to_string(),
        ));
        for (outcome, n) in [("identical", f.identical), ("differing", f.differing)] {
            records.push((format!("{l},outcome=\"{outcome}\""), n.to_string()));
        }
        for (side, kinds) in [("live", &f.live_errors), ("shadow", &f.shadow_errors)] {
            for (kind, n) in kinds {
                errors.push((
                    format!("{l},side=\"{side}\",kind=\"{}\"", escape(kind)),
                    n.to_string(),
                ));
            }
        }
        for (decision, n) in [
            ("both", f.alerts.both),
            ("live_only", f.alerts.live_only),
            ("shadow_only", f.alerts.shadow_only),
            ("neither", f.alerts.neither),
        ] {
            alerts.push((format!("{l},decision=\"{decision}\""), n.to_string()));
        }
        for field in &f.fields {
            let fl = format!("{l},field=\"{}\"", escape(&field.field));
            delta_max.push((
                format!("{fl},delta=\"abs\""),
                field.max_abs_delta.to_string(),
            ));
            delta_max.push((
                format!("{fl},delta=\"rel\""),
                field.max_rel_delta.to_string(),
            ));
            delta_p99.push((
                format!("{fl},delta=\"abs\""),
                field.p99_abs_delta.to_string(),
            ));
            delta_p99.push((
                format!("{fl},delta=\"rel\""),
                field.p99_rel_delta.to_string(),
            ));
        }
        for (side, value) in [
            ("live", f.live_latency_us.p99),
            ("shadow", f.shadow_latency_us.p99),
        ] {
            latency.push((format!("{l},side=\"{side}\""), (value / 1e6).to_string()));
        }
        lag.push((l, r.lag_records.to_string()));
    }
    let families = [
        ("sluice_udf_shadow_running", "gauge", "1 while the shadow runs; 0 once promoted or dropped.", running),
        ("sluice_udf_shadow_records_total", "counter", "Records compared with the live version, by outcome (identical or differing outputs).", records),
        ("sluice_udf_shadow_errors_total", "counter", "Records compared that failed, by side (live or shadow) and error kind.", errors),
        ("sluice_udf_shadow_alerts_total", "counter", "Records by the downstream filter's decision on each side (both, live_only, shadow_only, neither).", alerts),
        ("sluice_udf_shadow_delta_max", "gauge", "Largest difference of a numeric output field since the shadow started (abs or rel).", delta_max),
        ("sluice_udf_shadow_delta_p99", "gauge", "99th percentile of the difference of a numeric output field (abs or rel).", delta_p99),
        ("sluice_udf_shadow_record_seconds_p99", "gauge", "99th percentile per-record latency on each side.", latency),
        ("sluice_udf_shadow_lag_records", "gauge", "Records handed to the shadow and not compared yet.", lag),
    ];
    for (name, kind, help, rows) in families {
        family(&mut out, name, kind, help, rows);
    }
    out
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
    use std::time::Duration;

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
}
