//! One destination's sender: a task that owns the connection, drives the
//! sans-IO [`Publisher`] and reconnects with backoff.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    lock, rfc3339, DestinationId, DestinationState, DestinationStatus, Endpoint, Platform,
};
use crate::program::ProgramPacket;
use crate::rtmp::{ProgramInfo, Publisher, RtmpError};

/// Time allowed for TCP connect, TLS, the RTMP handshake and the publish
/// exchange together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that makes no progress for this long means the link is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed to unpublish and close when stopping.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest pause between attempts.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that stayed live this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Kernel send buffer per destination: about 0.7 s at 6 Mb/s, room for a
/// long round trip without hiding a peer that cannot keep up.
const SEND_BUFFER: u32 = 512 * 1024;
/// Refusals in a row (bad key, bad certificate) before giving up.
const MAX_REFUSALS: u32 = 5;

/// Why one connection attempt ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// TCP connect failed or timed out.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The TLS handshake failed (often: certificate not trusted).
    #[error("tls: {0}")]
    Tls(io::Error),
    /// Reading or writing failed.
    #[error("connection: {0}")]
    Io(io::Error),
    /// The server closed the connection.
    #[error("server closed the connection")]
    Closed,
    /// Setup (handshake, connect, publish) took too long.
    #[error("timed out setting up the stream")]
    SetupTimeout,
    /// A write made no progress.
    #[error("write timed out")]
    WriteTimeout,
    /// The RTMP exchange failed or the server refused.
    #[error(transparent)]
    Rtmp(#[from] RtmpError),
}

impl SendError {
    /// Errors that retrying is unlikely to fix by itself. `reconnecting`
    /// says whether this sender was live before: a server still holding
    /// the stream of a connection that died on our side answers `BadName`
    /// ("already publishing") until it notices, which clears by itself.
    fn is_refusal(&self, reconnecting: bool) -> bool {
        match self {
            SendError::Tls(_) => true,
            SendError::Connect(error) => error.kind() == io::ErrorKind::PermissionDenied,
            SendError::Rtmp(RtmpError::Rejected(code)) => {
                !(reconnecting && code.contains("BadName"))
            }
            _ => false,
        }
    }
}

/// The status a sender publishes and the broadcast reads.
pub(super) struct StatusCell {
    inner: Mutex<StatusInner>,
    bytes_sent: AtomicU64,
    connections: AtomicU64,
    dropped: Arc<AtomicU64>,
}

struct StatusInner {
    state: DestinationState,
    since: SystemTime,
    last_error: Option<String>,
}

impl StatusCell {
    pub fn new(dropped: Arc<AtomicU64>) -> Self {
        Self {
            inner: Mutex::new(StatusInner {
                state: DestinationState::Connecting,
                since: SystemTime::now(),
                last_error: None,
            }),
            bytes_sent: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            dropped,
        }
    }

    pub fn set(&self, state: DestinationState) {
        let mut inner = lock(&self.inner);
        if inner.state == state {
            return;
        }
        match &state {
            DestinationState::Retrying { last_error } => {
                inner.last_error = Some(last_error.clone())
            }
            DestinationState::Failed { reason } => inner.last_error = Some(reason.clone()),
            _ => {}
        }
        inner.state = state;
        inner.since = SystemTime::now();
    }

    pub fn state(&self) -> DestinationState {
        lock(&self.inner).state.clone()
    }

    pub fn snapshot(
        &self,
        id: &DestinationId,
        name: &str,
        platform: Platform,
    ) -> DestinationStatus {
        let inner = lock(&self.inner);
        DestinationStatus {
            id: id.to_string(),
            name: name.to_owned(),
            platform: platform.as_str(),
            state: inner.state.as_str(),
            since: rfc3339(inner.since),
            last_error: inner.last_error.clone(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            packets_dropped: self.dropped.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }
}

/// Exponential backoff with "equal jitter": half the step fixed, half random,
/// so that many senders cut off together do not return in lockstep.
#[derive(Debug)]
pub(super) struct Backoff {
    step: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self { step: BACKOFF_MIN }
    }

    /// The next pause, given a random fraction in `[0, 1)`.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(BACKOFF_MAX);
        step / 2 + step.mul_f64(random.clamp(0.0, 1.0) / 2.0)
    }

    pub fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }
}

/// Everything one sender task owns.
pub(super) struct Sender {
    pub id: DestinationId,
    pub endpoint: Endpoint,
    pub info: ProgramInfo,
    pub tls: Arc<rustls::ClientConfig>,
    /// Whether private and local addresses may be connected to.
    pub allow_private: bool,
    pub status: Arc<StatusCell>,
    pub packets: mpsc::Receiver<ProgramPacket>,
    pub cancel: CancellationToken,
}

