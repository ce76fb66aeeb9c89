//! How frames travel as MoQ objects: the payload layout of one object, and
//! how a track's frames are cut into MoQ groups.
//!
//! This module does no I/O; the transport feeds it frames or object bytes.
//!
//! # Groups
//!
//! One [`Frame`] is one MoQ object. A MoQ group (one QUIC stream) starts at
//! the first frame sent and then:
//!
//! - video: at every keyframe, so a group is a GOP;
//! - audio: at a keyframe once the current group holds at least
//!   [`AUDIO_GROUP_FRAMES`] frames. Audio frames all decode on their own, so
//!   a group per frame would only cost a QUIC stream per 20 ms.
//!
//! The receiver does not rely on the grouping: each object carries its own
//! keyframe flag, so the receiving node rebuilds the original group structure.
//!
//! # Object payload
//!
//! All integers big-endian.
//!
//! ```text
//! u8    flags          bit 0: keyframe; bit 1: a config follows; others zero
//! i64   timestamp_us   decode timestamp
//! i32   composition_offset_us
//! -- only when flag bit 1 is set --
//! u8    codec name length n, 1..=16
//! n     codec name     ASCII, as Codec::as_str ("h264", "vp8", "aac", "opus")
//! u32   width
//! u32   height
//! u32   sample_rate
//! u8    channels
//! u32   description length d
//! d     description    avcC, AudioSpecificConfig, OpusHead or empty
//! -- always --
//! ...   frame bytes    the rest of the object
//! ```
//!
//! A config is written whenever it differs from the previous frame's, and
//! always on the first object of a group, so a subscriber that starts at any
//! group learns the config at once and a change applies at the exact frame.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Codec, Frame, TrackConfig};

/// An audio group closes at the first keyframe after this many frames
/// (about 0.5 s of 20 ms frames).
pub const AUDIO_GROUP_FRAMES: usize = 25;

const FLAG_KEYFRAME: u8 = 0b01;
const FLAG_CONFIG: u8 = 0b10;
const KNOWN_FLAGS: u8 = FLAG_KEYFRAME | FLAG_CONFIG;
const MAX_CODEC_NAME: usize = 16;
/// flags + timestamp + composition offset.
const FIXED_HEADER: usize = 1 + 8 + 4;

/// Why an object could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// The object ends inside the named field.
    #[error("object truncated in {0}")]
    Truncated(&'static str),
    /// Flag bits this version does not know are set.
    #[error("object has unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// The codec name length is zero or too long.
    #[error("codec name length {0} out of range")]
    CodecNameLength(usize),
    /// The codec name is not one this node can decode.
    #[error("unknown codec {0:?}")]
    UnknownCodec(String),
    /// A frame arrived before any config, so it cannot be decoded.
    #[error("frame without a config")]
    MissingConfig,
}

/// One object's content, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Decode timestamp in microseconds.
    pub timestamp_us: i64,
    /// Presentation minus decode time in microseconds.
    pub composition_offset_us: i32,
    /// Whether a decoder can start at this frame.
    pub keyframe: bool,
    /// The config this frame starts using, if it carries one.
    pub config: Option<TrackConfig>,
    /// The encoded frame bytes.
    pub payload: Bytes,
}

/// Encodes `frame` as one object payload, with its config if `with_config`.
pub fn encode(frame: &Frame, with_config: bool) -> Bytes {
    let config = with_config.then_some(frame.config.as_ref());
    let config_len = config.map_or(0, |c| {
        1 + c.codec.as_str().len() + 4 + 4 + 4 + 1 + 4 + c.description.len()
    });
    let mut out = BytesMut::with_capacity(FIXED_HEADER + config_len + frame.payload.len());

    let mut flags = 0;
    if frame.keyframe {
        flags |= FLAG_KEYFRAME;
    }
    if config.is_some() {
        flags |= FLAG_CONFIG;
    }
    out.put_u8(flags);
    out.put_i64(frame.timestamp_us);
    out.put_i32(frame.composition_offset_us);

    if let Some(config) = config {
        let name = config.codec.as_str();
        // Codec names are short constants; the length always fits in a u8.
        out.put_u8(name.len() as u8);
        out.put_slice(name.as_bytes());
        out.put_u32(config.width);
        out.put_u32(config.height);
        out.put_u32(config.sample_rate);
        out.put_u8(config.channels);
        // A description over 4 GiB cannot come out of any encoder.
        out.put_u32(config.description.len() as u32);
        out.put_slice(&config.description);
    }

    out.put_slice(&frame.payload);
    out.freeze()
}

