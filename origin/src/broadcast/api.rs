//! The origin's internal HTTP API, for the control plane.
//!
//! Paths are under `/internal/v1/broadcasts/{studio}`:
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | PUT | (root) | [`BroadcastSpec`] | 201 (started) or 200 (updated) + status |
//! | GET | (root) | | 200 + status |
//! | DELETE | (root) | | 204 |
//! | PUT | `/scene` | [`Scene`] | 204 |
//! | PUT | `/destinations/{id}` | [`DestinationSpec`] | 200 + status |
//! | DELETE | `/destinations/{id}` | | 204 |
//!
//! Errors are `{"error": {"code", "message"}}`. Authentication is the
//! mounting service's job.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde::Serialize;

use super::{BroadcastError, BroadcastSpec, BroadcastStatus, Broadcasts, StudioId};
use crate::compositor::CompositorError;
use crate::destinations::{DestinationError, DestinationId, DestinationSpec};
use crate::scene::Scene;

/// The internal API over `broadcasts`.
pub fn router(broadcasts: Broadcasts) -> Router {
    Router::new()
        .route(
            "/internal/v1/broadcasts/{studio}",
            put(start).get(status).delete(stop),
        )
        .route("/internal/v1/broadcasts/{studio}/scene", put(update_scene))
        .route(
            "/internal/v1/broadcasts/{studio}/destinations/{id}",
            put(add_destination).delete(remove_destination),
        )
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such route".to_owned(),
            }
        })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "this route does not serve that method".to_owned(),
            }
        })
        .layer(middleware::from_fn(log_server_errors))
        .with_state(broadcasts)
}

async fn start(
    State(broadcasts): State<Broadcasts>,
    Path(studio): Path<String>,
    body: Result<Json<BroadcastSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<BroadcastStatus>), ApiError> {
    let studio = StudioId::new(&studio)?;
    let Json(spec) = body?;
    let (status, started) = broadcasts.put(&studio, spec).await?;
    let code = if started {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(status)))
}

async fn status(
    State(broadcasts): State<Broadcasts>,
    Path(studio): Path<String>,
) -> Result<Json<BroadcastStatus>, ApiError> {
    let studio = StudioId::new(&studio)?;
    Ok(Json(broadcasts.status(&studio)?))
}

async fn stop(
    State(broadcasts): State<Broadcasts>,
    Path(studio): Path<String>,
) -> Result<StatusCode, ApiError> {
    let studio = StudioId::new(&studio)?;
    broadcasts.stop(&studio).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_scene(
    State(broadcasts): State<Broadcasts>,
    Path(studio): Path<String>,
    body: Result<Json<Scene>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let studio = StudioId::new(&studio)?;
    let Json(scene) = body?;
    broadcasts.update_scene(&studio, scene).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_destination(
    State(broadcasts): State<Broadcasts>,
    Path((studio, id)): Path<(String, String)>,
    body: Result<Json<DestinationSpec>, JsonRejection>,
) -> Result<Json<BroadcastStatus>, ApiError> {
    let studio = StudioId::new(&studio)?;
    let id = DestinationId::new(&id).map_err(BroadcastError::from)?;
    let Json(spec) = body?;
    broadcasts.add_destination(&studio, id, spec).await?;
    Ok(Json(broadcasts.status(&studio)?))
}

async fn remove_destination(
    State(broadcasts): State<Broadcasts>,
    Path((studio, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let studio = StudioId::new(&studio)?;
    let id = DestinationId::new(&id).map_err(BroadcastError::from)?;
    broadcasts.remove_destination(&studio, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An error answer: a status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_body",
            message: rejection.body_text(),
        }
    }
}

impl From<BroadcastError> for ApiError {
    fn from(error: BroadcastError) -> Self {
        use BroadcastError as B;
        let (status, code) = match &error {
            B::StudioId => (StatusCode::BAD_REQUEST, "invalid_studio"),
            B::AlreadyLive => (StatusCode::CONFLICT, "already_live"),
            B::NotFound => (StatusCode::NOT_FOUND, "not_live"),
            B::DuplicateDestination => (StatusCode::BAD_REQUEST, "duplicate_destination"),
            B::Destination(DestinationError::NotFound) => {
                (StatusCode::NOT_FOUND, "no_such_destination")
            }
            B::Destination(DestinationError::Tls(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "tls_config")
            }
            B::Destination(_) => (StatusCode::BAD_REQUEST, "invalid_destination"),
            B::Compositor(CompositorError::Image(_)) => (StatusCode::BAD_REQUEST, "invalid_image"),
            B::Compositor(CompositorError::MissingElement(_) | CompositorError::Init(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "media_unavailable")
            }
            B::Compositor(_) => (StatusCode::INTERNAL_SERVER_ERROR, "pipeline"),
            B::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "config"),
        };
        Self {
            status,
            code,
            message: error.to_string(),
        }
    }
}

/// Logs every 5xx once, here, rather than where it is returned.
async fn log_server_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.status().is_server_error() {
        let status = response.status().as_u16();
        tracing::error!(%method, %path, status, "internal api request failed");
    }
    response
}