/// How a connection ended without error.
enum Ended {
    /// Stopped on request (or the queue was detached).
    Stopped,
}

impl Sender {
    /// Connects, publishes and reconnects until cancelled or given up.
    pub async fn run(mut self) {
        let span = tracing::info_span!(
            "destination",
            id = %self.id,
            host = %self.endpoint.host,
            secure = self.endpoint.secure
        );
        async move {
            let mut backoff = Backoff::new();
            let mut refusals = 0;
            loop {
                self.status.set(DestinationState::Connecting);
                let started = Instant::now();
                let error = match self.connect_and_publish().await {
                    Ok(Ended::Stopped) => break,
                    Err(error) => error,
                };
                if self.status.state() == DestinationState::Live && started.elapsed() > STABLE_AFTER
                {
                    backoff.reset();
                }
                let reconnecting = self.status.connections.load(Ordering::Relaxed) > 0;
                refusals = if error.is_refusal(reconnecting) {
                    refusals + 1
                } else {
                    0
                };
                let message = error.to_string();
                if refusals >= MAX_REFUSALS {
                    tracing::warn!(error = %message, "destination keeps refusing, giving up");
                    self.status
                        .set(DestinationState::Failed { reason: message });
                    // Dropping the queue tells the fan-out to forget us.
                    return;
                }
                tracing::info!(error = %message, "destination attempt failed, retrying");
                self.status.set(DestinationState::Retrying {
                    last_error: message,
                });
                let delay = backoff.next_delay(rand::random_range(0.0..1.0));
                if self.idle(delay).await.is_err() {
                    break;
                }
            }
            self.status.set(DestinationState::Stopped);
            tracing::info!("destination stopped");
        }
        .instrument(span)
        .await
    }

