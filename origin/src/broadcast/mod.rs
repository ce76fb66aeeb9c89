//! The live broadcasts of one origin, and the internal HTTP API that drives
//! them.
//!
//! A broadcast is one studio going out: its compositor and its destination
//! senders. [`Broadcasts`] starts, changes and stops them; [`router`] exposes
//! that to the control plane.

mod api;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use buildstream_mesh::Tracks;
use serde::{Deserialize, Serialize};

pub use api::router;

use crate::compositor::{Compositor, CompositorError, ProgramOutputs};
use crate::destinations::{
    client_config, rfc3339, DestinationError, DestinationId, DestinationSpec, DestinationStatus,
    Destinations,
};
use crate::program::{Fanout, OutputProgress};
use crate::scene::{OutputProfile, Scene};
use crate::source::TrackSource;

/// Why a broadcast operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BroadcastError {
    /// The studio id is not 1-64 characters of `[A-Za-z0-9_-]`.
    #[error("studio ids must be 1-64 characters of [A-Za-z0-9_-]")]
    StudioId,
    /// The studio is already live on this origin.
    #[error("studio is already live")]
    AlreadyLive,
    /// The studio is not live on this origin.
    #[error("studio is not live")]
    NotFound,
    /// Two destinations share an id.
    #[error("destination ids must be unique")]
    DuplicateDestination,
    /// A destination was refused or not found.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The compositor failed.
    #[error(transparent)]
    Compositor(#[from] CompositorError),
    /// The origin is misconfigured.
    #[error("origin configuration: {0}")]
    Config(String),
}

/// How this origin is set up.
#[derive(Clone, Default)]
pub struct OriginConfig {
    /// PEM file with CA certificates trusted for RTMPS besides the public
    /// web roots.
    pub extra_ca_file: Option<PathBuf>,
    /// If set, every program is also published into this registry as
    /// `studio/{studio}/program` tracks.
    pub program_tracks: Option<Tracks>,
    /// Whether destinations on loopback, private and other internal
    /// addresses are allowed (a local studio); otherwise they are refused.
    pub allow_private_destinations: bool,
}

impl fmt::Debug for OriginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginConfig")
            .field("extra_ca_file", &self.extra_ca_file)
            .field("program_tracks", &self.program_tracks.is_some())
            .field(
                "allow_private_destinations",
                &self.allow_private_destinations,
            )
            .finish()
    }
}

/// A studio's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StudioId(String);

