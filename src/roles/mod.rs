//! Each role's start-up: what it binds, what it registers, how it stops.

pub mod control;
pub mod control_link;
pub mod dev;
pub mod edge;
pub mod mesh_sources;
pub mod origin;
pub mod program_relay;
pub mod web;

use std::time::Duration;

use buildstream_mesh::{AllowedPeers, CertFingerprint};
use buildstream_studio::Role;
use tokio_util::sync::CancellationToken;

use control_link::ControlLink;

/// How often a node relearns which peers may subscribe at its mesh port.
const PEERS_REFRESH: Duration = Duration::from_secs(5);
/// How soon after a refused peer the list is fetched again, and the least
/// time between two such fetches.
const PEERS_ON_DEMAND: Duration = Duration::from_millis(500);

/// Keeps `allowed` equal to the fingerprints of the nodes of `role`
/// registered at the control plane: every few seconds, and soon after an
/// unlisted client was refused (a node that registered since the last look).
/// Edges admit origins (which read sources); origins admit edges (which
/// relay the program to players).
pub async fn follow_peers(
    control: ControlLink,
    role: Role,
    allowed: AllowedPeers,
    cancel: CancellationToken,
) {
    loop {
        match control.nodes(role).await {
            Ok(nodes) => {
                let pins: Vec<CertFingerprint> = nodes
                    .iter()
                    .filter_map(|node| node.fingerprint.parse().ok())
                    .collect();
                allowed.replace(pins);
            }
            Err(err) => tracing::debug!(error = %err, ?role, "peer list not refreshed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PEERS_REFRESH) => {}
            _ = allowed.refused() => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(PEERS_ON_DEMAND) => {}
                }
            }
        }
    }
}
