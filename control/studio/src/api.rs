//! HTTP handlers of the studio service.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use buildstream_service::openapi::ErrorBody;
use buildstream_service::{secret, text, ApiError, ApiJson, ApiPath, ApiQuery, NodeAuth, UserAuth};
use serde::{Deserialize, Serialize};

use crate::nodes::{NodeInfo, Role};
use crate::origin::{self, DestinationStatus};
use crate::scene::Scene;
use crate::store::{now_rfc3339, BroadcastRow, DestinationRow, SourceRow, StudioRow};
use crate::StudioService;

/// Prefix of every stream key, so a key pasted somewhere is recognisable.
const STREAM_KEY_PREFIX: &str = "live_";

pub fn routes() -> Router<StudioService> {
    Router::new()
        .route("/api/v1/studios", post(create_studio).get(list_studios))
        .route(
            "/api/v1/studios/{id}",
            get(read_studio).patch(update_studio).delete(delete_studio),
        )
        .route(
            "/api/v1/studios/{id}/sources",
            post(create_source).get(list_sources),
        )
        .route(
            "/api/v1/studios/{id}/sources/{source}",
            delete(delete_source),
        )
        .route(
            "/api/v1/studios/{id}/sources/{source}/key",
            post(rotate_source_key),
        )
        .route(
            "/api/v1/studios/{id}/destinations",
            post(create_destination).get(list_destinations),
        )
        .route(
            "/api/v1/studios/{id}/destinations/{dest}",
            delete(delete_destination),
        )
        .route("/api/v1/studios/{id}/scene", put(put_scene).get(read_scene))
        .route(
            "/api/v1/studios/{id}/broadcast",
            post(start_broadcast)
                .get(read_broadcast)
                .delete(stop_broadcast),
        )
        .route("/internal/v1/ingest/authorize", post(authorize_ingest))
        .route("/internal/v1/playback/authorize", post(authorize_playback))
        .route("/internal/v1/studios/{id}/program", get(program_location))
        .route("/internal/v1/nodes/{id}", put(node_heartbeat))
        .route("/internal/v1/nodes", get(list_nodes))
}

/// This module's part of the service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_studio,
    list_studios,
    read_studio,
    update_studio,
    delete_studio,
    create_source,
    list_sources,
    rotate_source_key,
    delete_source,
    create_destination,
    list_destinations,
    delete_destination,
    read_scene,
    put_scene,
    start_broadcast,
    read_broadcast,
    stop_broadcast,
    authorize_ingest,
    authorize_playback,
    program_location,
    node_heartbeat,
    list_nodes
))]
pub(crate) struct Paths;

// ---- studios ----------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
struct Output {
    width: u32,
    height: u32,
    fps: u32,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 30,
        }
    }
}