/// Decodes one object payload. The frame bytes share `object`'s buffer.
pub fn decode(mut object: Bytes) -> Result<Object, ObjectError> {
    if object.remaining() < FIXED_HEADER {
        return Err(ObjectError::Truncated("header"));
    }
    let flags = object.get_u8();
    if flags & !KNOWN_FLAGS != 0 {
        return Err(ObjectError::UnknownFlags(flags));
    }
    let timestamp_us = object.get_i64();
    let composition_offset_us = object.get_i32();

    let config = if flags & FLAG_CONFIG != 0 {
        Some(decode_config(&mut object)?)
    } else {
        None
    };

    Ok(Object {
        timestamp_us,
        composition_offset_us,
        keyframe: flags & FLAG_KEYFRAME != 0,
        config,
        payload: object,
    })
}

fn decode_config(object: &mut Bytes) -> Result<TrackConfig, ObjectError> {
    let name_len = usize::from(take_u8(object, "codec name length")?);
    if name_len == 0 || name_len > MAX_CODEC_NAME {
        return Err(ObjectError::CodecNameLength(name_len));
    }
    let name = take_bytes(object, name_len, "codec name")?;
    let codec = std::str::from_utf8(&name)
        .ok()
        .and_then(Codec::parse)
        .ok_or_else(|| ObjectError::UnknownCodec(String::from_utf8_lossy(&name).into_owned()))?;

    if object.remaining() < 4 + 4 + 4 + 1 + 4 {
        return Err(ObjectError::Truncated("config"));
    }
    let width = object.get_u32();
    let height = object.get_u32();
    let sample_rate = object.get_u32();
    let channels = object.get_u8();
    let description_len = object.get_u32() as usize;
    let description = take_bytes(object, description_len, "description")?;

    Ok(TrackConfig {
        codec,
        description,
        width,
        height,
        sample_rate,
        channels,
    })
}

fn take_u8(buf: &mut Bytes, field: &'static str) -> Result<u8, ObjectError> {
    if buf.has_remaining() {
        Ok(buf.get_u8())
    } else {
        Err(ObjectError::Truncated(field))
    }
}

fn take_bytes(buf: &mut Bytes, len: usize, field: &'static str) -> Result<Bytes, ObjectError> {
    if buf.remaining() < len {
        return Err(ObjectError::Truncated(field));
    }
    Ok(buf.split_to(len))
}

/// The sending side of one track: decides where groups start and when the
/// config must be repeated.
#[derive(Debug, Default)]
pub struct TrackEncoder {
    /// Config of the previous frame in the current group; `None` at a group
    /// start, which forces the config into the first object.
    previous_config: Option<Arc<TrackConfig>>,
    frames_in_group: usize,
    started: bool,
}

/// One frame, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedObject {
    /// Whether this object must open a new MoQ group.
    pub starts_group: bool,
    /// The object payload.
    pub payload: Bytes,
}

impl TrackEncoder {
    /// An encoder for a track whose first frame has not been sent yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes the next frame of the track.
    pub fn push(&mut self, frame: &Frame) -> EncodedObject {
        let starts_group = !self.started
            || (frame.keyframe
                && (frame.config.codec.is_video() || self.frames_in_group >= AUDIO_GROUP_FRAMES));
        self.started = true;
        if starts_group {
            self.previous_config = None;
            self.frames_in_group = 0;
        }

        let with_config = match &self.previous_config {
            None => true,
            Some(previous) => !Arc::ptr_eq(previous, &frame.config) && **previous != *frame.config,
        };
        self.previous_config = Some(frame.config.clone());
        self.frames_in_group += 1;

        EncodedObject {
            starts_group,
            payload: encode(frame, with_config),
        }
    }
}

/// The receiving side of one track: turns objects back into frames, keeping
/// the current config.
#[derive(Debug, Default)]
pub struct TrackDecoder {
    config: Option<Arc<TrackConfig>>,
}

