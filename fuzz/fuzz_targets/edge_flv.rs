//! The edge's FLV tag body parsers (`buildstream_edge::flv::parse_video`
//! and `parse_audio`) on arbitrary RTMP audio and video message bodies.
//!
//! A sequence header that parses must describe something a decoder can
//! open: a picture with a size, audio with a rate and channels. Where the
//! origin's own FLV body parser reads the same AVC frame it must agree.

#![no_main]

use buildstream_edge::flv::{self, AudioTag, VideoTag};
use buildstream_mesh::Codec;
use buildstream_origin::flv::{parse_video_body, VideoPacket};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);

    match flv::parse_video(&body) {
        Ok(VideoTag::AvcSequenceHeader(config)) => {
            assert_eq!(config.codec, Codec::H264);
            assert!(config.width > 0 && config.height > 0, "{config:?}");
            assert_eq!(config.description, body.slice(5..));
            let record = flv::parse_avc_decoder_config(&config.description)
                .expect("the record parsed once already");
            assert_eq!(
                (record.sps.width, record.sps.height),
                (config.width, config.height)
            );
        }
        Ok(VideoTag::AvcFrame(frame)) => {
            assert_eq!(frame.data, body.slice(5..));
            // The origin reads the same legacy AVC frame header.
            let Ok(VideoPacket::Frame {
                keyframe,
                cts_ms,
                data,
            }) = parse_video_body(&body)
            else {
                panic!("the origin does not read an AVC frame the edge reads");
            };
            assert_eq!(
                (keyframe, cts_ms, data),
                (frame.keyframe, frame.composition_time_ms, frame.data)
            );
        }
        _ => {}
    }

    if let Ok(AudioTag::AacSequenceHeader(config)) = flv::parse_audio(&body) {
        assert_eq!(config.codec, Codec::Aac);
        assert!(config.sample_rate > 0 && config.channels > 0, "{config:?}");
        assert_eq!(config.description, body.slice(2..));
    }
});
