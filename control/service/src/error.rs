//! The one error type of every control service: an HTTP status, a stable
//! machine-readable code and a message, rendered as
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error answered to an API client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code clients can match on, e.g. `not_found`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or a field is invalid.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404: the thing does not exist, or belongs to someone else.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 404 for a path no route serves, as JSON like every other error.
    pub async fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 405 for a route asked with a method it does not serve.
    pub async fn wrong_method() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not serve that method",
        )
    }

    /// 409: the request conflicts with current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 502/503: a dependency (origin, database) failed.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 500: something that should not happen; the details go to the log,
    /// not to the client.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // The database is down or overloaded: ours to wait out, not a
            // fault in the request or the code.
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                Self::unavailable("storage_unavailable", format!("storage: {err}"))
            }
            err => Self::internal(format!("storage: {err}")),
        }
    }
}

impl From<buildstream_backend::CacheError> for ApiError {
    fn from(err: buildstream_backend::CacheError) -> Self {
        Self::unavailable("cache_unavailable", format!("cache: {err}"))
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Server faults are logged here, once; their details stay out of the
        // response body.
        // A fault of ours is an error; a dependency that is down is for an
        // operator to look at.
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code, error = %self.message, "request failed");
            "internal error"
        } else {
            if self.status.is_server_error() {
                tracing::warn!(code = self.code, error = %self.message, "request failed");
            }
            self.message.as_str()
        };
        let body = Body {
            error: Inner {
                code: self.code,
                message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
