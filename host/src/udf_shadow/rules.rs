//! Promotion and drop rules: CEL expressions (the filter's language) over a shadow's figures
//! since it started, e.g. `records >= 10000 && alerts_shadow_only == 0 && p99_rel_delta < 0.01`.

use super::report::ShadowFigures;

/// The variables a rule can use, with what they mean (for error messages and docs).
pub const VARIABLES: &[(&str, &str)] = &[
    ("records", "records compared (int)"),
    ("identical", "records with byte-identical outputs (int)"),
    (
        "differing",
        "records where both succeeded with different outputs (int)",
    ),
    ("live_errors", "records the live version failed (int)"),
    ("shadow_errors", "records the shadow failed (int)"),
    ("alerts_both", "records both sides alert on (int)"),
    (
        "alerts_live_only",
        "alerts only the live version raises (int)",
    ),
    (
        "alerts_shadow_only",
        "alerts only the shadow would raise (int)",
    ),
    ("alerts_neither", "records neither side alerts on (int)"),
    (
        "max_abs_delta",
        "largest |shadow - live| of any numeric field (double)",
    ),
    (
        "p99_abs_delta",
        "largest per-field p99 of |shadow - live| (double)",
    ),
    ("max_rel_delta", "largest |shadow - live| / |live| (double)"),
    (
        "p99_rel_delta",
        "largest per-field p99 of the relative delta (double)",
    ),
    (
        "live_p99_us",
        "p99 per-record latency of the live version, µs (double)",
    ),
    (
        "shadow_p99_us",
        "p99 per-record latency of the shadow, µs (double)",
    ),
    ("seconds", "seconds since the shadow started (int)"),
];

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{rule}`: {reason}")]
pub struct RuleError {
    /// `promote_when` or `drop_when`.
    pub what: &'static str,
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks that `rule` compiles and gives a bool over the variables (all zero).
pub fn check(what: &'static str, rule: &str) -> Result<(), RuleError> {
    evaluate(rule, &ShadowFigures::default(), 0).map_err(|reason| RuleError {
        what,
        rule: rule.to_string(),
        reason,
    })?;
    Ok(())
}

/// Whether `rule` holds for `figures` (`seconds` since start); `Err` says why it cannot tell.
pub fn evaluate(rule: &str, figures: &ShadowFigures, seconds: u64) -> Result<bool, String> {
    let program = cel::Program::compile(rule).map_err(|e| format!("not valid CEL: {e}"))?;
    let mut context = cel::Context::default();
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let ints = [
        ("records", figures.records),
        ("identical", figures.identical),
        ("differing", figures.differing),
        ("live_errors", ShadowFigures::errors(&figures.live_errors)),
        (
            "shadow_errors",
            ShadowFigures::errors(&figures.shadow_errors),
        ),
        ("alerts_both", figures.alerts.both),
        ("alerts_live_only", figures.alerts.live_only),
        ("alerts_shadow_only", figures.alerts.shadow_only),
        ("alerts_neither", figures.alerts.neither),
        ("seconds", seconds),
    ];
    for (name, value) in ints {
        context.add_variable_from_value(name, int(value));
    }
    let doubles = [
        (
            "max_abs_delta",
            figures.max_over_fields(|f| f.max_abs_delta),
        ),
        (
            "p99_abs_delta",
            figures.max_over_fields(|f| f.p99_abs_delta),
        ),
        (
            "max_rel_delta",
            figures.max_over_fields(|f| f.max_rel_delta),
        ),
        (
            "p99_rel_delta",
            figures.max_over_fields(|f| f.p99_rel_delta),
        ),
        ("live_p99_us", figures.live_latency_us.p99),
        ("shadow_p99_us", figures.shadow_latency_us.p99),
    ];
    for (name, value) in doubles {
        context.add_variable_from_value(name, value);
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(holds)) => Ok(holds),
        Ok(other) => Err(format!("gives {other:?}, not a bool")),
        Err(err) => Err(format!(
            "{err} (variables: {})",
            VARIABLES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf_shadow::report::FieldDeltas;

    #[test]
    fn the_issue_rule_reads_the_figures() {
        let rule = "records >= 10000 && alerts_shadow_only == 0 && p99_rel_delta < 0.01";
        check("promote_when", rule).expect("valid");
        let mut f = ShadowFigures {
            records: 10_000,
            ..ShadowFigures::default()
        };
        f.fields.push(FieldDeltas {
            field: "anomaly_val".into(),
            records: 10_000,
            p99_rel_delta: 0.001,
            ..FieldDeltas::default()
        });
        assert_eq!(evaluate(rule, &f, 5), Ok(true));
        f.alerts.shadow_only = 1;
        assert_eq!(evaluate(rule, &f, 5), Ok(false));
        f.alerts.shadow_only = 0;
        f.records = 9_999;
        assert_eq!(evaluate(rule, &f, 5), Ok(false));
        assert_eq!(evaluate("seconds > 4", &f, 5), Ok(true));
        f.shadow_errors.insert("trap".into(), 3);
        assert_eq!(evaluate("shadow_errors > 2", &f, 5), Ok(true));
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let err = check("drop_when", "recods > 3").expect_err("unknown variable");
        assert!(err.to_string().contains("drop_when `recods > 3`"), "{err}");
        assert!(err.reason.contains("records"), "{err}");
        assert!(check("promote_when", "records +").is_err());
        let err = check("promote_when", "records").expect_err("not a bool");
        assert!(err.reason.contains("not a bool"), "{err}");
    }
}
