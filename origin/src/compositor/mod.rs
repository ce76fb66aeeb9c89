//! One GStreamer pipeline per live studio: decode the on-stage sources,
//! compose the scene, encode once.
//!
//! ```text
//! background (colour, optional image) ─┐
//! per source: placeholder, decoded video├─ compositor ─ overlaycomposition (logo)
//! banner (brand-colour bar + text) ────┘    ─ x264enc ─ appsink ─┐
//! silence, per source: decoded audio ──── audiomixer             ├─ program packets
//!                                           ─ avenc_aac ─ appsink ┘
//! ```
//!
//! Everything that changes with the scene is a pad property (position, size,
//! stacking, visibility), an element property (text, colours), the logo
//! composition, or a branch added to or removed from the playing pipeline.
//! The mixers, encoders and their output never restart.

mod image;
mod output;
mod slot;
mod stage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use buildstream_mesh::Tracks;
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::program::Fanout;
use crate::scene::{OutputProfile, Scene};
use crate::source::TrackSource;
use stage::Stage;

/// Program audio sample rate.
pub const AUDIO_RATE: u32 = 48_000;
/// Program audio channels.
pub const AUDIO_CHANNELS: u32 = 2;
/// Program audio bitrate in kb/s.
pub const AUDIO_BITRATE_KBPS: u32 = 128;

/// How long the mixers wait for late inputs before composing without them.
/// It absorbs decoder delay and network jitter; it adds to the program's
/// latency, which restreaming platforms measure in seconds anyway.
const MIXER_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(250);

/// Elements the pipeline needs; checked before anything is built.
const REQUIRED_ELEMENTS: &[&str] = &[
    "compositor",
    "audiomixer",
    "videotestsrc",
    "audiotestsrc",
    "textoverlay",
    "overlaycomposition",
    "imagefreeze",
    "x264enc",
    "avenc_aac",
    "avdec_h264",
    "avdec_aac",
    "appsrc",
    "appsink",
    "audioconvert",
    "audioresample",
    "videoconvert",
    "videoscale",
    "pngdec",
    "jpegdec",
    "capsfilter",
    "queue",
];

/// Why the compositor could not do what was asked.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CompositorError {
    /// GStreamer could not be initialised.
    #[error("gstreamer init: {0}")]
    Init(String),
    /// A GStreamer element is not installed.
    #[error("gstreamer element {0} is not installed")]
    MissingElement(&'static str),
    /// Building or changing the pipeline failed.
    #[error("pipeline: {0}")]
    Pipeline(String),
    /// An image could not be decoded.
    #[error("image could not be decoded: {0}")]
    Image(String),
}

impl From<gst::glib::BoolError> for CompositorError {
    fn from(error: gst::glib::BoolError) -> Self {
        CompositorError::Pipeline(error.to_string())
    }
}

impl From<gst::StateChangeError> for CompositorError {
    fn from(error: gst::StateChangeError) -> Self {
        CompositorError::Pipeline(error.to_string())
    }
}

impl From<gst::PadLinkError> for CompositorError {
    fn from(error: gst::PadLinkError) -> Self {
        CompositorError::Pipeline(error.to_string())
    }
}

/// Where the encoded program goes.
#[derive(Clone, Default)]
pub struct ProgramOutputs {
    /// Every destination's queue.
    pub fanout: Fanout,
    /// If set, the program is also published as mesh tracks
    /// `studio/{studio}/program/{video,audio}`.
    pub tracks: Option<Tracks>,
}

/// A running composition for one studio.
pub struct Compositor {
    core: Arc<Core>,
    stage: Mutex<Stage>,
    /// The video encoder, whose bitrate follows the destinations.
    encoder: gst::Element,
    bus_thread: Mutex<Option<JoinHandle<()>>>,
    stopping: Arc<AtomicBool>,
}

