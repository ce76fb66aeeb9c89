//! WebRTC at the edge: browsers and WHIP encoders publish here, browsers
//! and WHEP players watch from here, all through one UDP port.
//!
//! The engine is [str0m], a sans-IO WebRTC stack. The async `webrtc` crate
//! (0.21) binds sockets for each peer connection inside its driver, so it
//! cannot serve every peer from one port; str0m leaves sockets to us. The
//! edge is an ICE-lite server: it answers connectivity checks and never
//! starts its own, so the one socket and the host candidates it announces
//! are all a client needs.
//!
//! Datagrams are routed to sessions by the ICE username in STUN binding
//! requests (which name the edge's ufrag, unique per session) and otherwise
//! by remote address: the one address each session's ICE agent sends to,
//! chosen after checking the requests' integrity. Each session runs
//! on its own task; see [`session`].

mod frames;
mod net;
mod sdp;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use buildstream_mesh::{TrackName, Tracks};
use rand::RngExt;
use str0m::change::SdpOffer;
use str0m::{Candidate, IceCreds, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use net::{Network, NetworkParseError};
pub use sdp::OfferError;

use self::sdp::Flow;
use self::session::{Inbound, Role, Session};

/// Datagrams queued for one session before more are dropped.
const INBOX_DEPTH: usize = 1024;
/// Sessions one edge holds at most.
pub const MAX_SESSIONS: usize = 2048;

/// Sessions one owner may hold at once, so that nobody takes the edge's
/// every slot: a participant publishes a camera and a screen and plays
/// everyone else (a full room and then some); an encoder publishes once
/// (twice while it reconnects); a studio's audience may be large.
fn sessions_per_owner(owner: &str) -> usize {
    match owner.split(':').next() {
        Some("whip") => 2,
        Some("whep") => MAX_SESSIONS / 2,
        _ => 48,
    }
}

/// How the WebRTC endpoint is set up.
#[derive(Debug, Clone)]
pub struct WebrtcConfig {
    /// The UDP address every peer connection uses.
    pub udp_listen: SocketAddr,
    /// Addresses announced as host candidates, with the bound port. Empty
    /// means the bound address, which must then not be a wildcard.
    pub announce: Vec<IpAddr>,
    /// Remote networks the edge exchanges media with; empty means any.
    /// Datagrams and trickled candidates from elsewhere are ignored.
    pub remote_networks: Vec<Network>,
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebrtcError {
    /// The UDP socket could not be bound.
    #[error("binding WebRTC UDP {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing to announce: a wildcard bind needs announce addresses.
    #[error("WebRTC listens on {0}, a wildcard; set the addresses to announce")]
    NothingToAnnounce(SocketAddr),
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The offer was refused.
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// The edge holds as many sessions as it may.
    #[error("the edge is at its limit of {MAX_SESSIONS} WebRTC sessions")]
    Full,
    /// This owner holds as many sessions as one may.
    #[error("at most {0} WebRTC sessions at once for this participant, encoder or audience")]
    TooMany(usize),
}

/// A session the edge accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Names the session for trickle and teardown; 128 random bits.
    pub id: String,
    /// The SDP answer for the client.
    pub answer: String,
}

/// The WebRTC endpoint. Cloning shares it.
#[derive(Clone)]
pub struct WebrtcEdge {
    shared: Arc<Shared>,
}

struct Shared {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    candidates: Vec<SocketAddr>,
    remote_networks: Vec<Network>,
    tracks: Tracks,
    registry: Arc<Registry>,
    cancel: CancellationToken,
}

/// Which task each session and each remote address belongs to.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    sessions: HashMap<String, SessionEntry>,
    by_ufrag: HashMap<String, String>,
    by_addr: HashMap<SocketAddr, String>,
}

struct SessionEntry {
    inbox: mpsc::Sender<Inbound>,
    ufrag: String,
    owner: String,
    /// The remote addresses the session has sent to, newest last: the
    /// candidate pairs its ICE agent answered checks on.
    addrs: Vec<SocketAddr>,
}

