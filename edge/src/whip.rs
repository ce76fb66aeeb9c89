//! WHIP (RFC 9725): encoders publish a source over WebRTC with one HTTP
//! POST of an SDP offer, authorised by the source's stream key as a bearer
//! token.
//!
//! - `POST /whip/{source}` with `Content-Type: application/sdp` answers
//!   `201 Created`, the SDP answer and a `Location` for the session.
//! - `PATCH` on that location with `application/trickle-ice-sdpfrag` adds
//!   candidates (`204`).
//! - `DELETE` on it ends the session.
//!
//! Errors carry a JSON body `{"error": {"code", "message"}}` like the rest
//! of the API; an offer the edge cannot take answers `400` or `406` with the
//! reason, never a session with a dead track.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::{Json, Router};
use buildstream_mesh::TrackName;

use crate::webrtc::{OfferError, SessionError, WebrtcEdge};
use crate::{AuthorizeError, KeyAuthority, SourceGrant};

/// The largest body taken, offer or candidate fragment.
pub(crate) const MAX_BODY: usize = 64 * 1024;

struct WhipState<K> {
    webrtc: WebrtcEdge,
    keys: K,
}

/// The WHIP routes, to be served under the edge's HTTP address.
pub fn router<K: KeyAuthority>(webrtc: WebrtcEdge, keys: K) -> Router {
    let state = Arc::new(WhipState { webrtc, keys });
    Router::new()
        .route(
            "/whip/{source}",
            post(publish::<K>).options(preflight).fallback(not_allowed),
        )
        .route(
            "/whip/{source}/{session}",
            patch(trickle::<K>)
                .delete(end::<K>)
                .options(preflight)
                .fallback(not_allowed),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(state)
}

/// WHIP clients in web pages live on other origins; the bearer token, not
/// the origin, is what authorises them.
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

async fn not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this WHIP resource takes POST (offer), PATCH (candidates) and DELETE",
    )
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

/// The grant for the request's bearer token, if it names `source`.
async fn authorize<K: KeyAuthority>(
    keys: &K,
    headers: &HeaderMap,
    source: &str,
) -> Result<SourceGrant, Response> {
    let Some(key) = bearer(headers) else {
        return Err(unauthorized(
            "send the source's stream key as Authorization: Bearer <key>",
        ));
    };
    match keys.authorize(key).await {
        Ok(grant) if grant.source == source => Ok(grant),
        Ok(_) => Err(error(
            StatusCode::FORBIDDEN,
            "wrong_source",
            "this stream key belongs to another source",
        )),
        Err(AuthorizeError::Refused) => Err(unauthorized("stream key refused")),
        Err(AuthorizeError::Unavailable(why)) => {
            tracing::warn!(reason = %why, "WHIP key could not be checked");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the stream key cannot be checked right now; retry shortly",
            ))
        }
    }
}

fn owner(grant: &SourceGrant) -> String {
    format!("whip:{}/{}", grant.studio, grant.source)
}

pub(crate) fn has_content_type(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(wanted))
}

async fn publish<K: KeyAuthority>(
    State(state): State<Arc<WhipState<K>>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let grant = match authorize(&state.keys, &headers, &source).await {
        Ok(grant) => grant,
        Err(response) => return response,
    };
    if !has_content_type(&headers, "application/sdp") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the offer as Content-Type: application/sdp",
        );
    }
    let Ok(offer) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_sdp",
            "the offer is not UTF-8",
        );
    };
    let (Ok(video), Ok(audio)) = (
        TrackName::new(&grant.studio, &grant.source, "video"),
        TrackName::new(&grant.studio, &grant.source, "audio"),
    ) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "granted source does not name a track",
        );
    };
    match state.webrtc.publish(offer, video, audio, &owner(&grant)) {
        Ok(accepted) => {
            tracing::info!(studio = %grant.studio, source = %grant.source, session = %accepted.id, "WHIP publisher accepted");
            let location = format!("/whip/{source}/{}", accepted.id);
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_owned()),
                    (header::LOCATION, location),
                    (header::ETAG, format!("\"{}\"", accepted.id)),
                ],
                accepted.answer,
            )
                .into_response()
        }
        Err(err) => offer_refused(&err),
    }
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
    }
}

async fn trickle<K: KeyAuthority>(
    State(state): State<Arc<WhipState<K>>>,
    Path((source, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let grant = match authorize(&state.keys, &headers, &source).await {
        Ok(grant) => grant,
        Err(response) => return response,
    };
    if state.webrtc.owner(&session) != Some(owner(&grant)) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such WHIP session");
    }
    if !has_content_type(&headers, "application/trickle-ice-sdpfrag") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send candidates as Content-Type: application/trickle-ice-sdpfrag",
        );
    }
    let fragment = String::from_utf8_lossy(&body);
    match state.webrtc.trickle(&session, &fragment) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such WHIP session"),
    }
}

async fn end<K: KeyAuthority>(
    State(state): State<Arc<WhipState<K>>>,
    Path((source, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let grant = match authorize(&state.keys, &headers, &source).await {
        Ok(grant) => grant,
        Err(response) => return response,
    };
    if state.webrtc.owner(&session) != Some(owner(&grant)) || !state.webrtc.close(&session) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such WHIP session");
    }
    tracing::info!(studio = %grant.studio, source = %grant.source, %session, "WHIP publisher ended");
    StatusCode::OK.into_response()
}
