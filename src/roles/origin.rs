//! The origin role: composes live studios and restreams them, driven by the
//! control plane over its internal API, reading sources from edges over
//! the mesh.

use anyhow::Context;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use buildstream_mesh::{AllowedPeers, MeshClient, MeshServer, NodeIdentity, Tracks};
use buildstream_origin::{Broadcasts, OriginConfig};
use buildstream_service::http::Limits;
use buildstream_service::{ApiError, NodeToken};
use buildstream_studio::{DestinationReport, NodeInfo, Role};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::control_link::{Assignment, ControlLink};
use super::mesh_sources::MeshSources;
use crate::config::{Secrets, Settings};

/// Runs an origin until `cancel` fires; every broadcast ends cleanly first.
pub async fn run(
    settings: Settings,
    secrets: Secrets,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let origin = &settings.origin;
    let identity_dir = settings.data_dir.join("nodes").join(&origin.id);
    let identity = NodeIdentity::load_or_create(&identity_dir)
        .context("loading the origin's mesh identity")?;
    let client = MeshClient::new(&identity).context("binding the mesh client")?;
    let control = ControlLink::new(&origin.control_url, &secrets.node_token)?;

    let sources = MeshSources::new(client, control.clone());
    let edges = tokio::spawn(sources.clone().follow_edges(cancel.clone()));

    // The program goes to the mesh too: edges relay it to WebRTC players.
    // Only registered edges may read it.
    let program = Tracks::new();
    let edges_allowed = AllowedPeers::default();
    let mesh = MeshServer::bind_allowing(
        origin.mesh_listen,
        &identity,
        program.clone(),
        edges_allowed.clone(),
    )
    .with_context(|| {
        format!(
            "binding the origin's mesh endpoint on {}",
            origin.mesh_listen
        )
    })?;
    let mesh_addr = origin
        .mesh_public
        .clone()
        .unwrap_or_else(|| mesh.local_addr().to_string());
    let mesh_task = tokio::spawn(mesh.run(cancel.clone()));
    let edge_follower = tokio::spawn(super::follow_peers(
        control.clone(),
        Role::Edge,
        edges_allowed,
        cancel.clone(),
    ));

    let config = OriginConfig {
        extra_ca_file: origin.extra_ca_file.clone(),
        program_tracks: Some(program),
        allow_private_destinations: settings.allow_private_destinations.unwrap_or(false),
    };
    let broadcasts = Broadcasts::new(sources, config).context("starting the origin")?;
    let token = NodeToken::new(&secrets.node_token);
    // Metrics are outside the node token: what a Prometheus on the
    // internal network scrapes, like every other node's.
    let app = buildstream_origin::broadcast::router(broadcasts.clone())
        .layer(axum::middleware::from_fn_with_state(
            token,
            require_node_token,
        ))
        .route(
            "/metrics",
            axum::routing::get(buildstream_service::telemetry::metrics_endpoint),
        );

    let listener = TcpListener::bind(origin.listen)
        .await
        .with_context(|| format!("binding origin API on {}", origin.listen))?;
    let info = NodeInfo {
        id: origin.id.clone(),
        role: Role::Origin,
        region: settings.region.clone(),
        api_url: match &settings.origin.public_api_url {
            Some(url) => url.clone(),
            None => format!(
                "http://{}",
                listener.local_addr().context("reading the bound address")?
            ),
        },
        mesh_addr,
        fingerprint: identity.fingerprint().to_string(),
        ingest_url: String::new(),
        destinations: Vec::new(),
    };
    tracing::info!(node = %info.id, api = %info.api_url, "origin started");
    let (assigned, assignments) = tokio::sync::watch::channel(None);
    let reporter = {
        let broadcasts = broadcasts.clone();
        Box::new(move || destination_reports(&broadcasts))
            as super::control_link::DestinationReporter
    };
    let heartbeat =
        tokio::spawn(control.heartbeat(info, Some(assigned), Some(reporter), cancel.clone()));
    let reconciler = tokio::spawn(reconcile(broadcasts.clone(), assignments, cancel.clone()));

    let served = buildstream_service::http::serve(
        listener,
        app,
        Limits::default(),
        cancel.clone().cancelled_owned(),
    )
    .await
    .context("serving origin API");
    broadcasts.stop_all().await;
    let _ = heartbeat.await;
    let _ = reconciler.await;
    let _ = edges.await;
    let _ = edge_follower.await;
    let _ = mesh_task.await;
    tracing::info!("origin stopped");
    served
}

/// Keeps the live broadcasts to what the control plane has on record: a
/// start it gave up on or a stop that never arrived ends here.
async fn reconcile(
    broadcasts: Broadcasts,
    mut assignments: tokio::sync::watch::Receiver<Option<Assignment>>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = assignments.changed() => if changed.is_err() { return },
        }
        let assignment = assignments.borrow_and_update().clone();
        if let Some(assignment) = assignment {
            broadcasts
                .reconcile(&assignment.studios, assignment.asked_at)
                .await;
        }
    }
}

/// Only the control plane, holding the node token, may drive broadcasts.
async fn require_node_token(
    State(token): State<NodeToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = buildstream_service::auth::bearer_token(request.headers());
    match presented {
        Some(presented) if token.accepts(presented) => next.run(request).await,
        _ => ApiError::unauthorized("node token required").into_response(),
    }
}

/// Every destination of every broadcast here, for the control plane; also
/// sets the `origin_broadcasts` and `origin_destinations{state}` gauges.
fn destination_reports(broadcasts: &Broadcasts) -> Vec<DestinationReport> {
    let mut reports = Vec::new();
    let mut live = 0usize;
    for studio in broadcasts.studios() {
        let Ok(status) = broadcasts.status(&studio) else {
            continue;
        };
        live += 1;
        for destination in status.destinations {
            reports.push(DestinationReport {
                studio_id: status.studio.clone(),
                destination_id: destination.id,
                state: destination.state.to_owned(),
                last_error: destination.last_error,
            });
        }
    }
    metrics::gauge!("origin_broadcasts").set(live as f64);
    for state in ["connecting", "live", "retrying", "failed", "stopped"] {
        let count = reports.iter().filter(|r| r.state == state).count();
        metrics::gauge!("origin_destinations", "state" => state).set(count as f64);
    }
    reports
}
