//! Real peers for the origin's integration tests: nginx-rtmp as the
//! destination, ffmpeg as the sources' encoder and as the viewer, ffprobe
//! to inspect recordings, and a TLS terminator with a test CA.
//!
//! Every test binary uses a different subset of this module.
#![allow(dead_code)]

pub mod nginx;
pub mod probe;
pub mod source;
pub mod tls;
pub mod webrtc_like;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildstream_mesh::Tracks;
use buildstream_origin::broadcast::StudioId;
use buildstream_origin::{BroadcastStatus, Broadcasts, OriginConfig};

/// The machine has two cores; compositing tests in parallel would make
/// each other late. Every test holds this for its whole run. (An async
/// mutex: a test that panics while holding it does not poison it.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the per-binary test lock and sets up logging (`RUST_LOG`).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SERIAL.lock().await
}

/// A directory removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "origin-test-{label}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An origin reading sources from `tracks`. The tests' destinations are
/// servers on loopback, so private addresses are allowed.
pub fn origin(tracks: &Tracks, config: OriginConfig) -> Broadcasts {
    let config = OriginConfig {
        allow_private_destinations: true,
        ..config
    };
    Broadcasts::new(Arc::new(tracks.clone()), config).expect("origin")
}

pub fn studio(id: &str) -> StudioId {
    StudioId::new(id).expect("studio id")
}

/// The status of destination `id`, if listed.
pub fn destination<'a>(
    status: &'a BroadcastStatus,
    id: &str,
) -> Option<&'a buildstream_origin::destinations::DestinationStatus> {
    status.destinations.iter().find(|d| d.id == id)
}

/// Waits until destination `id` of `studio` is in `state`; returns the
/// last status seen either way.
pub async fn wait_for_state(
    broadcasts: &Broadcasts,
    studio: &StudioId,
    id: &str,
    state: &str,
    timeout: Duration,
) -> BroadcastStatus {
    let mut last = None;
    wait_until(timeout, || {
        let status = broadcasts.status(studio).expect("status");
        let done = destination(&status, id).is_some_and(|d| d.state == state);
        last = Some(status);
        done
    })
    .await;
    last.expect("at least one status")
}
