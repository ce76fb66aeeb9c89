//! The serving side of the mesh: accepts mesh sessions and answers SUBSCRIBE
//! from the node's [`Tracks`] registry.
//!
//! Each accepted SUBSCRIBE gets its own [`TrackConsumer`] from the registry,
//! so it starts at the current group (a keyframe) and then follows live. The
//! frames are cut into MoQ groups and objects by [`crate::object`] and handed
//! to moq-transport, which owns the QUIC streams.

use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use moq_transport::serve::{self, ServeError, Subgroup, SubgroupWriter, SubgroupsWriter};
use moq_transport::session::{Session, Subscribed, Transport};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{CLOSE_NORMAL, CLOSE_SETUP_FAILED};
use crate::identity::{CertFingerprint, NodeIdentity};
use crate::object::TrackEncoder;
use crate::tls::{self, AllowedPeers, TlsError};
use crate::{TrackConsumer, TrackName, Tracks};

/// How long a connected peer may take to complete the MoQ SETUP exchange.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Publisher priority of every group.
// TODO: moq-transport 0.17 hands this byte to quinn unchanged, where a higher
// number is sent first, while MoQ defines a lower number as more important;
// until that is settled upstream audio cannot be favoured over video without
// lying on the wire, so under congestion both share the link evenly.
const GROUP_PRIORITY: u8 = 128;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS configuration could not be built from the identity.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("could not bind mesh endpoint: {0}")]
    Bind(#[source] std::io::Error),
}

/// A bound mesh server. Nothing is accepted until [`MeshServer::run`] runs.
pub struct MeshServer {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    tracks: Tracks,
}

impl MeshServer {
    /// Binds a UDP socket on `addr` (port 0 picks a free port) and prepares
    /// to serve `tracks` to any client, presenting `identity`.
    pub fn bind(
        addr: SocketAddr,
        identity: &NodeIdentity,
        tracks: Tracks,
    ) -> Result<Self, ServerError> {
        Self::bind_with(addr, identity, tracks, None)
    }

    /// Like [`MeshServer::bind`], but only clients presenting a certificate
    /// on `allowed_clients` complete the handshake; the list may change
    /// while the server runs.
    pub fn bind_allowing(
        addr: SocketAddr,
        identity: &NodeIdentity,
        tracks: Tracks,
        allowed_clients: AllowedPeers,
    ) -> Result<Self, ServerError> {
        Self::bind_with(addr, identity, tracks, Some(allowed_clients))
    }

    fn bind_with(
        addr: SocketAddr,
        identity: &NodeIdentity,
        tracks: Tracks,
        allowed_clients: Option<AllowedPeers>,
    ) -> Result<Self, ServerError> {
        let config = tls::server_config(identity, allowed_clients)?;
        let endpoint = quinn::Endpoint::server(config, addr).map_err(ServerError::Bind)?;
        let local_addr = endpoint.local_addr().map_err(ServerError::Bind)?;
        tracing::info!(port = local_addr.port(), fingerprint = %identity.fingerprint(), "mesh server bound");
        Ok(Self {
            endpoint,
            local_addr,
            tracks,
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts and serves sessions until `cancel` fires, then closes every
    /// session and waits for their tasks.
    pub async fn run(self, cancel: CancellationToken) {
        let sessions_cancel = cancel.child_token();
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                incoming = self.endpoint.accept() => {
                    // `None` means the endpoint was closed under us.
                    let Some(incoming) = incoming else { break };
                    sessions.spawn(accept_session(
                        incoming,
                        self.tracks.clone(),
                        sessions_cancel.clone(),
                        self.local_addr,
                    ));
                }
                Some(joined) = sessions.join_next() => log_join(joined),
            }
        }

        sessions_cancel.cancel();
        while let Some(joined) = sessions.join_next().await {
            log_join(joined);
        }
        self.endpoint.close(CLOSE_NORMAL.into(), b"shutting down");
        self.endpoint.wait_idle().await;
        tracing::info!(port = self.local_addr.port(), "mesh server stopped");
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined {
        if err.is_panic() {
            tracing::error!(error = %err, "mesh session task panicked");
        }
    }
}

async fn accept_session(
    incoming: quinn::Incoming,
    tracks: Tracks,
    cancel: CancellationToken,
    local_addr: SocketAddr,
) {
    let connection = tokio::select! {
        _ = cancel.cancelled() => return,
        connection = incoming => match connection {
            Ok(connection) => connection,
            Err(err) => {
                // Wrong pins and unknown clients end here; they are the
                // peer's problem, not this node's.
                tracing::debug!(error = %err, "mesh handshake failed");
                return;
            }
        },
    };
    let span = tracing::info_span!(
        "mesh_session",
        connection = connection.stable_id(),
        peer = %peer_label(&connection),
    );
    serve_session(connection, tracks, cancel, local_addr)
        .instrument(span)
        .await;
}

/// The client's certificate fingerprint if it showed one; addresses are kept
/// out of logs.
fn peer_label(connection: &quinn::Connection) -> String {
    connection
        .peer_identity()
        .and_then(|identity| {
            identity
                .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|chain| {
            chain
                .first()
                .map(|cert| CertFingerprint::of(cert).to_string())
        })
        .unwrap_or_else(|| "anonymous".to_owned())
}

async fn serve_session(
    connection: quinn::Connection,
    tracks: Tracks,
    cancel: CancellationToken,
    local_addr: SocketAddr,
) {
    let setup = async {
        let url = crate::client::session_url(local_addr);
        let transport = moq_transport::session::transport::quinn::Session::raw(
            connection.clone(),
            url,
            moq_transport::session::transport::quinn::proto::ConnectResponse::default(),
        );
        tokio::time::timeout(
            SETUP_TIMEOUT,
            Session::accept(transport.into(), None, Transport::RawQuic),
        )
        .await
    };
    let accepted = tokio::select! {
        _ = cancel.cancelled() => return,
        accepted = setup => accepted,
    };
    let (session, publisher) = match accepted {
        Ok(Ok((session, Some(publisher), _subscriber))) => (session, publisher),
        Ok(Ok((_, None, _))) => {
            tracing::warn!("mesh session has no publisher role");
            return;
        }
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "mesh setup failed");
            connection.close(CLOSE_SETUP_FAILED.into(), b"setup failed");
            return;
        }
        Err(_) => {
            tracing::debug!("mesh setup timed out");
            connection.close(CLOSE_SETUP_FAILED.into(), b"setup timed out");
            return;
        }
    };
    tracing::info!("mesh session started");

    let mut publisher = publisher;
    let mut subscriptions = JoinSet::new();
    let mut run = pin!(session.run());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            ended = &mut run => {
                match ended {
                    Ok(()) => tracing::debug!("mesh session closed"),
                    Err(err) if err.is_graceful_close() => tracing::debug!("mesh session closed"),
                    Err(err) => tracing::debug!(error = %err, "mesh session failed"),
                }
                break;
            }
            Some(subscribed) = publisher.subscribed() => {
                subscriptions.spawn(
                    serve_subscription(subscribed, tracks.clone()).in_current_span(),
                );
            }
            Some(joined) = subscriptions.join_next() => log_join(joined),
        }
    }

    subscriptions.shutdown().await;
    connection.close(CLOSE_NORMAL.into(), b"");
    tracing::info!("mesh session ended");
}

