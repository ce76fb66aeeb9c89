//! A source encoded the way browsers send it: VP8 video and Opus audio,
//! produced by GStreamer's encoders in real time and published frame by
//! frame as the source's `video` and `audio` tracks.

use std::sync::Arc;

use buildstream_mesh::{Codec, Frame, TrackConfig, TrackName, TrackProducer, Tracks};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

pub struct Vp8OpusSource {
    pipeline: gst::Pipeline,
}

impl Vp8OpusSource {
    /// Publishes `studio/{studio}/{source}` as a solid colour (`0xAARRGGBB`)
    /// at 640x360, 30 fps, with a stereo tone.
    pub fn start(tracks: &Tracks, studio: &str, source: &str, argb: u32) -> Self {
        gst::init().expect("gstreamer");
        let description = format!(
            "videotestsrc is-live=true pattern=solid-color foreground-color={argb} \
               ! video/x-raw,width=640,height=360,framerate=30/1 \
               ! vp8enc deadline=1 keyframe-max-dist=30 ! appsink name=video sync=false \
             audiotestsrc is-live=true wave=sine freq=660 \
               ! audio/x-raw,rate=48000,channels=2 \
               ! opusenc ! appsink name=audio sync=false"
        );
        let pipeline = gst::parse::launch(&description)
            .expect("vp8enc and opusenc are installed")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let video = Arc::new(TrackConfig {
            codec: Codec::Vp8,
            description: Bytes::new(),
            width: 640,
            height: 360,
            sample_rate: 0,
            channels: 0,
        });
        let audio = Arc::new(TrackConfig {
            codec: Codec::Opus,
            description: Bytes::new(),
            width: 0,
            height: 0,
            sample_rate: 48_000,
            channels: 2,
        });
        for (sink, config, kind) in [("video", video, "video"), ("audio", audio, "audio")] {
            let producer = tracks.publish(TrackName::new(studio, source, kind).expect("name"));
            let sink = pipeline
                .by_name(sink)
                .expect("sink")
                .downcast::<gst_app::AppSink>()
                .expect("appsink");
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| forward(sink, &producer, &config))
                    .build(),
            );
        }
        pipeline.set_state(gst::State::Playing).expect("playing");
        Self { pipeline }
    }
}

fn forward(
    sink: &gst_app::AppSink,
    producer: &TrackProducer,
    config: &Arc<TrackConfig>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
    let timestamp_us = buffer.pts().map_or(0, |pts| pts.useconds() as i64);
    let _ = producer.write(Frame {
        timestamp_us,
        composition_offset_us: 0,
        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        payload: Bytes::copy_from_slice(&map),
        config: config.clone(),
    });
    Ok(gst::FlowSuccess::Ok)
}

impl Drop for Vp8OpusSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
