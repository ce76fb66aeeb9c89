//! The subscribing side of the mesh: connects to another node and receives
//! its tracks.
//!
//! A [`MeshSession`] hands out the same [`TrackConsumer`] type as the local
//! registry. Behind it, the session publishes what arrives into a registry of
//! its own, so several local readers of one remote track share a single
//! SUBSCRIBE, and a reader that joins late still starts at a keyframe.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use moq_transport::reexports::url::Url;
use moq_transport::serve::{self, ServeError, SubgroupReader, TrackReaderMode};
use moq_transport::session::{Session, Subscribe, Subscriber, Transport};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::group_order::{GroupOrder, Next};
use crate::identity::{CertFingerprint, NodeIdentity};
use crate::object::TrackDecoder;
use crate::tls::{self, TlsError};
use crate::{TrackConsumer, TrackName, TrackProducer, Tracks};

/// How long the MoQ SETUP exchange may take once QUIC is up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// QUIC application close codes, from MoQ's session termination codes:
/// NO_ERROR, and INTERNAL_ERROR for a session that never got going.
pub(crate) const CLOSE_NORMAL: u32 = 0x0;
pub(crate) const CLOSE_SETUP_FAILED: u32 = 0x1;

/// First pause before repeating a SUBSCRIBE the remote refused as a
/// duplicate; it doubles up to [`DUPLICATE_RETRY_MAX`], about 0.3 s in all.
const DUPLICATE_RETRY_DELAY: Duration = Duration::from_millis(5);
const DUPLICATE_RETRY_MAX: Duration = Duration::from_millis(160);

