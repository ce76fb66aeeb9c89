//! Media nodes (edges and origins) known to the control plane. Nodes
//! register and then heartbeat; one silent for longer than [`NODE_TTL`]
//! leaves the pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long a node stays in the pool after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(30);

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Terminates ingest, publishes sources to the mesh.
    Edge,
    /// Composes and restreams.
    Origin,
}

/// A node's registration, sent with every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// The registry.
#[derive(Clone, Default)]
pub struct Nodes {
    nodes: Arc<Mutex<HashMap<String, (NodeInfo, Instant)>>>,
}

impl Nodes {
    /// Registers or refreshes a node.
    pub fn heartbeat(&self, info: NodeInfo) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if !nodes.contains_key(&info.id) {
            tracing::info!(node = %info.id, role = ?info.role, region = %info.region, "node registered");
        }
        nodes.insert(info.id.clone(), (info, Instant::now()));
    }

    /// Live nodes of a role, ordered by id.
    pub fn live(&self, role: Role) -> Vec<NodeInfo> {
        let now = Instant::now();
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.retain(|_, (_, seen)| now.duration_since(*seen) < NODE_TTL);
        let mut live: Vec<_> = nodes
            .values()
            .filter(|(info, _)| info.role == role)
            .map(|(info, _)| info.clone())
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        live
    }

    /// A live node by id.
    pub fn find(&self, id: &str) -> Option<NodeInfo> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .get(id)
            .filter(|(_, seen)| seen.elapsed() < NODE_TTL)
            .map(|(info, _)| info.clone())
    }
}
