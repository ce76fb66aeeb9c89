//! One on-stage source: its place on the frame, its placeholder, and the
//! tasks that feed its mesh tracks into decoders in the playing pipeline.
//!
//! A source's tracks come and go. While its video is absent the slot shows
//! a placeholder with the source's name; the feeder keeps asking for the
//! track and, once frames flow again, the decoded video takes the slot back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buildstream_mesh::{Codec, Frame, TrackConfig, TrackName};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio_util::sync::CancellationToken;

use super::{lock, Branch, CompositorError, Core, AUDIO_CHANNELS, AUDIO_RATE};
use crate::aac::AudioSpecificConfig;
use crate::layout::Rect;
use crate::scene::SourceId;
use crate::timing::{SourceClock, TrackTimeline};

/// Pause before asking again for a track that is absent or just ended.
const RETRY: Duration = Duration::from_millis(500);
/// A decoder that fails is rebuilt after this pause, doubled for each
/// failure in a row up to [`REBUILD_MAX`]: a stream it cannot decode must
/// not have the branch rebuilt for every frame.
const REBUILD_MIN: Duration = Duration::from_millis(250);
const REBUILD_MAX: Duration = Duration::from_secs(10);
/// A decoder that ran this long before failing starts the count afresh.
const REBUILD_STABLE: Duration = Duration::from_secs(10);
/// How much a source branch may queue before dropping its oldest frames.
const INPUT_QUEUE: gst::ClockTime = gst::ClockTime::from_seconds(2);
/// How much video a branch may queue before it skips to the next keyframe.
/// Below [`INPUT_QUEUE`], so that video is shed whole groups at a time: a
/// frame dropped from the middle of a group would leave the decoder drawing
/// garbage until the next keyframe.
const VIDEO_BACKLOG: gst::ClockTime = gst::ClockTime::from_seconds(1);
/// Placeholder: a dark tile with the source's name, rendered small and
/// rarely, then scaled into the slot by the compositor.
const PLACEHOLDER_COLOR: u32 = 0xFF2A_2A2E;
const PLACEHOLDER_SIZE: (i32, i32) = (640, 360);
const PLACEHOLDER_FPS: i32 = 5;

/// The name prefix of every source's decoding branch.
pub(crate) const BRANCH_PREFIX: &str = "input-";

/// Unique suffixes for element names: a pipeline's children need distinct
/// names, and a rebuilt branch must not collide with the one it replaces.
static GENERATION: AtomicU64 = AtomicU64::new(0);

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", GENERATION.fetch_add(1, Ordering::Relaxed))
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
}

impl Kind {
    fn track(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Audio => "audio",
        }
    }
}

/// One on-stage source.
pub(crate) struct Slot {
    pub source: SourceId,
    core: Arc<Core>,
    view: Arc<Mutex<SlotView>>,
    placeholder: Option<Branch>,
    placeholder_text: gst::Element,
    inputs: [Arc<TrackInput>; 2],
    cancel: CancellationToken,
}

/// Where the slot is and what it shows; shared with the feeder and the
/// pad probe that notices decoded video arriving.
struct SlotView {
    rect: Option<Rect>,
    zorder: u32,
    video_live: bool,
    placeholder_pad: gst::Pad,
    video_pad: Option<gst::Pad>,
}

impl SlotView {
    /// Pushes the view into pad properties.
    fn apply(&self) {
        let shown = self.rect.is_some();
        place(
            &self.placeholder_pad,
            self.rect,
            self.zorder,
            shown && !self.video_live,
            false,
        );
        if let Some(pad) = &self.video_pad {
            place(
                pad,
                self.rect,
                self.zorder + 1,
                shown && self.video_live,
                true,
            );
        }
    }
}

/// Sets a compositor pad's geometry and visibility. Hidden pads get alpha
/// zero, which the compositor skips without converting their frames.
pub(crate) fn place(
    pad: &gst::Pad,
    rect: Option<Rect>,
    zorder: u32,
    visible: bool,
    keep_aspect: bool,
) {
    if let Some(rect) = rect {
        pad.set_property("xpos", rect.x);
        pad.set_property("ypos", rect.y);
        pad.set_property("width", rect.width);
        pad.set_property("height", rect.height);
    }
    if keep_aspect {
        pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
    }
    pad.set_property("zorder", zorder);
    pad.set_property(
        "alpha",
        if visible && rect.is_some() {
            1.0f64
        } else {
            0.0
        },
    );
}

