//! The encoding half of the pipeline: mixers → encoders → appsinks, and the
//! turning of encoded buffers into program packets (and mesh frames).

use std::sync::{Arc, Mutex};

use buildstream_mesh::{Codec, Frame, TrackConfig, TrackName, TrackProducer};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::{
    lock, CompositorError, Core, ProgramOutputs, AUDIO_BITRATE_KBPS, AUDIO_CHANNELS, AUDIO_RATE,
};
use crate::aac::AudioSpecificConfig;
use crate::flv;
use crate::program::{Fanout, Media, ProgramPacket};

/// The logo the overlay stage draws on every frame, if any.
pub(crate) type LogoSlot = Arc<Mutex<Option<gst_video::VideoOverlayComposition>>>;

/// What the stage keeps of the output half.
pub(crate) struct Output {
    pub logo: LogoSlot,
    pub encoder: gst::Element,
}

/// Builds both encoding chains behind the mixers.
pub(crate) fn build(core: &Arc<Core>, outputs: ProgramOutputs) -> Result<Output, CompositorError> {
    let profile = core.profile;
    let raw_video = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", profile.width() as i32)
        .field("height", profile.height() as i32)
        .field(
            "framerate",
            gst::Fraction::new(profile.framerate() as i32, 1),
        )
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let video_caps = make("capsfilter", "video-caps")?;
    video_caps.set_property("caps", &raw_video);

    // Per-pixel alpha survives only here: the compositor outputs I420, which
    // has none, so the logo is blended onto the finished frame instead.
    let overlay = make("overlaycomposition", "logo-overlay")?;
    let logo: LogoSlot = Arc::new(Mutex::new(None));
    let drawn = logo.clone();
    overlay.connect("draw", false, move |_| {
        Some(lock(&drawn).clone().to_value())
    });

    // The queue puts the encoder on its own thread, so composing the next
    // frame and encoding this one overlap.
    let video_queue = gst::ElementFactory::make("queue")
        .name("encode-queue")
        .property("max-size-buffers", 3u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", 0u64)
        .build()?;
    let encoder = gst::ElementFactory::make("x264enc")
        .name("video-encoder")
        .property_from_str("tune", "zerolatency")
        .property_from_str("speed-preset", "veryfast")
        .property("key-int-max", profile.keyframe_interval_frames())
        .property("bitrate", profile.video_bitrate_kbps())
        .build()?;
    let h264_caps = make("capsfilter", "h264-caps")?;
    h264_caps.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("profile", "high")
            .build(),
    );
    let video_sink = appsink("video-sink")?;

    let raw_audio = gst::Caps::builder("audio/x-raw")
        .field("rate", AUDIO_RATE as i32)
        .field("channels", AUDIO_CHANNELS as i32)
        .build();
    let audio_caps = make("capsfilter", "audio-caps")?;
    audio_caps.set_property("caps", &raw_audio);
    let audio_convert = make("audioconvert", "audio-convert")?;
    let audio_encoder = gst::ElementFactory::make("avenc_aac")
        .name("audio-encoder")
        .property("bitrate", (AUDIO_BITRATE_KBPS * 1000) as i32)
        .build()?;
    let aac_caps = make("capsfilter", "aac-caps")?;
    aac_caps.set_property(
        "caps",
        gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("stream-format", "raw")
            .build(),
    );
    let audio_sink = appsink("audio-sink")?;

    // Program audio for WebRTC players, which take Opus and not AAC: a
    // second encoder beside the AAC one, only when the program goes to the
    // mesh.
    let opus = match &outputs.tracks {
        Some(_) => Some(OpusBranch::build()?),
        None => None,
    };

    let pipeline = &core.pipeline;
    pipeline.add_many([
        &video_caps,
        &overlay,
        &video_queue,
        &encoder,
        &h264_caps,
        video_sink.upcast_ref(),
        &audio_caps,
        &audio_convert,
        &audio_encoder,
        &aac_caps,
        audio_sink.upcast_ref(),
    ])?;
    gst::Element::link_many([
        &core.video_mixer,
        &video_caps,
        &overlay,
        &video_queue,
        &encoder,
        &h264_caps,
        video_sink.upcast_ref(),
    ])?;
    match &opus {
        None => gst::Element::link_many([
            &core.audio_mixer,
            &audio_caps,
            &audio_convert,
            &audio_encoder,
            &aac_caps,
            audio_sink.upcast_ref(),
        ])?,
        Some(opus) => {
            let tee = make("tee", "audio-tee")?;
            let aac_queue = make("queue", "aac-queue")?;
            pipeline.add_many([&tee, &aac_queue])?;
            pipeline.add_many(opus.elements())?;
            gst::Element::link_many([&core.audio_mixer, &audio_caps, &tee])?;
            gst::Element::link_many([
                &tee,
                &aac_queue,
                &audio_convert,
                &audio_encoder,
                &aac_caps,
                audio_sink.upcast_ref(),
            ])?;
            tee.link(&opus.queue)?;
            gst::Element::link_many(opus.elements())?;
        }
    }

    let publish = |track: &str| -> Result<Option<TrackProducer>, CompositorError> {
        let Some(tracks) = &outputs.tracks else {
            return Ok(None);
        };
        let name = TrackName::new(&core.studio, "program", track)
            .map_err(|e| CompositorError::Pipeline(e.to_string()))?;
        Ok(Some(tracks.publish(name)))
    };
    if let Some(opus) = opus {
        let mut out = OpusOut {
            producer: publish("opus")?,
            config: Arc::new(TrackConfig {
                codec: Codec::Opus,
                description: Bytes::new(),
                width: 0,
                height: 0,
                sample_rate: AUDIO_RATE,
                channels: AUDIO_CHANNELS as u8,
            }),
        };
        opus.sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| out.on_sample(sink))
                .build(),
        );
    }
    let mut video = Encoded::new(Media::Video, outputs.fanout.clone(), publish("video")?);
    let mut audio = Encoded::new(Media::Audio, outputs.fanout, publish("audio")?);
    video_sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| video.on_sample(sink))
            .build(),
    );
    audio_sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| audio.on_sample(sink))
            .build(),
    );
    Ok(Output { logo, encoder })
}

