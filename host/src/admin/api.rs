//! Pipelines and UDFs: list, inspect, deploy, replace, undeploy, push, roll back.

use super::{AdminState, ApiError};
use crate::api::{
    DeployAnswer, PipelineDetail, PipelineList, RollbackAnswer, UdfList, UndeployAnswer,
};
use crate::control_plane::{Origin, UdfPushed};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

type Shared = State<Arc<AdminState>>;

/// `GET /pipelines`
pub async fn list_pipelines(State(state): Shared) -> Json<PipelineList> {
    Json(PipelineList {
        host_id: state.control.topology.host_metrics().host_id.clone(),
        pipelines: state.control.pipelines(),
    })
}

/// `GET /pipelines/{name}`
pub async fn get_pipeline(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<PipelineDetail>, ApiError> {
    let status = state
        .control
        .pipeline(&name)
        .ok_or_else(|| crate::control_plane::ChangeError::NotFound(format!("pipeline `{name}`")))?;
    let toml = state
        .control
        .topology
        .pipeline(&name)
        .and_then(|view| view.source);
    Ok(Json(PipelineDetail { status, toml }))
}

/// `PUT /pipelines/{name}` with a TOML body: 201 created, 200 replaced or unchanged,
/// 400 invalid (every error), 422 a component cannot be built. Nothing changes on an error.
pub async fn put_pipeline(
    State(state): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<DeployAnswer>), ApiError> {
    let Ok(toml) = std::str::from_utf8(&body) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is not UTF-8 TOML",
        ));
    };
    let file = std::path::PathBuf::from(format!("{name}.toml"));
    let (spec, deployed) = state
        .control
        .deploy_toml(&file, toml, Some(&name), Origin::Api)
        .await?;
    let code = match deployed {
        crate::topology::supervisor::Deployed::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((
        code,
        Json(DeployAnswer {
            name: spec.name.clone(),
            deployed,
        }),
    ))
}

/// `DELETE /pipelines/{name}`: drains (everything in flight is delivered), then stops.
pub async fn delete_pipeline(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<UndeployAnswer>, ApiError> {
    state.control.undeploy(&name).await?;
    Ok(Json(UndeployAnswer {
        name,
        undeployed: true,
    }))
}

/// `GET /udfs`
pub async fn list_udfs(State(state): Shared) -> Json<UdfList> {
    Json(UdfList {
        udfs: state.control.udf_status(),
    })
}

/// `PUT /udfs/{name}` with a Wasm component body: hot reload (422 when refused).
pub async fn put_udf(
    State(state): Shared,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<UdfPushed>, ApiError> {
    let control = state.control.clone();
    // Compiling and trial-`init`ing a module is CPU work: keep it off the async threads.
    let pushed = tokio::task::spawn_blocking(move || control.push_udf(&name, &body))
        .await
        .map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("UDF upload failed: {err}"),
            )
        })??;
    Ok(Json(pushed))
}

/// `POST /udfs/{name}/rollback`: the previous version goes live again.
pub async fn rollback_udf(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<RollbackAnswer>, ApiError> {
    let version = state.control.rollback_udf(&name)?;
    Ok(Json(RollbackAnswer { name, version }))
}