impl Slot {
    /// Adds the slot's placeholder to the pipeline and starts its feeders.
    pub fn new(core: Arc<Core>, source: SourceId, name: &str) -> Result<Self, CompositorError> {
        let (bin, placeholder_text) = placeholder_bin(&source, name)?;
        let placeholder = core.attach(bin, &core.video_mixer)?;
        let view = Arc::new(Mutex::new(SlotView {
            rect: None,
            zorder: 0,
            video_live: false,
            placeholder_pad: placeholder.pad.clone(),
            video_pad: None,
        }));
        lock(&view).apply();

        let clock = Arc::new(Mutex::new(SourceClock::default()));
        let cancel = CancellationToken::new();
        let mut inputs = Vec::with_capacity(2);
        for kind in [Kind::Video, Kind::Audio] {
            let name = TrackName::new(&core.studio, source.as_str(), kind.track())
                .map_err(|e| CompositorError::Pipeline(e.to_string()))?;
            let input = Arc::new(TrackInput {
                kind,
                name,
                decoder: Mutex::new(None),
            });
            let feeder = Feeder {
                core: core.clone(),
                input: input.clone(),
                view: view.clone(),
                clock: clock.clone(),
                cancel: cancel.clone(),
                rebuilds: Rebuilds::default(),
            };
            core.runtime.spawn(feeder.run());
            inputs.push(input);
        }
        let [video, audio]: [Arc<TrackInput>; 2] = inputs
            .try_into()
            .map_err(|_| CompositorError::Pipeline("slot inputs".into()))?;
        Ok(Self {
            source,
            core,
            view,
            placeholder: Some(placeholder),
            placeholder_text,
            inputs: [video, audio],
            cancel,
        })
    }

    /// Moves the slot; `None` hides it (its audio still plays).
    pub fn place(&self, rect: Option<Rect>, zorder: u32) {
        let mut view = lock(&self.view);
        view.rect = rect;
        view.zorder = zorder;
        view.apply();
    }

    /// Changes the name on the placeholder.
    pub fn set_name(&self, name: &str) {
        self.placeholder_text
            .set_property("text", gst::glib::markup_escape_text(name).as_str());
    }

