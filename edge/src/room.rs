//! Media signaling for the studio room: a participant's browser publishes
//! its camera and screen, and receives everyone else's, each as one HTTP
//! exchange of SDP shaped like WHIP and WHEP, authorised by the
//! participant's studio token (valid for one studio only).
//!
//! - `POST /rtc/{studio}/publish/{source}`: a send-only offer for the
//!   participant's own camera or screen source.
//! - `POST /rtc/{studio}/play/{source}`: a receive-only offer for any source
//!   of the studio: other participants, encoders.
//! - `PATCH` / `DELETE` on the returned `Location` trickle candidates and end
//!   the session.
//!
//! A publisher that reloads its tab publishes again under the same source
//! and supersedes its old session at once; players of that source follow
//! the new track by themselves.

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
    allow_any_origin, bearer, created, error, no_session, offer_refused, offer_text, preflight,
    trickle as add_candidates, unauthorized, HttpError, MAX_BODY,
};
use crate::webrtc::WebrtcEdge;

/// What a participant asks to do with a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaAction {
    /// Send it (their own camera or screen).
    Publish,
    /// Receive it.
    Play,
}

/// Why a participant may not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomRefusal {
    /// The token is missing, invalid, expired or for another studio.
    #[error("studio token refused")]
    Token,
    /// The participant may not do this (waiting to be admitted, not their
    /// source, removed); the reason is for them.
    #[error("{0}")]
    Forbidden(String),
    /// No such source in the studio.
    #[error("no such source")]
    NoSource,
    /// The decision could not be made now.
    #[error("cannot check right now: {0}")]
    Unavailable(String),
}

/// Decides what a participant may send and receive.
pub trait RoomAuthority: Send + Sync + 'static {
    /// The participant `token` stands for in `studio`, whatever they may
    /// do; used to let them end or trickle their own sessions.
    fn identify(
        &self,
        studio: &str,
        token: &str,
    ) -> impl Future<Output = Result<String, RoomRefusal>> + Send;

    /// Checks `token` for `action` on `source` of `studio`; answers the
    /// participant's id.
    fn authorize(
        &self,
        studio: &str,
        token: &str,
        source: &str,
        action: MediaAction,
    ) -> impl Future<Output = Result<String, RoomRefusal>> + Send;
}

/// How often a room session's right to go on is checked again: a guest the
/// host removes loses their media within this.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

struct RoomState<R> {
    webrtc: WebrtcEdge,
    authority: R,
}

/// The room's signaling routes, to be served under the edge's HTTP address.
pub fn router<R: RoomAuthority>(webrtc: WebrtcEdge, authority: R) -> Router {
    let state = Arc::new(RoomState { webrtc, authority });
    Router::new()
        .route(
            "/rtc/{studio}/publish/{source}",
            post(publish::<R>).options(preflight),
        )
        .route(
            "/rtc/{studio}/play/{source}",
            post(play::<R>).options(preflight),
        )
        .route(
            "/rtc/{studio}/sessions/{session}",
            patch(trickle::<R>).delete(end::<R>).options(preflight),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(allow_any_origin))
        .with_state(state)
}

async fn authorize<R: RoomAuthority>(
    authority: &R,
    headers: &HeaderMap,
    studio: &str,
    source: &str,
    action: MediaAction,
) -> Result<String, Response> {
    let Some(token) = bearer(headers) else {
        return Err(unauthorized(
            "send your studio token as Authorization: Bearer <token>",
        ));
    };
    authority
        .authorize(studio, token, source, action)
        .await
        .map_err(|refusal| match refusal {
            RoomRefusal::Token => unauthorized("studio token refused"),
            RoomRefusal::Forbidden(why) => error(StatusCode::FORBIDDEN, "forbidden", &why),
            RoomRefusal::NoSource => error(StatusCode::NOT_FOUND, "not_found", "no such source"),
            RoomRefusal::Unavailable(why) => {
                tracing::warn!(reason = %why, "studio token could not be checked");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "your studio token cannot be checked right now; retry shortly",
                )
            }
        })
}

fn owner(studio: &str, participant: &str) -> String {
    format!("rtc:{studio}:{participant}")
}

fn tracks(studio: &str, source: &str) -> Result<(TrackName, TrackName), HttpError> {
    match (
        TrackName::new(studio, source, "video"),
        TrackName::new(studio, source, "audio"),
    ) {
        (Ok(video), Ok(audio)) => Ok((video, audio)),
        _ => Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such source",
        )),
    }
}

