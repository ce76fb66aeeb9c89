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
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::Router;
use buildstream_mesh::TrackName;

use crate::signaling::{
    allow_any_origin, bearer, created, error, no_session, not_allowed, offer_refused, offer_text,
    preflight, trickle as add_candidates, unauthorized, MAX_BODY,
};
use crate::webrtc::WebrtcEdge;
use crate::{AuthorizeError, KeyAuthority, SourceGrant};

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
            post(publish::<K>)
                .options(preflight)
                .fallback(|| async { not_allowed() }),
        )
        .route(
            "/whip/{source}/{session}",
            patch(trickle::<K>)
                .delete(end::<K>)
                .options(preflight)
                .fallback(|| async { not_allowed() }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(state)
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

/// How often a live WHIP publisher's key is checked again, as RTMP
/// publishers' are: a rotated key or a deleted source ends the session.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn keep_checking<K: KeyAuthority>(
    state: &Arc<WhipState<K>>,
    key: &str,
    grant: SourceGrant,
    session: &str,
) {
    let (state, key, session) = (state.clone(), key.to_owned(), session.to_owned());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECHECK_EVERY).await;
            if state.webrtc.owner(&session).is_none() {
                return;
            }
            match state.keys.authorize(&key).await {
                Ok(now) if now == grant => {}
                // The control plane being away keeps the encoder live.
                Err(AuthorizeError::Unavailable(_)) => {}
                Ok(_) | Err(AuthorizeError::Refused) => {
                    tracing::info!(studio = %grant.studio, source = %grant.source, %session,
                        "stream key no longer valid; WHIP session ended");
                    state.webrtc.close(&session);
                    return;
                }
            }
        }
    });
}

fn owner(grant: &SourceGrant) -> String {
    format!("whip:{}/{}", grant.studio, grant.source)
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
    let offer = match offer_text(&headers, &body) {
        Ok(offer) => offer,
        Err(refused) => return refused.into_response(),
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
            if let Some(key) = bearer(&headers) {
                keep_checking(&state, key, grant, &accepted.id);
            }
            created(&format!("/whip/{source}"), accepted)
        }
        Err(err) => offer_refused(&err),
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
        return no_session();
    }
    add_candidates(&state.webrtc, &session, &headers, &body)
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
        return no_session();
    }
    tracing::info!(studio = %grant.studio, source = %grant.source, %session, "WHIP publisher ended");
    StatusCode::OK.into_response()
}
