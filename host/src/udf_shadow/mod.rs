//! Shadow versions: a candidate UDF version run beside the live one on every live batch, off the
//! record path, its outputs compared record by record and never delivered.
//!
//! `Shadow` (here) is one shadow deployment: the module, its options and rules, its figures
//! (`stats.rs`, made of `compare.rs`'s per-record comparisons and `hist.rs`'s histograms), and
//! how it ended. The registry (`udf_registry`) holds the shadow of each name and promotes or drops
//! it; each `udf` transform runs it on its own instances (`transforms::udf::shadow`).
//! `report.rs`: what the API and the CLI show; `rules.rs`: the CEL promotion and drop rules.

pub mod compare;
pub mod hist;
pub mod report;
pub mod rules;
pub mod stats;

pub use report::{ShadowOptions, ShadowReport, ShadowState};

use crate::udf_runtime::UdfModule;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How often at most the rules are evaluated.
const RULE_EVERY: Duration = Duration::from_millis(100);

/// One shadow deployment of a UDF name.
pub struct Shadow {
    /// The shadow version.
    pub module: UdfModule,
    /// Its rules and lag bound.
    pub options: ShadowOptions,
    /// Its comparisons.
    pub stats: stats::ShadowStats,
    started: SystemTime,
    ended: Mutex<Option<Ended>>,
    /// A rule fired (it fires once).
    decided: AtomicBool,
    last_rule_check: Mutex<Option<Instant>>,
    /// Records handed to the shadow and not compared yet, over every transform.
    lag: AtomicU64,
}

#[derive(Clone)]
struct Ended {
    state: ShadowState,
    reason: String,
    at_unix: u64,
}

/// What a rule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// `promote_when` holds: make the shadow live.
    Promote(String),
    /// `drop_when` holds: stop it.
    Drop(String),
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shadow {
    /// A shadow of `module`; its rules must compile.
    pub fn new(module: UdfModule, options: ShadowOptions) -> Result<Self, rules::RuleError> {
        if let Some(rule) = &options.promote_when {
            rules::check("promote_when", rule)?;
        }
        if let Some(rule) = &options.drop_when {
            rules::check("drop_when", rule)?;
        }
        Ok(Shadow {
            module,
            options,
            stats: stats::ShadowStats::default(),
            started: SystemTime::now(),
            ended: Mutex::new(None),
            decided: AtomicBool::new(false),
            last_rule_check: Mutex::new(None),
            lag: AtomicU64::new(0),
        })
    }

    /// `NAME@SHA8` of the shadow.
    pub fn version(&self) -> String {
        self.module.version()
    }

    /// Records handed to the shadow and not yet compared.
    pub fn lag(&self) -> &AtomicU64 {
        &self.lag
    }

    /// Whether it was promoted or dropped.
    pub fn has_ended(&self) -> bool {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Marks it promoted or dropped, once; `false` when it had already ended.
    pub fn end(&self, state: ShadowState, reason: &str) -> bool {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if ended.is_some() {
            return false;
        }
        *ended = Some(Ended {
            state,
            reason: reason.to_string(),
            at_unix: now_unix(),
        });
        true
    }

    fn seconds(&self) -> u64 {
        self.started.elapsed().map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Evaluates the rules (at most every 100 ms; a rule fires once): the first that holds.
    /// A rule that cannot be evaluated is logged and ignored.
    pub fn check_rules(&self) -> Option<RuleAction> {
        if self.options.promote_when.is_none() && self.options.drop_when.is_none() {
            return None;
        }
        if self.decided.load(Ordering::Relaxed) {
            return None;
        }
        {
            let mut last = self
                .last_rule_check
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < RULE_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let figures = self.stats.since_start();
        let seconds = self.seconds();
        let rules = [
            (&self.options.drop_when, "drop_when", false),
            (&self.options.promote_when, "promote_when", true),
        ];
        for (rule, what, promote) in rules {
            let Some(rule) = rule else { continue };
            match rules::evaluate(rule, &figures, seconds) {
                Ok(true) => {
                    if self.decided.swap(true, Ordering::Relaxed) {
                        return None;
                    }
                    let reason = format!("{what} `{rule}` holds");
                    return Some(if promote {
                        RuleAction::Promote(reason)
                    } else {
                        RuleAction::Drop(reason)
                    });
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(udf = %self.version(), "{what} `{rule}`: {err}"),
            }
        }
        None
    }

    /// The report of this shadow of `name`, compared with `live`.
    pub fn report(&self, name: &str, live: &str) -> ShadowReport {
        let now = now_unix();
        let snapshot = self.stats.snapshot(now);
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ShadowReport {
            name: name.to_string(),
            live: live.to_string(),
            shadow: self.version(),
            state: ended
                .as_ref()
                .map(|e| e.state)
                .unwrap_or(ShadowState::Running),
            ended_reason: ended.as_ref().map(|e| e.reason.clone()),
            started_at_unix: self
                .started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ended_at_unix: ended.as_ref().map(|e| e.at_unix),
            options: self.options.clone(),
            decision_filters: snapshot.decision_filters,
            lag_records: self.lag.load(Ordering::Relaxed),
            batches: snapshot.batches,
            refused: snapshot.refused,
            window_seconds: stats::WINDOW_SECONDS,
            since_start: snapshot.since_start,
            window: snapshot.window,
            samples: snapshot.samples,
            decision_changes: snapshot.decision_changes,
            points: snapshot.points,
        }
    }
}
