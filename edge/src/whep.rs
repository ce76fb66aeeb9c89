//! WHEP: players watch a live studio's program over WebRTC, with one HTTP
//! POST of a receive-only SDP offer, authorised by a viewer token the
//! control plane hands to the studio's host.
//!
//! - `POST /whep/{studio}` with `Content-Type: application/sdp` answers
//!   `201 Created`, the SDP answer and a `Location` for the session.
//! - `PATCH` on that location adds trickled candidates, `DELETE` ends it.
//!
//! The program is the origin's: H.264 video and Opus audio, relayed by the
//! edge from the origin's mesh endpoint so that every player at this edge
//! shares one upstream.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::Router;
use buildstream_mesh::TrackName;

use crate::webrtc::WebrtcEdge;
use crate::whip::{
    allow_any_origin, bearer, error, has_content_type, offer_refused, preflight, unauthorized,
    MAX_BODY,
};
use crate::AuthorizeError;

/// Decides who may watch a studio's program, and gets the program to this
/// edge when they may.
pub trait PlaybackAuthority: Send + Sync + 'static {
    /// Checks `token` for `studio`. On success the program's tracks
    /// (`studio/{studio}/program/video` and `.../opus`) are, or will
    /// shortly be, in the edge's tracks.
    fn authorize(
        &self,
        studio: &str,
        token: &str,
    ) -> impl Future<Output = Result<(), PlaybackError>> + Send;
}

/// Why a player may not watch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaybackError {
    /// The token is not valid for this studio.
    #[error(transparent)]
    Token(#[from] AuthorizeError),
    /// The studio is not live.
    #[error("the studio is not live")]
    NotLive,
}

struct WhepState<P> {
    webrtc: WebrtcEdge,
    playback: P,
}

/// The WHEP routes, to be served under the edge's HTTP address.
pub fn router<P: PlaybackAuthority>(webrtc: WebrtcEdge, playback: P) -> Router {
    let state = Arc::new(WhepState { webrtc, playback });
    Router::new()
        .route(
            "/whep/{studio}",
            post(play::<P>).options(preflight).fallback(not_allowed),
        )
        .route(
            "/whep/{studio}/{session}",
            patch(trickle::<P>)
                .delete(end::<P>)
                .options(preflight)
                .fallback(not_allowed),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(state)
}

async fn not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this WHEP resource takes POST (offer), PATCH (candidates) and DELETE",
    )
}

async fn authorize<P: PlaybackAuthority>(
    playback: &P,
    headers: &HeaderMap,
    studio: &str,
) -> Result<(), Response> {
    let Some(token) = bearer(headers) else {
        return Err(unauthorized(
            "send the viewer token as Authorization: Bearer <token>",
        ));
    };
    match playback.authorize(studio, token).await {
        Ok(()) => Ok(()),
        Err(PlaybackError::NotLive) => Err(error(
            StatusCode::NOT_FOUND,
            "not_live",
            "the studio is not live",
        )),
        Err(PlaybackError::Token(AuthorizeError::Refused)) => {
            Err(unauthorized("viewer token refused"))
        }
        Err(PlaybackError::Token(AuthorizeError::Unavailable(why))) => {
            tracing::warn!(reason = %why, "viewer token could not be checked");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the viewer token cannot be checked right now; retry shortly",
            ))
        }
    }
}

fn owner(studio: &str) -> String {
    format!("whep:{studio}")
}

async fn play<P: PlaybackAuthority>(
    State(state): State<Arc<WhepState<P>>>,
    Path(studio): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorize(&state.playback, &headers, &studio).await {
        return response;
    }
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
        TrackName::new(&studio, "program", "video"),
        TrackName::new(&studio, "program", "opus"),
    ) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such studio");
    };
    match state
        .webrtc
        .play(offer, Some(video), Some(audio), &owner(&studio))
    {
        Ok(accepted) => {
            tracing::info!(%studio, session = %accepted.id, "WHEP player accepted");
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_owned()),
                    (header::LOCATION, format!("/whep/{studio}/{}", accepted.id)),
                    (header::ETAG, format!("\"{}\"", accepted.id)),
                ],
                accepted.answer,
            )
                .into_response()
        }
        Err(err) => offer_refused(&err),
    }
}

async fn trickle<P: PlaybackAuthority>(
    State(state): State<Arc<WhepState<P>>>,
    Path((studio, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorize(&state.playback, &headers, &studio).await {
        return response;
    }
    if state.webrtc.owner(&session) != Some(owner(&studio)) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such WHEP session");
    }
    if !has_content_type(&headers, "application/trickle-ice-sdpfrag") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send candidates as Content-Type: application/trickle-ice-sdpfrag",
        );
    }
    match state
        .webrtc
        .trickle(&session, &String::from_utf8_lossy(&body))
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such WHEP session"),
    }
}

async fn end<P: PlaybackAuthority>(
    State(state): State<Arc<WhepState<P>>>,
    Path((studio, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // A player leaving a show that has ended must still be able to say so.
    if bearer(&headers).is_none() {
        return unauthorized("send the viewer token as Authorization: Bearer <token>");
    }
    if state.webrtc.owner(&session) != Some(owner(&studio)) || !state.webrtc.close(&session) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such WHEP session");
    }
    StatusCode::OK.into_response()
}