/// What every part of the pipeline shares.
pub(crate) struct Core {
    studio: String,
    pipeline: gst::Pipeline,
    video_mixer: gst::Element,
    audio_mixer: gst::Element,
    profile: OutputProfile,
    runtime: tokio::runtime::Handle,
    source: Arc<dyn TrackSource>,
    /// Set when a core element fails; the broadcast reports it.
    failure: Mutex<Option<String>>,
    /// Flags of the source branches by bin name, raised when a branch
    /// errors so that its feeder rebuilds it.
    broken: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl Compositor {
    /// Builds and starts the pipeline for `studio` with the first scene.
    /// Source tracks are subscribed on `runtime`.
    pub fn start(
        studio: &str,
        profile: OutputProfile,
        scene: &Scene,
        source: Arc<dyn TrackSource>,
        outputs: ProgramOutputs,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, CompositorError> {
        gst::init().map_err(|e| CompositorError::Init(e.to_string()))?;
        for name in REQUIRED_ELEMENTS {
            if gst::ElementFactory::find(name).is_none() {
                return Err(CompositorError::MissingElement(name));
            }
        }

        let pipeline = gst::Pipeline::with_name(&format!("studio-{studio}"));
        // Not `ignore-inactive-pads`: with GStreamer 1.22.0 it made a mixer
        // stall for good at start-up now and then (about one start in ten
        // in our tests). Without it a silent pad costs at most the mixer
        // latency per output buffer, and output stays real time.
        let video_mixer = gst::ElementFactory::make("compositor")
            .name("video-mixer")
            .property("latency", MIXER_LATENCY.nseconds())
            .property_from_str("background", "black")
            .build()?;
        let audio_mixer = gst::ElementFactory::make("audiomixer")
            .name("audio-mixer")
            .property("latency", MIXER_LATENCY.nseconds())
            .build()?;
        pipeline.add_many([&video_mixer, &audio_mixer])?;

        let core = Arc::new(Core {
            studio: studio.to_owned(),
            pipeline,
            video_mixer,
            audio_mixer,
            profile,
            runtime,
            source,
            failure: Mutex::new(None),
            broken: Mutex::new(HashMap::new()),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let bus_thread = spawn_bus_watch(core.clone(), stopping.clone())?;
        let started = (|| {
            let output = output::build(&core, outputs)?;
            let encoder = output.encoder.clone();
            let mut stage = Stage::new(core.clone(), output)?;
            // The first scene goes in before anything flows, so that no
            // property changes race the first negotiation. A failed first
            // scene drops the stage, which stops its feeders.
            stage.apply(scene)?;
            core.pipeline.set_state(gst::State::Playing)?;
            Ok((stage, encoder))
        })();
        let (stage, encoder) = match started {
            Ok(stage) => stage,
            Err(error) => {
                let _ = core.pipeline.set_state(gst::State::Null);
                stopping.store(true, Ordering::SeqCst);
                let _ = bus_thread.join();
                return Err(error);
            }
        };

        tracing::info!(studio = %studio, width = profile.width(), height = profile.height(),
            framerate = profile.framerate(), "compositor started");
        Ok(Self {
            core,
            stage: Mutex::new(stage),
            encoder,
            bus_thread: Mutex::new(Some(bus_thread)),
            stopping,
        })
    }

    /// Applies a new scene to the playing pipeline. On error the previous
    /// scene may be partly replaced; the pipeline keeps running.
    pub fn update_scene(&self, scene: &Scene) -> Result<(), CompositorError> {
        lock(&self.stage).apply(scene)
    }

    /// Changes the video bitrate without restarting the encoder.
    pub fn set_video_bitrate(&self, kbps: u32) {
        // x264enc takes a new bitrate at the next frame.
        self.encoder.set_property("bitrate", kbps);
    }

    /// The video bitrate the encoder runs at, in kb/s.
    pub fn video_bitrate_kbps(&self) -> u32 {
        self.encoder.property::<u32>("bitrate")
    }

    /// Why the pipeline failed, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.core.failure).clone()
    }

    /// The output profile.
    pub fn profile(&self) -> OutputProfile {
        self.core.profile
    }

    /// Stops the sources, the pipeline and the bus watch. Blocks briefly;
    /// calling it again does nothing.
    pub fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.stage).clear();
        if let Err(error) = self.core.pipeline.set_state(gst::State::Null) {
            tracing::warn!(studio = %self.core.studio, %error, "pipeline did not stop cleanly");
        }
        if let Some(thread) = lock(&self.bus_thread).take() {
            let _ = thread.join();
        }
        tracing::info!(studio = %self.core.studio, "compositor stopped");
    }
}

impl Drop for Compositor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Core {
    /// The pipeline's running time now, in microseconds.
    pub(crate) fn running_time_us(&self) -> i64 {
        self.pipeline
            .current_running_time()
            .map_or(0, |t| t.useconds() as i64)
    }

