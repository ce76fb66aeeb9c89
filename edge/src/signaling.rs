//! What the edge's WebRTC signaling endpoints (WHIP, WHEP, the room) have
//! in common: JSON errors, bearer tokens, CORS, SDP bodies, the `201
//! Created` answer and trickled candidates.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::webrtc::{Accepted, OfferError, SessionError, WebrtcEdge};

/// The largest body taken, offer or candidate fragment.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Clients in web pages live on other origins; the bearer token, not the
/// origin, is what authorises them.
pub(crate) async fn allow_any_origin(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link"),
    );
    response
}

pub(crate) async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "POST, PATCH, DELETE, OPTIONS",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type, If-Match",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "600"),
        ],
    )
        .into_response()
}

/// An error answer, small enough to pass around before it becomes a
/// [`Response`].
pub(crate) struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

/// A JSON error in the API's shape.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub(crate) fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

pub(crate) fn has_content_type(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(wanted))
}

/// The response for an offer the edge will not take.
pub(crate) fn offer_refused(err: &SessionError) -> Response {
    match err {
        SessionError::Offer(OfferError::NotAcceptable(why)) => {
            error(StatusCode::NOT_ACCEPTABLE, "offer_not_acceptable", why)
        }
        SessionError::Offer(other) => {
            error(StatusCode::BAD_REQUEST, "invalid_sdp", &other.to_string())
        }
        SessionError::Full => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "edge_full",
            &err.to_string(),
        ),
        SessionError::TooMany(_) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            &err.to_string(),
        ),
    }
}

/// The offer in a request body, which must be `application/sdp`.
pub(crate) fn offer_text<'a>(headers: &HeaderMap, body: &'a Bytes) -> Result<&'a str, HttpError> {
    if !has_content_type(headers, "application/sdp") {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the offer as Content-Type: application/sdp",
        ));
    }
    std::str::from_utf8(body).map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_sdp",
            "the offer is not UTF-8",
        )
    })
}

/// `201 Created` with the answer; the session lives at `{base}/{id}`.
pub(crate) fn created(base: &str, accepted: Accepted) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_owned()),
            (header::LOCATION, format!("{base}/{}", accepted.id)),
            (header::ETAG, format!("\"{}\"", accepted.id)),
        ],
        accepted.answer,
    )
        .into_response()
}

/// Adds the trickled candidates in `body` to `session` (whose owner the
/// caller has checked).
pub(crate) fn trickle(
    webrtc: &WebrtcEdge,
    session: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if !has_content_type(headers, "application/trickle-ice-sdpfrag") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send candidates as Content-Type: application/trickle-ice-sdpfrag",
        );
    }
    match webrtc.trickle(session, &String::from_utf8_lossy(body)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => no_session(),
    }
}

/// The answer for a session that does not exist, or is not the caller's.
pub(crate) fn no_session() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such session")
}

/// The answer for a method a signaling resource does not take.
pub(crate) fn not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this resource takes POST (offer), PATCH (candidates) and DELETE",
    )
}
