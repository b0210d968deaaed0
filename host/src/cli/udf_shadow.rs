//! `sluice udf shadow NAME` (how the shadow compares, as a table), `sluice udf promote NAME`
//! and `sluice udf unshadow NAME`, over the admin API.

use super::admin_client::{finish, Admin, AdminArgs};
use sluice::api::{PromoteAnswer, ShadowFigures, ShadowReport, ShadowState};
use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `sluice udf shadow`.
#[derive(clap::Args)]
pub struct ShadowArgs {
    /// The UDF.
    name: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `sluice udf promote` and `sluice udf unshadow`.
#[derive(clap::Args)]
pub struct NameArgs {
    /// The UDF.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

/// `sluice udf shadow NAME`
pub fn show(args: ShadowArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let report: ShadowReport = admin.call(
            reqwest::Method::GET,
            &format!("/udfs/{}/shadow", args.name),
            None,
            "",
        )?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        } else {
            print!("{}", table(&report));
        }
        Ok(())
    })())
}

/// `sluice udf promote NAME`
pub fn promote(args: NameArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let answer: PromoteAnswer = admin.call(
            reqwest::Method::POST,
            &format!("/udfs/{}/promote", args.name),
            None,
            "",
        )?;
        println!(
            "{}: {} is live (running pipelines switch between batches)",
            answer.name, answer.version
        );
        Ok(())
    })())
}

/// `sluice udf unshadow NAME`
pub fn unshadow(args: NameArgs) -> ExitCode {
    finish((|| {
        let admin = Admin::connect(&args.admin)?;
        let report: ShadowReport = admin.call(
            reqwest::Method::DELETE,
            &format!("/udfs/{}/shadow", args.name),
            None,
            "",
        )?;
        println!("{}: shadow {} dropped", report.name, report.shadow);
        print!("{}", table(&report));
        Ok(())
    })())
}

/// One line for `sluice status`.
pub fn summary(r: &ShadowReport) -> String {
    let f = &r.since_start;
    let mut line = format!(
        "shadow {} ({}): {} records, {} identical, {} differing, errors live {} / shadow {}",
        r.shadow,
        state_word(r),
        f.records,
        f.identical,
        f.differing,
        ShadowFigures::errors(&f.live_errors),
        ShadowFigures::errors(&f.shadow_errors),
    );
    if !r.decision_filters.is_empty() {
        let _ = write!(
            line,
            ", alerts both {} / live only {} / shadow only {}",
            f.alerts.both, f.alerts.live_only, f.alerts.shadow_only
        );
    }
    line
}

fn state_word(r: &ShadowReport) -> String {
    match (r.state, &r.ended_reason) {
        (ShadowState::Running, _) => "running".into(),
        (ShadowState::Promoted, Some(why)) => format!("promoted: {why}"),
        (ShadowState::Dropped, Some(why)) => format!("dropped: {why}"),
        (ShadowState::Promoted, None) => "promoted".into(),
        (ShadowState::Dropped, None) => "dropped".into(),
    }
}

fn errors(kinds: &std::collections::BTreeMap<String, u64>) -> String {
    let total = ShadowFigures::errors(kinds);
    if total == 0 {
        return "0".into();
    }
    let by_kind: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{total} ({})", by_kind.join(", "))
}