async fn publish<R: RoomAuthority>(
    State(state): State<Arc<RoomState<R>>>,
    Path((studio, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(
        &state,
        &studio,
        &source,
        MediaAction::Publish,
        &headers,
        &body,
    )
    .await
}

async fn play<R: RoomAuthority>(
    State(state): State<Arc<RoomState<R>>>,
    Path((studio, source)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    start(&state, &studio, &source, MediaAction::Play, &headers, &body).await
}

/// Starts a session that does `action` with `source`, if the participant
/// may.
async fn start<R: RoomAuthority>(
    state: &Arc<RoomState<R>>,
    studio: &str,
    source: &str,
    action: MediaAction,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let participant = match authorize(&state.authority, headers, studio, source, action).await {
        Ok(participant) => participant,
        Err(response) => return response,
    };
    let (offer, (video, audio)) =
        match offer_text(headers, body).and_then(|offer| Ok((offer, tracks(studio, source)?))) {
            Ok(parts) => parts,
            Err(refused) => return refused.into_response(),
        };
    let owner = owner(studio, &participant);
    let accepted = match action {
        MediaAction::Publish => state.webrtc.publish(offer, video, audio, &owner),
        MediaAction::Play => state.webrtc.play(offer, Some(video), Some(audio), &owner),
    };
    match accepted {
        Ok(accepted) => {
            if action == MediaAction::Publish {
                tracing::info!(%studio, %participant, %source, session = %accepted.id, "participant publishing");
            }
            {
                let session = accepted.id.clone();
                keep_checking(state, headers, studio, source, action, &session);
                created(&format!("/rtc/{studio}/sessions"), accepted)
            }
        }
        Err(err) => offer_refused(&err),
    }
}

/// Asks again, every few seconds while `session` lasts, whether its
/// participant may still do what they started; ends it when not (removed
/// by the host, token expired, source deleted). An authority that cannot
/// answer leaves the session be.
fn keep_checking<R: RoomAuthority>(
    state: &Arc<RoomState<R>>,
    headers: &HeaderMap,
    studio: &str,
    source: &str,
    action: MediaAction,
    session: &str,
) {
    let Some(token) = bearer(headers).map(str::to_owned) else {
        return;
    };
    let (state, studio, source, session) = (
        state.clone(),
        studio.to_owned(),
        source.to_owned(),
        session.to_owned(),
    );
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECHECK_EVERY).await;
            if state.webrtc.owner(&session).is_none() {
                return;
            }
            match state
                .authority
                .authorize(&studio, &token, &source, action)
                .await
            {
                Ok(_) | Err(RoomRefusal::Unavailable(_)) => {}
                Err(refusal) => {
                    tracing::info!(%studio, %source, %session, reason = %refusal, "room session no longer allowed; ended");
                    state.webrtc.close(&session);
                    return;
                }
            }
        }
    });
}

/// Whether the token's holder owns `session`.
async fn owned_session<R: RoomAuthority>(
    state: &RoomState<R>,
    headers: &HeaderMap,
    studio: &str,
    session: &str,
) -> Result<(), Response> {
    let Some(token) = bearer(headers) else {
        return Err(unauthorized(
            "send your studio token as Authorization: Bearer <token>",
        ));
    };
    let Some(owner_tag) = state.webrtc.owner(session) else {
        return Err(no_session());
    };
    let participant = match state.authority.identify(studio, token).await {
        Ok(participant) => participant,
        Err(RoomRefusal::Unavailable(_)) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "your studio token cannot be checked right now; retry shortly",
            ))
        }
        Err(_) => return Err(unauthorized("studio token refused")),
    };
    if owner_tag != owner(studio, &participant) {
        return Err(no_session());
    }
    Ok(())
}

async fn trickle<R: RoomAuthority>(
    State(state): State<Arc<RoomState<R>>>,
    Path((studio, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = owned_session(&state, &headers, &studio, &session).await {
        return response;
    }
    add_candidates(&state.webrtc, &session, &headers, &body)
}

async fn end<R: RoomAuthority>(
    State(state): State<Arc<RoomState<R>>>,
    Path((studio, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = owned_session(&state, &headers, &studio, &session).await {
        return response;
    }
    state.webrtc.close(&session);
    StatusCode::OK.into_response()
}