    /// Adds a bin with a `src` ghost pad and links it to a new request pad
    /// of `mixer`, in the playing pipeline.
    pub(crate) fn attach(
        &self,
        bin: gst::Bin,
        mixer: &gst::Element,
    ) -> Result<Branch, CompositorError> {
        self.pipeline.add(&bin)?;
        let attached = (|| {
            let pad = mixer
                .request_pad_simple("sink_%u")
                .ok_or_else(|| CompositorError::Pipeline("mixer refused a pad".into()))?;
            let src = bin
                .static_pad("src")
                .ok_or_else(|| CompositorError::Pipeline("branch has no src pad".into()))?;
            if let Err(error) = src.link(&pad) {
                mixer.release_request_pad(&pad);
                return Err(error.into());
            }
            Ok(pad)
        })();
        let pad = match attached {
            Ok(pad) => pad,
            Err(error) => {
                let _ = self.pipeline.remove(&bin);
                return Err(error);
            }
        };
        let branch = Branch {
            bin,
            pad,
            mixer: mixer.clone(),
        };
        if let Err(error) = branch.bin.sync_state_with_parent() {
            self.detach(branch);
            return Err(error.into());
        }
        Ok(branch)
    }

    /// Removes a branch from the playing pipeline without waiting on it.
    ///
    /// A branch's streaming thread may be parked inside the mixer, waiting
    /// for the output to reach a buffer stamped ahead of it; stopping the
    /// branch first would wait for that thread forever. So the branch's
    /// output is cut first (later buffers are dropped at its pad), the
    /// mixer pad is released, which flushes it and wakes any thread waiting
    /// there, and only then is the branch stopped, on a thread of its own so
    /// that a stuck element never stalls a scene change or a stop.
    pub(crate) fn detach(&self, branch: Branch) {
        if let Some(src) = branch.bin.static_pad("src") {
            src.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                |_, _| gst::PadProbeReturn::Drop,
            );
        }
        branch.mixer.release_request_pad(&branch.pad);
        let _ = self.pipeline.remove(&branch.bin);
        lock(&self.broken).remove(branch.bin.name().as_str());
        let bin = branch.bin;
        let stopped = std::thread::Builder::new()
            .name("branch-stop".into())
            .spawn({
                let bin = bin.clone();
                move || {
                    let _ = bin.set_state(gst::State::Null);
                }
            });
        if stopped.is_err() {
            let _ = bin.set_state(gst::State::Null);
        }
    }

    /// Registers a branch whose errors its owner handles by rebuilding it.
    pub(crate) fn watch_branch(&self, name: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        lock(&self.broken).insert(name.to_owned(), flag.clone());
        flag
    }
}

/// A branch linked into one of the mixers.
pub(crate) struct Branch {
    pub bin: gst::Bin,
    /// The mixer's request pad the branch feeds; carries the layout
    /// properties.
    pub pad: gst::Pad,
    mixer: gst::Element,
}

fn spawn_bus_watch(
    core: Arc<Core>,
    stopping: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, CompositorError> {
    let bus = core
        .pipeline
        .bus()
        .ok_or_else(|| CompositorError::Pipeline("pipeline has no bus".into()))?;
    std::thread::Builder::new()
        .name(format!("bus-{}", core.studio))
        .spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
                    continue;
                };
                handle_message(&core, &message);
            }
        })
        .map_err(|e| CompositorError::Pipeline(e.to_string()))
}

fn handle_message(core: &Core, message: &gst::Message) {
    use gst::MessageView;
    match message.view() {
        MessageView::Error(error) => {
            let Some(origin) = message.src() else { return };
            // Errors from branches already removed are leftovers.
            let Some(branch) = top_level_child(&core.pipeline, origin) else {
                return;
            };
            if let Some(flag) = lock(&core.broken).get(&branch).cloned() {
                tracing::warn!(studio = %core.studio, element = %origin.name(),
                    error = %error.error(), "source branch failed, rebuilding");
                flag.store(true, Ordering::SeqCst);
                return;
            }
            if branch.starts_with(slot::BRANCH_PREFIX) {
                // A source branch on its way out; its owner dropped it.
                return;
            }
            tracing::error!(studio = %core.studio, element = %origin.name(),
                error = %error.error(), debug = ?error.debug(), "pipeline failed");
            lock(&core.failure)
                .get_or_insert_with(|| format!("{}: {}", origin.name(), error.error()));
        }
        MessageView::Warning(warning) => {
            tracing::debug!(studio = %core.studio, warning = %warning.error(), "pipeline warning");
        }
        MessageView::Latency(_) => {
            // A branch with a different latency joined; let the mixers know.
            let _ = core.pipeline.recalculate_latency();
        }
        _ => {}
    }
}

/// The name of the pipeline's direct child that contains `object`.
fn top_level_child(pipeline: &gst::Pipeline, object: &gst::Object) -> Option<String> {
    let mut current = object.clone();
    loop {
        let parent = current.parent()?;
        if parent == *pipeline.upcast_ref::<gst::Object>() {
            return Some(current.name().to_string());
        }
        current = parent;
    }
}

/// How long a one-shot helper pipeline (image decoding) may take.
pub(crate) const HELPER_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind these locks; a panicking holder leaves it usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
