//! `buildstream dev`: the control plane (the gateway in front of every
//! service), one edge and one origin in one process. They still talk as
//! separate nodes would: HTTP to the gateway and from it to the services,
//! QUIC between edge and origin.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Secrets, Settings};

/// Runs every role until `cancel` fires or one of them fails.
pub async fn run(
    mut settings: Settings,
    secrets: Secrets,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // In one process the nodes find the control plane where it listens, and
    // sources are told to publish to this edge, whatever the ports.
    let control_url = format!("http://{}", settings.gateway.listen);
    settings.edge.control_url.clone_from(&control_url);
    settings.origin.control_url = control_url;
    settings.control.default_ingest_url = settings.edge_ingest_url(settings.edge.rtmp_listen);
    settings.control.default_edge_http_url = settings.edge_http_url(settings.edge.http_listen);
    // A studio on this machine streams wherever its user points it.
    settings.allow_private_destinations.get_or_insert(true);

    let mut roles = JoinSet::new();
    roles.spawn(super::control::run_all(
        settings.clone(),
        secrets.clone(),
        cancel.clone(),
    ));
    roles.spawn(super::edge::run(
        settings.clone(),
        secrets.clone(),
        cancel.clone(),
    ));
    roles.spawn(super::origin::run(settings, secrets, cancel.clone()));

    // The first role to end, for whatever reason, ends the others: a dev
    // studio without its control plane or edge is no use.
    let first = roles.join_next().await;
    let asked_to_stop = cancel.is_cancelled();
    cancel.cancel();
    let mut result = flatten(first);
    while let Some(next) = roles.join_next().await {
        if let Err(err) = flatten(Some(next)) {
            tracing::warn!(error = %err, "role failed while stopping");
        }
    }
    if result.is_ok() && !asked_to_stop {
        result = Err(anyhow::anyhow!("a role stopped unexpectedly"));
    }
    result
}

fn flatten(
    joined: Option<Result<anyhow::Result<()>, tokio::task::JoinError>>,
) -> anyhow::Result<()> {
    match joined {
        Some(Ok(result)) => result,
        Some(Err(err)) => Err(anyhow::anyhow!("role task failed: {err}")),
        None => Ok(()),
    }
}
