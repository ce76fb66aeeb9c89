//! The edge role: RTMP ingest publishing into the node's tracks, the mesh
//! endpoint origins subscribe at, and registration with the control plane.

use std::future::Future;

use anyhow::Context;
use std::sync::Arc;

use buildstream_edge::room::{MediaAction, RoomAuthority, RoomRefusal};
use buildstream_edge::webrtc::{Network, WebrtcConfig, WebrtcEdge};
use buildstream_edge::whep::{PlaybackAuthority, PlaybackError};
use buildstream_edge::{AuthorizeError, KeyAuthority, RtmpIngest, SourceGrant};
use buildstream_mesh::{AllowedPeers, MeshClient, MeshServer, NodeIdentity, Tracks};
use buildstream_service::http::Limits;
use buildstream_studio::{NodeInfo, Role};
use tokio_util::sync::CancellationToken;

use super::control_link::{ControlLink, KeyCheckError, MediaCheckError, PlaybackCheckError};
use super::program_relay::ProgramRelay;
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

/// Viewer tokens checked by the control plane; a player let in starts the
/// studio's program relay.
#[derive(Clone)]
struct ControlPlayback {
    control: ControlLink,
    relay: Arc<ProgramRelay>,
}

impl PlaybackAuthority for ControlPlayback {
    fn authorize(
        &self,
        studio: &str,
        token: &str,
    ) -> impl Future<Output = Result<(), PlaybackError>> + Send {
        let this = self.clone();
        let (studio, token) = (studio.to_owned(), token.to_owned());
        async move {
            match this.control.check_playback(&studio, &token).await {
                Ok(()) => {
                    this.relay.ensure(&studio);
                    Ok(())
                }
                Err(PlaybackCheckError::Refused) => {
                    Err(PlaybackError::Token(AuthorizeError::Refused))
                }
                Err(PlaybackCheckError::NotLive) => Err(PlaybackError::NotLive),
                Err(PlaybackCheckError::Unavailable(why)) => {
                    Err(PlaybackError::Token(AuthorizeError::Unavailable(why)))
                }
            }
        }
    }
}

/// Participants' studio tokens checked by the control plane.
#[derive(Clone)]
struct ControlRoom(ControlLink);

impl ControlRoom {
    async fn check(
        &self,
        studio: &str,
        token: &str,
        source: &str,
        action: &str,
    ) -> Result<String, RoomRefusal> {
        self.0
            .check_media(studio, token, source, action)
            .await
            .map_err(|err| match err {
                MediaCheckError::Refused => RoomRefusal::Token,
                MediaCheckError::Forbidden(why) => RoomRefusal::Forbidden(why),
                MediaCheckError::NoSource => RoomRefusal::NoSource,
                MediaCheckError::Unavailable(why) => RoomRefusal::Unavailable(why),
            })
    }
}

impl RoomAuthority for ControlRoom {
    fn identify(
        &self,
        studio: &str,
        token: &str,
    ) -> impl Future<Output = Result<String, RoomRefusal>> + Send {
        let (this, studio, token) = (self.clone(), studio.to_owned(), token.to_owned());
        async move { this.check(&studio, &token, "", "identify").await }
    }

    fn authorize(
        &self,
        studio: &str,
        token: &str,
        source: &str,
        action: MediaAction,
    ) -> impl Future<Output = Result<String, RoomRefusal>> + Send {
        let this = self.clone();
        let (studio, token, source) = (studio.to_owned(), token.to_owned(), source.to_owned());
        let action = match action {
            MediaAction::Publish => "publish",
            MediaAction::Play => "play",
        };
        async move { this.check(&studio, &token, &source, action).await }
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
    let follower = tokio::spawn(super::follow_peers(
        control.clone(),
        Role::Origin,
        origins,
        cancel.clone(),
    ));
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
        tracks.clone(),
        cancel.clone(),
    )
    .await
    .context("starting WebRTC")?;
    let relay = ProgramRelay::new(
        MeshClient::new(&identity).context("binding the edge's mesh client")?,
        control.clone(),
        tracks,
        cancel.clone(),
    );
    let http_listener = tokio::net::TcpListener::bind(edge.http_listen)
        .await
        .with_context(|| format!("binding edge HTTP on {}", edge.http_listen))?;
    let http_url = settings.edge_http_url(http_listener.local_addr()?);
    let app = buildstream_edge::whip::router(webrtc.clone(), ControlKeys(control.clone()))
        .merge(buildstream_edge::whep::router(
            webrtc.clone(),
            ControlPlayback {
                control: control.clone(),
                relay,
            },
        ))
        .merge(buildstream_edge::room::router(
            webrtc.clone(),
            ControlRoom(control.clone()),
        ))
        .route(
            "/metrics",
            axum::routing::get(buildstream_service::telemetry::metrics_endpoint),
        );
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
        destinations: Vec::new(),
    };
    tracing::info!(node = %info.id, mesh = %info.mesh_addr, ingest = %info.ingest_url, "edge started");
    let heartbeat = tokio::spawn(control.heartbeat(info, None, None, cancel.clone()));
    let measured = tokio::spawn(measure_sessions(webrtc.clone(), cancel.clone()));

    cancel.cancelled().await;
    ingest.shutdown().await;
    let _ = heartbeat.await;
    let _ = measured.await;
    let _ = http.await;
    let _ = follower.await;
    let _ = mesh_task.await;
    tracing::info!("edge stopped");
    Ok(())
}

/// Keeps the `edge_webrtc_sessions` gauge current until `cancel` fires.
async fn measure_sessions(webrtc: WebrtcEdge, cancel: CancellationToken) {
    loop {
        metrics::gauge!("edge_webrtc_sessions").set(webrtc.session_count() as f64);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}
