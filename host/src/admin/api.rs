//! Pipelines and UDFs: list, inspect, deploy, replace, undeploy, push, roll back.

use super::{AdminState, ApiError};
use crate::api::{
    DeployAnswer, PipelineDetail, PipelineList, PromoteAnswer, RollbackAnswer, ShadowReport,
    UdfList, UndeployAnswer,
};
use crate::control_plane::{Origin, UdfPushed};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use std::collections::HashMap;
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

/// `PUT /pipelines/{name}` with a TOML body, or SQL (`Content-Type: application/sql`, compiled
/// as `sluice sql explain` shows; `?kafka_brokers=` and `?function=NAME=MODULE,...` fill in what
/// the SQL does not say, brokers defaulting to `${PREFIX}KAFKA_BROKERS`, else 127.0.0.1:9092):
/// 201 created, 200 replaced or unchanged, 400 invalid (every error), 422 a component cannot be
/// built. Nothing changes on an error.
pub async fn put_pipeline(
    State(state): Shared,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<DeployAnswer>), ApiError> {
    let is_sql = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.split(';').next().unwrap_or("").trim();
            ["application/sql", "text/sql", "application/x-sql"].contains(&v)
        });
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is not UTF-8 text",
        ));
    };
    let compiled;
    let (file, toml) = if is_sql {
        let file = std::path::PathBuf::from(format!("{name}.sql"));
        let options = crate::sql::SqlOptions {
            kafka_brokers: params.get("kafka_brokers").cloned(),
            default_brokers: Some(format!(
                "${{{}KAFKA_BROKERS:-127.0.0.1:9092}}",
                state.control.var_prefix()
            )),
            functions: params
                .get("function")
                .map(|list| {
                    list.split(',')
                        .filter_map(|pair| pair.split_once('='))
                        .map(|(f, m)| (f.trim().to_ascii_uppercase(), m.trim().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        compiled = crate::sql::compile(&file, text, &options)
            .map_err(|errors| crate::control_plane::ChangeError::Invalid(errors.0))?;
        (file, compiled.as_str())
    } else {
        (std::path::PathBuf::from(format!("{name}.toml")), text)
    };
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

/// `PUT /udfs/{name}` with a Wasm component body: hot reload (422 when refused); with
/// `?shadow=true` (and optionally `promote_when`, `drop_when`, `max_lag`), runs it as the
/// shadow of the live version instead.
pub async fn put_udf(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<UdfPushed>, ApiError> {
    let shadow = shadow_options(&query)?;
    let control = state.control.clone();
    // Compiling and trial-`init`ing a module is CPU work: keep it off the async threads.
    let pushed = tokio::task::spawn_blocking(move || match shadow {
        Some(options) => control.shadow_udf(&name, &body, options),
        None => control.push_udf(&name, &body),
    })
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

/// The shadow options of a `PUT /udfs/{name}` query; `None` without `shadow=true`.
fn shadow_options(
    query: &HashMap<String, String>,
) -> Result<Option<crate::udf_shadow::ShadowOptions>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    for key in query.keys() {
        if !["shadow", "promote_when", "drop_when", "max_lag"].contains(&key.as_str()) {
            return Err(bad(format!(
                "unknown query parameter `{key}` (expected shadow, promote_when, drop_when, max_lag)"
            )));
        }
    }
    let shadow = match query.get("shadow").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(bad(format!(
                "shadow: expected true or false, found {other:?}"
            )))
        }
    };
    if !shadow {
        return match query.keys().find(|k| *k != "shadow") {
            Some(key) => Err(bad(format!("`{key}` applies only with shadow=true"))),
            None => Ok(None),
        };
    }
    let mut options = crate::udf_shadow::ShadowOptions::default();
    if let Some(max_lag) = query.get("max_lag") {
        options.max_lag = match max_lag.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(bad(format!(
                    "max_lag: expected a number of records >= 1, found {max_lag:?}"
                )))
            }
        };
    }
    options.promote_when = query.get("promote_when").cloned();
    options.drop_when = query.get("drop_when").cloned();
    for (what, rule) in [
        ("promote_when", &options.promote_when),
        ("drop_when", &options.drop_when),
    ] {
        if let Some(rule) = rule {
            crate::udf_shadow::rules::check(what, rule).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(Some(options))
}

/// `GET /udfs/{name}/shadow`: the running shadow's comparison (else the last one's, ended).
pub async fn get_shadow(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<ShadowReport>, ApiError> {
    Ok(Json(state.control.shadow_report(&name)?))
}

/// `DELETE /udfs/{name}/shadow`: stops the shadow; its final report.
pub async fn delete_shadow(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<ShadowReport>, ApiError> {
    Ok(Json(state.control.unshadow_udf(&name)?))
}

/// `POST /udfs/{name}/promote`: the shadow goes live (between batches, as a hot reload).
pub async fn promote_udf(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<PromoteAnswer>, ApiError> {
    let control = state.control.clone();
    let promoting = name.clone();
    // Takes the change lock, which a compile elsewhere may hold: off the async threads.
    let version = tokio::task::spawn_blocking(move || control.promote_udf(&promoting))
        .await
        .map_err(|err| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("promotion failed: {err}"),
            )
        })??;
    Ok(Json(PromoteAnswer { name, version }))
}
