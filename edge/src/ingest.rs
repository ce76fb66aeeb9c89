//! RTMP ingest: a listener that accepts encoders and publishes what they
//! send as mesh tracks.
//!
//! Each connection is one task that owns its socket and a sans-IO
//! [`Session`]; it reads with an idle timeout, asks the [`KeyAuthority`]
//! about the stream key, and feeds media to a [`SourcePublisher`]. Tasks are
//! reaped by the accept loop's `JoinSet` and stopped through one
//! cancellation token.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use buildstream_mesh::Tracks;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::authority::{AuthorizeError, KeyAuthority, KeyFingerprint, SourceGrant};
use crate::session::{Refusal, Session, SessionError, SessionEvent};
use crate::source::{SourceError, SourcePublisher};

const READ_BUFFER_SIZE: usize = 64 * 1024;
/// After a failed accept (out of descriptors, say), wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a refused publisher gets to read its status before the close.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// How the ingest treats its connections.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// A connection that sends nothing for this long is dropped; this also
    /// ends publishers that vanished without closing their connection.
    pub idle_timeout: Duration,
    /// A key check that takes longer is treated as the authority being
    /// unavailable, and the publish is refused.
    pub authorize_timeout: Duration,
    /// How often a live publisher's key is checked again: a key rotated or
    /// a source deleted since the publish started ends the connection at
    /// the next check. A check the authority cannot answer changes nothing.
    pub recheck_interval: Duration,
    /// A connection that has not started publishing this long after it
    /// opened is dropped: encoders publish within a second or two.
    pub publish_timeout: Duration,
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            authorize_timeout: Duration::from_secs(5),
            recheck_interval: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(15),
            max_connections: 512,
        }
    }
}

/// Why the ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The listening socket could not be bound.
    #[error("binding the RTMP listener to {addr} failed")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// A running RTMP ingest. Encoders publish to
/// `rtmp://{local_addr}/{app}/{stream_key}`; each accepted key publishes the
/// tracks `studio/{studio}/{source}/video` and `.../audio` into the
/// [`Tracks`] given to [`RtmpIngest::bind`].
///
/// Dropping the handle stops the ingest; [`RtmpIngest::shutdown`] also
/// waits until every connection has closed.
pub struct RtmpIngest {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl RtmpIngest {
    /// Listens on `addr` with the default [`IngestConfig`]. Must be called
    /// within a Tokio runtime, on which the ingest's tasks then run.
    pub async fn bind<A: KeyAuthority>(
        addr: SocketAddr,
        authority: A,
        tracks: Tracks,
    ) -> Result<Self, IngestError> {
        Self::bind_with_config(addr, authority, tracks, IngestConfig::default()).await
    }

    /// Listens on `addr` with the given configuration.
    pub async fn bind_with_config<A: KeyAuthority>(
        addr: SocketAddr,
        authority: A,
        tracks: Tracks,
        config: IngestConfig,
    ) -> Result<Self, IngestError> {
        let bind_error = |source| IngestError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            authority,
            tracks,
            config,
            shutdown: shutdown.clone(),
            publishers: Mutex::new(HashMap::new()),
        });
        let span = tracing::info_span!("rtmp_ingest", addr = %local_addr);
        let server = tokio::spawn(accept_loop(listener, shared).instrument(span));
        tracing::info!(addr = %local_addr, "rtmp ingest listening");
        Ok(Self {
            local_addr,
            shutdown,
            server: Some(server),
        })
    }

    /// The address the ingest listens on (with the port the OS picked, if
    /// `bind` was given port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection (ending their tracks) and
    /// waits until all connection tasks are gone.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            if let Err(error) = server.await {
                tracing::error!(%error, "rtmp ingest task failed");
            }
        }
    }
}