    /// Stops the feeders and takes every branch out of the pipeline.
    pub fn remove(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        self.cancel.cancel();
        for input in &self.inputs {
            // The feeder checks the token under this lock before building,
            // so nothing is attached after this.
            if let Some(decoder) = lock(&input.decoder).take() {
                self.core.detach(decoder.branch);
            }
        }
        if let Some(placeholder) = self.placeholder.take() {
            self.core.detach(placeholder);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn placeholder_bin(
    source: &SourceId,
    name: &str,
) -> Result<(gst::Bin, gst::Element), CompositorError> {
    let bin = gst::Bin::with_name(&unique(&format!("placeholder-{source}")));
    let tile = gst::ElementFactory::make("videotestsrc")
        .property("is-live", true)
        .property_from_str("pattern", "solid-color")
        .property("foreground-color", PLACEHOLDER_COLOR)
        .build()?;
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", PLACEHOLDER_SIZE.0)
                .field("height", PLACEHOLDER_SIZE.1)
                .field("framerate", gst::Fraction::new(PLACEHOLDER_FPS, 1))
                .build(),
        )
        .build()?;
    let text = gst::ElementFactory::make("textoverlay")
        .property("text", gst::glib::markup_escape_text(name).as_str())
        .property_from_str("valignment", "center")
        .property_from_str("halignment", "center")
        .property("auto-resize", false)
        .property("font-desc", "Sans Bold 40")
        .build()?;
    bin.add_many([&tile, &caps, &text])?;
    gst::Element::link_many([&tile, &caps, &text])?;
    ghost_src(&bin, &text)?;
    Ok((bin, text))
}

/// Exposes `last`'s src pad as the bin's `src`.
pub(crate) fn ghost_src(bin: &gst::Bin, last: &gst::Element) -> Result<(), CompositorError> {
    let pad = last
        .static_pad("src")
        .ok_or_else(|| CompositorError::Pipeline("element has no src pad".into()))?;
    let ghost = gst::GhostPad::builder_with_target(&pad)?
        .name("src")
        .build();
    bin.add_pad(&ghost)?;
    Ok(())
}

/// One of a source's tracks: its decoding branch, rebuilt when the codec
/// changes or the branch fails.
struct TrackInput {
    kind: Kind,
    name: TrackName,
    decoder: Mutex<Option<Decoder>>,
}

struct Decoder {
    branch: Branch,
    appsrc: gst_app::AppSrc,
    config: Arc<TrackConfig>,
    broken: Arc<AtomicBool>,
    /// Raised before the first buffer of a subscription; the pad probe
    /// lowers it when that buffer reaches the mixer and shows the video.
    first_pending: Arc<AtomicBool>,
    /// Video frames are being dropped until the next keyframe, because the
    /// decoder fell behind.
    skipping: bool,
}

/// The task that feeds one track.
struct Feeder {
    core: Arc<Core>,
    input: Arc<TrackInput>,
    view: Arc<Mutex<SlotView>>,
    clock: Arc<Mutex<SourceClock>>,
    cancel: CancellationToken,
    rebuilds: Rebuilds,
}

/// When a failed decoder may be rebuilt.
#[derive(Debug, Default)]
struct Rebuilds {
    failures: u32,
    not_before: Option<Instant>,
    built_at: Option<Instant>,
}

impl Rebuilds {
    /// Records a failure at `now`; returns the pause before the next build.
    fn failed(&mut self, now: Instant) -> Duration {
        if self
            .built_at
            .is_some_and(|built| now.duration_since(built) > REBUILD_STABLE)
        {
            self.failures = 0;
        }
        self.failures += 1;
        let pause = REBUILD_MIN
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(REBUILD_MAX);
        self.not_before = Some(now + pause);
        pause
    }

    fn may_build(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|at| now >= at)
    }

    fn built(&mut self, now: Instant) {
        self.built_at = Some(now);
    }
}

impl Feeder {
    async fn run(mut self) {
        let track = self.input.name.to_string();
        loop {
            let subscribed = tokio::select! {
                _ = self.cancel.cancelled() => return,
                consumer = self.core.source.subscribe(&self.input.name) => consumer,
            };
            if let Some(mut consumer) = subscribed {
                tracing::info!(track = %track, "source track subscribed");
                let mut timeline = TrackTimeline::default();
                let mut fresh = true;
                let mut failing = false;
                loop {
                    let frame = tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        frame = consumer.next() => frame,
                    };
                    let Some(frame) = frame else { break };
                    match self.push(frame, &mut timeline, &mut fresh) {
                        Ok(()) => failing = false,
                        // Once per run of failures, not thirty times a second.
                        Err(error) if !failing => {
                            failing = true;
                            tracing::warn!(track = %track, %error, "source frames not decoded");
                        }
                        Err(error) => tracing::trace!(track = %track, %error, "frame dropped"),
                    }
                }
                tracing::info!(track = %track, "source track ended");
                if self.input.kind == Kind::Video {
                    let mut view = lock(&self.view);
                    view.video_live = false;
                    view.apply();
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    fn push(
        &mut self,
        frame: Frame,
        timeline: &mut TrackTimeline,
        fresh: &mut bool,
    ) -> Result<(), CompositorError> {
        let input = self.input.clone();
        let mut slot = lock(&input.decoder);
        if self.cancel.is_cancelled() {
            return Ok(());
        }
        let now = Instant::now();
        if slot
            .as_ref()
            .is_some_and(|d| d.broken.load(Ordering::SeqCst))
        {
            let pause = self.rebuilds.failed(now);
            if self.rebuilds.failures == 3 {
                tracing::warn!(track = %self.input.name, ?pause,
                    "source track keeps failing to decode; retrying less often");
            }
            self.drop_decoder(&mut slot);
        }
        if slot.is_none() && !self.rebuilds.may_build(now) {
            return Ok(());
        }
        let rebuild = slot
            .as_ref()
            .is_none_or(|d| d.config.codec != frame.config.codec);
        if rebuild {
            self.drop_decoder(&mut slot);
            // A decoder can only start at a keyframe.
            if !frame.keyframe {
                return Ok(());
            }
            let decoder = self.build(&frame.config)?;
            self.rebuilds.built(now);
            *fresh = true;
            *slot = Some(decoder);
        }
        // The invariant of the block above: a decoder is in place.
        let Some(decoder) = slot.as_mut() else {
            return Ok(());
        };

        if !Arc::ptr_eq(&decoder.config, &frame.config) {
            if *decoder.config != *frame.config {
                tracing::debug!(track = %self.input.name, "source codec configuration changed");
                decoder.appsrc.set_caps(Some(&caps_for(&frame.config)));
            }
            decoder.config = frame.config.clone();
        }

        if self.input.kind == Kind::Video {
            if !decoder.skipping && decoder.appsrc.current_level_time() > VIDEO_BACKLOG {
                tracing::debug!(track = %self.input.name, "decoder behind; skipping to the next keyframe");
                decoder.skipping = true;
            }
            if decoder.skipping {
                if !frame.keyframe {
                    return Ok(());
                }
                decoder.skipping = false;
            }
        }

        let now = self.core.running_time_us();
        let mapped = timeline.map(
            &mut lock(&self.clock),
            frame.timestamp_us,
            frame.composition_offset_us,
            now,
        );
        let mut buffer = gst::Buffer::from_slice(frame.payload);
        {
            // A buffer just made from bytes has no other owner.
            let Some(buffer) = buffer.get_mut() else {
                return Ok(());
            };
            buffer.set_dts(gst::ClockTime::from_useconds(mapped.dts_us.max(0) as u64));
            buffer.set_pts(gst::ClockTime::from_useconds(mapped.pts_us as u64));
            let mut flags = gst::BufferFlags::empty();
            if !frame.keyframe {
                flags |= gst::BufferFlags::DELTA_UNIT;
            }
            if mapped.discont || *fresh {
                flags |= gst::BufferFlags::DISCONT;
            }
            buffer.set_flags(flags);
        }
        if *fresh {
            decoder.first_pending.store(true, Ordering::SeqCst);
            *fresh = false;
        }
        match decoder.appsrc.push_buffer(buffer) {
            Ok(_) | Err(gst::FlowError::Flushing) => Ok(()),
            Err(error) => Err(CompositorError::Pipeline(error.to_string())),
        }
    }

    /// Takes the decoder out of the pipeline; the placeholder covers the
    /// slot until a new decoder delivers its first frame.
    fn drop_decoder(&self, slot: &mut Option<Decoder>) {
        let Some(old) = slot.take() else { return };
        if self.input.kind == Kind::Video {
            let mut view = lock(&self.view);
            view.video_pad = None;
            view.video_live = false;
            view.apply();
        }
        self.core.detach(old.branch);
    }

    /// Builds and attaches a decoding branch for `config`.
    fn build(&self, config: &Arc<TrackConfig>) -> Result<Decoder, CompositorError> {
        let name = unique(&format!(
            "{BRANCH_PREFIX}{}-{}",
            self.input.name.source(),
            self.input.kind.track()
        ));
        let bin = gst::Bin::with_name(&name);
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps_for(config))
            .is_live(true)
            .format(gst::Format::Time)
            .stream_type(gst_app::AppStreamType::Stream)
            .min_latency(0)
            .max_bytes(0)
            .max_buffers(0)
            .max_time(INPUT_QUEUE)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        let decoder = gst::ElementFactory::make(decoder_for(config.codec)).build()?;
        let mut chain: Vec<gst::Element> = vec![appsrc.clone().upcast(), decoder];
        if self.input.kind == Kind::Audio {
            chain.push(gst::ElementFactory::make("audioconvert").build()?);
            chain.push(gst::ElementFactory::make("audioresample").build()?);
            chain.push(
                gst::ElementFactory::make("capsfilter")
                    .property(
                        "caps",
                        gst::Caps::builder("audio/x-raw")
                            .field("rate", AUDIO_RATE as i32)
                            .field("channels", AUDIO_CHANNELS as i32)
                            .build(),
                    )
                    .build()?,
            );
        }
        bin.add_many(&chain)?;
        gst::Element::link_many(&chain)?;
        // `chain` always holds the appsrc and the decoder.
        let last = chain
            .last()
            .ok_or_else(|| CompositorError::Pipeline("empty chain".into()))?;
        ghost_src(&bin, last)?;

        let broken = self.core.watch_branch(&name);
        let mixer = match self.input.kind {
            Kind::Video => &self.core.video_mixer,
            Kind::Audio => &self.core.audio_mixer,
        };
        let branch = self.core.attach(bin, mixer)?;
        let first_pending = Arc::new(AtomicBool::new(false));
        if self.input.kind == Kind::Video {
            let pending = first_pending.clone();
            let view = Arc::downgrade(&self.view);
            branch
                .pad
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    if pending.swap(false, Ordering::SeqCst) {
                        if let Some(view) = view.upgrade() {
                            let mut view = lock(&view);
                            view.video_live = true;
                            view.apply();
                        }
                    }
                    gst::PadProbeReturn::Ok
                });
            let mut view = lock(&self.view);
            view.video_pad = Some(branch.pad.clone());
            view.apply();
        }
        let codec = config.codec.as_str();
        tracing::debug!(track = %self.input.name, codec, "decoder attached");
        Ok(Decoder {
            branch,
            appsrc,
            config: config.clone(),
            broken,
            first_pending,
            skipping: false,
        })
    }
}

fn decoder_for(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "avdec_h264",
        Codec::Vp8 => "vp8dec",
        Codec::Aac => "avdec_aac",
        Codec::Opus => "opusdec",
    }
}

