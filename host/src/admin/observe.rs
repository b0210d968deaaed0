//! What operators watch: `/metrics` (Prometheus), `/health`, `/ready`, the live tap of one
//! component (NDJSON), and `/events` (SSE snapshots for the dashboard).

use super::AdminState;
use crate::topology::supervisor::PipelineState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

type Shared = State<Arc<AdminState>>;

/// How often `/events` sends a snapshot.
const EVENTS_EVERY: Duration = Duration::from_millis(500);

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): Shared) -> impl IntoResponse {
    let topology = &state.control.topology;
    let udfs = state.control.udfs.swap_counts();
    let mut text = crate::metrics::render_prometheus(
        topology.host_metrics(),
        udfs.swaps,
        udfs.refusals,
        &topology.component_metrics(),
    );
    text.push_str(&crate::metrics::render_shadows(
        &state.control.udfs.shadow_reports(),
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `GET /health`: the process is up and serving.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /ready`: 200 when the saved state is restored and every pipeline is running;
/// 503 with the ones that are not.
pub async fn ready(State(state): Shared) -> impl IntoResponse {
    if !state.started.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": "starting" })),
        );
    }
    let not_running: Vec<serde_json::Value> = state
        .control
        .pipelines()
        .into_iter()
        .filter(|p| p.status != PipelineState::Running)
        .map(|p| serde_json::json!({ "name": p.name, "status": p.status }))
        .collect();
    // Sources whose oldest unacknowledged record waits too long: a stuck sink, or an
    // acknowledgement lost on the way (the broker stops sending, or commits freeze).
    let limit = state.ready_max_unacked_age;
    let stuck: Vec<serde_json::Value> = state
        .control
        .topology
        .component_metrics()
        .iter()
        .filter(|m| m.role == crate::metrics::Role::Source)
        .filter_map(|m| {
            let age = m.unacked.oldest_age();
            (age > limit).then(|| {
                serde_json::json!({
                    "pipeline": &*m.pipeline,
                    "component": &*m.component,
                    "unacked": m.unacked.count(),
                    "oldest_unacked_secs": age.as_secs_f64(),
                })
            })
        })
        .collect();
    if not_running.is_empty() && stuck.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({ "ready": true })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "ready": false,
                "not_running": not_running,
                "unacked_too_long": stuck,
                "max_unacked_secs": limit.as_secs_f64(),
            })),
        )
    }
}

/// Options of a tap.
#[derive(serde::Deserialize)]
pub struct TapParams {
    /// Stop after this many messages (default: never).
    limit: Option<u64>,
    /// Pass on this fraction of messages, evenly spread (0 < sample <= 1; default 1).
    sample: Option<f64>,
}

/// `GET /pipelines/{name}/tap/{component}`: the messages leaving a source or transform (for a
/// sink: entering it), live, one JSON object per line. Ends at the limit, or when the pipeline
/// is replaced or removed.
pub async fn tap(
    State(state): Shared,
    Path((name, component)): Path<(String, String)>,
    Query(params): Query<TapParams>,
) -> Result<impl IntoResponse, super::ApiError> {
    let sample = params.sample.unwrap_or(1.0);
    if !(sample > 0.0 && sample <= 1.0) {
        return Err(super::ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("sample must be in (0, 1], got {sample}"),
        ));
    }
    let not_found = || {
        super::ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no component `{component}` in pipeline `{name}`"),
        )
    };
    let view = state
        .control
        .topology
        .pipeline(&name)
        .ok_or_else(not_found)?;
    let probe = view.probe(&component).ok_or_else(not_found)?;
    let mut messages = probe.tap.subscribe();
    drop(view);
    tracing::info!(pipeline = %name, %component, "tap opened");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, Infallible>>(64);
    let limit = params.limit.unwrap_or(u64::MAX);
    tokio::spawn(async move {
        let (mut seen, mut sent) = (0u64, 0u64);
        while sent < limit {
            let message = match messages.recv().await {
                Ok(message) => message,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                    let note = serde_json::json!({ "skipped": skipped });
                    if tx.send(Ok(format!("{note}\n"))).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            seen += 1;
            if !sampled(seen, sample) {
                continue;
            }
            let line = serde_json::json!({
                "key": message.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "value": String::from_utf8_lossy(&message.value),
                "headers": message.headers.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(String::from_utf8_lossy(v).into_owned())))
                    .collect::<serde_json::Map<_, _>>(),
            });
            if tx.send(Ok(format!("{line}\n"))).await.is_err() {
                return; // the client went away
            }
            sent += 1;
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(ReceiverStream::new(rx)),
    ))
}

/// Evenly spread sampling: the `n`th message (from 1) passes when `n × rate` reaches the next
/// whole number, so `rate` 0.25 passes messages 4, 8, 12... and 1 passes every one.
fn sampled(n: u64, rate: f64) -> bool {
    ((n as f64) * rate).floor() > (((n - 1) as f64) * rate).floor()
}

/// `GET /events`: a `snapshot` event every half second with every pipeline's status and
/// counters, the UDFs, and the recent anomaly scores.
pub async fn events(State(state): Shared) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(4);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVENTS_EVERY);
        loop {
            tick.tick().await;
            let snapshot = serde_json::json!({
                "pipelines": state.control.pipelines(),
                "udfs": state.control.udf_status(),
                "scores": state.scores.snapshot(),
                "shadows": state.control.udfs.shadow_reports(),
            });
            let event = Event::default()
                .event("snapshot")
                .data(snapshot.to_string());
            if tx.send(Ok(event)).await.is_err() {
                return; // the page was closed
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::sampled;

    #[test]
    fn sampling_is_evenly_spread_and_exact() {
        let passed = |rate: f64| {
            (1..=100)
                .filter(|n| sampled(*n, rate))
                .collect::<Vec<u64>>()
        };
        assert_eq!(passed(1.0).len(), 100);
        assert_eq!(passed(0.25), (1..=25).map(|i| i * 4).collect::<Vec<_>>());
        assert_eq!(passed(0.1).len(), 10);
        assert_eq!(passed(0.001).len(), 0);
    }
}
