//! The origin's view of the mesh: subscribes to a source's tracks on
//! whichever edge has them, over pinned QUIC sessions kept per edge.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buildstream_mesh::{
    CertFingerprint, MeshClient, MeshError, MeshSession, TrackConsumer, TrackName,
};
use buildstream_origin::source::BoxFuture;
use buildstream_origin::TrackSource;
use buildstream_studio::{NodeInfo, Role};
use tokio_util::sync::CancellationToken;

use super::control_link::ControlLink;

/// How often the list of edges is refreshed from the control plane.
const EDGE_REFRESH: Duration = Duration::from_secs(3);

/// How soon a failed refresh is retried (the control plane may be starting).
const EDGE_RETRY: Duration = Duration::from_millis(300);

/// How long connecting to an edge or subscribing there may take before the
/// compositor is told "not live" and shows the placeholder.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

/// An edge as the mesh dials it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    id: String,
    /// `host:port`; a name is resolved at each connect.
    addr: String,
    pin: CertFingerprint,
}

/// Tracks from every edge the control plane knows.
pub struct MeshSources {
    client: MeshClient,
    control: ControlLink,
    edges: Mutex<Vec<Edge>>,
    sessions: tokio::sync::Mutex<HashMap<String, (Edge, Arc<MeshSession>)>>,
}

impl MeshSources {
    /// Sources over `client`, learning edges from `control`; call
    /// [`MeshSources::follow_edges`] to keep the list current.
    pub fn new(client: MeshClient, control: ControlLink) -> Arc<Self> {
        Arc::new(Self {
            client,
            control,
            edges: Mutex::new(Vec::new()),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Keeps the edge list in step with the control plane until `cancel`.
    pub async fn follow_edges(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let pause = if self.refresh_edges().await {
                EDGE_REFRESH
            } else {
                EDGE_RETRY
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Fetches the edge list; false if the control plane did not answer.
    async fn refresh_edges(&self) -> bool {
        match self.control.nodes(Role::Edge).await {
            Ok(nodes) => {
                let edges: Vec<Edge> = nodes.iter().filter_map(edge_of).collect();
                *self.edges.lock().unwrap_or_else(|p| p.into_inner()) = edges;
                true
            }
            Err(err) => {
                tracing::debug!(error = %err, "edge list not refreshed");
                false
            }
        }
    }

    async fn session(&self, edge: &Edge) -> Result<Arc<MeshSession>, MeshError> {
        let mut sessions = self.sessions.lock().await;
        if let Some((known, session)) = sessions.get(&edge.id) {
            if known == edge {
                return Ok(session.clone());
            }
        }
        let addr = resolve(&edge.addr).await.ok_or(MeshError::Closed)?;
        let session = Arc::new(self.client.connect(addr, edge.pin).await?);
        tracing::info!(edge = %edge.id, "mesh session to edge opened");
        sessions.insert(edge.id.clone(), (edge.clone(), session.clone()));
        Ok(session)
    }

    async fn forget(&self, edge: &Edge) {
        self.sessions.lock().await.remove(&edge.id);
    }

    async fn subscribe_anywhere(&self, name: &TrackName) -> Option<TrackConsumer> {
        let mut edges = self.edges.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if edges.is_empty() {
            // An edge may have registered since the last refresh; asking now
            // spares a broadcast started right after it the refresh period.
            self.refresh_edges().await;
            edges = self.edges.lock().unwrap_or_else(|p| p.into_inner()).clone();
        }
        for edge in edges {
            let attempt = async {
                let session = self.session(&edge).await?;
                session.subscribe(name).await
            };
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, attempt).await {
                Ok(Ok(consumer)) => return Some(consumer),
                Ok(Err(MeshError::TrackNotFound(_))) => {}
                Ok(Err(err)) => {
                    tracing::debug!(edge = %edge.id, track = %name, error = %err, "mesh subscribe failed");
                    self.forget(&edge).await;
                }
                Err(_) => {
                    tracing::debug!(edge = %edge.id, track = %name, "mesh subscribe timed out");
                    self.forget(&edge).await;
                }
            }
        }
        None
    }
}

impl TrackSource for MeshSources {
    fn subscribe(&self, name: &TrackName) -> BoxFuture<'_, Option<TrackConsumer>> {
        let name = name.clone();
        Box::pin(async move { self.subscribe_anywhere(&name).await })
    }
}

fn edge_of(node: &NodeInfo) -> Option<Edge> {
    let pin = node.fingerprint.parse().ok()?;
    (!node.mesh_addr.is_empty()).then(|| Edge {
        id: node.id.clone(),
        addr: node.mesh_addr.clone(),
        pin,
    })
}

/// Resolves a mesh address, `host:port` or a socket address.
pub(crate) async fn resolve(addr: &str) -> Option<SocketAddr> {
    if let Ok(addr) = addr.parse() {
        return Some(addr);
    }
    tokio::net::lookup_host(addr).await.ok()?.next()
}