/// Remote addresses remembered per session: a browser checks a few
/// candidate pairs; more would only let one peer fill the map.
const ADDRS_PER_SESSION: usize = 4;

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn remove(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(entry) = inner.sessions.remove(id) {
            inner.by_ufrag.remove(&entry.ufrag);
            for addr in entry.addrs {
                if inner.by_addr.get(&addr).is_some_and(|owner| owner == id) {
                    inner.by_addr.remove(&addr);
                }
            }
        }
    }

    /// Records that session `id` sends to `addr`, so that what comes from
    /// there is its. Only the session's ICE agent decides this (after
    /// checking the STUN request's integrity), never a datagram by itself:
    /// a forged request cannot take another session's address.
    pub(crate) fn claim(&self, id: &str, addr: SocketAddr) {
        let mut inner = self.lock();
        let Some(entry) = inner.sessions.get_mut(id) else {
            return;
        };
        if entry.addrs.contains(&addr) {
            return;
        }
        entry.addrs.push(addr);
        let evicted = (entry.addrs.len() > ADDRS_PER_SESSION).then(|| entry.addrs.remove(0));
        if let Some(old) = evicted {
            if inner.by_addr.get(&old).is_some_and(|owner| owner == id) {
                inner.by_addr.remove(&old);
            }
        }
        inner.by_addr.insert(addr, id.to_owned());
    }

    /// The inbox for a datagram from `from`: the session its STUN request
    /// names, or the one that sends to that address.
    fn route(&self, from: SocketAddr, datagram: &[u8]) -> Option<mpsc::Sender<Inbound>> {
        let inner = self.lock();
        let id = match net::stun_local_ufrag(datagram) {
            Some(ufrag) => inner.by_ufrag.get(ufrag)?,
            None => inner.by_addr.get(&from)?,
        };
        inner.sessions.get(id).map(|entry| entry.inbox.clone())
    }
}