/// Answers one SUBSCRIBE: refuses it if the track is not live, otherwise
/// forwards the track until it ends or the subscriber leaves.
async fn serve_subscription(subscribed: Subscribed, tracks: Tracks) {
    let name = match requested_name(&subscribed) {
        Some(name) => name,
        None => {
            tracing::debug!(namespace = %subscribed.info.track_namespace, "subscribe for a name outside the mesh scheme");
            let _ = subscribed.close(ServeError::NotFound);
            return;
        }
    };
    let span = tracing::debug_span!("subscription", track = %name, request = subscribed.info.id);
    async move {
        let Some(consumer) = tracks.subscribe(&name) else {
            tracing::debug!("subscribe for a track that is not live");
            let _ = subscribed.close(ServeError::NotFound);
            return;
        };

        // A MoQ track per subscription: the registry already keeps the
        // current group for late joiners, so nothing is shared here.
        let (writer, reader) = serve::Track::new(
            subscribed.info.track_namespace.clone(),
            subscribed.info.track_name.clone(),
        )
        .produce();
        let subgroups = match writer.subgroups() {
            Ok(subgroups) => subgroups,
            Err(err) => {
                let _ = subscribed.close(err);
                return;
            }
        };
        tracing::debug!("subscription accepted");

        let mut serve = pin!(subscribed.serve(reader));
        let forward = pin!(forward_frames(consumer, subgroups));
        let result = tokio::select! {
            // Polled first so the subscription is accepted against an empty
            // track, before any group exists.
            biased;
            result = &mut serve => result,
            // The track ended: let moq-transport deliver what is queued and
            // send PUBLISH_DONE.
            () = forward => serve.await,
        };
        match result {
            Ok(()) => tracing::debug!("subscription ended"),
            Err(err) => tracing::debug!(error = %err, "subscription failed"),
        }
    }
    .instrument(span)
    .await
}

/// The registry name of a SUBSCRIBE, if it follows the mesh naming scheme.
fn requested_name(subscribed: &Subscribed) -> Option<TrackName> {
    let fields: Vec<&str> = subscribed
        .info
        .track_namespace
        .fields
        .iter()
        .map(|field| std::str::from_utf8(&field.value).ok())
        .collect::<Option<_>>()?;
    let track = std::str::from_utf8(subscribed.info.track_name.as_bytes()).ok()?;
    match fields.as_slice() {
        ["studio", studio, source] => TrackName::new(studio, source, track).ok(),
        _ => None,
    }
}

/// Copies frames from the registry into MoQ groups until the track ends or
/// the subscriber is gone.
async fn forward_frames(mut consumer: TrackConsumer, mut subgroups: SubgroupsWriter) {
    let mut encoder = TrackEncoder::new();
    let mut group: Option<SubgroupWriter> = None;
    let mut next_group_id = 0u64;

    while let Some(frame) = consumer.next().await {
        let object = encoder.push(&frame);
        if object.starts_group || group.is_none() {
            // Finishing the previous group FINs its stream once sent.
            if let Some(previous) = group.take() {
                let _ = previous.finish();
            }
            let created = subgroups.create(Subgroup {
                group_id: next_group_id,
                subgroup_id: 0,
                priority: GROUP_PRIORITY,
            });
            match created {
                Ok(writer) => group = Some(writer),
                Err(err) => {
                    tracing::debug!(error = %err, "subscriber gone");
                    return;
                }
            }
            next_group_id += 1;
        }
        let Some(writer) = group.as_mut() else {
            // Just created above when missing.
            return;
        };
        if let Err(err) = writer.write(object.payload) {
            tracing::debug!(error = %err, "subscriber gone");
            return;
        }
        tracing::trace!(
            group = next_group_id - 1,
            ts = frame.timestamp_us,
            "object sent"
        );
    }

    // The registry track ended (publisher gone or taken over): finish the
    // last group, then the track, which ends the subscription.
    if let Some(last) = group.take() {
        let _ = last.finish();
    }
    drop(subgroups);
}