/// The caps an appsrc announces for a track configuration.
fn caps_for(config: &TrackConfig) -> gst::Caps {
    let described = !config.description.is_empty();
    let codec_data = || gst::Buffer::from_slice(config.description.clone());
    let sized = |builder: gst::caps::Builder<gst::caps::NoFeature>| {
        if config.width > 0 && config.height > 0 {
            builder
                .field("width", config.width as i32)
                .field("height", config.height as i32)
        } else {
            builder
        }
    };
    match config.codec {
        Codec::H264 => {
            let builder = gst::Caps::builder("video/x-h264").field("alignment", "au");
            let builder = if described {
                builder
                    .field("stream-format", "avc")
                    .field("codec_data", codec_data())
            } else {
                builder.field("stream-format", "byte-stream")
            };
            sized(builder).build()
        }
        Codec::Vp8 => sized(gst::Caps::builder("video/x-vp8")).build(),
        Codec::Aac => {
            let asc = AudioSpecificConfig::parse(&config.description).ok();
            let rate = match config.sample_rate {
                0 => asc.map_or(AUDIO_RATE, |a| a.sample_rate),
                rate => rate,
            };
            let channels = match config.channels {
                0 => asc.map_or(2, |a| a.channels.max(1)),
                channels => channels,
            };
            let builder = gst::Caps::builder("audio/mpeg")
                .field("mpegversion", 4i32)
                .field("rate", rate as i32)
                .field("channels", i32::from(channels));
            if described {
                builder
                    .field("stream-format", "raw")
                    .field("codec_data", codec_data())
                    .build()
            } else {
                builder.field("stream-format", "adts").build()
            }
        }
        // TODO: pass the OpusHead on as streamheader; without it only
        // mapping family 0 (mono/stereo) decodes, which is what browsers send.
        Codec::Opus => gst::Caps::builder("audio/x-opus")
            .field("channel-mapping-family", 0i32)
            .field("rate", 48_000i32)
            .field("channels", i32::from(config.channels.clamp(1, 2)))
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn config(codec: Codec, description: &'static [u8]) -> TrackConfig {
        TrackConfig {
            codec,
            description: Bytes::from_static(description),
            width: 0,
            height: 0,
            sample_rate: 0,
            channels: 0,
        }
    }

    #[test]
    fn a_decoder_that_keeps_failing_is_rebuilt_less_and_less_often() {
        let start = Instant::now();
        let mut rebuilds = Rebuilds::default();
        rebuilds.built(start);
        let pauses: Vec<Duration> = (0..8).map(|_| rebuilds.failed(start)).collect();
        assert_eq!(pauses[0], REBUILD_MIN);
        assert_eq!(pauses[1], REBUILD_MIN * 2);
        assert_eq!(pauses[7], REBUILD_MAX);
        assert!(!rebuilds.may_build(start));
        assert!(rebuilds.may_build(start + REBUILD_MAX));
        // One that ran for a while before failing starts over.
        rebuilds.built(start);
        assert_eq!(rebuilds.failed(start + REBUILD_STABLE * 2), REBUILD_MIN);
    }

    #[test]
    fn caps_follow_the_track_configuration() {
        gst::init().unwrap();
        let h264 = caps_for(&TrackConfig {
            width: 640,
            height: 360,
            ..config(Codec::H264, &[1, 0x64, 0, 0x1f])
        });
        let s = h264.structure(0).unwrap();
        assert_eq!(s.get::<&str>("stream-format").unwrap(), "avc");
        assert_eq!(s.get::<i32>("width").unwrap(), 640);
        assert!(s.has_field("codec_data"));

        // AAC without rate and channels takes them from the ASC.
        let aac = caps_for(&config(Codec::Aac, &[0x12, 0x08]));
        let s = aac.structure(0).unwrap();
        assert_eq!(s.get::<i32>("rate").unwrap(), 44_100);
        assert_eq!(s.get::<i32>("channels").unwrap(), 1);

        let vp8 = caps_for(&config(Codec::Vp8, &[]));
        assert_eq!(vp8.structure(0).unwrap().name(), "video/x-vp8");
        assert_eq!(decoder_for(Codec::Opus), "opusdec");
    }
}
