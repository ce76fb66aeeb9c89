//! Media nodes (edges and origins) known to the control plane. Nodes
//! register and then heartbeat; one silent for longer than [`NODE_TTL`]
//! leaves the pool.

use std::time::Duration;

use buildstream_backend::SharedCache;
use buildstream_service::ApiError;
use serde::{Deserialize, Serialize};

use crate::presence::now_ms;

/// How long a node stays in the pool after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(30);

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Terminates ingest, publishes sources to the mesh.
    Edge,
    /// Composes and restreams.
    Origin,
}

/// A node's registration, sent with every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Stable node id.
    pub id: String,
    /// Edge or origin.
    pub role: Role,
    /// Region name, e.g. `eu-west`.
    #[serde(default)]
    pub region: String,
    /// Base URL of the node's HTTP API (origins: where broadcasts are driven).
    #[serde(default)]
    pub api_url: String,
    /// `host:port` of the node's mesh (QUIC) endpoint.
    #[serde(default)]
    pub mesh_addr: String,
    /// SHA-256 fingerprint of the node's mesh certificate, pinned by peers.
    #[serde(default)]
    pub fingerprint: String,
    /// Edges: RTMP ingest URL encoders publish to (`rtmp://host:port/live`).
    #[serde(default)]
    pub ingest_url: String,
    /// Origins: where each destination of their broadcasts stands, sent
    /// with the heartbeat and not kept in the registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationReport>,
}

/// One destination of a broadcast, as its origin reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DestinationReport {
    /// The studio broadcasting.
    pub studio_id: String,
    /// The destination.
    pub destination_id: String,
    /// `connecting`, `live`, `retrying`, `failed` or `stopped`.
    pub state: String,
    /// The last error, when there was one.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The registry, in the shared cache: a node heartbeating to one instance
/// of the studio service is known to all of them.
#[derive(Clone)]
pub struct Nodes {
    cache: SharedCache,
}

/// A registration as stored: what the node said and when.
#[derive(Serialize, Deserialize)]
struct Seen {
    info: NodeInfo,
    at_ms: u64,
}

/// The cache map of every node.
const NODES_KEY: &str = "nodes";

/// How long the map lives without any heartbeat: the whole deployment
/// silent for a day.
const REGISTRY_TTL: Duration = Duration::from_secs(24 * 3600);

impl Nodes {
    /// A registry kept in `cache`.
    pub fn new(cache: SharedCache) -> Self {
        Self { cache }
    }

    /// Registers or refreshes a node.
    pub async fn heartbeat(&self, info: NodeInfo) -> Result<(), ApiError> {
        if self.find(&info.id).await?.is_none() {
            tracing::info!(node = %info.id, role = ?info.role, region = %info.region, "node registered");
        }
        let id = info.id.clone();
        let seen = Seen {
            info: NodeInfo {
                destinations: Vec::new(),
                ..info
            },
            at_ms: now_ms(),
        };
        let value =
            serde_json::to_string(&seen).map_err(|err| ApiError::internal(err.to_string()))?;
        self.cache
            .map_set(NODES_KEY, &id, &value, REGISTRY_TTL)
            .await?;
        Ok(())
    }

    /// Live nodes of a role, ordered by id.
    pub async fn live(&self, role: Role) -> Result<Vec<NodeInfo>, ApiError> {
        let mut live: Vec<NodeInfo> = self
            .all_live()
            .await?
            .into_iter()
            .filter(|info| info.role == role)
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    /// A live node by id.
    pub async fn find(&self, id: &str) -> Result<Option<NodeInfo>, ApiError> {
        Ok(self
            .all_live()
            .await?
            .into_iter()
            .find(|info| info.id == id))
    }

    async fn all_live(&self) -> Result<Vec<NodeInfo>, ApiError> {
        let now = now_ms();
        let mut live = Vec::new();
        for (id, value) in self.cache.map_all(NODES_KEY).await? {
            match serde_json::from_str::<Seen>(&value) {
                Ok(seen) if now.saturating_sub(seen.at_ms) < NODE_TTL.as_millis() as u64 => {
                    live.push(seen.info);
                }
                // Silent too long (or written by another version): out of
                // the pool, and out of the map.
                _ => self.cache.map_delete(NODES_KEY, &id).await?,
            }
        }
        Ok(live)
    }
}
