//! The studio room: who is in it, who may come in, and what each may send.
//!
//! The host enters with their account; guests come with an invite link,
//! which carries an expiring invite token. Redeeming it with a name gives
//! the guest a studio token of their own (no account needed), and they wait
//! until the host admits them. Everyone admitted is backstage; a
//! participant whose camera or screen source is in the scene's `on_stage`
//! is live.
//!
//! Each participant's camera and screen are sources of the studio whose ids
//! derive from the studio and the participant, so a participant who leaves,
//! reloads or reconnects comes back to the same sources, and with them to
//! the same slot on stage.
//!
//! Presence lives in the shared cache ([`crate::presence`]), so any
//! instance of the service answers for any room.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use buildstream_service::openapi::ErrorBody;
use buildstream_service::{ApiError, ApiJson, ApiPath, NodeAuth};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{check_name, limit_reached, push_scene, MAX_SOURCES_PER_STUDIO};
use crate::presence::{now_ms, Participant, Profile};
use crate::store::{now_rfc3339, SourceRow};
use crate::{Scene, StudioService};

/// How long an invite link works unless the host says otherwise.
const DEFAULT_INVITE_HOURS: u64 = 24;
/// The longest an invite link may work.
const MAX_INVITE_HOURS: u64 = 7 * 24;
/// How long a guest's or host's studio token works.
const PARTICIPANT_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);
/// A participant not heard from for this long is shown offline.
const ONLINE_FOR: Duration = Duration::from_secs(10);
/// Participants one room holds at most, waiting ones included.
const MAX_PARTICIPANTS: usize = 32;

pub fn routes() -> Router<StudioService> {
    Router::new()
        .route("/api/v1/studios/{id}/invites", post(create_invite))
        .route("/api/v1/studios/{id}/room", get(read_room))
        .route("/api/v1/studios/{id}/room/guests", post(redeem_invite))
        .route("/api/v1/studios/{id}/room/join", post(join))
        .route("/api/v1/studios/{id}/room/me", delete(leave))
        .route(
            "/api/v1/studios/{id}/room/screen",
            post(screen_source).delete(stop_screen),
        )
        .route(
            "/api/v1/studios/{id}/room/participants/{participant}/admit",
            post(admit),
        )
        .route(
            "/api/v1/studios/{id}/room/participants/{participant}",
            delete(remove),
        )
        .route("/internal/v1/room/authorize", post(authorize_media))
}

/// This module's part of the service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_invite,
    redeem_invite,
    join,
    read_room,
    leave,
    screen_source,
    stop_screen,
    admit,
    remove,
    authorize_media
))]
pub(crate) struct Paths;

/// Who is calling, from their bearer token.
#[derive(Debug, Clone)]
struct Caller {
    sub: String,
    host: bool,
    /// A guest's name from their token.
    name: String,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    buildstream_service::auth::bearer_token(headers)
}

/// The host (their access token, for a studio they own, or their studio
/// token) or a guest (their guest token for this studio).
async fn caller(
    service: &StudioService,
    headers: &HeaderMap,
    studio: &str,
) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::unauthorized("bearer token required"))?;
    if let Ok(access) = service.keys.verify(token) {
        service.store.owned_studio(&access.sub, studio).await?;
        return Ok(Caller {
            sub: access.sub,
            host: true,
            name: String::new(),
        });
    }
    let caller = studio_caller(service, token, studio).await?;
    // A studio token outlives its studio; a deleted studio is gone for it.
    service.store.studio(studio).await?;
    Ok(caller)
}

async fn studio_caller(
    service: &StudioService,
    token: &str,
    studio: &str,
) -> Result<Caller, ApiError> {
    let claims = service.keys.verify_studio(token)?;
    if claims.studio != studio {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_studio",
            "this token is for another studio",
        ));
    }
    let caller = match claims.role.as_str() {
        "host" => Caller {
            sub: claims.sub,
            host: true,
            name: claims.name,
        },
        "guest" => Caller {
            sub: claims.sub,
            host: false,
            name: claims.name,
        },
        _ => return Err(ApiError::unauthorized("this token does not open the room")),
    };
    if service.rooms.is_removed(studio, &caller.sub).await? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "removed",
            "the host removed you from this studio",
        ));
    }
    Ok(caller)
}

