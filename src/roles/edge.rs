//! The edge role: RTMP ingest publishing into the node's tracks, the mesh
//! endpoint origins subscribe at, and registration with the control plane.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use buildstream_edge::webrtc::{Network, WebrtcConfig, WebrtcEdge};
use buildstream_edge::{AuthorizeError, KeyAuthority, RtmpIngest, SourceGrant};
use buildstream_mesh::{AllowedPeers, CertFingerprint, MeshServer, NodeIdentity, Tracks};
use buildstream_service::http::Limits;
use buildstream_studio::{NodeInfo, Role};
use tokio_util::sync::CancellationToken;

use super::control_link::{ControlLink, KeyCheckError};
use crate::config::{Secrets, Settings};

/// Stream keys checked by the control plane.
#[derive(Clone)]
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

    // Only origins the control plane knows may read this edge's sources.
    let origins = AllowedPeers::default();
    let mesh =
        MeshServer::bind_allowing(edge.mesh_listen, &identity, tracks.clone(), origins.clone())
            .with_context(|| format!("binding mesh endpoint on {}", edge.mesh_listen))?;
    let mesh_addr = edge
        .mesh_public
        .clone()
        .unwrap_or_else(|| mesh.local_addr().to_string());
    let mesh_task = tokio::spawn(mesh.run(cancel.clone()));

    let control = ControlLink::new(&edge.control_url, &secrets.node_token)?;
    let follower = tokio::spawn(follow_origins(control.clone(), origins, cancel.clone()));
    let ingest = RtmpIngest::bind(
        edge.rtmp_listen,
        ControlKeys(control.clone()),
        tracks.clone(),
    )
    .await
    .with_context(|| format!("binding RTMP ingest on {}", edge.rtmp_listen))?;

    let remote_networks = edge
        .webrtc_remote_networks
        .iter()
        .map(|n| n.parse::<Network>())
        .collect::<Result<Vec<_>, _>>()
        .context("reading edge.webrtc_remote_networks")?;
    let webrtc = WebrtcEdge::bind(
        WebrtcConfig {
            udp_listen: edge.webrtc_listen,
            announce: edge.webrtc_announce.clone(),
            remote_networks,
        },
        tracks,
        cancel.clone(),
    )
    .await
    .context("starting WebRTC")?;
    let http_listener = tokio::net::TcpListener::bind(edge.http_listen)
        .await
        .with_context(|| format!("binding edge HTTP on {}", edge.http_listen))?;
    let http_url = settings.edge_http_url(http_listener.local_addr()?);
    let app = buildstream_edge::whip::router(webrtc.clone(), ControlKeys(control.clone()));
    let http = tokio::spawn(buildstream_service::http::serve(
        http_listener,
        app,
        Limits::default(),
        cancel.clone().cancelled_owned(),
    ));

    let info = NodeInfo {
        id: edge.id.clone(),
        role: Role::Edge,
        region: settings.region.clone(),
        api_url: http_url,
        mesh_addr,
        fingerprint: identity.fingerprint().to_string(),
        ingest_url: settings.edge_ingest_url(ingest.local_addr()),
    };
    tracing::info!(node = %info.id, mesh = %info.mesh_addr, ingest = %info.ingest_url, "edge started");
    let heartbeat = tokio::spawn(control.heartbeat(info, None, cancel.clone()));

    cancel.cancelled().await;
    ingest.shutdown().await;
    let _ = heartbeat.await;
    let _ = http.await;
    let _ = follower.await;
    let _ = mesh_task.await;
    tracing::info!("edge stopped");
    Ok(())
}

/// How often the edge relearns which origins may subscribe.
const ORIGINS_REFRESH: Duration = Duration::from_secs(5);
/// How soon after a refused origin the list is fetched again, and the least
/// time between two such fetches.
const ORIGINS_ON_DEMAND: Duration = Duration::from_millis(500);

/// Keeps `allowed` equal to the fingerprints of the origins registered at
/// the control plane: every few seconds, and soon after an unlisted client
/// was refused (an origin that registered since the last look).
async fn follow_origins(control: ControlLink, allowed: AllowedPeers, cancel: CancellationToken) {
    loop {
        match control.nodes(Role::Origin).await {
            Ok(nodes) => {
                let pins: Vec<CertFingerprint> = nodes
                    .iter()
                    .filter_map(|node| node.fingerprint.parse().ok())
                    .collect();
                allowed.replace(pins);
            }
            Err(err) => tracing::debug!(error = %err, "origin list not refreshed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(ORIGINS_REFRESH) => {}
            _ = allowed.refused() => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(ORIGINS_ON_DEMAND) => {}
                }
            }
        }
    }
}
