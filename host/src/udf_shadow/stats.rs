//! `ShadowStats`: what the comparisons of one shadow add up to, since it started and over a
//! sliding window (six 10-second slots), with the latest differing records, decision changes
//! and score pairs kept for inspection.

use super::compare::{Decision, RecordComparison, Verdict};
use super::hist::LogHist;
use super::report::{
    AlertTable, DecisionChange, FieldDeltas, Latency, ShadowFigures, ShadowPoint, ShadowSample,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

/// Seconds per window slot.
const SLOT_SECONDS: u64 = 10;
/// Slots in the window.
const SLOTS: u64 = 6;
/// Differing records kept.
const SAMPLES: usize = 20;
/// Decision changes kept.
const CHANGES: usize = 200;
/// Score pairs kept per pipeline (as many as the dashboard's live scores).
const POINTS: usize = 400;

/// The sliding window's length.
pub const WINDOW_SECONDS: u64 = SLOT_SECONDS * SLOTS;

/// One live batch compared with the shadow.
pub struct BatchComparison {
    /// The pipeline it ran in.
    pub pipeline: String,
    /// One comparison per record.
    pub records: Vec<RecordComparison>,
    /// A few differing records, rendered.
    pub samples: Vec<ShadowSample>,
    /// The live batch's time per record, microseconds.
    pub live_us_per_record: f64,
    /// The shadow's time per record, microseconds.
    pub shadow_us_per_record: f64,
}

/// Counters over some span.
#[derive(Debug, Clone, Default)]
struct Tally {
    records: u64,
    identical: u64,
    differing: u64,
    live_errors: BTreeMap<&'static str, u64>,
    shadow_errors: BTreeMap<&'static str, u64>,
    alerts: AlertTable,
    /// Per field: records, |Δ|, relative Δ.
    fields: BTreeMap<String, (u64, LogHist, LogHist)>,
    live_latency: LogHist,
    shadow_latency: LogHist,
}

impl Tally {
    fn add(&mut self, batch: &BatchComparison) {
        let n = batch.records.len() as u64;
        self.live_latency.add_n(batch.live_us_per_record, n);
        self.shadow_latency.add_n(batch.shadow_us_per_record, n);
        for c in &batch.records {
            self.records += 1;
            match c.verdict {
                Verdict::Identical => self.identical += 1,
                Verdict::Differing => self.differing += 1,
                Verdict::LiveError(kind) => *self.live_errors.entry(kind).or_default() += 1,
                Verdict::ShadowError(kind) => *self.shadow_errors.entry(kind).or_default() += 1,
                Verdict::BothError(live, shadow) => {
                    *self.live_errors.entry(live).or_default() += 1;
                    *self.shadow_errors.entry(shadow).or_default() += 1;
                }
            }
            match c.decision {
                Some(Decision::Both) => self.alerts.both += 1,
                Some(Decision::LiveOnly) => self.alerts.live_only += 1,
                Some(Decision::ShadowOnly) => self.alerts.shadow_only += 1,
                Some(Decision::Neither) => self.alerts.neither += 1,
                None => {}
            }
            for (field, abs, rel) in &c.deltas {
                let entry = match self.fields.get_mut(field) {
                    Some(entry) => entry,
                    None => self.fields.entry(field.clone()).or_default(),
                };
                entry.0 += 1;
                entry.1.add(*abs);
                entry.2.add(*rel);
            }
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.records += other.records;
        self.identical += other.identical;
        self.differing += other.differing;
        for (k, n) in &other.live_errors {
            *self.live_errors.entry(k).or_default() += n;
        }
        for (k, n) in &other.shadow_errors {
            *self.shadow_errors.entry(k).or_default() += n;
        }
        self.alerts.both += other.alerts.both;
        self.alerts.live_only += other.alerts.live_only;
        self.alerts.shadow_only += other.alerts.shadow_only;
        self.alerts.neither += other.alerts.neither;
        for (field, (n, abs, rel)) in &other.fields {
            let entry = self.fields.entry(field.clone()).or_default();
            entry.0 += n;
            entry.1.merge(abs);
            entry.2.merge(rel);
        }
        self.live_latency.merge(&other.live_latency);
        self.shadow_latency.merge(&other.shadow_latency);
    }

    fn figures(&self) -> ShadowFigures {
        let errors =
            |m: &BTreeMap<&'static str, u64>| m.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        let latency = |h: &LogHist| Latency {
            mean: h.mean(),
            p99: h.quantile(0.99),
        };
        ShadowFigures {
            records: self.records,
            identical: self.identical,
            differing: self.differing,
            live_errors: errors(&self.live_errors),
            shadow_errors: errors(&self.shadow_errors),
            alerts: self.alerts,
            fields: self
                .fields
                .iter()
                .map(|(field, (n, abs, rel))| FieldDeltas {
                    field: field.clone(),
                    records: *n,
                    max_abs_delta: abs.max(),
                    p99_abs_delta: abs.quantile(0.99),
                    max_rel_delta: rel.max(),
                    p99_rel_delta: rel.quantile(0.99),
                })
                .collect(),
            live_latency_us: latency(&self.live_latency),
            shadow_latency_us: latency(&self.shadow_latency),
        }
    }
}

#[derive(Default)]
struct Inner {
    total: Tally,
    /// (slot number, its tally), oldest first.
    slots: VecDeque<(u64, Tally)>,
    samples: VecDeque<ShadowSample>,
    changes: VecDeque<DecisionChange>,
    points: BTreeMap<String, VecDeque<ShadowPoint>>,
    batches: u64,
    refused: Vec<String>,
    decision_filters: BTreeSet<String>,
}

/// Everything one shadow's comparisons add up to; shared by every transform running it.
#[derive(Default)]
pub struct ShadowStats {
    inner: Mutex<Inner>,
}

/// A copy of the figures for a report.
pub struct StatsSnapshot {
    /// Since start.
    pub since_start: ShadowFigures,
    /// Over the window.
    pub window: ShadowFigures,
    /// Live batches compared.
    pub batches: u64,
    /// Where the shadow could not start.
    pub refused: Vec<String>,
    /// The filters deciding alerts.
    pub decision_filters: Vec<String>,
    /// Latest differing records.
    pub samples: Vec<ShadowSample>,
    /// Latest decision changes.
    pub decision_changes: Vec<DecisionChange>,
    /// Latest score pairs by pipeline.
    pub points: BTreeMap<String, Vec<ShadowPoint>>,
}

impl ShadowStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one compared batch, at `now_unix` seconds.
    pub fn add(&self, batch: BatchComparison, now_unix: u64) {
        let now_ms = now_unix.saturating_mul(1000);
        let slot = now_unix / SLOT_SECONDS;
        let mut inner = self.lock();
        inner.batches += 1;
        inner.total.add(&batch);
        while inner.slots.front().is_some_and(|(s, _)| *s + SLOTS <= slot) {
            inner.slots.pop_front();
        }
        match inner.slots.back_mut() {
            Some((s, tally)) if *s == slot => tally.add(&batch),
            _ => {
                let mut tally = Tally::default();
                tally.add(&batch);
                inner.slots.push_back((slot, tally));
            }
        }
        for sample in batch.samples {
            inner.samples.push_back(sample);
        }
        while inner.samples.len() > SAMPLES {
            inner.samples.pop_front();
        }
        let points = inner.points.entry(batch.pipeline.clone()).or_default();
        for c in &batch.records {
            if let Some((live, shadow)) = c.scores {
                points.push_back(ShadowPoint {
                    id: c.id.clone(),
                    live,
                    shadow,
                    disagree: matches!(c.decision, Some(Decision::LiveOnly | Decision::ShadowOnly)),
                });
            }
        }
        while points.len() > POINTS {
            points.pop_front();
        }
        for c in &batch.records {
            let change = match c.decision {
                Some(Decision::LiveOnly) => "live_only",
                Some(Decision::ShadowOnly) => "shadow_only",
                _ => continue,
            };
            inner.changes.push_back(DecisionChange {
                at_ms: now_ms,
                pipeline: batch.pipeline.clone(),
                id: c.id.clone(),
                change: change.into(),
                live_score: c.scores.map(|s| s.0),
                shadow_score: c.scores.map(|s| s.1),
            });
        }
        while inner.changes.len() > CHANGES {
            inner.changes.pop_front();
        }
    }

    /// Notes that a transform could not start the shadow.
    pub fn refused(&self, transform: &str, reason: &str) {
        self.lock().refused.push(format!("{transform}: {reason}"));
    }

    /// Notes the filter deciding alerts in one pipeline.
    pub fn decided_by(&self, filter: &str) {
        self.lock().decision_filters.insert(filter.to_string());
    }

    /// The figures since start only (what the rules read).
    pub fn since_start(&self) -> ShadowFigures {
        self.lock().total.figures()
    }

    /// The figures since start and over the window ending at `now_unix`.
    pub fn snapshot(&self, now_unix: u64) -> StatsSnapshot {
        let slot = now_unix / SLOT_SECONDS;
        let inner = self.lock();
        let mut window = Tally::default();
        for (s, tally) in &inner.slots {
            if s + SLOTS > slot {
                window.merge(tally);
            }
        }
        StatsSnapshot {
            since_start: inner.total.figures(),
            window: window.figures(),
            batches: inner.batches,
            refused: inner.refused.clone(),
            decision_filters: inner.decision_filters.iter().cloned().collect(),
            samples: inner.samples.iter().cloned().collect(),
            decision_changes: inner.changes.iter().cloned().collect(),
            points: inner
                .points
                .iter()
                .map(|(p, v)| (p.clone(), v.iter().cloned().collect()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verdict: Verdict, decision: Option<Decision>, delta: f64) -> RecordComparison {
        RecordComparison {
            verdict,
            deltas: vec![("score".into(), delta, delta / 2.0)],
            decision,
            scores: Some((2.0, 2.0 + delta)),
            id: Some("e".into()),
        }
    }

    fn batch(records: Vec<RecordComparison>) -> BatchComparison {
        BatchComparison {
            pipeline: "p".into(),
            records,
            samples: Vec::new(),
            live_us_per_record: 10.0,
            shadow_us_per_record: 20.0,
        }
    }

    #[test]
    fn counts_since_start_and_over_the_window() {
        let stats = ShadowStats::default();
        stats.add(
            batch(vec![
                record(Verdict::Identical, Some(Decision::Both), 0.0),
                record(Verdict::Differing, Some(Decision::ShadowOnly), 1.0),
            ]),
            1_000,
        );
        stats.add(
            batch(vec![record(Verdict::ShadowError("trap"), None, 0.0)]),
            1_100,
        );
        let snap = stats.snapshot(1_100);
        let all = &snap.since_start;
        assert_eq!((all.records, all.identical, all.differing), (3, 1, 1));
        assert_eq!(all.shadow_errors.get("trap"), Some(&1));
        assert_eq!((all.alerts.both, all.alerts.shadow_only), (1, 1));
        assert_eq!(all.fields[0].max_abs_delta, 1.0);
        assert_eq!(all.fields[0].max_rel_delta, 0.5);
        assert_eq!(all.live_latency_us.mean, 10.0);
        assert_eq!(all.shadow_latency_us.p99, 20.0);
        // The first batch is more than a minute old: only the second is in the window.
        assert_eq!(snap.window.records, 1);
        assert_eq!(snap.batches, 2);
        assert_eq!(snap.decision_changes.len(), 1);
        assert_eq!(snap.decision_changes[0].change, "shadow_only");
        let points = &snap.points["p"];
        assert_eq!(points.len(), 3);
        assert!(points[1].disagree && !points[0].disagree);
        assert_eq!(stats.snapshot(1_200).window.records, 0);
    }
}
