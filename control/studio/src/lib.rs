//! The studio service: studios, their sources, destinations and scene, and
//! go-live steering (which origin composes a studio, which edge takes its
//! sources).
//!
//! Users reach it under `/api/v1/studios`; media nodes under `/internal/v1`
//! with the node token: edges to authorise a stream key, every node to
//! register and heartbeat.

#![warn(missing_docs)]

mod api;
mod nodes;
mod origin;
mod presence;
mod room;
mod scene;
mod search;
mod store;

use axum::extract::FromRef;
use axum::Router;
use buildstream_backend::search::SharedIndex;
use buildstream_backend::{Database, DbError, EventSender, SharedCache};
use buildstream_service::openapi::BearerSchemes;
use buildstream_service::{NodeToken, TokenKeys};

pub use nodes::{DestinationReport, NodeInfo, Nodes, Role};
pub use scene::{Background, Banner, Layout, Scene};
pub use search::IndexFeed;
pub use store::MIGRATIONS;

/// Settings of the studio service.
#[derive(Debug, Clone)]
pub struct StudioSettings {
    /// RTMP ingest URL given to new sources when no edge is registered
    /// (`rtmp://127.0.0.1:1935/live` in `dev`).
    pub default_ingest_url: String,
    /// Edge HTTP base (WHIP, WebRTC) given when no edge is registered.
    pub default_edge_http_url: String,
    /// Whether destination URLs may name loopback, private or other
    /// internal addresses. Origins enforce the same rule after every
    /// lookup; this only refuses what the URL itself shows.
    pub allow_private_destinations: bool,
}

/// Shared state of the studio service's handlers.
#[derive(Clone)]
pub struct StudioService {
    store: store::Store,
    nodes: Nodes,
    keys: TokenKeys,
    node_token: NodeToken,
    origins: origin::OriginClient,
    rooms: presence::Rooms,
    cache: SharedCache,
    events: EventSender,
    index: SharedIndex,
    settings: StudioSettings,
}

impl FromRef<StudioService> for TokenKeys {
    fn from_ref(service: &StudioService) -> TokenKeys {
        service.keys.clone()
    }
}

impl FromRef<StudioService> for NodeToken {
    fn from_ref(service: &StudioService) -> NodeToken {
        service.node_token.clone()
    }
}

impl StudioService {
    /// A service over an opened database, which it migrates, the shared
    /// cache where node registrations and rooms live, and the sender of
    /// its events (`studio.created`, `studio.updated`, `studio.deleted`,
    /// `broadcast.started`, `broadcast.stopped`), and the search index
    /// that [`StudioService::run_indexer`] keeps following them.
    pub async fn new(
        db: Database,
        cache: SharedCache,
        events: EventSender,
        index: SharedIndex,
        keys: TokenKeys,
        node_token: NodeToken,
        settings: StudioSettings,
    ) -> Result<Self, DbError> {
        Ok(Self {
            store: store::Store::open(db).await?,
            nodes: Nodes::new(cache.clone()),
            keys,
            origins: origin::OriginClient::new(node_token.clone()),
            rooms: presence::Rooms::new(cache.clone()),
            cache,
            events,
            index,
            node_token,
            settings,
        })
    }

    /// Whether the database and the cache answer: the service is ready
    /// only when both do.
    pub async fn ready(&self) -> Result<(), String> {
        buildstream_backend::ready(self.store.database(), self.cache.as_ref()).await
    }

    /// The service's routes: `/api/v1/studios…` and `/internal/v1/…`.
    pub fn router(self) -> Router {
        api::routes()
            .merge(room::routes())
            .merge(search::routes())
            .with_state(self)
            .merge(buildstream_service::openapi::route(openapi()))
    }
}

/// The studio service's API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut document = ApiDoc::openapi();
    document.merge(api::Paths::openapi());
    document.merge(room::Paths::openapi());
    document.merge(search::Paths::openapi());
    document
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "BuildStream studio service",
        description = "Studios, their sources, destinations, scene and broadcast; the room where hosts and guests meet; studio search; and what edges and origins ask of the control plane."
    ),
    components(schemas(buildstream_service::openapi::ErrorBody)),
    modifiers(&BearerSchemes),
    tags(
        (name = "studios", description = "Studios of the signed-in user"),
        (name = "sources", description = "Encoders (RTMP, WHIP) and participants' media"),
        (name = "destinations", description = "Where the program is restreamed"),
        (name = "scene", description = "Layout, stage, branding"),
        (name = "broadcast", description = "Going live and stopping"),
        (name = "room", description = "Hosts and guests in the browser studio"),
        (name = "search", description = "Studio search"),
        (name = "internal", description = "For edges and origins, with the node token")
    )
)]
struct ApiDoc;