impl Drop for RtmpIngest {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What every connection task of one ingest shares.
struct Shared<A> {
    authority: A,
    tracks: Tracks,
    config: IngestConfig,
    shutdown: CancellationToken,
    /// The connection publishing each source, so that an encoder that
    /// reconnects ends its stale predecessor at once rather than at its
    /// idle timeout.
    publishers: Mutex<HashMap<SourceGrant, (u64, CancellationToken)>>,
}

async fn accept_loop<A: KeyAuthority>(listener: TcpListener, shared: Arc<Shared<A>>) {
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    let mut turned_away = 0u64;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= shared.config.max_connections {
                        // Closed at once: an encoder retries, and a flood of
                        // sockets costs nothing but the accept.
                        drop(stream);
                        turned_away += 1;
                        if turned_away.is_power_of_two() {
                            tracing::warn!(max = shared.config.max_connections, turned_away,
                                "connection limit reached; closing new connections");
                        }
                        continue;
                    }
                    next_id += 1;
                    let span = tracing::info_span!("rtmp", conn = next_id, peer = %Redacted(peer));
                    let connection = Connection::new(next_id, stream, shared.clone());
                    connections.spawn(connection.run().instrument(span));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::select! {
                        () = shared.shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
            Some(joined) = connections.join_next() => reap(joined),
        }
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        reap(joined);
    }
    tracing::info!("rtmp ingest stopped");
}

fn reap(joined: Result<(), JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            tracing::error!(%error, "rtmp connection task panicked");
        }
    }
}

/// Why a connection ended.
enum End {
    Shutdown,
    TakenOver,
    PeerClosed,
    Idle,
    Refused,
    KeyRevoked,
    NoPublish,
    Io(io::Error),
    Protocol(SessionError),
    Source(SourceError),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Shutdown => f.write_str("ingest shutting down"),
            End::TakenOver => f.write_str("a new connection took over the source"),
            End::PeerClosed => f.write_str("peer closed the connection"),
            End::Idle => f.write_str("idle timeout"),
            End::Refused => f.write_str("request refused"),
            End::KeyRevoked => f.write_str("stream key no longer valid"),
            End::NoPublish => f.write_str("no publish request in time"),
            End::Io(error) => write!(f, "i/o error: {error}"),
            End::Protocol(error) => write!(f, "protocol error: {error}"),
            End::Source(error) => write!(f, "{error}"),
        }
    }
}

struct Connection<A> {
    id: u64,
    stream: TcpStream,
    shared: Arc<Shared<A>>,
    /// Cancelled on shutdown, or when another connection takes the source over.
    stop: CancellationToken,
    session: Session,
    publishing: Option<Publishing>,
}

struct Publishing {
    grant: SourceGrant,
    source: SourcePublisher,
    /// Kept to check again while live.
    stream_key: String,
}

/// A key check running beside the connection's reads.
type Recheck = Pin<Box<dyn Future<Output = Result<SourceGrant, AuthorizeError>> + Send>>;

/// What woke a connection.
enum Wake {
    Read(Result<io::Result<usize>, tokio::time::error::Elapsed>),
    RecheckDue,
    Rechecked(Result<SourceGrant, AuthorizeError>),
}

