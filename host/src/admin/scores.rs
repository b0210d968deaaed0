//! Anomaly scores for the dashboard, found from the pipeline itself: a `filter` transform whose
//! condition is `FIELD > NUMBER` (or `>=`) marks its input component as a score stream, FIELD as
//! the score and NUMBER as the alert threshold (the ECG pipeline's `anomaly_val > 1.5`).
//! The scoreboard taps those components and keeps the latest scores per pipeline.

use crate::pipeline::{PipelineSpec, TransformConfig};
use crate::topology::supervisor::PipelineView;
use crate::topology::Topology;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Scores kept per pipeline.
pub const KEPT: usize = 400;

/// Where a pipeline's scores come from.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreStream {
    /// The component whose output messages carry the score.
    pub component: String,
    /// The JSON field holding the score.
    pub field: String,
    /// Scores above this alert.
    pub threshold: f64,
}

/// The score stream of `spec`, if it has one (see the module docs).
pub fn score_stream(spec: &PipelineSpec) -> Option<ScoreStream> {
    spec.transforms.iter().find_map(|t| {
        let TransformConfig::Filter(filter) = &t.config else {
            return None;
        };
        let [input] = t.inputs.as_slice() else {
            return None;
        };
        let (field, threshold) = crate::pipeline::threshold(&filter.condition)?;
        Some(ScoreStream {
            component: input.clone(),
            field,
            threshold,
        })
    })
}

/// One scored record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Score {
    /// The record's id (`eventid`, `id` or `event_id` field, else the key, else a count).
    pub id: String,
    /// The score.
    pub score: f64,
    /// Over the threshold.
    pub alert: bool,
    /// Milliseconds since the Unix epoch when it passed.
    pub at_ms: u64,
}

/// The scores of one pipeline.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PipelineScores {
    /// The score field.
    pub field: String,
    /// The alert threshold.
    pub threshold: f64,
    /// The latest scores, oldest first.
    pub scores: VecDeque<Score>,
    /// Scores seen in all.
    pub total: u64,
    /// Alerts seen in all.
    pub alerts: u64,
}

/// Latest scores by pipeline, fed by taps.
#[derive(Default)]
pub struct Scoreboard {
    pipelines: Mutex<BTreeMap<String, PipelineScores>>,
}

impl Scoreboard {
    /// A copy for the dashboard.
    pub fn snapshot(&self) -> BTreeMap<String, PipelineScores> {
        self.pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records one message of `pipeline`'s score stream.
    pub fn record(&self, pipeline: &str, stream: &ScoreStream, message: &crate::Message) {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&message.value) else {
            return;
        };
        let Some(score) = value.get(&stream.field).and_then(serde_json::Value::as_f64) else {
            return;
        };
        let mut all = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        let entry = all.entry(pipeline.to_string()).or_default();
        entry.field = stream.field.clone();
        entry.threshold = stream.threshold;
        entry.total += 1;
        let id = crate::message::event_id(Some(&value), Some(message))
            .unwrap_or_else(|| entry.total.to_string());
        let alert = score > stream.threshold;
        entry.alerts += u64::from(alert);
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        entry.scores.push_back(Score {
            id,
            score,
            alert,
            at_ms,
        });
        while entry.scores.len() > KEPT {
            entry.scores.pop_front();
        }
    }

    /// Keeps taps on the score stream of every deployed pipeline until the process ends:
    /// checks for new or replaced pipelines every 200 ms.
    pub async fn follow(self: Arc<Self>, topology: Arc<Topology>) {
        // (pipeline, deployed_at) already tapped.
        let mut tapped: BTreeMap<String, std::time::SystemTime> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let views = topology.pipelines();
            tapped.retain(|name, _| views.iter().any(|v| v.spec.name == *name));
            for view in views {
                if tapped.get(&view.spec.name) == Some(&view.deployed_at) {
                    continue;
                }
                tapped.insert(view.spec.name.clone(), view.deployed_at);
                self.clone().tap(view);
            }
        }
    }

    fn tap(self: Arc<Self>, view: PipelineView) {
        let Some(stream) = score_stream(&view.spec) else {
            return;
        };
        let Some(probe) = view.probe(&stream.component) else {
            return;
        };
        let mut messages = probe.tap.subscribe();
        let pipeline = view.spec.name.clone();
        tokio::spawn(async move {
            loop {
                match messages.recv().await {
                    Ok(message) => self.record(&pipeline, &stream, &message),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(condition: &str) -> PipelineSpec {
        let toml = format!(
            r#"
[sources.in]
type = "mqtt"
broker.url = "mqtt://127.0.0.1:1883"
topics = ["t"]
[transforms.score]
type = "filter"
inputs = ["in"]
condition = "true"
[transforms.alerts]
type = "filter"
inputs = ["score"]
condition = "{condition}"
[sinks.out]
type = "console"
inputs = ["alerts"]
"#
        );
        crate::pipeline::parse_pipeline(std::path::Path::new("p.toml"), &toml, &|_| None)
            .expect("valid pipeline")
    }

    #[test]
    fn a_threshold_filter_marks_its_input_as_the_score_stream() {
        assert_eq!(
            score_stream(&spec("anomaly_val > 1.5")),
            Some(ScoreStream {
                component: "score".into(),
                field: "anomaly_val".into(),
                threshold: 1.5
            })
        );
        assert_eq!(
            score_stream(&spec("x >= 2")).map(|s| s.threshold),
            Some(2.0)
        );
        assert_eq!(score_stream(&spec("x < 2")), None);
        assert_eq!(score_stream(&spec("a.b > 2")), None);
    }

    #[test]
    fn scores_are_kept_with_ids_and_alerts() {
        let board = Scoreboard::default();
        let stream = ScoreStream {
            component: "score".into(),
            field: "anomaly_val".into(),
            threshold: 1.5,
        };
        for (id, v) in [(1, 0.5), (2, 2.5)] {
            let m = crate::Message::from_value(
                format!("{{\"eventid\":{id},\"anomaly_val\":{v}}}").as_bytes(),
            );
            board.record("p", &stream, &m);
        }
        board.record("p", &stream, &crate::Message::from_value(&b"not json"[..]));
        let snap = board.snapshot();
        let p = &snap["p"];
        assert_eq!((p.total, p.alerts), (2, 1));
        let ids: Vec<(&str, bool)> = p.scores.iter().map(|s| (s.id.as_str(), s.alert)).collect();
        assert_eq!(ids, [("1", false), ("2", true)]);
    }
}
