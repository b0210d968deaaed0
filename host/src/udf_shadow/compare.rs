//! One record, live against shadow: identical or not, the numeric deltas of JSON outputs, the
//! alert decision of the pipeline's filter on each side, and the errors. Pure.

use crate::message::Message;
use crate::transforms::filter::Filter;
use crate::udf_runtime::RecordResult;

/// How the two outputs of one record compare.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Both produced exactly the same messages.
    Identical,
    /// Both succeeded with different messages.
    Differing,
    /// Only the live version failed (with this kind).
    LiveError(&'static str),
    /// Only the shadow failed (with this kind).
    ShadowError(&'static str),
    /// Both failed (live kind, shadow kind).
    BothError(&'static str, &'static str),
}

/// The downstream filter's decision on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Both sides alert.
    Both,
    /// Only the live output passes the filter.
    LiveOnly,
    /// Only the shadow's output would.
    ShadowOnly,
    /// Neither passes.
    Neither,
}

/// The comparison of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordComparison {
    /// Identical, differing, or which side failed.
    pub verdict: Verdict,
    /// Per numeric JSON field present on both sides: (field, |Δ|, |Δ| / |live|).
    pub deltas: Vec<(String, f64, f64)>,
    /// The filter's decision on both sides, when there is a filter and both sides succeeded.
    pub decision: Option<Decision>,
    /// The score field on each side (live, shadow), when both carry it.
    pub scores: Option<(f64, f64)>,
    /// The record's id: the output's `eventid`/`id`/`event_id`, else a key.
    pub id: Option<String>,
}

/// What the shadow is judged by, besides equality: the pipeline's filter on the UDF's output
/// (the alert decision) and the score field it thresholds.
#[derive(Default)]
pub struct Judge {
    /// `PIPELINE/FILTER: CONDITION`, for reports.
    pub name: Option<String>,
    /// The filter downstream of the UDF.
    pub filter: Option<Filter>,
    /// The JSON field the filter thresholds (`FIELD > NUMBER`), drawn on the dashboard.
    pub score_field: Option<String>,
}

/// Compares one record's live and shadow results.
pub fn compare(
    input: &Message,
    live: &RecordResult,
    shadow: &RecordResult,
    judge: &Judge,
) -> RecordComparison {
    let (live_out, shadow_out) = match (live, shadow) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(l), Err(s)) => return failed(Verdict::BothError(l.kind(), s.kind()), input, None),
        (Err(l), Ok(s)) => return failed(Verdict::LiveError(l.kind()), input, s.first()),
        (Ok(l), Err(s)) => return failed(Verdict::ShadowError(s.kind()), input, l.first()),
    };
    let verdict = if live_out == shadow_out {
        Verdict::Identical
    } else {
        Verdict::Differing
    };
    let live_json: Vec<Option<serde_json::Value>> = live_out.iter().map(json).collect();
    let shadow_json: Vec<Option<serde_json::Value>> = shadow_out.iter().map(json).collect();
    let mut deltas = Vec::new();
    for (l, s) in live_json.iter().zip(&shadow_json) {
        let (Some(serde_json::Value::Object(l)), Some(serde_json::Value::Object(s))) = (l, s)
        else {
            continue;
        };
        for (field, lv) in l {
            let (Some(lv), Some(sv)) = (lv.as_f64(), s.get(field).and_then(|v| v.as_f64())) else {
                continue;
            };
            let abs = (sv - lv).abs();
            let rel = if abs == 0.0 {
                0.0
            } else {
                abs / lv.abs().max(f64::MIN_POSITIVE)
            };
            deltas.push((field.clone(), abs, rel));
        }
    }
    let decision = judge.filter.as_ref().and_then(|filter| {
        let alerts = |outs: &[Message]| -> Option<bool> {
            let mut any = false;
            for out in outs {
                any |= filter.keep(&out.value).ok()?;
            }
            Some(any)
        };
        Some(match (alerts(live_out)?, alerts(shadow_out)?) {
            (true, true) => Decision::Both,
            (true, false) => Decision::LiveOnly,
            (false, true) => Decision::ShadowOnly,
            (false, false) => Decision::Neither,
        })
    });
    let scores = judge.score_field.as_deref().and_then(|field| {
        let score =
            |docs: &[Option<serde_json::Value>]| docs.first()?.as_ref()?.get(field)?.as_f64();
        Some((score(&live_json)?, score(&shadow_json)?))
    });
    let id = live_json
        .first()
        .and_then(|doc| crate::message::event_id(doc.as_ref(), live_out.first()))
        .or_else(|| input_id(input));
    RecordComparison {
        verdict,
        deltas,
        decision,
        scores,
        id,
    }
}