impl TrackDecoder {
    /// A decoder that has seen no config yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the next object of the track. A repeated, unchanged config
    /// keeps the same [`Arc`], so consumers comparing configs by pointer see
    /// a change only where there is one.
    pub fn decode(&mut self, object: Bytes) -> Result<Frame, ObjectError> {
        let object = decode(object)?;
        if let Some(config) = object.config {
            if self.config.as_deref() != Some(&config) {
                self.config = Some(Arc::new(config));
            }
        }
        let config = self.config.clone().ok_or(ObjectError::MissingConfig)?;
        Ok(Frame {
            timestamp_us: object.timestamp_us,
            composition_offset_us: object.composition_offset_us,
            keyframe: object.keyframe,
            payload: object.payload,
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video_config(width: u32) -> Arc<TrackConfig> {
        Arc::new(TrackConfig {
            codec: Codec::H264,
            description: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff]),
            width,
            height: 720,
            sample_rate: 0,
            channels: 0,
        })
    }

    fn audio_config() -> Arc<TrackConfig> {
        Arc::new(TrackConfig {
            codec: Codec::Opus,
            description: Bytes::new(),
            width: 0,
            height: 0,
            sample_rate: 48_000,
            channels: 2,
        })
    }

    fn frame(ts: i64, keyframe: bool, config: &Arc<TrackConfig>) -> Frame {
        Frame {
            timestamp_us: ts,
            composition_offset_us: -40_000,
            keyframe,
            payload: Bytes::from(format!("frame {ts}")),
            config: config.clone(),
        }
    }

    fn assert_same(a: &Frame, b: &Frame) {
        assert_eq!(a.timestamp_us, b.timestamp_us);
        assert_eq!(a.composition_offset_us, b.composition_offset_us);
        assert_eq!(a.keyframe, b.keyframe);
        assert_eq!(a.payload, b.payload);
        assert_eq!(*a.config, *b.config);
    }

    #[test]
    fn round_trips_with_and_without_config() {
        let config = video_config(1280);
        let original = frame(i64::MIN + 1, true, &config);
        let object = decode(encode(&original, true)).unwrap();
        assert_eq!(object.config.as_ref(), Some(&*config));
        assert_eq!(object.timestamp_us, original.timestamp_us);
        assert_eq!(object.composition_offset_us, -40_000);
        assert!(object.keyframe);
        assert_eq!(object.payload, original.payload);

        let plain = decode(encode(&frame(7, false, &config), false)).unwrap();
        assert_eq!(plain.config, None);
        assert!(!plain.keyframe);
        assert_eq!(plain.payload, Bytes::from_static(b"frame 7"));
    }

    #[test]
    fn round_trips_every_codec_and_empty_payload() {
        for codec in [Codec::H264, Codec::Vp8, Codec::Aac, Codec::Opus] {
            let config = Arc::new(TrackConfig {
                codec,
                description: Bytes::from_static(b"\x12\x10"),
                width: 1,
                height: 2,
                sample_rate: 44_100,
                channels: 6,
            });
            let mut original = frame(1, true, &config);
            original.payload = Bytes::new();
            let mut decoder = TrackDecoder::new();
            let decoded = decoder.decode(encode(&original, true)).unwrap();
            assert_same(&original, &decoded);
        }
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let config = video_config(1920);
        let encoded = encode(&frame(1, true, &config), true);
        let frame_len = b"frame 1".len();
        // Every cut that removes part of the header or config must fail;
        // cuts inside the frame bytes only shorten the frame.
        for len in 0..encoded.len() - frame_len {
            let result = decode(encoded.slice(..len));
            assert!(
                matches!(result, Err(ObjectError::Truncated(_))),
                "cut at {len}: {result:?}"
            );
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        let config = video_config(1920);
        let encoded = encode(&frame(1, true, &config), true).to_vec();

        let mut long_description = encoded.clone();
        // The description length sits after flags, ts, offset, name, w, h, rate, ch.
        let at = FIXED_HEADER + 1 + 4 + 4 + 4 + 4 + 1;
        long_description[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode(long_description.into()),
            Err(ObjectError::Truncated("description"))
        );

        for bad in [0u8, 17, 255] {
            let mut name_len = encoded.clone();
            name_len[FIXED_HEADER] = bad;
            assert_eq!(
                decode(name_len.into()),
                Err(ObjectError::CodecNameLength(usize::from(bad)))
            );
        }
    }

    #[test]
    fn unknown_codec_and_flags_are_errors() {
        let config = video_config(1920);
        let mut encoded = encode(&frame(1, true, &config), true).to_vec();
        encoded[FIXED_HEADER + 1..FIXED_HEADER + 5].copy_from_slice(b"h265");
        assert_eq!(
            decode(encoded.into()),
            Err(ObjectError::UnknownCodec("h265".into()))
        );

        let mut encoded = encode(&frame(1, true, &config), true).to_vec();
        encoded[FIXED_HEADER + 1..FIXED_HEADER + 5].copy_from_slice(&[0xff, 0xfe, 0, 1]);
        assert!(matches!(
            decode(encoded.into()),
            Err(ObjectError::UnknownCodec(_))
        ));

        let mut encoded = encode(&frame(1, true, &config), false).to_vec();
        encoded[0] |= 0x80;
        assert_eq!(decode(encoded.into()), Err(ObjectError::UnknownFlags(0x81)));
    }

    #[test]
    fn decoder_needs_a_config_first() {
        let config = video_config(1920);
        let mut decoder = TrackDecoder::new();
        assert_eq!(
            decoder
                .decode(encode(&frame(1, false, &config), false))
                .err(),
            Some(ObjectError::MissingConfig)
        );
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // A cheap stand-in for the fuzz target: every prefix and every
        // single-byte corruption of a valid object.
        let config = video_config(640);
        let encoded = encode(&frame(99, true, &config), true).to_vec();
        for len in 0..=encoded.len() {
            let _ = decode(Bytes::copy_from_slice(&encoded[..len]));
        }
        for at in 0..encoded.len() {
            for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut corrupt = encoded.clone();
                corrupt[at] = value;
                let _ = TrackDecoder::new().decode(corrupt.into());
            }
        }
    }

    #[test]
    fn video_groups_follow_keyframes_and_config_repeats_per_group() {
        let config = video_config(1280);
        let mut encoder = TrackEncoder::new();
        let pushes: Vec<_> = [(0, true), (1, false), (2, false), (3, true), (4, false)]
            .iter()
            .map(|&(ts, key)| encoder.push(&frame(ts, key, &config)))
            .collect();
        let starts: Vec<_> = pushes.iter().map(|o| o.starts_group).collect();
        assert_eq!(starts, [true, false, false, true, false]);
        let configs: Vec<_> = pushes
            .iter()
            .map(|o| decode(o.payload.clone()).unwrap().config.is_some())
            .collect();
        assert_eq!(configs, [true, false, false, true, false]);
    }

    #[test]
    fn first_frame_opens_a_group_even_without_keyframe() {
        let config = video_config(1280);
        let mut encoder = TrackEncoder::new();
        assert!(encoder.push(&frame(0, false, &config)).starts_group);
        assert!(!encoder.push(&frame(1, false, &config)).starts_group);
    }

    #[test]
    fn config_change_mid_group_is_sent_once_at_that_frame() {
        let small = video_config(640);
        let large = video_config(1920);
        let equal_copy = Arc::new((*large).clone());
        let mut encoder = TrackEncoder::new();
        let mut decoder = TrackDecoder::new();
        let frames = [
            frame(0, true, &small),
            frame(1, false, &small),
            frame(2, false, &large),
            frame(3, false, &equal_copy),
            frame(4, false, &large),
        ];
        let mut decoded = Vec::new();
        let mut carried = Vec::new();
        for f in &frames {
            let object = encoder.push(f);
            carried.push(decode(object.payload.clone()).unwrap().config.is_some());
            decoded.push(decoder.decode(object.payload).unwrap());
        }
        assert_eq!(carried, [true, false, true, false, false]);
        for (a, b) in frames.iter().zip(&decoded) {
            assert_same(a, b);
        }
        assert!(Arc::ptr_eq(&decoded[0].config, &decoded[1].config));
        assert!(!Arc::ptr_eq(&decoded[1].config, &decoded[2].config));
        assert!(Arc::ptr_eq(&decoded[2].config, &decoded[4].config));
    }

    #[test]
    fn repeated_config_at_group_start_keeps_the_same_arc() {
        let config = video_config(1280);
        let mut encoder = TrackEncoder::new();
        let mut decoder = TrackDecoder::new();
        let a = decoder
            .decode(encoder.push(&frame(0, true, &config)).payload)
            .unwrap();
        let b = decoder
            .decode(encoder.push(&frame(1, true, &config)).payload)
            .unwrap();
        assert!(Arc::ptr_eq(&a.config, &b.config));
    }

    #[test]
    fn audio_groups_span_several_frames() {
        let config = audio_config();
        let mut encoder = TrackEncoder::new();
        let starts: Vec<_> = (0..(AUDIO_GROUP_FRAMES * 2 + 1))
            .map(|ts| encoder.push(&frame(ts as i64, true, &config)).starts_group)
            .collect();
        let group_starts: Vec<_> = starts
            .iter()
            .enumerate()
            .filter(|(_, s)| **s)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            group_starts,
            [0, AUDIO_GROUP_FRAMES, AUDIO_GROUP_FRAMES * 2]
        );
    }
}