/// The report as a table: counts since start and over the window, deltas per field, the alert
/// decisions that differ, differing samples, rules.
pub fn table(r: &ShadowReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "udf {}: shadow {} beside live {} ({})",
        r.name,
        r.shadow,
        r.live,
        state_word(r)
    );
    let _ = writeln!(
        out,
        "lag {} records, {} batches compared",
        r.lag_records, r.batches
    );
    for filter in &r.decision_filters {
        let _ = writeln!(out, "alerts decided by {filter}");
    }
    for refused in &r.refused {
        let _ = writeln!(out, "could not start in {refused}");
    }
    let window = format!("last {} s", r.window_seconds);
    let _ = writeln!(out, "{:<22} {:>20} {:>20}", "", "since start", window);
    let (a, w) = (&r.since_start, &r.window);
    let rows: [(&str, String, String); 9] = [
        ("records", a.records.to_string(), w.records.to_string()),
        (
            "identical",
            a.identical.to_string(),
            w.identical.to_string(),
        ),
        (
            "differing",
            a.differing.to_string(),
            w.differing.to_string(),
        ),
        (
            "live errors",
            errors(&a.live_errors),
            errors(&w.live_errors),
        ),
        (
            "shadow errors",
            errors(&a.shadow_errors),
            errors(&w.shadow_errors),
        ),
        (
            "alerts both",
            a.alerts.both.to_string(),
            w.alerts.both.to_string(),
        ),
        (
            "alerts live only",
            a.alerts.live_only.to_string(),
            w.alerts.live_only.to_string(),
        ),
        (
            "alerts shadow only",
            a.alerts.shadow_only.to_string(),
            w.alerts.shadow_only.to_string(),
        ),
        (
            "µs/record live|shadow",
            format!(
                "{:.1} | {:.1}",
                a.live_latency_us.mean, a.shadow_latency_us.mean
            ),
            format!(
                "{:.1} | {:.1}",
                w.live_latency_us.mean, w.shadow_latency_us.mean
            ),
        ),
    ];
    for (label, all, recent) in rows {
        let _ = writeln!(out, "{label:<22} {all:>20} {recent:>20}");
    }
    for f in &a.fields {
        let _ = writeln!(
            out,
            "field {}: |Δ| max {:.3e} p99 {:.3e}; relative max {:.3e} p99 {:.3e} ({} records)",
            f.field, f.max_abs_delta, f.p99_abs_delta, f.max_rel_delta, f.p99_rel_delta, f.records
        );
    }
    if !r.decision_changes.is_empty() {
        let _ = writeln!(
            out,
            "alerts that would change (latest {}, newest last):",
            r.decision_changes.len()
        );
        for c in &r.decision_changes {
            let score = |s: Option<f64>| s.map_or_else(|| "-".into(), |v| v.to_string());
            let _ = writeln!(
                out,
                "  {} event {}: {} (live {}, shadow {})",
                c.pipeline,
                c.id.as_deref().unwrap_or("?"),
                c.change.replace('_', " "),
                score(c.live_score),
                score(c.shadow_score)
            );
        }
    }
    if !r.samples.is_empty() {
        let _ = writeln!(out, "differing records (latest {}):", r.samples.len());
        for s in &r.samples {
            let _ = writeln!(
                out,
                "  event {}: input {:?}\n    live   {:?}\n    shadow {:?}",
                s.id.as_deref().unwrap_or("?"),
                short(&s.input),
                short(&s.live),
                short(&s.shadow)
            );
        }
    }
    let mut rules = vec![format!("max lag {} records", r.options.max_lag)];
    if let Some(rule) = &r.options.promote_when {
        rules.push(format!("promote when `{rule}`"));
    }
    if let Some(rule) = &r.options.drop_when {
        rules.push(format!("drop when `{rule}`"));
    }
    let _ = writeln!(out, "rules: {}", rules.join("; "));
    out
}

fn short(text: &str) -> String {
    if text.chars().count() <= 120 {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(117).collect();
    cut.push_str("...");
    cut
}

/// Percent-encodes a query value (everything but letters, digits and `-_.~`).
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_survive_the_query_string() {
        assert_eq!(
            url_encode("records >= 10 && a == 0"),
            "records%20%3E%3D%2010%20%26%26%20a%20%3D%3D%200"
        );
    }

    #[test]
    fn the_table_names_the_changed_alerts() {
        let mut report: ShadowReport = serde_json::from_value(serde_json::json!({
            "name": "anomaly", "live": "anomaly@11111111", "shadow": "anomaly@22222222",
            "state": "running", "ended_reason": null, "started_at_unix": 0, "ended_at_unix": null,
            "options": {"promote_when": null, "drop_when": "shadow_errors > 5", "max_lag": 10000},
            "decision_filters": ["ecg/alerts: anomaly_val > 1.5"], "lag_records": 0, "batches": 2,
            "refused": [], "window_seconds": 60,
            "since_start": {"records": 23, "identical": 0, "differing": 23, "live_errors": {},
                "shadow_errors": {"trap": 2}, "alerts": {"both": 3, "live_only": 0, "shadow_only": 9, "neither": 11},
                "fields": [], "live_latency_us": {"mean": 11.0, "p99": 12.0},
                "shadow_latency_us": {"mean": 12.0, "p99": 13.0}},
            "window": {"records": 0, "identical": 0, "differing": 0, "live_errors": {}, "shadow_errors": {},
                "alerts": {"both": 0, "live_only": 0, "shadow_only": 0, "neither": 0}, "fields": [],
                "live_latency_us": {"mean": 0.0, "p99": 0.0}, "shadow_latency_us": {"mean": 0.0, "p99": 0.0}},
            "samples": [], "points": {},
            "decision_changes": [{"at_ms": 0, "pipeline": "ecg", "id": "106", "change": "shadow_only",
                "live_score": 1.1, "shadow_score": 2.2}]
        }))
        .expect("a report");
        let text = table(&report);
        assert!(
            text.contains("ecg event 106: shadow only (live 1.1, shadow 2.2)"),
            "{text}"
        );
        assert!(text.contains("2 (trap 2)"), "{text}");
        assert!(text.contains("drop when `shadow_errors > 5`"), "{text}");
        report.state = ShadowState::Dropped;
        report.ended_reason = Some("dropped by the operator".into());
        assert!(summary(&report).contains("dropped: dropped by the operator"));
        assert!(summary(&report).contains("shadow only 9"));
    }
}
