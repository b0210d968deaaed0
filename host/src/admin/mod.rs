//! The admin HTTP API of `sluice serve` (axum): pipelines and UDFs (`api.rs`), metrics, health,
//! tap and live events (`observe.rs`), the dashboard's anomaly scores (`scores.rs`), and the
//! embedded dashboard page and OpenAPI document (`assets/`).
//!
//! Bearer-token auth is always on, except for `/health`, `/ready` and the dashboard page itself
//! (static, no data: it asks for the token and sends it with every request). Browsers' SSE
//! cannot set headers, so `?access_token=` is accepted for `/events` only (RFC 6750 §2.3).

mod api;
mod observe;
pub mod scores;
pub mod tls;

use crate::api::{ErrorBody, FieldError};
use crate::control_plane::{ChangeError, ControlPlane};
use crate::udf_registry::RegistryError;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What the handlers share.
pub struct AdminState {
    /// Pipelines and UDFs.
    pub control: Arc<ControlPlane>,
    /// The bearer token every protected request must carry.
    pub token: String,
    /// Anomaly scores for the dashboard.
    pub scores: Arc<scores::Scoreboard>,
    /// True once the saved state is restored and the watches are running.
    pub started: AtomicBool,
    /// `/ready` fails when a source's oldest unacknowledged record waited longer than this.
    pub ready_max_unacked_age: std::time::Duration,
}

/// The largest UDF module accepted by `PUT /udfs/{name}`.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Every route.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/pipelines", get(api::list_pipelines))
        .route(
            "/pipelines/{name}",
            get(api::get_pipeline)
                .put(api::put_pipeline)
                .delete(api::delete_pipeline),
        )
        .route("/pipelines/{name}/tap/{component}", get(observe::tap))
        .route("/udfs", get(api::list_udfs))
        .route(
            "/udfs/{name}",
            put(api::put_udf).layer(axum::extract::DefaultBodyLimit::max(MAX_MODULE_BYTES)),
        )
        .route("/udfs/{name}/rollback", post(api::rollback_udf))
        .route("/udfs/{name}/promote", post(api::promote_udf))
        .route(
            "/udfs/{name}/shadow",
            get(api::get_shadow).delete(api::delete_shadow),
        )
        .route("/metrics", get(observe::metrics))
        .route("/events", get(observe::events))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(axum::middleware::from_fn(audit));
    Router::new()
        .route("/health", get(observe::health))
        .route("/ready", get(observe::ready))
        .route("/", get(dashboard))
        .route("/openapi.json", get(openapi))
        .merge(protected)
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves the admin API over TLS (`config`) on `listener` until `shutdown` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // `tap_io` (doing nothing) gives the peer's address to `ConnectInfo`, as for plain TCP.
    let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Logs every change asked of the host (any method but GET/HEAD), answered or refused: what
/// (method, path), the outcome (status), and from where (the peer's address), under the
/// `sluice::audit` target. There is one admin token, so "who" is whoever holds it.
async fn audit(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let remote = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |info| info.0.to_string());
    let response = next.run(request).await;
    tracing::info!(
        target: "sluice::audit",
        %method, %path, status = response.status().as_u16(), %remote,
        "admin change"
    );
    response
}

/// 401 unless the request carries the token (header; for `/events`, also the `access_token`
/// query parameter).
async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    // Only the event stream takes it in the URL: browsers' EventSource cannot set headers, and a
    // token in any other URL ends up in logs and histories.
    let from_query = (request.uri().path() == "/events")
        .then(|| request.uri().query())
        .flatten()
        .and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| *k == "access_token")
                .map(|(_, v)| v.to_string())
        });
    let presented = from_header.or(from_query);
    match presented {
        Some(token) if constant_time_eq(token.trim().as_bytes(), state.token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => unauthorized("wrong token"),
        None => unauthorized("missing bearer token (Authorization: Bearer TOKEN)"),
    }
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"sluice\"")],
        Json(ErrorBody::new(why)),
    )
        .into_response()
}

/// Compares without stopping at the first difference (no timing oracle for the token).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A change that was not made, as an HTTP error with a JSON [`ErrorBody`].
pub struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    /// An error with a message only.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, ErrorBody::new(message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<ChangeError> for ApiError {
    fn from(err: ChangeError) -> Self {
        let status = match &err {
            ChangeError::Invalid(_)
            | ChangeError::BadName(_)
            | ChangeError::NameMismatch { .. } => StatusCode::BAD_REQUEST,
            ChangeError::Udf(RegistryError::BadRule(_)) => StatusCode::BAD_REQUEST,
            ChangeError::NotFound(_)
            | ChangeError::Udf(RegistryError::Unknown(_) | RegistryError::NoShadow(_)) => {
                StatusCode::NOT_FOUND
            }
            ChangeError::Build(_) | ChangeError::Udf(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ChangeError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match err {
            ChangeError::Invalid(errors) => ErrorBody {
                error: "invalid pipeline".into(),
                errors: errors.iter().map(FieldError::from).collect(),
            },
            other => ErrorBody::new(other.to_string()),
        };
        ApiError(status, body)
    }
}

async fn dashboard() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("assets/dashboard.html"),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("assets/openapi.json"),
    )
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
