//! The edge role: RTMP ingest publishing into the node's tracks, the mesh
//! endpoint origins subscribe at, and registration with the control plane.

use std::future::Future;

use anyhow::Context;
use buildstream_edge::{AuthorizeError, KeyAuthority, RtmpIngest, SourceGrant};
use buildstream_mesh::{MeshServer, NodeIdentity, Tracks};
use buildstream_studio::{NodeInfo, Role};
use tokio_util::sync::CancellationToken;

use super::control_link::{ControlLink, KeyCheckError};
use crate::config::{Secrets, Settings};

/// Stream keys checked by the control plane.
struct ControlKeys(ControlLink);

impl KeyAuthority for ControlKeys {
    fn authorize(
        &self,
        stream_key: &str,
    ) -> impl Future<Output = Result<SourceGrant, AuthorizeError>> + Send {
        let link = self.0.clone();
        let key = stream_key.to_owned();
        async move {
            match link.check_stream_key(&key).await {
                Ok(grant) => Ok(SourceGrant {
                    studio: grant.studio,
                    source: grant.source,
                }),
                Err(KeyCheckError::Refused) => Err(AuthorizeError::Refused),
                Err(KeyCheckError::Unavailable(why)) => Err(AuthorizeError::Unavailable(why)),
            }
        }
    }
}

/// Runs an edge until `cancel` fires.
pub async fn run(
    settings: Settings,
    secrets: Secrets,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let edge = &settings.edge;
    let identity_dir = settings.data_dir.join("nodes").join(&edge.id);
    let identity =
        NodeIdentity::load_or_create(&identity_dir).context("loading the edge's mesh identity")?;
    let tracks = Tracks::new();

    let mesh = MeshServer::bind(edge.mesh_listen, &identity, tracks.clone())
        .with_context(|| format!("binding mesh endpoint on {}", edge.mesh_listen))?;
    let mesh_addr = edge
        .mesh_public
        .clone()
        .unwrap_or_else(|| mesh.local_addr().to_string());
    let mesh_task = tokio::spawn(mesh.run(cancel.clone()));

    let control = ControlLink::new(&edge.control_url, &secrets.node_token)?;
    let ingest = RtmpIngest::bind(edge.rtmp_listen, ControlKeys(control.clone()), tracks)
        .await
        .with_context(|| format!("binding RTMP ingest on {}", edge.rtmp_listen))?;

    let info = NodeInfo {
        id: edge.id.clone(),
        role: Role::Edge,
        region: settings.region.clone(),
        api_url: String::new(),
        mesh_addr,
        fingerprint: identity.fingerprint().to_string(),
        ingest_url: settings.edge_ingest_url(),
    };
    tracing::info!(node = %info.id, mesh = %info.mesh_addr, ingest = %info.ingest_url, "edge started");
    let heartbeat = tokio::spawn(control.heartbeat(info, cancel.clone()));

    cancel.cancelled().await;
    ingest.shutdown().await;
    let _ = heartbeat.await;
    let _ = mesh_task.await;
    tracing::info!("edge stopped");
    Ok(())
}