impl StudioId {
    /// Parses an id; it becomes part of track names, so the rules match.
    pub fn new(id: &str) -> Result<Self, BroadcastError> {
        if buildstream_mesh::is_valid_part(id) {
            Ok(Self(id.to_owned()))
        } else {
            Err(BroadcastError::StudioId)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StudioId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to take a studio live.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BroadcastSpec {
    /// Output size, frame rate and bitrate (default 1280x720@30).
    #[serde(default)]
    pub output: OutputProfile,
    /// The first scene.
    #[serde(default)]
    pub scene: Scene,
    /// Destinations to start with; each needs an `id`.
    #[serde(default)]
    pub destinations: Vec<NamedDestination>,
}

/// A destination with its id, as listed in a [`BroadcastSpec`].
#[derive(Debug, Clone, Deserialize)]
pub struct NamedDestination {
    /// The destination's id within the broadcast.
    pub id: String,
    /// The destination.
    #[serde(flatten)]
    pub spec: DestinationSpec,
}

/// A broadcast's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastState {
    /// Composing and sending.
    Live,
    /// The pipeline failed; `failure` says why. Stop it to clear.
    Failed,
    /// The pipeline runs but has produced no video for a while.
    Stalled,
}

/// A broadcast counts as stalled when no video frame came out for this long
/// (its first frame is allowed [`START_GRACE`]).
const STALL_AFTER: Duration = Duration::from_secs(3);
const START_GRACE: Duration = Duration::from_secs(10);

/// What `GET /internal/v1/broadcasts/{studio}` answers.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastStatus {
    /// The studio.
    pub studio: String,
    /// `live` or `failed`.
    pub state: BroadcastState,
    /// When the broadcast started (RFC 3339, UTC).
    pub started_at: String,
    /// Why the pipeline failed, when it did.
    pub failure: Option<String>,
    /// The output profile.
    pub output: OutputProfile,
    /// The video bitrate the encoder runs at: the profile's, lowered to
    /// what every destination accepts.
    pub video_bitrate_kbps: u32,
    /// Encoded video frames so far.
    pub output_frames: u64,
    /// Milliseconds since the last encoded video frame, if any.
    pub last_output_ms_ago: Option<u64>,
    /// Every destination.
    pub destinations: Vec<DestinationStatus>,
}

/// The broadcasts live on this origin. Cloning shares the registry.
#[derive(Clone)]
pub struct Broadcasts {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn TrackSource>,
    config: OriginConfig,
    tls: Arc<rustls::ClientConfig>,
    live: Mutex<HashMap<StudioId, Arc<Broadcast>>>,
}

struct Broadcast {
    studio: StudioId,
    started_at: SystemTime,
    /// When this origin was asked to start it.
    began: Instant,
    profile: OutputProfile,
    /// `None` while starting and after stopping. Shared so that status
    /// reads never wait for a scene change in progress.
    compositor: Mutex<Option<Arc<Compositor>>>,
    /// The program's way out, watched for progress.
    fanout: Fanout,
    destinations: Destinations,
    /// Serialises changes to this broadcast (scene, destinations, stop).
    changing: tokio::sync::Mutex<()>,
}

impl Broadcasts {
    /// A registry reading sources from `source`. Fails if the extra CA file
    /// cannot be loaded.
    pub fn new(source: Arc<dyn TrackSource>, config: OriginConfig) -> Result<Self, BroadcastError> {
        let tls = client_config(config.extra_ca_file.as_deref())
            .map_err(|e| BroadcastError::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                config,
                tls,
                live: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Takes a studio live: builds its pipeline, applies the first scene and
    /// starts its destinations. Fails with [`BroadcastError::AlreadyLive`]
    /// if it is live already; see [`Broadcasts::put`].
    pub async fn start(
        &self,
        studio: &StudioId,
        spec: BroadcastSpec,
    ) -> Result<BroadcastStatus, BroadcastError> {
        let fanout = Fanout::new();
        let destinations = Destinations::new(
            fanout.clone(),
            spec.output,
            self.inner.tls.clone(),
            self.inner.config.allow_private_destinations,
        );
        let named = checked_destinations(&destinations, spec.destinations)?;

        let broadcast = Arc::new(Broadcast {
            studio: studio.clone(),
            started_at: SystemTime::now(),
            began: Instant::now(),
            profile: spec.output,
            compositor: Mutex::new(None),
            fanout: fanout.clone(),
            destinations,
            changing: tokio::sync::Mutex::new(()),
        });
        {
            let mut live = lock(&self.inner.live);
            if live.contains_key(studio) {
                return Err(BroadcastError::AlreadyLive);
            }
            live.insert(studio.clone(), broadcast.clone());
        }
        let _changing = broadcast.changing.lock().await;

        let outputs = ProgramOutputs {
            fanout,
            tracks: self.inner.config.program_tracks.clone(),
        };
        let source = self.inner.source.clone();
        let runtime = tokio::runtime::Handle::current();
        let (id, profile, scene) = (studio.to_string(), spec.output, spec.scene);
        let started = tokio::task::spawn_blocking(move || {
            Compositor::start(&id, profile, &scene, source, outputs, runtime)
        })
        .await
        .map_err(|e| CompositorError::Pipeline(e.to_string()))
        .and_then(|r| r);
        let compositor = match started {
            Ok(compositor) => compositor,
            Err(error) => {
                lock(&self.inner.live).remove(studio);
                return Err(error.into());
            }
        };
        *lock(&broadcast.compositor) = Some(Arc::new(compositor));

        for (id, spec) in named {
            if let Err(error) = broadcast.destinations.add(id, spec).await {
                // Checked above, so this does not happen; if it did, a
                // half-started broadcast must not stay behind.
                lock(&self.inner.live).remove(studio);
                broadcast.shut_down().await;
                return Err(error.into());
            }
        }
        broadcast.fit_bitrate();
        tracing::info!(studio = %studio, "broadcast started");
        Ok(broadcast.status())
    }

    /// Starts the studio, or brings its live broadcast to `spec`: with the
    /// same output profile the scene and destinations change in place
    /// (unchanged destinations keep their connection); a different profile
    /// restarts the broadcast. Returns the status and whether it started.
    pub async fn put(
        &self,
        studio: &StudioId,
        spec: BroadcastSpec,
    ) -> Result<(BroadcastStatus, bool), BroadcastError> {
        let Ok(broadcast) = self.find(studio) else {
            return Ok((self.start(studio, spec).await?, true));
        };
        if broadcast.profile != spec.output {
            tracing::info!(studio = %studio, "output profile changed, restarting broadcast");
            self.stop(studio).await?;
            return Ok((self.start(studio, spec).await?, true));
        }

        let named = checked_destinations(&broadcast.destinations, spec.destinations)?;
        let _changing = broadcast.changing.lock().await;
        let compositor = broadcast.compositor().ok_or(BroadcastError::NotFound)?;
        let scene = spec.scene;
        tokio::task::spawn_blocking(move || compositor.update_scene(&scene))
            .await
            .map_err(|e| CompositorError::Pipeline(e.to_string()))??;
        for id in broadcast.destinations.ids() {
            if !named.iter().any(|(kept, _)| kept == &id) {
                broadcast.destinations.remove(&id).await?;
            }
        }
        for (id, spec) in named {
            broadcast.destinations.add(id, spec).await?;
        }
        broadcast.fit_bitrate();
        Ok((broadcast.status(), false))
    }

    /// Applies a new scene live.
    pub async fn update_scene(
        &self,
        studio: &StudioId,
        scene: Scene,
    ) -> Result<(), BroadcastError> {
        let broadcast = self.find(studio)?;
        let _changing = broadcast.changing.lock().await;
        // The compositor is taken out of its lock: status reads go on while
        // the scene changes.
        let compositor = broadcast.compositor().ok_or(BroadcastError::NotFound)?;
        tokio::task::spawn_blocking(move || compositor.update_scene(&scene))
            .await
            .map_err(|e| CompositorError::Pipeline(e.to_string()))?
            .map_err(BroadcastError::from)
    }

    /// Adds a destination, or replaces the one with the same id.
    pub async fn add_destination(
        &self,
        studio: &StudioId,
        id: DestinationId,
        spec: DestinationSpec,
    ) -> Result<(), BroadcastError> {
        let broadcast = self.find(studio)?;
        let _changing = broadcast.changing.lock().await;
        broadcast.destinations.add(id, spec).await?;
        broadcast.fit_bitrate();
        Ok(())
    }

    /// Stops and forgets a destination.
    pub async fn remove_destination(
        &self,
        studio: &StudioId,
        id: &DestinationId,
    ) -> Result<(), BroadcastError> {
        let broadcast = self.find(studio)?;
        let _changing = broadcast.changing.lock().await;
        broadcast.destinations.remove(id).await?;
        broadcast.fit_bitrate();
        Ok(())
    }

    /// The broadcast's status.
    pub fn status(&self, studio: &StudioId) -> Result<BroadcastStatus, BroadcastError> {
        Ok(self.find(studio)?.status())
    }

    /// Studios live on this origin, sorted.
    pub fn studios(&self) -> Vec<StudioId> {
        let mut studios: Vec<StudioId> = lock(&self.inner.live).keys().cloned().collect();
        studios.sort();
        studios
    }

    /// Stops a broadcast: destinations unpublish, the pipeline stops.
    pub async fn stop(&self, studio: &StudioId) -> Result<(), BroadcastError> {
        let broadcast = lock(&self.inner.live)
            .remove(studio)
            .ok_or(BroadcastError::NotFound)?;
        let _changing = broadcast.changing.lock().await;
        broadcast.shut_down().await;
        Ok(())
    }

    /// Stops the broadcasts the control plane no longer has on record for
    /// this origin: `assigned` is its list as of `asked_at`, so broadcasts
    /// asked for after that are left alone. Returns the studios stopped.
    pub async fn reconcile(&self, assigned: &[String], asked_at: Instant) -> Vec<StudioId> {
        let orphans: Vec<StudioId> = lock(&self.inner.live)
            .values()
            .filter(|b| b.began < asked_at && !assigned.iter().any(|s| s == b.studio.as_str()))
            .map(|b| b.studio.clone())
            .collect();
        let mut stopped = Vec::with_capacity(orphans.len());
        for studio in orphans {
            tracing::warn!(studio = %studio, "broadcast not on record at the control plane, stopping it");
            if self.stop(&studio).await.is_ok() {
                stopped.push(studio);
            }
        }
        stopped
    }

    /// Stops every broadcast (origin shutdown).
    pub async fn stop_all(&self) {
        for studio in self.studios() {
            let _ = self.stop(&studio).await;
        }
    }

    fn find(&self, studio: &StudioId) -> Result<Arc<Broadcast>, BroadcastError> {
        lock(&self.inner.live)
            .get(studio)
            .cloned()
            .ok_or(BroadcastError::NotFound)
    }
}

impl Broadcast {
    /// Unpublishes every destination, then stops the pipeline.
    async fn shut_down(&self) {
        self.destinations.stop_all().await;
        let compositor = lock(&self.compositor).take();
        if let Some(compositor) = compositor {
            let _ = tokio::task::spawn_blocking(move || compositor.stop()).await;
        }
        tracing::info!(studio = %self.studio, "broadcast stopped");
    }

    fn compositor(&self) -> Option<Arc<Compositor>> {
        lock(&self.compositor).clone()
    }

    /// Lowers (or restores) the encoder bitrate to what every destination
    /// accepts; x264 changes it without a restart.
    fn fit_bitrate(&self) {
        let target = self
            .profile
            .video_bitrate_kbps()
            .min(self.destinations.bitrate_ceiling_kbps());
        if let Some(compositor) = self.compositor() {
            if compositor.video_bitrate_kbps() != target {
                tracing::info!(studio = %self.studio, kbps = target, "video bitrate fitted");
                compositor.set_video_bitrate(target);
            }
        }
    }

    fn status(&self) -> BroadcastStatus {
        let compositor = self.compositor();
        let failure = compositor.as_deref().and_then(Compositor::failure);
        let progress = self.fanout.progress();
        BroadcastStatus {
            studio: self.studio.to_string(),
            state: state_of(failure.is_some(), self.began.elapsed(), progress),
            output_frames: progress.video_frames,
            last_output_ms_ago: progress
                .since_last_video
                .map(|since| since.as_millis().try_into().unwrap_or(u64::MAX)),
            started_at: rfc3339(self.started_at),
            failure,
            output: self.profile,
            video_bitrate_kbps: compositor.as_deref().map_or(
                self.profile.video_bitrate_kbps(),
                Compositor::video_bitrate_kbps,
            ),
            destinations: self.destinations.statuses(),
        }
    }
}

/// A broadcast's state from its pipeline's health, its age and how far its
/// output has got.
fn state_of(failed: bool, age: Duration, progress: OutputProgress) -> BroadcastState {
    let quiet = progress
        .since_last_video
        .is_none_or(|since| since > STALL_AFTER);
    if failed {
        BroadcastState::Failed
    } else if age > START_GRACE && quiet {
        BroadcastState::Stalled
    } else {
        BroadcastState::Live
    }
}

/// Parses destination ids and checks every destination before anything
/// starts, so that a bad one refuses the whole request.
fn checked_destinations(
    destinations: &Destinations,
    entries: Vec<NamedDestination>,
) -> Result<Vec<(DestinationId, DestinationSpec)>, BroadcastError> {
    let mut named: Vec<(DestinationId, DestinationSpec)> = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = DestinationId::new(&entry.id)?;
        if named.iter().any(|(other, _)| other == &id) {
            return Err(BroadcastError::DuplicateDestination);
        }
        destinations.check(&entry.spec)?;
        named.push((id, entry.spec));
    }
    Ok(named)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data; a panicking holder leaves it usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_without_output_for_seconds_is_stalled() {
        let progress = |frames, since: Option<u64>| OutputProgress {
            video_frames: frames,
            since_last_video: since.map(Duration::from_millis),
        };
        let s = Duration::from_secs;
        assert_eq!(
            state_of(false, s(2), progress(0, None)),
            BroadcastState::Live
        );
        assert_eq!(
            state_of(false, s(60), progress(900, Some(40))),
            BroadcastState::Live
        );
        assert_eq!(
            state_of(false, s(60), progress(900, Some(5_000))),
            BroadcastState::Stalled
        );
        assert_eq!(
            state_of(false, s(11), progress(0, None)),
            BroadcastState::Stalled
        );
        assert_eq!(
            state_of(true, s(60), progress(900, Some(40))),
            BroadcastState::Failed
        );
    }

    #[test]
    fn studio_ids_are_checked() {
        assert!(StudioId::new("studio_1-a").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert_eq!(StudioId::new(bad), Err(BroadcastError::StudioId), "{bad}");
        }
    }

    #[test]
    fn a_spec_parses_with_defaults_and_named_destinations() {
        let spec: BroadcastSpec = serde_json::from_value(serde_json::json!({
            "destinations": [
                {"id": "yt", "name": "YouTube", "platform": "youtube", "stream_key": "k"}
            ]
        }))
        .unwrap();
        assert_eq!(spec.output, OutputProfile::default());
        assert_eq!(spec.destinations[0].id, "yt");
        assert_eq!(spec.destinations[0].spec.name, "YouTube");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broadcasts_the_control_plane_forgot_are_stopped_and_new_ones_kept() {
        let broadcasts = Broadcasts::new(Arc::new(Tracks::new()), OriginConfig::default()).unwrap();
        let (kept, orphan) = (
            StudioId::new("kept").unwrap(),
            StudioId::new("orphan").unwrap(),
        );
        for studio in [&kept, &orphan] {
            broadcasts
                .start(studio, BroadcastSpec::default())
                .await
                .unwrap();
        }
        // An answer to a heartbeat sent before either started knows neither.
        let early = broadcasts.inner.live.lock().unwrap()[&kept].began
            - std::time::Duration::from_millis(1);
        assert!(broadcasts.reconcile(&[], early).await.is_empty());

        let stopped = broadcasts
            .reconcile(&["kept".to_owned()], Instant::now())
            .await;
        assert_eq!(stopped, vec![orphan.clone()]);
        assert_eq!(broadcasts.studios(), vec![kept.clone()]);
        broadcasts.stop_all().await;
    }

    #[tokio::test]
    async fn a_bad_destination_refuses_the_start_before_anything_runs() {
        let broadcasts = Broadcasts::new(Arc::new(Tracks::new()), OriginConfig::default()).unwrap();
        let studio = StudioId::new("s1").unwrap();
        let spec: BroadcastSpec = serde_json::from_str(
            r#"{"destinations":[{"id":"x","platform":"custom","stream_key":"k"}]}"#,
        )
        .unwrap();
        assert_eq!(
            broadcasts.start(&studio, spec).await.unwrap_err(),
            BroadcastError::Destination(DestinationError::MissingUrl)
        );
        assert!(broadcasts.studios().is_empty());
        assert_eq!(
            broadcasts.status(&studio).unwrap_err(),
            BroadcastError::NotFound
        );
    }
}