/// A JSON body that may be left out entirely.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|err| ApiError::invalid("invalid_json", format!("request body: {err}")))
}

fn host_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.host {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "host_only",
            "only the host may do this",
        ))
    }
}

/// A participant's source id: stable for the studio and the participant,
/// unguessable without both.
fn source_id(prefix: &str, studio: &str, sub: &str) -> String {
    let digest = Sha256::digest(format!("{studio}\n{sub}").as_bytes());
    format!("{prefix}{}", hex::encode(&digest[..8]))
}

fn participant_id(studio: &str, sub: &str) -> String {
    source_id("p_", studio, sub)
}

// ---- invites ----------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct CreateInvite {
    /// How long the link works, 1 to 168 hours; 24 if unset.
    #[serde(default)]
    hours: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct InviteView {
    /// Path of the web app's join page with the invite in its fragment
    /// (which browsers do not send to servers); prefix it with the app's
    /// address to share it.
    invite_path: String,
    invite_token: String,
    expires_in_seconds: u64,
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/invites",
    tag = "room",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    request_body = CreateInvite,
    responses(
        (status = 201, description = "An invite link token", body = InviteView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn create_invite(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<InviteView>), ApiError> {
    host_only(&caller(&service, &headers, &id).await?)?;
    let body: CreateInvite = optional_json(&body)?;
    let hours = body.hours.unwrap_or(DEFAULT_INVITE_HOURS);
    if !(1..=MAX_INVITE_HOURS).contains(&hours) {
        return Err(ApiError::invalid(
            "invalid_hours",
            format!("hours must be 1-{MAX_INVITE_HOURS}"),
        ));
    }
    let ttl = Duration::from_secs(hours * 3600);
    let token = service.keys.issue_studio(
        &buildstream_service::id::random("inv_"),
        &id,
        "invite",
        "",
        ttl,
    )?;
    Ok((
        StatusCode::CREATED,
        Json(InviteView {
            invite_path: format!("/join/{id}#invite={token}"),
            invite_token: token,
            expires_in_seconds: ttl.as_secs(),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RedeemInvite {
    invite: String,
    name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct GuestPass {
    /// The guest's own token for this studio: for the room here and for
    /// media at the edge.
    guest_token: String,
    participant: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/room/guests",
    tag = "room",
    params(("id" = String, Path, description = "Studio id")),
    request_body = RedeemInvite,
    responses(
        (status = 201, description = "A studio token for the guest", body = GuestPass),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 403, description = "Invalid or expired invite", body = ErrorBody),
    ),
)]
async fn redeem_invite(
    State(service): State<StudioService>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RedeemInvite>,
) -> Result<(StatusCode, Json<GuestPass>), ApiError> {
    let invite = service.keys.verify_studio(&body.invite)?;
    if invite.role != "invite" || invite.studio != id {
        return Err(ApiError::unauthorized("this invite is not for this studio"));
    }
    let name = check_name("name", &body.name, 64)?;
    let sub = buildstream_service::id::random("gst_");
    let token = service
        .keys
        .issue_studio(&sub, &id, "guest", &name, PARTICIPANT_TOKEN_TTL)?;
    Ok((
        StatusCode::CREATED,
        Json(GuestPass {
            guest_token: token,
            participant: participant_id(&id, &sub),
        }),
    ))
}

// ---- presence ---------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct Join {
    /// The host's display name; guests keep the one they were invited with.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct JoinView {
    /// Token for the edge: publishing this participant's sources and
    /// receiving the others'.
    media_token: String,
    /// The edge's HTTP base for WebRTC.
    edge_url: String,
    room: RoomView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RoomView {
    you: ParticipantView,
    participants: Vec<ParticipantView>,
    scene: Scene,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
struct ParticipantView {
    id: String,
    name: String,
    role: &'static str,
    /// `waiting` (a guest not yet admitted), `backstage` or `stage`.
    state: &'static str,
    online: bool,
    camera_source: String,
    screen_source: String,
    /// Whether their screen source is being published.
    sharing: bool,
}

fn view(p: &Participant, scene: &Scene, now_ms: u64) -> ParticipantView {
    let profile = &p.profile;
    let state = if !p.admitted {
        "waiting"
    } else if scene.on_stage.contains(&profile.camera) || scene.on_stage.contains(&profile.screen) {
        "stage"
    } else {
        "backstage"
    };
    ParticipantView {
        id: profile.id.clone(),
        name: profile.name.clone(),
        role: if profile.host { "host" } else { "guest" },
        state,
        online: now_ms.saturating_sub(p.last_seen_ms) < ONLINE_FOR.as_millis() as u64,
        camera_source: profile.camera.clone(),
        screen_source: profile.screen.clone(),
        sharing: p.sharing,
    }
}

/// The room as `caller` sees it, marking them present.
async fn snapshot(
    service: &StudioService,
    studio: &str,
    caller: &Caller,
) -> Result<RoomView, ApiError> {
    let scene = service.store.studio(studio).await?.scene();
    let mut room = service.rooms.participants(studio).await?;
    let now = now_ms();
    let me = room
        .get_mut(&caller.sub)
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "not_joined", "join the room first"))?;
    service.rooms.touch(studio, &caller.sub).await?;
    me.last_seen_ms = now;
    let you = view(me, &scene, now);
    let mut participants: Vec<ParticipantView> =
        room.values().map(|p| view(p, &scene, now)).collect();
    participants.sort_by(|a, b| (b.role == "host", &a.name).cmp(&(a.role == "host", &b.name)));
    Ok(RoomView {
        you,
        participants,
        scene,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/room/join",
    tag = "room",
    security(("user" = []), ("studio" = [])),
    params(("id" = String, Path, description = "Studio id")),
    request_body = Join,
    responses(
        (status = 200, description = "In the room (guests wait until admitted)", body = JoinView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Removed from this room", body = ErrorBody),
        (status = 409, description = "The room is full", body = ErrorBody),
    ),
)]
async fn join(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Json<JoinView>, ApiError> {
    let caller = caller(&service, &headers, &id).await?;
    let body: Join = optional_json(&body)?;
    let name = match (caller.host, body.name) {
        (true, Some(name)) => check_name("name", &name, 64)?,
        (true, None) => "Host".to_owned(),
        (false, _) => caller.name.clone(),
    };
    let camera = source_id("cam_", &id, &caller.sub);
    let screen = source_id("scr_", &id, &caller.sub);
    // A guest's camera becomes a source of the studio when they are
    // admitted, not before: waiting guests must not fill the studio's
    // sources.
    let room = service.rooms.participants(&id).await?;
    let admitted = caller.host || room.get(&caller.sub).is_some_and(|p| p.admitted);
    if !room.contains_key(&caller.sub) && room.len() >= MAX_PARTICIPANTS {
        return Err(limit_reached(
            "participants per room",
            MAX_PARTICIPANTS as i64,
        ));
    }
    if admitted {
        ensure_source(&service, &id, &camera, "camera", &name).await?;
    }
    let profile = Profile {
        id: participant_id(&id, &caller.sub),
        name: name.clone(),
        host: caller.host,
        camera,
        screen,
    };
    service.rooms.enter(&id, &caller.sub, &profile).await?;
    if caller.host {
        service.rooms.admit(&id, &caller.sub).await?;
    }
    tracing::info!(studio = %id, participant = %participant_id(&id, &caller.sub), host = caller.host, "joined the room");
    let media_token = if caller.host {
        service
            .keys
            .issue_studio(&caller.sub, &id, "host", &name, PARTICIPANT_TOKEN_TTL)?
    } else {
        bearer(&headers).unwrap_or_default().to_owned()
    };
    Ok(Json(JoinView {
        media_token,
        edge_url: service.edge_urls().await?.http,
        room: snapshot(&service, &id, &caller).await?,
    }))
}

/// Makes a participant's camera or screen source exist under `name`,
/// within the studio's source limit.
async fn ensure_source(
    service: &StudioService,
    studio: &str,
    source: &str,
    kind: &str,
    name: &str,
) -> Result<(), ApiError> {
    let known = service
        .store
        .sources_of(studio)
        .await?
        .iter()
        .any(|s| s.id == source);
    if !known && service.store.attachment_counts(studio).await?.0 >= MAX_SOURCES_PER_STUDIO {
        return Err(limit_reached("sources per studio", MAX_SOURCES_PER_STUDIO));
    }
    service
        .store
        .upsert_source(
            &SourceRow {
                id: source.to_owned(),
                studio_id: studio.to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                created_at: now_rfc3339(),
            },
            &unusable_key_digest(),
        )
        .await
}

/// Participant sources are published with studio tokens at the edge, never
/// with a stream key; they get a random key nobody learns.
fn unusable_key_digest() -> String {
    buildstream_service::secret::digest(&buildstream_service::secret::generate("none_"))
}

#[utoipa::path(
    get,
    path = "/api/v1/studios/{id}/room",
    tag = "room",
    security(("user" = []), ("studio" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "Participants and scene; also keeps the caller present", body = RoomView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 409, description = "Not joined", body = ErrorBody),
    ),
)]
async fn read_room(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RoomView>, ApiError> {
    let caller = caller(&service, &headers, &id).await?;
    Ok(Json(snapshot(&service, &id, &caller).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/studios/{id}/room/me",
    tag = "room",
    security(("user" = []), ("studio" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 204, description = "Left"),
    ),
)]
async fn leave(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&service, &headers, &id).await?;
    // Offline at once; the entry (and admission) stays for a return.
    if let Some(p) = service.rooms.participant(&id, &caller.sub).await? {
        service.rooms.mark_offline(&id, &caller.sub).await?;
        service.rooms.set_sharing(&id, &caller.sub, false).await?;
        // Whoever leaves leaves the stage too (a reload does not leave).
        take_off_stage(&service, &id, &[p.profile.camera, p.profile.screen]).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ScreenView {
    screen_source: String,
}

/// Makes sure the caller's screen source exists, before they share.
#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/room/screen",
    tag = "room",
    security(("user" = []), ("studio" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "The source to publish the screen as", body = ScreenView),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn screen_source(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ScreenView>, ApiError> {
    let caller = caller(&service, &headers, &id).await?;
    let p = service
        .rooms
        .participant(&id, &caller.sub)
        .await?
        .filter(|p| p.admitted)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "not_admitted",
                "wait until the host admits you",
            )
        })?;
    service.rooms.set_sharing(&id, &caller.sub, true).await?;
    let screen = p.profile.screen;
    let name = format!("{} (screen)", p.profile.name);
    ensure_source(&service, &id, &screen, "screen", &name).await?;
    Ok(Json(ScreenView {
        screen_source: screen,
    }))
}

/// The caller stopped sharing their screen: it also leaves the stage.
#[utoipa::path(
    delete,
    path = "/api/v1/studios/{id}/room/screen",
    tag = "room",
    security(("user" = []), ("studio" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 204, description = "Sharing stopped, the screen off stage"),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn stop_screen(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&service, &headers, &id).await?;
    if let Some(p) = service.rooms.participant(&id, &caller.sub).await? {
        service.rooms.set_sharing(&id, &caller.sub, false).await?;
        // Nothing more to show: the screen leaves the stage too.
        take_off_stage(&service, &id, &[p.profile.screen]).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes `sources` from the studio's stage, live, if any is on it.
async fn take_off_stage(
    service: &StudioService,
    id: &str,
    sources: &[String],
) -> Result<(), ApiError> {
    let mut studio = service.store.studio(id).await?;
    let mut scene = studio.scene();
    let before = scene.on_stage.len();
    scene.on_stage.retain(|s| !sources.contains(s));
    if scene.on_stage.len() != before {
        studio.scene =
            serde_json::to_string(&scene).map_err(|err| ApiError::internal(err.to_string()))?;
        service.store.update_studio(&studio).await?;
        push_scene(service, &studio).await?;
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/room/participants/{participant}/admit",
    tag = "room",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id"), ("participant" = String, Path, description = "Participant id")),
    responses(
        (status = 204, description = "Admitted backstage"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn admit(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath((id, participant)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    host_only(&caller(&service, &headers, &id).await?)?;
    let (sub, p) = service
        .rooms
        .by_participant_id(&id, &participant)
        .await?
        .ok_or_else(|| ApiError::not_found("participant"))?;
    ensure_source(&service, &id, &p.profile.camera, "camera", &p.profile.name).await?;
    service.rooms.admit(&id, &sub).await?;
    tracing::info!(studio = %id, %participant, "guest admitted");
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a guest: off stage, out of the room, their token refused from
/// now on.
#[utoipa::path(
    delete,
    path = "/api/v1/studios/{id}/room/participants/{participant}",
    tag = "room",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id"), ("participant" = String, Path, description = "Participant id")),
    responses(
        (status = 204, description = "Removed; their media ends and they cannot rejoin"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn remove(
    State(service): State<StudioService>,
    headers: HeaderMap,
    ApiPath((id, participant)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    host_only(&caller(&service, &headers, &id).await?)?;
    let (sub, gone) = service
        .rooms
        .by_participant_id(&id, &participant)
        .await?
        .ok_or_else(|| ApiError::not_found("participant"))?;
    if gone.profile.host {
        return Err(ApiError::invalid("host", "the host cannot be removed"));
    }
    service
        .rooms
        .remove(&id, &sub, PARTICIPANT_TOKEN_TTL)
        .await?;
    let sources = [gone.profile.camera, gone.profile.screen];
    take_off_stage(&service, &id, &sources).await?;
    for source in &sources {
        service.store.delete_source(&id, source).await?;
    }
    tracing::info!(studio = %id, %participant, "guest removed");
    Ok(StatusCode::NO_CONTENT)
}

// ---- media at the edge ------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct AuthorizeMedia {
    studio: String,
    token: String,
    source: String,
    /// `publish` (send this source), `play` (receive it) or `identify`
    /// (who is this; `source` is ignored).
    action: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MediaGrant {
    participant: String,
}

/// An edge asks whether a participant may publish or receive a source.
#[utoipa::path(
    post,
    path = "/internal/v1/room/authorize",
    tag = "internal",
    security(("node" = [])),
    request_body = AuthorizeMedia,
    responses(
        (status = 200, description = "The participant may publish or play this source", body = MediaGrant),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn authorize_media(
    State(service): State<StudioService>,
    _node: NodeAuth,
    ApiJson(body): ApiJson<AuthorizeMedia>,
) -> Result<Json<MediaGrant>, ApiError> {
    let caller = studio_caller(&service, &body.token, &body.studio).await?;
    let p = service
        .rooms
        .participant(&body.studio, &caller.sub)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "not_joined", "join the room first"))?;
    let (admitted, camera, screen, id) =
        (p.admitted, p.profile.camera, p.profile.screen, p.profile.id);
    if body.action == "identify" {
        return Ok(Json(MediaGrant { participant: id }));
    }
    if !admitted {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_admitted",
            "wait until the host admits you",
        ));
    }
    match body.action.as_str() {
        "publish" if body.source == camera || body.source == screen => {}
        "publish" => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_yours",
                "participants publish only their own camera and screen",
            ))
        }
        "play" => {
            let known = service
                .store
                .sources_of(&body.studio)
                .await?
                .iter()
                .any(|s| s.id == body.source);
            if !known {
                return Err(ApiError::not_found("source"));
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "invalid_action",
                "action must be publish or play",
            ))
        }
    }
    Ok(Json(MediaGrant { participant: id }))
}
