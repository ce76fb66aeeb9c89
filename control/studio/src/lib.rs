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
mod room;
mod scene;
mod store;

use axum::extract::FromRef;
use axum::Router;
use buildstream_service::{NodeToken, TokenKeys};
use sqlx::SqlitePool;

pub use nodes::{NodeInfo, Nodes, Role};
pub use scene::{Background, Banner, Layout, Scene};

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
    rooms: room::Rooms,
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
    /// A service over an opened database; runs its migrations.
    pub async fn new(
        pool: SqlitePool,
        keys: TokenKeys,
        node_token: NodeToken,
        settings: StudioSettings,
    ) -> Result<Self, sqlx::migrate::MigrateError> {
        Ok(Self {
            store: store::Store::open(pool).await?,
            nodes: Nodes::default(),
            keys,
            origins: origin::OriginClient::new(node_token.clone()),
            rooms: room::Rooms::default(),
            node_token,
            settings,
        })
    }

    /// The node registry, shared with whatever else needs it in-process.
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// The service's routes: `/api/v1/studios…` and `/internal/v1/…`.
    pub fn router(self) -> Router {
        api::routes().merge(room::routes()).with_state(self)
    }
}