fn make(factory: &str, name: &str) -> Result<gst::Element, CompositorError> {
    Ok(gst::ElementFactory::make(factory).name(name).build()?)
}

fn appsink(name: &str) -> Result<gst_app::AppSink, CompositorError> {
    Ok(gst_app::AppSink::builder()
        .name(name)
        // Live output: hand buffers over as soon as they are encoded.
        .sync(false)
        .enable_last_sample(false)
        .max_buffers(64)
        .build())
}

/// The Opus encoder for WebRTC players.
struct OpusBranch {
    queue: gst::Element,
    convert: gst::Element,
    encoder: gst::Element,
    sink: gst_app::AppSink,
}

impl OpusBranch {
    fn build() -> Result<Self, CompositorError> {
        let encoder = gst::ElementFactory::make("opusenc")
            .name("opus-encoder")
            .property("bitrate", (AUDIO_BITRATE_KBPS * 1000) as i32)
            .build()?;
        encoder.set_property_from_str("frame-size", "20");
        encoder.set_property_from_str("audio-type", "generic");
        Ok(Self {
            queue: make("queue", "opus-queue")?,
            convert: make("audioconvert", "opus-convert")?,
            encoder,
            sink: appsink("opus-sink")?,
        })
    }

    fn elements(&self) -> [&gst::Element; 4] {
        [
            &self.queue,
            &self.convert,
            &self.encoder,
            self.sink.upcast_ref(),
        ]
    }
}

/// Turns Opus packets into mesh frames of `studio/{id}/program/opus`.
struct OpusOut {
    producer: Option<TrackProducer>,
    config: Arc<TrackConfig>,
}