    /// Waits, discarding what the queue delivers meanwhile: stale packets
    /// are no use after a reconnect, which starts at the next keyframe.
    async fn idle(&mut self, delay: Duration) -> Result<(), ()> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(()),
                _ = &mut sleep => return Ok(()),
                packet = self.packets.recv() => {
                    if packet.is_none() {
                        return Err(());
                    }
                }
            }
        }
    }

    async fn connect_and_publish(&mut self) -> Result<Ended, SendError> {
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let connecting = connect(&self.endpoint.host, self.endpoint.port, self.allow_private);
        let tcp = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(Ended::Stopped),
            tcp = tokio::time::timeout_at(deadline, connecting) => tcp
                .map_err(|_| SendError::SetupTimeout)?
                .map_err(SendError::Connect)?,
        };
        if !self.endpoint.secure {
            return self.publish(tcp, deadline).await;
        }
        let name = ServerName::try_from(self.endpoint.host.clone())
            .map_err(|e| SendError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = tokio::select! {
            _ = self.cancel.cancelled() => return Ok(Ended::Stopped),
            tls = tokio::time::timeout_at(deadline, connector.connect(name, tcp)) => tls
                .map_err(|_| SendError::SetupTimeout)?
                .map_err(SendError::Tls)?,
        };
        self.publish(tls, deadline).await
    }

    async fn publish<S>(
        &mut self,
        mut stream: S,
        deadline: tokio::time::Instant,
    ) -> Result<Ended, SendError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut publisher = Publisher::new(self.endpoint.target.clone(), self.info)?;
        let mut buffer = vec![0u8; 16 * 1024];
        self.flush(&mut stream, &mut publisher).await?;

        // Setup: handshake, connect, publish. Packets arriving meanwhile are
        // discarded; the stream starts at the next keyframe.
        while !publisher.is_publishing() {
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(Ended::Stopped),
                _ = tokio::time::sleep_until(deadline) => return Err(SendError::SetupTimeout),
                read = stream.read(&mut buffer) => {
                    let n = read.map_err(SendError::Io)?;
                    if n == 0 {
                        return Err(SendError::Closed);
                    }
                    publisher.receive(&buffer[..n])?;
                    self.flush(&mut stream, &mut publisher).await?;
                }
                packet = self.packets.recv() => {
                    if packet.is_none() {
                        return Ok(Ended::Stopped);
                    }
                }
            }
        }
        self.status.connections.fetch_add(1, Ordering::Relaxed);
        self.status.set(DestinationState::Live);
        tracing::info!("destination live");

        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                read = stream.read(&mut buffer) => {
                    let n = read.map_err(SendError::Io)?;
                    if n == 0 {
                        return Err(SendError::Closed);
                    }
                    publisher.receive(&buffer[..n])?;
                }
                packet = self.packets.recv() => match packet {
                    Some(packet) => {
                        publisher.send(&packet)?;
                    }
                    None => break,
                }
            }
            self.flush(&mut stream, &mut publisher).await?;
        }

        // Stopping: unpublish and close, but never hang on a dead peer.
        let close = async {
            publisher.finish()?;
            self.flush(&mut stream, &mut publisher).await?;
            stream.shutdown().await.map_err(SendError::Io)
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "unclean close"),
            Err(_) => tracing::debug!("close timed out"),
        }
        Ok(Ended::Stopped)
    }

    async fn flush<S>(&self, stream: &mut S, publisher: &mut Publisher) -> Result<(), SendError>
    where
        S: AsyncWrite + Unpin,
    {
        if !publisher.has_outbound() {
            return Ok(());
        }
        let bytes = publisher.take_outbound();
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes))
            .await
            .map_err(|_| SendError::WriteTimeout)?
            .map_err(SendError::Io)?;
        // TLS buffers inside the stream; push it out now.
        stream.flush().await.map_err(SendError::Io)?;
        self.status
            .bytes_sent
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Connects to the first address of `host` that answers, with a bounded
/// send buffer and no Nagle delay.
async fn connect(host: &str, port: u16, allow_private: bool) -> io::Result<TcpStream> {
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "host has no address");
    for address in tokio::net::lookup_host((host, port)).await? {
        // Checked after the lookup, so that a name pointing inward (or
        // re-pointed there after the URL was accepted) is caught too.
        if !allow_private && !buildstream_mesh::net::is_public(address.ip()) {
            last_error = io::Error::new(
                io::ErrorKind::PermissionDenied,
                "host resolves to a private or local address",
            );
            continue;
        }
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Left to autotuning, the kernel buffers megabytes for a slow peer:
        // seconds of stale stream, and the queue never notices it is behind.
        socket.set_send_buffer_size(SEND_BUFFER)?;
        match socket.connect(address).await {
            Ok(stream) => {
                // Frames are written whole; coalescing only adds latency.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_that_resolve_inward_are_not_connected_to_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let refused = connect("localhost", port, false).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);
        assert!(SendError::Connect(refused).is_refusal(false));
        assert!(connect("localhost", port, true).await.is_ok());
    }

    #[test]
    fn a_stale_stream_at_the_server_is_not_a_refusal_after_being_live() {
        let bad_name = || SendError::Rtmp(RtmpError::Rejected("NetStream.Publish.BadName".into()));
        assert!(
            bad_name().is_refusal(false),
            "first attempt: the name is taken"
        );
        assert!(
            !bad_name().is_refusal(true),
            "reconnecting: our old stream lingers"
        );
        let denied = SendError::Rtmp(RtmpError::Rejected("NetConnection.Connect.Rejected".into()));
        assert!(denied.is_refusal(true));
        assert!(!SendError::WriteTimeout.is_refusal(true));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new();
        let lows: Vec<Duration> = (0..7).map(|_| backoff.next_delay(0.0)).collect();
        assert_eq!(lows[0], Duration::from_millis(500));
        assert_eq!(lows[1], Duration::from_secs(1));
        assert_eq!(lows[5], Duration::from_secs(15));
        assert_eq!(lows[6], Duration::from_secs(15));
        let high = backoff.next_delay(0.999_999);
        assert!(high > Duration::from_millis(29_999) && high <= BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(750));
    }

    #[test]
    fn refusals_are_told_apart_from_network_errors() {
        assert!(
            SendError::Rtmp(RtmpError::Rejected("NetStream.Publish.BadName".into()))
                .is_refusal(false)
        );
        assert!(!SendError::Closed.is_refusal(true));
        assert!(!SendError::Connect(io::ErrorKind::ConnectionRefused.into()).is_refusal(true));
    }

    #[test]
    fn status_keeps_the_last_error_after_recovery() {
        let cell = StatusCell::new(Arc::new(AtomicU64::new(3)));
        cell.set(DestinationState::Retrying {
            last_error: "connect: refused".into(),
        });
        cell.set(DestinationState::Live);
        let id = DestinationId::new("yt").unwrap();
        let status = cell.snapshot(&id, "YouTube", Platform::Youtube);
        assert_eq!(status.state, "live");
        assert_eq!(status.last_error.as_deref(), Some("connect: refused"));
        assert_eq!(status.packets_dropped, 3);
    }
}