impl Output {
    fn validate(self) -> Result<Self, ApiError> {
        let size_ok = matches!((self.width, self.height), (1280, 720) | (1920, 1080));
        if !size_ok || !(24..=60).contains(&self.fps) {
            return Err(ApiError::invalid(
                "invalid_output",
                "output must be 1280x720 or 1920x1080 at 24-60 fps",
            ));
        }
        Ok(self)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateStudio {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    output: Option<Output>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct UpdateStudio {
    name: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    output: Option<Output>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StudioView {
    id: String,
    name: String,
    description: String,
    tags: Vec<String>,
    output: Output,
    scene: Scene,
    live: bool,
    created_at: String,
    updated_at: String,
}

fn studio_view(row: StudioRow, live: bool) -> StudioView {
    StudioView {
        scene: row.scene(),
        tags: row.tags(),
        output: Output {
            width: row.output_width as u32,
            height: row.output_height as u32,
            fps: row.output_fps as u32,
        },
        id: row.id,
        name: row.name,
        description: row.description,
        live,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// What one account may have. Every destination is an encoder's worth of
/// upload at the origin and every source a decoder; these keep one account
/// from taking a node's worth.
const MAX_STUDIOS_PER_USER: i64 = 100;
pub(crate) const MAX_SOURCES_PER_STUDIO: i64 = 16;
const MAX_DESTINATIONS_PER_STUDIO: i64 = 10;

pub(crate) fn limit_reached(what: &str, max: i64) -> ApiError {
    ApiError::conflict("limit_reached", format!("at most {max} {what}"))
}

/// Names end up in logs, placeholders and other people's screens: one line
/// of printable text.
pub(crate) fn check_name(field: &str, name: &str, max: usize) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max || name.chars().any(text::is_unprintable) {
        return Err(ApiError::invalid(
            "invalid_name",
            format!("{field} must be 1-{max} printable characters on one line"),
        ));
    }
    Ok(name.to_owned())
}

/// Descriptions may have line breaks and tabs, nothing else unprintable.
fn check_description(description: &str) -> Result<String, ApiError> {
    let unprintable = description
        .chars()
        .any(|c| text::is_unprintable(c) && !matches!(c, '\n' | '\r' | '\t'));
    if description.chars().count() > 2000 || unprintable {
        return Err(ApiError::invalid(
            "invalid_description",
            "description is at most 2000 printable characters",
        ));
    }
    Ok(description.trim().to_owned())
}

/// At most this many tags, each a word of at most this many letters.
const MAX_TAGS: usize = 10;
const MAX_TAG_CHARS: usize = 32;

/// Tags are short words (letters, digits, `-`, `_`), kept lowercase and
/// once each, in the order given; stored as a JSON array.
fn check_tags(tags: &[String]) -> Result<String, ApiError> {
    let mut kept: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        let valid = !tag.is_empty()
            && tag.chars().count() <= MAX_TAG_CHARS
            && tag
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(ApiError::invalid(
                "invalid_tags",
                format!("each tag is 1-{MAX_TAG_CHARS} letters, digits, '-' or '_'"),
            ));
        }
        if !kept.contains(&tag) {
            kept.push(tag);
        }
    }
    if kept.len() > MAX_TAGS {
        return Err(ApiError::invalid(
            "invalid_tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    serde_json::to_string(&kept).map_err(|err| ApiError::internal(err.to_string()))
}

#[utoipa::path(
    post,
    path = "/api/v1/studios",
    tag = "studios",
    security(("user" = [])),
    request_body = CreateStudio,
    responses(
        (status = 201, description = "Created", body = StudioView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 409, description = "Studio limit reached", body = ErrorBody),
    ),
)]
async fn create_studio(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiJson(body): ApiJson<CreateStudio>,
) -> Result<(StatusCode, Json<StudioView>), ApiError> {
    let output = body.output.unwrap_or_default().validate()?;
    if service.store.studio_count(&auth.user_id).await? >= MAX_STUDIOS_PER_USER {
        return Err(limit_reached("studios per account", MAX_STUDIOS_PER_USER));
    }
    let now = now_rfc3339();
    let row = StudioRow {
        id: buildstream_service::id::random("st_"),
        owner_id: auth.user_id,
        name: check_name("name", &body.name, 120)?,
        description: check_description(&body.description)?,
        tags: check_tags(&body.tags)?,
        output_width: output.width.into(),
        output_height: output.height.into(),
        output_fps: output.fps.into(),
        scene: serde_json::to_string(&Scene::default())
            .map_err(|err| ApiError::internal(err.to_string()))?,
        created_at: now.clone(),
        updated_at: now,
    };
    service.store.insert_studio(&row).await?;
    service.events.send(studio_event("studio.created", &row));
    tracing::info!(studio = %row.id, "studio created");
    Ok((StatusCode::CREATED, Json(studio_view(row, false))))
}

#[derive(Debug, Deserialize)]
struct StudioFilter {
    q: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/studios",
    tag = "studios",
    security(("user" = [])),
    params(("q" = Option<String>, Query, description = "Part of the name")),
    responses(
        (status = 200, description = "The caller's studios", body = Vec<StudioView>),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn list_studios(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiQuery(filter): ApiQuery<StudioFilter>,
) -> Result<Json<Vec<StudioView>>, ApiError> {
    let needle = filter.q.map(|q| q.to_lowercase());
    let live = service.store.live_studios_of(&auth.user_id).await?;
    let views = service
        .store
        .studios_of(&auth.user_id)
        .await?
        .into_iter()
        .filter(|row| {
            needle
                .as_ref()
                .is_none_or(|q| row.name.to_lowercase().contains(q))
        })
        .map(|row| {
            let is_live = live.contains(&row.id);
            studio_view(row, is_live)
        })
        .collect();
    Ok(Json(views))
}

#[utoipa::path(
    get,
    path = "/api/v1/studios/{id}",
    tag = "studios",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "The studio", body = StudioView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn read_studio(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StudioView>, ApiError> {
    let row = service.store.owned_studio(&auth.user_id, &id).await?;
    let live = service.store.broadcast(&id).await?.is_some();
    Ok(Json(studio_view(row, live)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/studios/{id}",
    tag = "studios",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    request_body = UpdateStudio,
    responses(
        (status = 200, description = "Updated", body = StudioView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
        (status = 409, description = "The output cannot change while live", body = ErrorBody),
    ),
)]
async fn update_studio(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateStudio>,
) -> Result<Json<StudioView>, ApiError> {
    let mut row = service.store.owned_studio(&auth.user_id, &id).await?;
    let live = service.store.broadcast(&id).await?.is_some();
    if let Some(name) = body.name {
        row.name = check_name("name", &name, 120)?;
    }
    if let Some(description) = body.description {
        row.description = check_description(&description)?;
    }
    if let Some(tags) = body.tags {
        row.tags = check_tags(&tags)?;
    }
    if let Some(output) = body.output {
        let output = output.validate()?;
        if live {
            return Err(ApiError::conflict(
                "broadcast_live",
                "the output profile cannot change while live",
            ));
        }
        row.output_width = output.width.into();
        row.output_height = output.height.into();
        row.output_fps = output.fps.into();
    }
    service.store.update_studio(&row).await?;
    let row = service.store.owned_studio(&auth.user_id, &id).await?;
    service.events.send(studio_event("studio.updated", &row));
    Ok(Json(studio_view(row, live)))
}

/// An event about a studio, carrying what others index of it.
fn studio_event(kind: &str, row: &StudioRow) -> buildstream_backend::Event {
    buildstream_service::telemetry::event(
        kind,
        serde_json::json!({
            "studio_id": row.id,
            "owner_id": row.owner_id,
            "name": row.name,
            "description": row.description,
            "tags": row.tags(),
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }),
    )
}

#[utoipa::path(
    delete,
    path = "/api/v1/studios/{id}",
    tag = "studios",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 204, description = "Deleted, its broadcast stopped"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn delete_studio(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let row = service.store.owned_studio(&auth.user_id, &id).await?;
    if let Some(broadcast) = service.store.broadcast(&id).await? {
        // An origin that cannot be told now stops the broadcast at its next
        // heartbeat, when it no longer finds the studio among its own.
        if let Err(err) = service.origins.stop(&broadcast.origin_url, &id).await {
            tracing::warn!(studio = %id, origin = %broadcast.origin_id, error = %err.message,
                "origin did not confirm the stop; it stops at its next heartbeat");
        }
    }
    service.store.delete_studio(&id).await?;
    service.rooms.forget(&id).await?;
    service.events.send(studio_event("studio.deleted", &row));
    tracing::info!(studio = %id, "studio deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- sources ----------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateSource {
    kind: String,
    name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SourceView {
    id: String,
    kind: String,
    name: String,
    /// The encoder's "server" setting.
    ingest_url: String,
    /// Shown only when created or rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<String>,
    /// `ingest_url/stream_key`, for encoders that take one URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_url: Option<String>,
    /// WHIP sources: where the encoder POSTs its offer, with the stream key
    /// as bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    whip_url: Option<String>,
    created_at: String,
}

/// Where clients reach an edge.
pub(crate) struct EdgeUrls {
    /// RTMP ingest base encoders publish to.
    pub ingest: String,
    /// HTTP base for WHIP, WHEP and WebRTC signaling.
    pub http: String,
}

impl StudioService {
    /// The first live edge's addresses, else the configured defaults.
    // TODO: pick the edge nearest to the caller (geo-aware discovery); today
    // every client gets the same edge.
    pub(crate) async fn edge_urls(&self) -> Result<EdgeUrls, ApiError> {
        let edges = self.nodes.live(Role::Edge).await?;
        let first = |url: fn(&NodeInfo) -> &String| {
            edges.iter().map(url).find(|url| !url.is_empty()).cloned()
        };
        Ok(EdgeUrls {
            ingest: first(|edge| &edge.ingest_url)
                .unwrap_or_else(|| self.settings.default_ingest_url.clone()),
            http: first(|edge| &edge.api_url)
                .unwrap_or_else(|| self.settings.default_edge_http_url.clone()),
        })
    }

    /// Where and with what token the program of live studio `id` is
    /// watched over WHEP.
    async fn playback(&self, id: &str) -> Result<(String, String), ApiError> {
        let url = format!(
            "{}/whep/{id}",
            self.edge_urls().await?.http.trim_end_matches('/')
        );
        let token = self.keys.issue_studio(
            &buildstream_service::id::random("vw_"),
            id,
            "viewer",
            "",
            VIEWER_TOKEN_TTL,
        )?;
        Ok((url, token))
    }
}

fn source_view(edges: &EdgeUrls, row: SourceRow, key: Option<String>) -> SourceView {
    let ingest_url = edges.ingest.clone();
    let whip_url = (row.kind == "whip")
        .then(|| format!("{}/whip/{}", edges.http.trim_end_matches('/'), row.id));
    SourceView {
        whip_url,
        publish_url: key
            .as_ref()
            .map(|key| format!("{}/{key}", ingest_url.trim_end_matches('/'))),
        stream_key: key,
        ingest_url,
        id: row.id,
        kind: row.kind,
        name: row.name,
        created_at: row.created_at,
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/sources",
    tag = "sources",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    request_body = CreateSource,
    responses(
        (status = 201, description = "Created; the stream key is shown this once", body = SourceView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn create_source(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSource>,
) -> Result<(StatusCode, Json<SourceView>), ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    if service.store.attachment_counts(&id).await?.0 >= MAX_SOURCES_PER_STUDIO {
        return Err(limit_reached("sources per studio", MAX_SOURCES_PER_STUDIO));
    }
    if body.kind != "rtmp" && body.kind != "whip" {
        return Err(ApiError::invalid(
            "unsupported_source_kind",
            "kind must be \"rtmp\" or \"whip\"",
        ));
    }
    let row = SourceRow {
        id: buildstream_service::id::random("src_"),
        studio_id: id,
        kind: body.kind,
        name: check_name("name", &body.name, 64)?,
        created_at: now_rfc3339(),
    };
    let key = secret::generate(STREAM_KEY_PREFIX);
    service
        .store
        .insert_source(&row, &secret::digest(&key))
        .await?;
    tracing::info!(studio = %row.studio_id, source = %row.id, "source created");
    Ok((
        StatusCode::CREATED,
        Json(source_view(&service.edge_urls().await?, row, Some(key))),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/studios/{id}/sources",
    tag = "sources",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "Sources, without keys", body = Vec<SourceView>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn list_sources(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<SourceView>>, ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    let rows = service.store.sources_of(&id).await?;
    let edges = service.edge_urls().await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| source_view(&edges, row, None))
            .collect(),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/sources/{source}/key",
    tag = "sources",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id"), ("source" = String, Path, description = "Source id")),
    responses(
        (status = 200, description = "A new key; the old one stops working", body = SourceView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn rotate_source_key(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath((id, source)): ApiPath<(String, String)>,
) -> Result<Json<SourceView>, ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    let key = secret::generate(STREAM_KEY_PREFIX);
    if !service
        .store
        .set_source_key(&id, &source, &secret::digest(&key))
        .await?
    {
        return Err(ApiError::not_found("source"));
    }
    let row = service
        .store
        .sources_of(&id)
        .await?
        .into_iter()
        .find(|row| row.id == source)
        .ok_or_else(|| ApiError::not_found("source"))?;
    Ok(Json(source_view(
        &service.edge_urls().await?,
        row,
        Some(key),
    )))
}

#[utoipa::path(
    delete,
    path = "/api/v1/studios/{id}/sources/{source}",
    tag = "sources",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id"), ("source" = String, Path, description = "Source id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn delete_source(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath((id, source)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut studio = service.store.owned_studio(&auth.user_id, &id).await?;
    if !service.store.delete_source(&id, &source).await? {
        return Err(ApiError::not_found("source"));
    }
    // A deleted source leaves the stage too.
    let mut scene = studio.scene();
    if scene.on_stage.contains(&source) {
        scene.on_stage.retain(|s| s != &source);
        studio.scene =
            serde_json::to_string(&scene).map_err(|err| ApiError::internal(err.to_string()))?;
        service.store.update_studio(&studio).await?;
        // The source is gone either way; an origin that missed the change
        // shows its placeholder until the next scene change.
        if let Err(err) = push_scene(&service, &studio).await {
            tracing::warn!(studio = %id, error = %err.message, "scene without the deleted source not applied live");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- destinations -----------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateDestination {
    platform: String,
    #[serde(default)]
    url: String,
    stream_key: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DestinationView {
    id: String,
    platform: String,
    name: String,
    url: String,
    /// The last four characters of the key, to tell keys apart.
    stream_key_hint: String,
    created_at: String,
}

fn destination_view(row: DestinationRow) -> DestinationView {
    // The last four characters tell keys apart; a key of eight or fewer
    // would give away too much of itself, so it shows none.
    let chars: Vec<char> = row.stream_key.chars().collect();
    let shown = if chars.len() > 8 { 4 } else { 0 };
    let tail: String = chars[chars.len() - shown..].iter().collect();
    DestinationView {
        id: row.id,
        platform: row.platform,
        name: row.name,
        url: row.url,
        stream_key_hint: format!("…{tail}"),
        created_at: row.created_at,
    }
}

/// Checks a destination URL as origins will: `rtmp://` or `rtmps://`, an
/// ASCII host (international names in their `xn--` form), an application
/// path, no credentials, and unless allowed no internal address.
fn check_destination_url(platform: &str, url: &str, allow_private: bool) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::invalid("invalid_destination", why.to_owned());
    match platform {
        "youtube" | "twitch" | "facebook" if url.is_empty() => return Ok(()),
        "youtube" | "twitch" | "facebook" | "custom" => {}
        _ => {
            return Err(invalid(
                "platform must be youtube, twitch, facebook or custom",
            ))
        }
    }
    let not_rtmp = || invalid("url must be an rtmp:// or rtmps:// URL");
    if !url.is_ascii() || url.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control()) {
        return Err(invalid(
            "url must be ASCII without spaces (write international host names as xn--)",
        ));
    }
    let parsed = url::Url::parse(url).map_err(|_| not_rtmp())?;
    if !matches!(parsed.scheme(), "rtmp" | "rtmps") {
        return Err(not_rtmp());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("put credentials in stream_key, not in the url"));
    }
    if parsed.path().trim_matches('/').is_empty() {
        return Err(invalid(
            "url must name the RTMP application, as in rtmp://host/live",
        ));
    }
    let internal = match parsed.host() {
        None => return Err(not_rtmp()),
        // `rtmp` is not a scheme the URL standard knows, so its hosts stay
        // unparsed text, IPv4 addresses included.
        Some(url::Host::Domain(name)) => {
            // No top-level domain is numeric: `127.1`, `2130706433` or
            // `0x7f000001` are IPv4 addresses in shorthand, which lookups
            // accept and this check could not see through.
            if name.parse::<std::net::IpAddr>().is_err() && looks_numeric(name) {
                return Err(invalid(
                    "write IPv4 addresses as four decimal numbers, as in 203.0.113.7",
                ));
            }
            buildstream_mesh::net::is_local_host(name)
        }
        Some(url::Host::Ipv4(ip)) => !buildstream_mesh::net::is_public(ip.into()),
        Some(url::Host::Ipv6(ip)) => !buildstream_mesh::net::is_public(ip.into()),
    };
    if internal && !allow_private {
        return Err(ApiError::invalid(
            "private_destination",
            "destinations on loopback, private or other internal addresses are not allowed here",
        ));
    }
    Ok(())
}

/// Whether a host's last label is a number (decimal, octal or hex).
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit())))
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/destinations",
    tag = "destinations",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    request_body = CreateDestination,
    responses(
        (status = 201, description = "Created", body = DestinationView),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn create_destination(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateDestination>,
) -> Result<(StatusCode, Json<DestinationView>), ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    if service.store.attachment_counts(&id).await?.1 >= MAX_DESTINATIONS_PER_STUDIO {
        return Err(limit_reached(
            "destinations per studio",
            MAX_DESTINATIONS_PER_STUDIO,
        ));
    }
    let platform = body.platform.trim().to_lowercase();
    let url = body.url.trim().to_owned();
    check_destination_url(&platform, &url, service.settings.allow_private_destinations)?;
    let stream_key = body.stream_key.trim().to_owned();
    if stream_key.is_empty() || stream_key.len() > 512 || stream_key.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_stream_key",
            "stream_key must be 1-512 printable characters",
        ));
    }
    let name = if body.name.trim().is_empty() {
        platform.clone()
    } else {
        check_name("name", &body.name, 64)?
    };
    let row = DestinationRow {
        id: buildstream_service::id::random("dst_"),
        studio_id: id.clone(),
        platform,
        name,
        url,
        stream_key,
        created_at: now_rfc3339(),
    };
    // While live, the origin starts it first: one it refuses is not kept.
    if let Some(broadcast) = service.store.broadcast(&id).await? {
        let spec = origin::destination_spec(&row);
        service
            .origins
            .put_destination(&broadcast.origin_url, &id, &spec)
            .await?;
    }
    service.store.insert_destination(&row).await?;
    tracing::info!(studio = %id, destination = %row.id, platform = %row.platform, "destination added");
    Ok((StatusCode::CREATED, Json(destination_view(row))))
}

#[utoipa::path(
    get,
    path = "/api/v1/studios/{id}/destinations",
    tag = "destinations",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "Destinations, keys masked", body = Vec<DestinationView>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn list_destinations(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<DestinationView>>, ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    let rows = service.store.destinations_of(&id).await?;
    Ok(Json(rows.into_iter().map(destination_view).collect()))
}

#[utoipa::path(
    delete,
    path = "/api/v1/studios/{id}/destinations/{dest}",
    tag = "destinations",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id"), ("dest" = String, Path, description = "Destination id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn delete_destination(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath((id, dest)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    if !service.store.delete_destination(&id, &dest).await? {
        return Err(ApiError::not_found("destination"));
    }
    if let Some(broadcast) = service.store.broadcast(&id).await? {
        match service
            .origins
            .remove_destination(&broadcast.origin_url, &id, &dest)
            .await
        {
            Err(err) if err.status == StatusCode::NOT_FOUND => {}
            other => other?,
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- scene ------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/api/v1/studios/{id}/scene",
    tag = "scene",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "The scene", body = Scene),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn read_scene(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Scene>, ApiError> {
    let studio = service.store.owned_studio(&auth.user_id, &id).await?;
    Ok(Json(studio.scene()))
}

#[utoipa::path(
    put,
    path = "/api/v1/studios/{id}/scene",
    tag = "scene",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    request_body = Scene,
    responses(
        (status = 200, description = "Stored, and sent to the origin when live", body = Scene),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn put_scene(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(scene): ApiJson<Scene>,
) -> Result<Json<Scene>, ApiError> {
    let mut studio = service.store.owned_studio(&auth.user_id, &id).await?;
    let sources = service.store.sources_of(&id).await?;
    let ids: Vec<String> = sources.iter().map(|s| s.id.clone()).collect();
    scene.validate(&ids)?;
    studio.scene =
        serde_json::to_string(&scene).map_err(|err| ApiError::internal(err.to_string()))?;
    // While live, the origin applies the scene before it is stored: one it
    // refuses (an image it cannot decode) neither goes out nor stays.
    push_scene(&service, &studio).await?;
    service.store.update_studio(&studio).await?;
    Ok(Json(scene))
}

/// Sends the studio's stored scene to its origin if it is live.
pub(crate) async fn push_scene(
    service: &StudioService,
    studio: &StudioRow,
) -> Result<(), ApiError> {
    if let Some(broadcast) = service.store.broadcast(&studio.id).await? {
        let sources = service.store.sources_of(&studio.id).await?;
        let spec = origin::scene_spec(&studio.scene(), &sources);
        service
            .origins
            .update_scene(&broadcast.origin_url, &studio.id, &spec)
            .await?;
    }
    Ok(())
}

// ---- broadcast --------------------------------------------------------

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BroadcastView {
    /// `live`, `stalled` (no program output for seconds), `failed` (the
    /// origin's pipeline broke) or `offline`.
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    /// Encoded video frames of the program so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_frames: Option<u64>,
    /// Milliseconds since the program's last video frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_output_ms_ago: Option<u64>,
    started_at: Option<String>,
    origin: Option<String>,
    destinations: Vec<DestinationStatusView>,
    /// While live: where a WHEP player POSTs its offer to watch the
    /// program, with `viewer_token` as bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    whep_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    viewer_token: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DestinationStatusView {
    name: String,
    platform: String,
    #[serde(flatten)]
    status: DestinationStatus,
}

#[utoipa::path(
    post,
    path = "/api/v1/studios/{id}/broadcast",
    tag = "broadcast",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 201, description = "Live: the origin composes and restreams", body = BroadcastView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
        (status = 409, description = "Already live, or no destination", body = ErrorBody),
        (status = 503, description = "No origin available", body = ErrorBody),
    ),
)]
async fn start_broadcast(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<BroadcastView>), ApiError> {
    let studio = service.store.owned_studio(&auth.user_id, &id).await?;
    let destinations = service.store.destinations_of(&id).await?;
    if destinations.is_empty() {
        return Err(ApiError::conflict(
            "no_destinations",
            "add a destination before going live",
        ));
    }
    let origins = service.nodes.live(Role::Origin).await?;
    if origins.is_empty() {
        return Err(ApiError::unavailable("no_origin", "no origin is available"));
    }
    // Spread studios over origins by a stable hash of the id, so a retried
    // start lands on the same origin.
    let pick = id
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let chosen = &origins[pick % origins.len()];
    let broadcast = BroadcastRow {
        studio_id: id.clone(),
        origin_id: chosen.id.clone(),
        origin_url: chosen.api_url.trim_end_matches('/').to_owned(),
        started_at: now_rfc3339(),
    };
    if !service.store.insert_broadcast(&broadcast).await? {
        return Err(ApiError::conflict(
            "already_live",
            "the studio is already live",
        ));
    }
    let sources = service.store.sources_of(&id).await?;
    let spec = origin::broadcast_spec(&studio, &sources, &destinations);
    if let Err(err) = service
        .origins
        .start(&broadcast.origin_url, &id, &spec)
        .await
    {
        // The origin may have started it anyway (a timeout). Without the
        // record it stops it at its next heartbeat; tell it now as well.
        service.store.delete_broadcast(&id).await?;
        let (origins, url, studio) = (service.origins.clone(), broadcast.origin_url, id.clone());
        tokio::spawn(async move {
            let _ = origins.stop(&url, &studio).await;
        });
        return Err(err);
    }
    service.events.send(buildstream_service::telemetry::event(
        "broadcast.started",
        serde_json::json!({"studio_id": id, "owner_id": auth.user_id, "origin_id": broadcast.origin_id}),
    ));
    tracing::info!(studio = %id, origin = %broadcast.origin_id, "broadcast started");
    let (whep_url, viewer_token) = service.playback(&id).await?;
    let view = BroadcastView {
        state: "live".to_owned(),
        failure: None,
        output_frames: None,
        last_output_ms_ago: None,
        started_at: Some(broadcast.started_at),
        origin: Some(broadcast.origin_id),
        destinations: Vec::new(),
        whep_url: Some(whep_url),
        viewer_token: Some(viewer_token),
    };
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[utoipa::path(
    get,
    path = "/api/v1/studios/{id}/broadcast",
    tag = "broadcast",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "The broadcast and each destination's state", body = BroadcastView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn read_broadcast(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BroadcastView>, ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    let Some(broadcast) = service.store.broadcast(&id).await? else {
        return Ok(Json(BroadcastView {
            state: "offline".to_owned(),
            failure: None,
            output_frames: None,
            last_output_ms_ago: None,
            started_at: None,
            origin: None,
            destinations: Vec::new(),
            whep_url: None,
            viewer_token: None,
        }));
    };
    let status = match service.origins.status(&broadcast.origin_url, &id).await {
        Ok(status) => status,
        // The origin restarted or was replaced: the show is not going out.
        // The record stays until the host stops it, so the failure is seen.
        Err(err) if err.status == StatusCode::NOT_FOUND => origin::BroadcastStatus {
            state: "failed".to_owned(),
            failure: Some("the origin no longer has this broadcast".to_owned()),
            output_frames: 0,
            last_output_ms_ago: None,
            destinations: Vec::new(),
        },
        Err(err) => return Err(err),
    };
    let destinations = service.store.destinations_of(&id).await?;
    let (whep_url, viewer_token) = service.playback(&id).await?;
    let views = status
        .destinations
        .into_iter()
        .map(|status| {
            let row = destinations.iter().find(|d| d.id == status.id);
            DestinationStatusView {
                name: row.map(|d| d.name.clone()).unwrap_or_default(),
                platform: row.map(|d| d.platform.clone()).unwrap_or_default(),
                status,
            }
        })
        .collect();
    Ok(Json(BroadcastView {
        state: status.state,
        failure: status.failure,
        output_frames: Some(status.output_frames),
        last_output_ms_ago: status.last_output_ms_ago,
        started_at: Some(broadcast.started_at),
        origin: Some(broadcast.origin_id),
        destinations: views,
        whep_url: Some(whep_url),
        viewer_token: Some(viewer_token),
    }))
}

/// How long a viewer token handed to the host stays valid.
const VIEWER_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

#[utoipa::path(
    delete,
    path = "/api/v1/studios/{id}/broadcast",
    tag = "broadcast",
    security(("user" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 204, description = "Stopped"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such studio of the caller's", body = ErrorBody),
    ),
)]
async fn stop_broadcast(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    service.store.owned_studio(&auth.user_id, &id).await?;
    let Some(broadcast) = service.store.broadcast(&id).await? else {
        return Err(ApiError::conflict("not_live", "the studio is not live"));
    };
    let confirmed = service.origins.stop(&broadcast.origin_url, &id).await;
    service.store.delete_broadcast(&id).await?;
    service.events.send(buildstream_service::telemetry::event(
        "broadcast.stopped",
        serde_json::json!({"studio_id": id, "owner_id": auth.user_id}),
    ));
    match confirmed {
        Ok(()) => {
            tracing::info!(studio = %id, "broadcast stopped");
            Ok(StatusCode::NO_CONTENT)
        }
        // The show is over as far as the studio is concerned; the origin,
        // once it answers again, finds the broadcast unassigned and stops it.
        Err(err) => {
            tracing::warn!(studio = %id, origin = %broadcast.origin_id, error = %err.message,
                "origin did not confirm the stop; it stops at its next heartbeat");
            Ok(StatusCode::ACCEPTED)
        }
    }
}

// ---- nodes ------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct AuthorizeIngest {
    stream_key: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct IngestGrant {
    studio: String,
    source: String,
}

#[utoipa::path(
    post,
    path = "/internal/v1/ingest/authorize",
    tag = "internal",
    security(("node" = [])),
    request_body = AuthorizeIngest,
    responses(
        (status = 200, description = "The stream key is valid", body = IngestGrant),
        (status = 403, description = "Unknown key", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn authorize_ingest(
    State(service): State<StudioService>,
    _node: NodeAuth,
    ApiJson(body): ApiJson<AuthorizeIngest>,
) -> Result<Json<IngestGrant>, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_stream_key",
            "no source has this stream key",
        )
    };
    let digest = secret::digest(&body.stream_key);
    let Some((source, stored)) = service.store.source_by_key_digest(&digest).await? else {
        tracing::info!(key = %secret::log_tag(&body.stream_key), "ingest refused");
        return Err(refused());
    };
    // The lookup was by digest; compare once more in constant time so that
    // the decision itself does not depend on how much of the key matched.
    if !secret::matches(&body.stream_key, &stored) {
        return Err(refused());
    }
    Ok(Json(IngestGrant {
        studio: source.studio_id,
        source: source.id,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct AuthorizePlayback {
    studio: String,
    token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PlaybackGrant {
    studio: String,
    viewer: String,
}

/// An edge asks whether a player's token may watch a studio's program.
#[utoipa::path(
    post,
    path = "/internal/v1/playback/authorize",
    tag = "internal",
    security(("node" = [])),
    request_body = AuthorizePlayback,
    responses(
        (status = 200, description = "The viewer may play", body = PlaybackGrant),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn authorize_playback(
    State(service): State<StudioService>,
    _node: NodeAuth,
    ApiJson(body): ApiJson<AuthorizePlayback>,
) -> Result<Json<PlaybackGrant>, ApiError> {
    let claims = service.keys.verify_studio(&body.token)?;
    // Viewer tokens, and the host's own; an invite or a guest's pass is
    // not a ticket to the program.
    if claims.role != "viewer" && claims.role != "host" {
        return Err(ApiError::unauthorized("not a viewer token"));
    }
    if claims.studio != body.studio {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_studio",
            "this token is for another studio",
        ));
    }
    if service.store.broadcast(&body.studio).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_live",
            "the studio is not live",
        ));
    }
    Ok(Json(PlaybackGrant {
        studio: claims.studio,
        viewer: claims.sub,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ProgramLocation {
    origin: String,
    mesh_addr: String,
    fingerprint: String,
}

/// Where an edge reads a live studio's program: its origin's mesh endpoint.
#[utoipa::path(
    get,
    path = "/internal/v1/studios/{id}/program",
    tag = "internal",
    security(("node" = [])),
    params(("id" = String, Path, description = "Studio id")),
    responses(
        (status = 200, description = "Where the program is composed", body = ProgramLocation),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Not live", body = ErrorBody),
    ),
)]
async fn program_location(
    State(service): State<StudioService>,
    _node: NodeAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProgramLocation>, ApiError> {
    let not_live = || ApiError::new(StatusCode::NOT_FOUND, "not_live", "the studio is not live");
    let broadcast = service.store.broadcast(&id).await?.ok_or_else(not_live)?;
    let origin = service
        .nodes
        .find(&broadcast.origin_id)
        .await?
        .filter(|node| !node.mesh_addr.is_empty())
        .ok_or_else(not_live)?;
    Ok(Json(ProgramLocation {
        origin: origin.id,
        mesh_addr: origin.mesh_addr,
        fingerprint: origin.fingerprint,
    }))
}

#[utoipa::path(
    put,
    path = "/internal/v1/nodes/{id}",
    tag = "internal",
    security(("node" = [])),
    params(("id" = String, Path, description = "Node id")),
    request_body = NodeInfo,
    responses(
        (status = 200, description = "Registered for a while; origins learn their broadcasts", body = HeartbeatAnswer),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn node_heartbeat(
    State(service): State<StudioService>,
    _node: NodeAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(info): ApiJson<NodeInfo>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    if info.id != id {
        return Err(ApiError::invalid(
            "invalid_node",
            "node id does not match the path",
        ));
    }
    let role = info.role;
    let reports = info.destinations.clone();
    service.nodes.heartbeat(info).await?;
    // An origin learns which broadcasts it should be running; it stops any
    // other (a start that timed out here, a stop it never heard of).
    let broadcasts = match role {
        Role::Origin => Some(service.store.broadcasts_on(&id).await?),
        Role::Edge => None,
    };
    if let Some(ours) = &broadcasts {
        let reports = reports.into_iter().filter(|r| ours.contains(&r.studio_id));
        destination_troubles(&service, &id, reports).await;
    }
    Ok(Json(HeartbeatAnswer { broadcasts }))
}

/// How long a destination's trouble is remembered, so that one outage is
/// one event.
const TROUBLE_REMEMBERED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Publishes `destination.failed` when a destination of a broadcast on
/// `origin` goes from working to `retrying` (it lost its server and keeps
/// trying) and again when it gets to `failed` (given up); once for each,
/// whichever studio instance hears the heartbeat, until it is live again.
async fn destination_troubles(
    service: &StudioService,
    origin: &str,
    reports: impl Iterator<Item = crate::nodes::DestinationReport>,
) {
    for report in reports {
        let key = |state: &str| {
            format!(
                "destination-trouble:{}:{}:{state}",
                report.studio_id, report.destination_id
            )
        };
        let outcome = match report.state.as_str() {
            "live" => {
                let cleared = [key("retrying"), key("failed")];
                let mut result = Ok(());
                for k in &cleared {
                    result = result.and(service.cache.delete(k).await);
                }
                result
            }
            state @ ("retrying" | "failed") => {
                match service
                    .cache
                    .set_if_absent(&key(state), "1", TROUBLE_REMEMBERED)
                    .await
                {
                    Ok(true) => {
                        let owner = match service.store.studio(&report.studio_id).await {
                            Ok(row) => row.owner_id,
                            Err(_) => continue,
                        };
                        tracing::warn!(studio = %report.studio_id, destination = %report.destination_id,
                            state, error = report.last_error.as_deref().unwrap_or(""), "destination in trouble");
                        service.events.send(buildstream_service::telemetry::event(
                            "destination.failed",
                            serde_json::json!({
                                "studio_id": report.studio_id,
                                "owner_id": owner,
                                "destination_id": report.destination_id,
                                "state": state,
                                "error": report.last_error,
                                "origin_id": origin,
                            }),
                        ));
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(err) => Err(err),
                }
            }
            _ => Ok(()),
        };
        if let Err(err) = outcome {
            tracing::warn!(error = %err, "destination trouble not recorded");
        }
    }
}

/// What a node learns from its heartbeat.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HeartbeatAnswer {
    /// Origins: the studios recorded as live on this origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    broadcasts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct NodeFilter {
    role: Role,
}

#[utoipa::path(
    get,
    path = "/internal/v1/nodes",
    tag = "internal",
    security(("node" = [])),
    params(("role" = Role, Query, description = "edge or origin")),
    responses(
        (status = 200, description = "Nodes heard from lately", body = Vec<NodeInfo>),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
)]
async fn list_nodes(
    State(service): State<StudioService>,
    _node: NodeAuth,
    ApiQuery(filter): ApiQuery<NodeFilter>,
) -> Result<Json<Vec<NodeInfo>>, ApiError> {
    Ok(Json(service.nodes.live(filter.role).await?))
}