impl<A: KeyAuthority> Connection<A> {
    fn new(id: u64, stream: TcpStream, shared: Arc<Shared<A>>) -> Self {
        // Responses are a few small messages; send each at once.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        Self {
            id,
            stream,
            stop: shared.shutdown.child_token(),
            shared,
            session: Session::new(),
            publishing: None,
        }
    }

    async fn run(mut self) {
        tracing::debug!("connection opened");
        let end = self.serve().await;
        if let Some(publishing) = self.publishing.take() {
            self.unregister(&publishing.grant);
        }
        if matches!(end, End::Refused | End::KeyRevoked) {
            self.linger().await;
        }
        tracing::info!(reason = %end, "connection closed");
    }

    async fn serve(&mut self) -> End {
        let mut buffer = vec![0; READ_BUFFER_SIZE];
        let interval = self.shared.config.recheck_interval;
        let mut next_check = tokio::time::Instant::now() + interval;
        let mut recheck: Option<Recheck> = None;
        let publish_deadline = tokio::time::Instant::now() + self.shared.config.publish_timeout;
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            if self.session.is_closing() {
                return End::Refused;
            }
            let live = self.publishing.is_some();
            let wake = tokio::select! {
                () = self.stop.cancelled() => return self.stop_reason(),
                read = timeout(self.shared.config.idle_timeout, self.stream.read(&mut buffer)) => Wake::Read(read),
                () = tokio::time::sleep_until(next_check), if live && recheck.is_none() => Wake::RecheckDue,
                () = tokio::time::sleep_until(publish_deadline), if !live && !self.session.has_published() => return End::NoPublish,
                verdict = async { recheck.as_mut().expect("guarded").await }, if recheck.is_some() => Wake::Rechecked(verdict),
            };
            let read = match wake {
                Wake::Read(read) => read,
                Wake::RecheckDue => {
                    recheck = self.recheck();
                    continue;
                }
                Wake::Rechecked(verdict) => {
                    recheck = None;
                    next_check = tokio::time::Instant::now() + interval;
                    if let Err(end) = self.judge_recheck(verdict) {
                        // Tell the encoder why before closing; a refusal
                        // the flush cannot deliver changes nothing.
                        if self.session.revoke_publish().is_ok() {
                            let _ = self.flush().await;
                        }
                        return end;
                    }
                    continue;
                }
            };
            let count = match read {
                Err(_) => return End::Idle,
                Ok(Ok(0)) => return End::PeerClosed,
                Ok(Ok(count)) => count,
                Ok(Err(error)) => return End::Io(error),
            };
            if let Err(error) = self.session.handle_input(&buffer[..count]) {
                return End::Protocol(error);
            }
            while let Some(event) = self.session.poll_event() {
                if let Err(end) = self.handle_event(event).await {
                    return end;
                }
            }
        }
    }

    async fn handle_event(&mut self, event: SessionEvent) -> Result<(), End> {
        match event {
            SessionEvent::PublishRequested { app, stream_key } => {
                self.authorize(&app, &stream_key).await
            }
            SessionEvent::Media(media) => match &mut self.publishing {
                Some(publishing) => publishing.source.push(media).map_err(End::Source),
                None => Ok(()),
            },
            SessionEvent::PublishFinished => {
                if let Some(publishing) = self.publishing.take() {
                    self.unregister(&publishing.grant);
                    tracing::info!("publish finished");
                }
                Ok(())
            }
        }
    }

    /// Starts checking the live publisher's key again.
    fn recheck(&self) -> Option<Recheck> {
        let key = self.publishing.as_ref()?.stream_key.clone();
        let shared = self.shared.clone();
        Some(Box::pin(async move {
            let check = shared.authority.authorize(&key);
            timeout(shared.config.authorize_timeout, check)
                .await
                .unwrap_or_else(|_| {
                    Err(AuthorizeError::Unavailable(
                        "key check timed out".to_owned(),
                    ))
                })
        }))
    }

    /// Ends the connection if the key no longer grants what it publishes.
    fn judge_recheck(&self, verdict: Result<SourceGrant, AuthorizeError>) -> Result<(), End> {
        let Some(publishing) = &self.publishing else {
            return Ok(());
        };
        let key = KeyFingerprint::of(&publishing.stream_key);
        match verdict {
            Ok(grant) if grant == publishing.grant => Ok(()),
            Ok(_) | Err(AuthorizeError::Refused) => {
                tracing::warn!(%key, studio = %publishing.grant.studio, source = %publishing.grant.source,
                    "stream key revoked while live; disconnecting the publisher");
                Err(End::KeyRevoked)
            }
            Err(AuthorizeError::Unavailable(reason)) => {
                tracing::debug!(%key, %reason, "live key not rechecked; keeping the publisher");
                Ok(())
            }
        }
    }

    async fn authorize(&mut self, app: &str, stream_key: &str) -> Result<(), End> {
        let key = KeyFingerprint::of(stream_key);
        let check = self.shared.authority.authorize(stream_key);
        let verdict = tokio::select! {
            () = self.stop.cancelled() => return Err(self.stop_reason()),
            verdict = timeout(self.shared.config.authorize_timeout, check) => verdict,
        };
        let verdict = verdict.unwrap_or_else(|_| {
            Err(AuthorizeError::Unavailable(
                "key check timed out".to_owned(),
            ))
        });

        let refusal = match verdict {
            Ok(grant) => match SourcePublisher::new(self.shared.tracks.clone(), &grant) {
                Ok(source) => {
                    if self.session.accept_publish().map_err(End::Protocol)? {
                        tracing::info!(%key, app, studio = %grant.studio, source = %grant.source, "publishing");
                        self.register(&grant);
                        self.publishing = Some(Publishing {
                            grant,
                            source,
                            stream_key: stream_key.to_owned(),
                        });
                    }
                    return Ok(());
                }
                Err(error) => {
                    tracing::error!(%key, %error, "key authority granted an unusable source");
                    Refusal::Unavailable
                }
            },
            Err(AuthorizeError::Refused) => {
                tracing::warn!(%key, app, "stream key refused");
                Refusal::BadKey
            }
            Err(AuthorizeError::Unavailable(reason)) => {
                tracing::warn!(%key, %reason, "stream key could not be checked");
                Refusal::Unavailable
            }
        };
        self.session.refuse_publish(refusal).map_err(End::Protocol)
    }

    async fn flush(&mut self) -> Result<(), End> {
        while let Some(bytes) = self.session.take_transmit() {
            let write = timeout(
                self.shared.config.idle_timeout,
                self.stream.write_all(&bytes),
            );
            let written = tokio::select! {
                () = self.stop.cancelled() => return Err(self.stop_reason()),
                written = write => written,
            };
            match written {
                // A peer that reads nothing for the idle timeout is as gone
                // as one that sends nothing.
                Err(_) => return Err(End::Idle),
                Ok(Err(error)) => return Err(End::Io(error)),
                Ok(Ok(())) => {}
            }
        }
        Ok(())
    }

    /// Closes our side after a refusal and waits briefly for the peer's.
    /// Dropping a socket with unread input resets it, and a reset can
    /// destroy the refusal before the encoder reads it.
    async fn linger(&mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let (stream, stop) = (&mut self.stream, &self.stop);
        let mut sink = [0; 4096];
        let drain = async {
            while let Ok(count) = stream.read(&mut sink).await {
                if count == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => {}
            _ = timeout(REFUSAL_LINGER, drain) => {}
        }
    }

    fn stop_reason(&self) -> End {
        if self.shared.shutdown.is_cancelled() {
            End::Shutdown
        } else {
            End::TakenOver
        }
    }

    fn register(&self, grant: &SourceGrant) {
        let previous =
            lock(&self.shared.publishers).insert(grant.clone(), (self.id, self.stop.clone()));
        if let Some((previous, stop)) = previous {
            if previous != self.id {
                tracing::info!(previous_conn = previous, "taking the source over");
                stop.cancel();
            }
        }
    }

    fn unregister(&self, grant: &SourceGrant) {
        let mut publishers = lock(&self.shared.publishers);
        if publishers.get(grant).is_some_and(|(id, _)| *id == self.id) {
            publishers.remove(grant);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map stays consistent whatever panicked while holding it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A peer address as logs may show it: enough to tell networks apart,
/// not enough to identify a person.
struct Redacted(SocketAddr);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.ip() {
            IpAddr::V4(ip) => {
                let [a, b, ..] = ip.octets();
                write!(f, "{a}.{b}.x.x")
            }
            IpAddr::V6(ip) => {
                let [a, b, ..] = ip.segments();
                write!(f, "{a:x}:{b:x}:x:x:x:x:x:x")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_peer_addresses() {
        let v4: SocketAddr = "203.0.113.77:50000".parse().unwrap();
        assert_eq!(Redacted(v4).to_string(), "203.0.x.x");
        let v6: SocketAddr = "[2001:db8::1234]:1935".parse().unwrap();
        assert_eq!(Redacted(v6).to_string(), "2001:db8:x:x:x:x:x:x");
    }
}
