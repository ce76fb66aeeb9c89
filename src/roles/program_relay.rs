//! The edge's copy of a live studio's program, for WebRTC players.
//!
//! Players at an edge share one subscription to the origin: the relay reads
//! `studio/{id}/program/video` and `.../opus` from the origin's mesh
//! endpoint and writes them into the edge's tracks, where WHEP sessions
//! read them. It starts with the first player and ends half a minute after
//! the last one left; if the show restarts (on this origin or another) it
//! follows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buildstream_mesh::{CertFingerprint, Frame, MeshClient, TrackName, TrackProducer, Tracks};
use tokio_util::sync::CancellationToken;

use super::control_link::{ControlLink, PlaybackCheckError, ProgramLocation};
use super::mesh_sources::resolve;

/// How long a relay with no player goes on.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// How soon a relay looks again for a program that is not (yet) live.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Program relays of one edge, one per studio being watched.
pub struct ProgramRelay {
    client: MeshClient,
    control: ControlLink,
    tracks: Tracks,
    running: Mutex<HashSet<String>>,
    cancel: CancellationToken,
}

impl ProgramRelay {
    /// Relays into `tracks`, reading from origins over `client`.
    pub fn new(
        client: MeshClient,
        control: ControlLink,
        tracks: Tracks,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            control,
            tracks,
            running: Mutex::new(HashSet::new()),
            cancel,
        })
    }

    /// Starts relaying `studio`'s program unless it already is.
    pub fn ensure(self: &Arc<Self>, studio: &str) {
        let fresh = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(studio.to_owned());
        if fresh {
            tokio::spawn(self.clone().relay(studio.to_owned()));
        }
    }

    async fn relay(self: Arc<Self>, studio: String) {
        let names = match (
            TrackName::new(&studio, "program", "video"),
            TrackName::new(&studio, "program", "opus"),
        ) {
            (Ok(video), Ok(opus)) => [video, opus],
            _ => {
                self.finish(&studio);
                return;
            }
        };
        // The local tracks outlive upstream restarts, so players stay
        // attached while the show is restarted or moves origin.
        let producers = names.clone().map(|name| self.tracks.publish(name));
        tracing::info!(%studio, "program relay started");
        let mut idle = tokio::time::Instant::now();
        loop {
            if producers.iter().any(TrackProducer::is_observed) {
                idle = tokio::time::Instant::now();
            } else if idle.elapsed() > IDLE_FOR {
                break;
            }
            match self.control.program_location(&studio).await {
                Ok(location) => {
                    if let Err(why) = self.copy(&location, &names, &producers).await {
                        tracing::debug!(%studio, reason = %why, "program relay interrupted");
                    }
                    if self.cancel.is_cancelled() {
                        break;
                    }
                }
                Err(PlaybackCheckError::NotLive) => {}
                Err(err) => tracing::debug!(%studio, error = %err, "program not located"),
            }
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
        tracing::info!(%studio, "program relay ended");
        self.finish(&studio);
    }

    fn finish(&self, studio: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(studio);
    }

    /// Copies the program from its origin until it ends there, or nobody
    /// has watched for [`IDLE_FOR`].
    async fn copy(
        &self,
        location: &ProgramLocation,
        names: &[TrackName; 2],
        producers: &[TrackProducer; 2],
    ) -> Result<(), String> {
        let pin: CertFingerprint = location
            .fingerprint
            .parse()
            .map_err(|_| "origin fingerprint unreadable".to_owned())?;
        let addr = resolve(&location.mesh_addr)
            .await
            .ok_or_else(|| format!("{} does not resolve", location.mesh_addr))?;
        let session = self
            .client
            .connect(addr, pin)
            .await
            .map_err(|e| e.to_string())?;
        let mut video = session
            .subscribe(&names[0])
            .await
            .map_err(|e| e.to_string())?;
        let mut opus = session
            .subscribe(&names[1])
            .await
            .map_err(|e| e.to_string())?;
        let mut idle = tokio::time::Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(()),
                frame = video.next() => forward(frame, &producers[0])?,
                frame = opus.next() => forward(frame, &producers[1])?,
                _ = check.tick() => {
                    if producers.iter().any(TrackProducer::is_observed) {
                        idle = tokio::time::Instant::now();
                    } else if idle.elapsed() > IDLE_FOR {
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn forward(frame: Option<Frame>, producer: &TrackProducer) -> Result<(), String> {
    let frame = frame.ok_or_else(|| "the program ended at the origin".to_owned())?;
    producer
        .write(frame)
        .map_err(|_| "the local program track was taken over".to_owned())
}