impl OpusOut {
    fn on_sample(&mut self, sink: &gst_app::AppSink) -> Result<gst::FlowSuccess, gst::FlowError> {
        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
        let (Some(producer), Some(buffer)) = (&self.producer, sample.buffer_owned()) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        let Some(pts) = buffer.pts() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let running = segment.and_then(|s| s.to_running_time(pts)).unwrap_or(pts);
        let payload = match buffer.into_mapped_buffer_readable() {
            Ok(mapped) => Bytes::from_owner(mapped),
            Err(_) => return Err(gst::FlowError::Error),
        };
        let frame = Frame {
            timestamp_us: running.useconds() as i64,
            composition_offset_us: 0,
            keyframe: true,
            payload,
            config: self.config.clone(),
        };
        if producer.write(frame).is_err() {
            self.producer = None;
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// Turns one encoder's output into program packets and mesh frames.
struct Encoded {
    media: Media,
    fanout: Fanout,
    producer: Option<TrackProducer>,
    caps: Option<gst::Caps>,
    config: Option<Arc<TrackConfig>>,
    header: Arc<Bytes>,
}

impl Encoded {
    fn new(media: Media, fanout: Fanout, producer: Option<TrackProducer>) -> Self {
        Self {
            media,
            fanout,
            producer,
            caps: None,
            config: None,
            header: Arc::new(Bytes::new()),
        }
    }

    fn on_sample(&mut self, sink: &gst_app::AppSink) -> Result<gst::FlowSuccess, gst::FlowError> {
        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
        if let Some(caps) = sample.caps() {
            // Samples do not share one caps object; compare contents (a few
            // fields and the small codec_data).
            if self.caps.as_deref() != Some(caps) {
                self.configure(caps);
            }
        }
        let (Some(config), Some(buffer)) = (self.config.clone(), sample.buffer_owned()) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        // Encoders shift their timestamps (x264enc by 1000 hours, to keep
        // B-frame decode times positive) and say so in the segment; the
        // program is stamped in running time.
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        let running_us = |time: gst::ClockTime| match &segment {
            Some(segment) => segment.to_running_time_full(time).map(|t| match t {
                gst::Signed::Positive(t) => t.useconds() as i64,
                gst::Signed::Negative(t) => -(t.useconds() as i64),
            }),
            None => Some(time.useconds() as i64),
        };
        let Some(pts_us) = buffer.pts().and_then(running_us) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let dts_us = buffer.dts().and_then(running_us).unwrap_or(pts_us);
        let keyframe =
            self.media == Media::Audio || !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let offset_us = pts_us - dts_us;

        // The encoded bytes are shared, not copied, by the mesh frame; the
        // FLV body needs its header in front and is built once for all
        // destinations.
        let payload = match buffer.into_mapped_buffer_readable() {
            Ok(mapped) => Bytes::from_owner(mapped),
            Err(_) => return Err(gst::FlowError::Error),
        };
        let body = match self.media {
            Media::Video => flv::avc_frame_body(keyframe, (offset_us / 1000) as i32, &payload),
            Media::Audio => flv::aac_frame_body(&payload),
        };
        self.fanout.push(&ProgramPacket {
            media: self.media,
            dts_us,
            keyframe,
            body,
            sequence_header: self.header.clone(),
        });
        if let Some(producer) = &self.producer {
            let frame = Frame {
                timestamp_us: dts_us,
                composition_offset_us: offset_us as i32,
                keyframe,
                payload,
                config,
            };
            if producer.write(frame).is_err() {
                // Someone else publishes the program track now; stop feeding it.
                self.producer = None;
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Takes the codec configuration from new caps.
    fn configure(&mut self, caps: &gst::CapsRef) {
        self.caps = Some(caps.to_owned());
        let Some(structure) = caps.structure(0) else {
            return;
        };
        let Ok(codec_data) = structure.get::<gst::Buffer>("codec_data") else {
            tracing::warn!(media = ?self.media, "encoder caps without codec_data");
            return;
        };
        let Ok(map) = codec_data.map_readable() else {
            return;
        };
        let description = Bytes::copy_from_slice(&map);
        let config = match self.media {
            Media::Video => TrackConfig {
                codec: Codec::H264,
                width: structure.get::<i32>("width").unwrap_or(0) as u32,
                height: structure.get::<i32>("height").unwrap_or(0) as u32,
                sample_rate: 0,
                channels: 0,
                description: description.clone(),
            },
            Media::Audio => {
                let asc = AudioSpecificConfig::parse(&description).ok();
                TrackConfig {
                    codec: Codec::Aac,
                    width: 0,
                    height: 0,
                    sample_rate: asc.map_or(AUDIO_RATE, |a| a.sample_rate),
                    channels: asc.map_or(AUDIO_CHANNELS as u8, |a| a.channels),
                    description: description.clone(),
                }
            }
        };
        self.header = Arc::new(match self.media {
            Media::Video => flv::avc_sequence_header_body(&description),
            Media::Audio => flv::aac_sequence_header_body(&description),
        });
        self.config = Some(Arc::new(config));
        tracing::debug!(media = ?self.media, "program codec configured");
    }
}
