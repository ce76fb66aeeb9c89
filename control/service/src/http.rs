//! Serving a router on a public listener, with the limits such a listener
//! needs and `axum::serve` does not set: a cap on open connections and a
//! deadline for each request head, so that clients that connect and then
//! trickle bytes (or send nothing) cannot hold the server's sockets.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse as _;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections open at once from one IP address; more are closed as
    /// soon as accepted, so that one client cannot take every slot.
    pub max_connections_per_peer: usize,
    /// Time from the first byte of a request (or from the previous
    /// response on a kept-alive connection) to the end of its head.
    pub header_read_timeout: Duration,
    /// Time from the end of a request's head to the end of its response
    /// being produced, body read included: a client trickling its body a
    /// byte at a time gives up its connection.
    pub request_timeout: Duration,
    /// How long stopping waits for requests in progress.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 2048,
            max_connections_per_peer: 128,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// One connection counted against its peer's limit while it is open.
struct PeerSlot {
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(peers: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut open = peers.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= max.max(1) {
            return None;
        }
        *count += 1;
        Some(Self {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Pause after a failed accept (out of descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// requests in progress finish (within [`Limits::drain_timeout`]).
/// Handlers can read the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut at_capacity = false;
    let peers: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut turned_away = 0u64;
    loop {
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_capacity = false;
                permit
            }
            Err(_) => {
                if !at_capacity {
                    tracing::warn!(
                        max = limits.max_connections,
                        "connection limit reached; new connections wait"
                    );
                    at_capacity = true;
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(peer_slot) = PeerSlot::take(&peers, peer.ip(), limits.max_connections_per_peer)
        else {
            drop(stream);
            turned_away += 1;
            if turned_away.is_power_of_two() {
                tracing::warn!(
                    max = limits.max_connections_per_peer,
                    turned_away,
                    "one peer reached its connection limit; closing its new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_future(move |response| async move {
                match tokio::time::timeout(limits.request_timeout, response).await {
                    Ok(response) => response,
                    Err(_) => Ok(crate::ApiError::new(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        "the request took too long to arrive",
                    )
                    .into_response()),
                }
            });
        let mut closed = closed.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _peer_slot = peer_slot;
            let service = TowerToHyperService::new(service);
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = async { closed.wait_for(|closing| *closing).await.map(drop) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "requests still running at shutdown were cut off"
        );
    }
    Ok(())
}