fn failed(verdict: Verdict, input: &Message, other: Option<&Message>) -> RecordComparison {
    let id = other
        .and_then(|m| crate::message::event_id(json(m).as_ref(), Some(m)))
        .or_else(|| input_id(input));
    RecordComparison {
        verdict,
        deltas: Vec::new(),
        decision: None,
        scores: None,
        id,
    }
}

/// An input's id: its key, else the first comma-separated field of a text value (the ECG
/// events' `EVENTID`), at most 64 bytes.
fn input_id(input: &Message) -> Option<String> {
    if let Some(id) = crate::message::event_id(None, Some(input)) {
        return Some(id);
    }
    let text = std::str::from_utf8(&input.value).ok()?;
    let first = text.split(',').next()?.trim();
    (!first.is_empty() && first.len() <= 64).then(|| first.to_string())
}

fn json(message: &Message) -> Option<serde_json::Value> {
    serde_json::from_slice(&message.value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::filter::FilterConfig;
    use crate::udf_runtime::RecordError;

    fn score(id: u32, v: f64) -> RecordResult {
        Ok(vec![Message::from_value(format!(
            "{{\"eventid\":{id},\"anomaly_val\":{v}}}"
        ))])
    }

    fn judge() -> Judge {
        Judge {
            name: Some("p/alerts: anomaly_val > 1.5".into()),
            filter: Some(
                Filter::build(&FilterConfig {
                    condition: "anomaly_val > 1.5".into(),
                })
                .expect("compiles"),
            ),
            score_field: Some("anomaly_val".into()),
        }
    }

    #[test]
    fn identical_outputs_agree_with_zero_deltas() {
        let input = Message::from_value("1,0.1#0.2");
        let c = compare(&input, &score(1, 1.2), &score(1, 1.2), &judge());
        assert_eq!(c.verdict, Verdict::Identical);
        assert_eq!(
            c.deltas,
            [
                ("eventid".to_string(), 0.0, 0.0),
                ("anomaly_val".to_string(), 0.0, 0.0)
            ]
        );
        assert_eq!(c.decision, Some(Decision::Neither));
        assert_eq!(c.scores, Some((1.2, 1.2)));
        assert_eq!(c.id.as_deref(), Some("1"));
    }

    #[test]
    fn a_doubled_score_differs_and_changes_the_decision() {
        let input = Message::from_value("7,x");
        let c = compare(&input, &score(7, 1.0), &score(7, 2.0), &judge());
        assert_eq!(c.verdict, Verdict::Differing);
        assert_eq!(c.deltas[1], ("anomaly_val".to_string(), 1.0, 1.0));
        assert_eq!(c.decision, Some(Decision::ShadowOnly));
        let c = compare(&input, &score(7, 2.0), &score(7, 1.0), &judge());
        assert_eq!(c.decision, Some(Decision::LiveOnly));
        assert!((c.deltas[1].2 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn errors_are_told_apart_by_side_and_kind() {
        let input = Message::from_value("3,x");
        let trap: RecordResult = Err(RecordError::Trap {
            reason: "boom".into(),
        });
        let c = compare(&input, &score(3, 1.0), &trap, &judge());
        assert_eq!(c.verdict, Verdict::ShadowError("trap"));
        assert_eq!(c.decision, None);
        assert_eq!(c.id.as_deref(), Some("3"));
        let bad: RecordResult = Err(RecordError::InvalidInput("no".into()));
        assert_eq!(
            compare(&input, &bad, &trap, &judge()).verdict,
            Verdict::BothError("invalid-input", "trap")
        );
        assert_eq!(
            compare(&input, &bad, &score(3, 1.0), &Judge::default()).verdict,
            Verdict::LiveError("invalid-input")
        );
    }

    #[test]
    fn non_json_outputs_compare_by_bytes_only() {
        let input = Message::from_value("v");
        let a: RecordResult = Ok(vec![Message::from_value("v|a")]);
        let b: RecordResult = Ok(vec![Message::from_value("v|b")]);
        let c = compare(&input, &a, &b, &Judge::default());
        assert_eq!(c.verdict, Verdict::Differing);
        assert!(c.deltas.is_empty() && c.decision.is_none() && c.scores.is_none());
        assert_eq!(c.id.as_deref(), Some("v"));
    }
}