/// Why a mesh operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MeshError {
    /// The UDP socket could not be bound.
    #[error("could not bind mesh endpoint: {0}")]
    Bind(#[source] Arc<std::io::Error>),
    /// The TLS configuration could not be built from the identity.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The connection could not be started (bad address, endpoint closed).
    #[error("could not start mesh connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed or closed; a certificate that does not
    /// match the pin ends up here.
    #[error("mesh connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The MoQ session failed.
    #[error("mesh session: {0}")]
    Session(#[from] moq_transport::session::SessionError),
    /// The peer did not finish MoQ SETUP in time.
    #[error("mesh setup timed out")]
    SetupTimeout,
    /// The session was closed locally.
    #[error("mesh session closed")]
    Closed,
    /// The remote node has no live track of that name.
    #[error("track {0} not found on the remote node")]
    TrackNotFound(TrackName),
    /// The remote node refused the subscription for another reason.
    #[error("subscribe to {track} refused: {source}")]
    Subscribe {
        /// The track asked for.
        track: TrackName,
        /// What moq-transport reported.
        source: ServeError,
    },
}

/// The client end of the mesh: one QUIC endpoint from which sessions to
/// other nodes are opened. It presents `identity` to servers that ask.
pub struct MeshClient {
    endpoint: quinn::Endpoint,
    identity: NodeIdentity,
}

impl MeshClient {
    /// A client on an ephemeral port of the unspecified IPv6 address (which
    /// also reaches IPv4 peers), or of IPv4 where IPv6 is unavailable.
    pub fn new(identity: &NodeIdentity) -> Result<Self, MeshError> {
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
        match Self::bind(identity, v6) {
            Err(MeshError::Bind(_)) => {
                Self::bind(identity, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            }
            bound => bound,
        }
    }

    /// A client bound to `addr`.
    pub fn bind(identity: &NodeIdentity, addr: SocketAddr) -> Result<Self, MeshError> {
        let endpoint =
            quinn::Endpoint::client(addr).map_err(|err| MeshError::Bind(Arc::new(err)))?;
        Ok(Self {
            endpoint,
            identity: identity.clone(),
        })
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> Result<SocketAddr, MeshError> {
        self.endpoint
            .local_addr()
            .map_err(|err| MeshError::Bind(Arc::new(err)))
    }

    /// Opens a mesh session to the node at `addr`, accepting only the
    /// certificate with fingerprint `pinned`.
    ///
    /// The session runs on one spawned task, owned by the returned handle:
    /// dropping the [`MeshSession`] or calling [`MeshSession::close`] ends it.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        pinned: CertFingerprint,
    ) -> Result<MeshSession, MeshError> {
        let config = tls::client_config(&self.identity, pinned)?;
        // The pin, not the name, authenticates the server; an IP literal
        // keeps SNI out of the handshake.
        let server_name = addr.ip().to_string();
        let connection = self
            .endpoint
            .connect_with(config, addr, &server_name)?
            .await?;

        let span = tracing::info_span!(
            "mesh_client_session",
            connection = connection.stable_id(),
            server = %pinned,
        );
        let transport = moq_transport::session::transport::quinn::Session::raw(
            connection.clone(),
            session_url(addr),
            moq_transport::session::transport::quinn::proto::ConnectResponse::default(),
        );
        let setup = tokio::time::timeout(
            SETUP_TIMEOUT,
            Session::connect(transport.into(), None, Transport::RawQuic),
        )
        .instrument(span.clone())
        .await;
        let (session, _publisher, subscriber) = match setup {
            Ok(Ok(parts)) => parts,
            Ok(Err(err)) => {
                connection.close(CLOSE_SETUP_FAILED.into(), b"setup failed");
                return Err(err.into());
            }
            Err(_) => {
                connection.close(CLOSE_SETUP_FAILED.into(), b"setup timed out");
                return Err(MeshError::SetupTimeout);
            }
        };
        span.in_scope(|| tracing::info!("mesh session started"));

        let cancel = CancellationToken::new();
        let (receivers_tx, receivers_rx) = mpsc::unbounded_channel();
        let (ended_tx, ended_rx) = watch::channel(None);
        let driver = drive_session(
            session,
            connection.clone(),
            receivers_rx,
            cancel.clone(),
            ended_tx,
        );
        let driver = tokio::spawn(driver.instrument(span));

        Ok(MeshSession {
            subscriber,
            remote: Tracks::new(),
            receivers: receivers_tx,
            subscribing: Mutex::new(HashMap::new()),
            ended: ended_rx,
            driver: Some(driver),
            _cancel_on_drop: cancel.clone().drop_guard(),
            cancel,
        })
    }
}

/// The URL moq-transport carries in SETUP for a raw QUIC session.
pub(crate) fn session_url(addr: SocketAddr) -> Url {
    // A socket address always renders as a valid URL authority (IPv6 in
    // brackets), so parsing cannot fail.
    Url::parse(&format!("moqt://{addr}/")).expect("a socket address forms a valid URL")
}

/// A live session with one remote node.
pub struct MeshSession {
    subscriber: Subscriber,
    /// What arrives from the remote node, republished for local readers.
    remote: Tracks,
    receivers: mpsc::UnboundedSender<Receiver>,
    /// One lock per name, so concurrent first subscriptions to a track send
    /// a single SUBSCRIBE (moq-transport refuses a duplicate).
    subscribing: Mutex<HashMap<TrackName, Arc<tokio::sync::Mutex<()>>>>,
    ended: watch::Receiver<Option<MeshError>>,
    driver: Option<tokio::task::JoinHandle<()>>,
    cancel: CancellationToken,
    _cancel_on_drop: DropGuard,
}

impl MeshSession {
    /// Subscribes to a track of the remote node. The consumer starts at the
    /// remote's current group (a keyframe), follows live, and ends when the
    /// remote track ends (its publisher left or was taken over) or the
    /// session closes. Subscribe again to follow a new publisher.
    pub async fn subscribe(&self, name: &TrackName) -> Result<TrackConsumer, MeshError> {
        let name_lock = self.name_lock(name);
        let _guard = name_lock.lock().await;

        // Someone here already receives this track: share it.
        if let Some(consumer) = self.remote.subscribe(name) {
            return Ok(consumer);
        }
        if let Some(reason) = self.ended.borrow().clone() {
            return Err(reason);
        }

        let mut retry_delay = DUPLICATE_RETRY_DELAY;
        let (subscribe, reader) = loop {
            match self.subscribe_remote(name).await {
                // The remote may still be tearing down our previous
                // subscription to this name (a takeover a moment ago); it
                // refuses a second one until then.
                Err(MeshError::Subscribe {
                    source: ServeError::Duplicate,
                    ..
                }) if retry_delay <= DUPLICATE_RETRY_MAX => {
                    tracing::debug!(track = %name, "remote still holds the previous subscription");
                    tokio::time::sleep(retry_delay).await;
                    retry_delay *= 2;
                }
                result => break result?,
            }
        };
        tracing::debug!(track = %name, "remote track subscribed");

        let producer = self.remote.publish(name.clone());
        let Some(consumer) = self.remote.subscribe(name) else {
            // Unreachable: `producer` keeps the name live and the name lock
            // keeps anyone else from replacing it.
            return Err(MeshError::Closed);
        };
        let receiver = Receiver {
            subscribe,
            reader,
            producer,
            name_lock: name_lock.clone(),
        };
        self.receivers
            .send(receiver)
            .map_err(|_| self.ended.borrow().clone().unwrap_or(MeshError::Closed))?;
        Ok(consumer)
    }

    /// Names of the remote tracks this session currently receives, sorted.
    /// A track leaves the list when it ends or its last local reader is
    /// dropped (which also unsubscribes from the remote node).
    pub fn receiving(&self) -> Vec<TrackName> {
        self.remote.names()
    }

    /// Resolves when the session has ended, with the reason:
    /// [`MeshError::Closed`] after [`MeshSession::close`], otherwise what
    /// ended the connection.
    pub async fn closed(&self) -> MeshError {
        let mut ended = self.ended.clone();
        let reason = ended.wait_for(Option::is_some).await;
        reason
            .ok()
            .and_then(|reason| reason.clone())
            .unwrap_or(MeshError::Closed)
    }

    /// Closes the session and waits for its task. Every consumer it handed
    /// out ends.
    pub async fn close(mut self) {
        self.cancel.cancel();
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
    }

    /// Sends one SUBSCRIBE and waits for the answer.
    async fn subscribe_remote(
        &self,
        name: &TrackName,
    ) -> Result<(Subscribe, serve::TrackReader), MeshError> {
        let (writer, reader) = serve::Track::new(
            moq_transport::coding::TrackNamespace::from_utf8_path(&name.namespace()),
            name.track(),
        )
        .produce();
        let mut subscriber = self.subscriber.clone();
        let mut ended = self.ended.clone();
        let subscribe = tokio::select! {
            subscribe = subscriber.subscribe_open(writer) => subscribe,
            // The request cannot be answered once the session is gone.
            reason = ended.wait_for(Option::is_some) => {
                return Err(reason.ok().and_then(|r| r.clone()).unwrap_or(MeshError::Closed));
            }
        };
        match subscribe {
            Ok(subscribe) => Ok((subscribe, reader)),
            Err(ServeError::NotFound | ServeError::NotFoundWithId(..)) => {
                Err(MeshError::TrackNotFound(name.clone()))
            }
            Err(source) => Err(MeshError::Subscribe {
                track: name.clone(),
                source,
            }),
        }
    }

    fn name_lock(&self, name: &TrackName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.subscribing);
        // Forget locks nobody holds, so the map does not grow with every
        // name ever subscribed.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(name.clone()).or_default().clone()
    }
}

/// One remote subscription on its way into the session's registry.
struct Receiver {
    /// Dropping it unsubscribes.
    subscribe: Subscribe,
    reader: serve::TrackReader,
    producer: TrackProducer,
    /// The name's lock in [`MeshSession::subscribe`].
    name_lock: Arc<tokio::sync::Mutex<()>>,
}

/// The session task: runs moq-transport and one receiver task per remote
/// track until the connection ends or the handle closes it.
async fn drive_session(
    session: Session,
    connection: quinn::Connection,
    mut new_receivers: mpsc::UnboundedReceiver<Receiver>,
    cancel: CancellationToken,
    ended: watch::Sender<Option<MeshError>>,
) {
    let mut receivers = JoinSet::new();
    let mut run = pin!(session.run());
    let reason = loop {
        tokio::select! {
            _ = cancel.cancelled() => break MeshError::Closed,
            result = &mut run => {
                break match (result, connection.close_reason()) {
                    (_, Some(reason)) => MeshError::Connection(reason),
                    (Err(err), None) => MeshError::Session(err),
                    (Ok(()), None) => MeshError::Closed,
                };
            }
            Some(receiver) = new_receivers.recv() => {
                receivers.spawn(receive_track(receiver).in_current_span());
            }
            Some(joined) = receivers.join_next() => {
                if let Err(err) = joined {
                    if err.is_panic() {
                        tracing::error!(error = %err, "mesh receiver task panicked");
                    }
                }
            }
        }
    };

    connection.close(CLOSE_NORMAL.into(), b"");
    // Aborting the receivers drops their producers, which ends every
    // consumer handed out by this session.
    receivers.shutdown().await;
    match &reason {
        MeshError::Closed => tracing::info!("mesh session ended"),
        reason => tracing::info!(reason = %reason, "mesh session ended"),
    }
    ended.send_replace(Some(reason));
}

/// Moves one remote track's objects into the session's registry, in group
/// order, until the remote track ends or nobody reads it any more.
async fn receive_track(receiver: Receiver) {
    let Receiver {
        subscribe,
        reader,
        producer,
        name_lock,
    } = receiver;
    let span = tracing::debug_span!("remote_track", track = %producer.name());
    let _guard = async {
        let mut copy = pin!(copy_groups(&reader, &producer));
        loop {
            tokio::select! {
                ended = &mut copy => {
                    match ended {
                        Ok(()) => tracing::debug!("remote track ended"),
                        Err(err) => tracing::debug!(error = %err, "remote track ended"),
                    }
                    return name_lock.lock().await;
                }
                () = producer.unobserved() => {
                    // `subscribe` hands out shared consumers under this lock,
                    // so once it is held nobody can join a track about to
                    // end; if someone joined just before, keep going.
                    let guard = name_lock.lock().await;
                    if !producer.is_observed() {
                        tracing::debug!("remote track unobserved, unsubscribing");
                        return guard;
                    }
                }
            }
        }
    }
    .instrument(span)
    .await;

    // Release moq-transport's one-subscription-per-name slot before the
    // consumers see the end, so that a reader resubscribing at once is not
    // refused as a duplicate.
    drop(subscribe);
    drop(producer);
}

/// Decodes the remote track's objects into `producer`, group after group,
/// until the remote track ends.
async fn copy_groups(
    reader: &serve::TrackReader,
    producer: &TrackProducer,
) -> Result<(), ServeError> {
    let mut subgroups = match reader.mode().await? {
        TrackReaderMode::Subgroups(subgroups) => subgroups,
        // The serving side only ever uses subgroups.
        _ => return Err(ServeError::Mode),
    };
    let mut order = GroupOrder::new();
    let mut current: Option<SubgroupReader> = None;
    let mut decoder = TrackDecoder::new();
    let mut ended = Ok(());

    loop {
        let deadline = if current.is_some() {
            None
        } else {
            match order.next(Instant::now()) {
                Next::Group(group) => {
                    current = Some(group);
                    continue;
                }
                Next::Wait(deadline) => deadline,
                Next::Done => return ended,
            }
        };

        tokio::select! {
            // Draining the current group first keeps latency low.
            biased;
            object = next_in(&mut current), if current.is_some() => match object {
                Ok(Some(object)) => match decoder.decode(object) {
                    Ok(frame) => {
                        tracing::trace!(ts = frame.timestamp_us, key = frame.keyframe, "object received");
                        if producer.write(frame).is_err() {
                            // Only this task publishes the name; nothing can
                            // supersede it, but stop cleanly if that changes.
                            return Ok(());
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "undecodable mesh object dropped"),
                },
                Ok(None) => current = None,
                Err(err) => {
                    // A reset group loses its remaining frames; the next
                    // group starts at a keyframe, so decoding recovers.
                    tracing::debug!(error = %err, "group ended early");
                    current = None;
                }
            },
            group = subgroups.next(), if !order.is_ended() => match group {
                Ok(Some(group)) => {
                    let id = group.group_id;
                    if !order.admit(id, group) {
                        tracing::debug!(group = id, "stale group skipped");
                    }
                }
                Ok(None) => order.end(),
                Err(err) => {
                    ended = Err(err);
                    order.end();
                }
            },
            // Past the deadline `order.next` gives up on the missing group.
            () = sleep_until(deadline), if deadline.is_some() => {}
            // Not reached: without a current group, `order.next` either
            // returned `Done` or the track is still open.
            else => return ended,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn next_in(current: &mut Option<SubgroupReader>) -> Result<Option<bytes::Bytes>, ServeError> {
    match current {
        Some(group) => group.read_next().await,
        None => std::future::pending().await,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