impl WebrtcEdge {
    /// Binds the UDP port and starts routing. Sessions publish into and
    /// play from `tracks`.
    pub async fn bind(
        config: WebrtcConfig,
        tracks: Tracks,
        cancel: CancellationToken,
    ) -> Result<Self, WebrtcError> {
        let socket = bind_udp(config.udp_listen).map_err(|source| WebrtcError::Bind {
            addr: config.udp_listen,
            source,
        })?;
        let local = socket.local_addr().map_err(|source| WebrtcError::Bind {
            addr: config.udp_listen,
            source,
        })?;
        let candidates: Vec<SocketAddr> = if config.announce.is_empty() {
            if local.ip().is_unspecified() {
                return Err(WebrtcError::NothingToAnnounce(local));
            }
            vec![local]
        } else {
            config
                .announce
                .iter()
                .map(|ip| SocketAddr::new(*ip, local.port()))
                .collect()
        };
        let shared = Arc::new(Shared {
            socket: Arc::new(socket),
            local,
            candidates,
            remote_networks: config.remote_networks,
            tracks,
            registry: Arc::new(Registry::default()),
            cancel,
        });
        tokio::spawn(receive(shared.clone()));
        tracing::info!(udp = %local, announce = ?shared.candidates, "webrtc listening");
        Ok(Self { shared })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Sessions currently open.
    pub fn session_count(&self) -> usize {
        self.shared.registry.lock().sessions.len()
    }

    /// Accepts a client that sends audio and video, published as the
    /// `video` and `audio` tracks. `owner` is kept for [`Self::owner`].
    pub fn publish(
        &self,
        offer: &str,
        video: TrackName,
        audio: TrackName,
        owner: &str,
    ) -> Result<Accepted, SessionError> {
        self.start(
            offer,
            Flow::FromClient,
            Role::Publish { video, audio },
            owner,
        )
    }

    /// Accepts a client that receives the given tracks, whenever they are
    /// live: a player that arrives early waits, and one whose publisher
    /// reconnects follows the new track.
    pub fn play(
        &self,
        offer: &str,
        video: Option<TrackName>,
        audio: Option<TrackName>,
        owner: &str,
    ) -> Result<Accepted, SessionError> {
        self.start(offer, Flow::ToClient, Role::Play { video, audio }, owner)
    }

    /// Who started session `id`, if it is open.
    pub fn owner(&self, id: &str) -> Option<String> {
        self.shared
            .registry
            .lock()
            .sessions
            .get(id)
            .map(|entry| entry.owner.clone())
    }

    /// Adds trickled candidates (an SDP fragment of `a=candidate:` lines).
    /// Candidates outside the allowed networks are ignored. Returns how many
    /// were taken, or `None` when the session is gone.
    pub fn trickle(&self, id: &str, fragment: &str) -> Option<usize> {
        let inbox = self.shared.registry.lock().sessions.get(id)?.inbox.clone();
        let mut taken = 0;
        for line in fragment.lines() {
            let Some(text) = line.trim().strip_prefix("a=") else {
                continue;
            };
            if !text.starts_with("candidate:") {
                continue;
            }
            let Ok(candidate) = Candidate::from_sdp_string(text) else {
                tracing::debug!(session = id, line, "unreadable candidate ignored");
                continue;
            };
            if !net::allowed(&self.shared.remote_networks, candidate.addr().ip()) {
                tracing::debug!(session = id, addr = %candidate.addr(), "candidate outside the allowed networks ignored");
                continue;
            }
            if inbox.try_send(Inbound::Candidate(candidate)).is_ok() {
                taken += 1;
            }
        }
        Some(taken)
    }

    /// Ends session `id`; false if it was not open.
    pub fn close(&self, id: &str) -> bool {
        let inbox = self
            .shared
            .registry
            .lock()
            .sessions
            .get(id)
            .map(|e| e.inbox.clone());
        match inbox {
            Some(inbox) => {
                self.shared.registry.remove(id);
                let _ = inbox.try_send(Inbound::Close);
                true
            }
            None => false,
        }
    }

    fn start(
        &self,
        offer: &str,
        flow: Flow,
        role: Role,
        owner: &str,
    ) -> Result<Accepted, SessionError> {
        {
            let registry = self.shared.registry.lock();
            if registry.sessions.len() >= MAX_SESSIONS {
                return Err(SessionError::Full);
            }
            let cap = sessions_per_owner(owner);
            let held = registry
                .sessions
                .values()
                .filter(|entry| entry.owner == owner)
                .count();
            if held >= cap {
                return Err(SessionError::TooMany(cap));
            }
        }
        sdp::check(offer)?;
        let parsed = SdpOffer::from_sdp_string(offer)
            .map_err(|err| OfferError::Malformed(err.to_string()))?;

        let ufrag = random_token(16);
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_ice_lite(true)
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: random_token(32),
            })
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .build(Instant::now());
        for addr in &self.shared.candidates {
            match Candidate::host(*addr, "udp") {
                Ok(candidate) => {
                    rtc.add_local_candidate(candidate);
                }
                Err(err) => tracing::warn!(%addr, error = %err, "announce address refused"),
            }
        }
        // str0m panics on some contradictory offers (one payload type bound
        // to two codecs across sections); such an offer is refused, and the
        // half-built connection dropped, like any other bad offer.
        let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rtc.sdp_api().accept_offer(parsed)
        }));
        let answer = match accepted {
            Ok(Ok(answer)) => answer.to_sdp_string(),
            Ok(Err(err)) => return Err(OfferError::Malformed(err.to_string()).into()),
            Err(_) => {
                return Err(OfferError::Malformed(
                    "its payload types contradict each other across media sections".into(),
                )
                .into())
            }
        };
        if let Some(reason) = sdp::refusals(offer, &answer, flow) {
            return Err(OfferError::NotAcceptable(reason).into());
        }

        let id = random_token(22);
        let (inbox_tx, inbox) = mpsc::channel(INBOX_DEPTH);
        {
            let mut registry = self.shared.registry.lock();
            registry.by_ufrag.insert(ufrag.clone(), id.clone());
            registry.sessions.insert(
                id.clone(),
                SessionEntry {
                    inbox: inbox_tx,
                    ufrag,
                    owner: owner.to_owned(),
                    addrs: Vec::new(),
                },
            );
        }
        let session = Session {
            id: id.clone(),
            rtc,
            role,
            socket: self.shared.socket.clone(),
            local: self.shared.local,
            tracks: self.shared.tracks.clone(),
            inbox,
            registry: self.shared.registry.clone(),
            cancel: self.shared.cancel.clone(),
        };
        tokio::spawn(session.run());
        Ok(Accepted { id, answer })
    }
}

/// Socket buffers of the WebRTC port. Every peer shares it: a burst of
/// keyframes from a few publishers overflows the kernel's default (about
/// 200 KiB) while the receive task is busy, and a lost packet costs a
/// retransmission or a keyframe.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // The kernel caps these (net.core.rmem_max); a smaller buffer is no
    // reason not to start.
    if let Err(err) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!(error = %err, "receive buffer not enlarged");
    }
    if let Err(err) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!(error = %err, "send buffer not enlarged");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Reads the UDP port and hands each datagram to its session.
async fn receive(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let received = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            received = shared.socket.recv_from(&mut buf) => received,
        };
        let (len, from) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(error = %err, "webrtc receive failed");
                continue;
            }
        };
        if !net::allowed(&shared.remote_networks, from.ip()) {
            continue;
        }
        let datagram = &buf[..len];
        if let Some(inbox) = shared.registry.route(from, datagram) {
            // A session that cannot keep up loses datagrams, as the network
            // would; the others go on.
            let _ = inbox.try_send(Inbound::Datagram {
                from,
                data: datagram.to_vec(),
            });
        }
    }
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}
