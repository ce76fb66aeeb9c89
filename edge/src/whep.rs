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
            post(play::<P>)
                .options(preflight)
                .fallback(|| async { not_allowed() }),
        )
        .route(
            "/whep/{studio}/{session}",
            patch(trickle::<P>)
                .delete(end::<P>)
                .options(preflight)
                .fallback(|| async { not_allowed() }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(state)
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
    let offer = match offer_text(&headers, &body) {
        Ok(offer) => offer,
        Err(refused) => return refused.into_response(),
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
            created(&format!("/whep/{studio}"), accepted)
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
        return no_session();
    }
    add_candidates(&state.webrtc, &session, &headers, &body)
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
        return no_session();
    }
    StatusCode::OK.into_response()
}
