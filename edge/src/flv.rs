//! FLV audio and video tag bodies, as RTMP audio and video messages carry them.
//!
//! Pure parsers, no I/O: an RTMP message payload goes in, a tagged value comes
//! out. H.264 sequence headers become a [`TrackConfig`] with the picture size
//! read from the SPS; AAC sequence headers become one with the rate and
//! channels read from the AudioSpecificConfig. Codecs the mesh does not carry
//! (HEVC, enhanced-RTMP FourCCs, MP3, Speex, ...) are reported as
//! [`UnsupportedCodec`] so that the caller can refuse that one track.

mod aac;
mod avc;
mod bits;

use std::fmt;

use buildstream_mesh::{Codec, TrackConfig};
use bytes::Bytes;

pub use aac::{parse_audio_specific_config, AacInfo};
pub use avc::{parse_avc_decoder_config, parse_sps, AvcDecoderConfig, SpsInfo};

/// Why a tag body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The body ended before its header did.
    #[error("{0} tag is truncated")]
    Truncated(&'static str),
    /// The `AVCDecoderConfigurationRecord` is malformed.
    #[error("bad AVC decoder configuration: {0}")]
    AvcConfig(&'static str),
    /// The sequence parameter set is malformed.
    #[error("bad sequence parameter set: {0}")]
    Sps(&'static str),
    /// The AudioSpecificConfig is malformed.
    #[error("bad AudioSpecificConfig: {0}")]
    Asc(&'static str),
}

/// A video tag body.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    /// An H.264 sequence header: the config every following frame uses.
    AvcSequenceHeader(TrackConfig),
    /// An H.264 access unit.
    AvcFrame(AvcFrame),
    /// The end of an H.264 sequence; nothing to forward.
    AvcEndOfSequence,
    /// A video info or command frame (frame type 5): carries no picture.
    Command,
    /// A codec the mesh does not carry.
    Unsupported(UnsupportedCodec),
}

/// An H.264 access unit as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcFrame {
    /// Frame type 1: a decoder can start here.
    pub keyframe: bool,
    /// Presentation minus decode time in milliseconds (signed 24 bits).
    pub composition_time_ms: i32,
    /// Length-prefixed NAL units, exactly as the encoder sent them.
    pub data: Bytes,
}

/// An audio tag body.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioTag {
    /// An AAC sequence header: the config every following frame uses.
    AacSequenceHeader(TrackConfig),
    /// One raw AAC access unit.
    AacFrame(Bytes),
    /// A codec the mesh does not carry.
    Unsupported(UnsupportedCodec),
}

/// A codec found in a tag that the mesh does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedCodec {
    /// A legacy FLV video codec id other than 7 (AVC).
    Video(u8),
    /// A legacy FLV sound format other than 10 (AAC).
    Audio(u8),
    /// An enhanced-RTMP codec, named by its FourCC (`hvc1`, `av01`, `Opus`, ...).
    FourCc([u8; 4]),
}

impl fmt::Display for UnsupportedCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UnsupportedCodec::Video(id) => {
                let name = match id {
                    2 => "sorenson-h263",
                    3 => "screen-video",
                    4 => "vp6",
                    5 => "vp6-alpha",
                    6 => "screen-video-2",
                    12 => "hevc",
                    13 => "av1",
                    _ => "unknown",
                };
                write!(f, "{name} (flv video codec {id})")
            }
            UnsupportedCodec::Audio(id) => {
                let name = match id {
                    0 | 3 => "pcm",
                    1 => "adpcm",
                    2 | 14 => "mp3",
                    4..=6 => "nellymoser",
                    7 => "g711-alaw",
                    8 => "g711-mulaw",
                    11 => "speex",
                    _ => "unknown",
                };
                write!(f, "{name} (flv sound format {id})")
            }
            UnsupportedCodec::FourCc(code) => {
                let printable = code.map(|b| if b.is_ascii_graphic() { b as char } else { '?' });
                write!(f, "enhanced-rtmp {}", printable.iter().collect::<String>())
            }
        }
    }
}

const VIDEO_CODEC_AVC: u8 = 7;
const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_COMMAND: u8 = 5;
const ENHANCED_VIDEO: u8 = 0x80;
const SOUND_FORMAT_AAC: u8 = 10;
const SOUND_FORMAT_ENHANCED: u8 = 9;

/// Parses the body of an RTMP video message.
pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Truncated("video"))?;
    if first & ENHANCED_VIDEO != 0 {
        // Enhanced RTMP: the low nibble is a packet type and a FourCC names
        // the codec. Every codec it adds is one the mesh does not carry.
        let code = body
            .get(1..5)
            .ok_or(FlvError::Truncated("enhanced video"))?;
        let mut fourcc = [0; 4];
        fourcc.copy_from_slice(code);
        return Ok(VideoTag::Unsupported(UnsupportedCodec::FourCc(fourcc)));
    }

    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Command);
    }
    if codec != VIDEO_CODEC_AVC {
        return Ok(VideoTag::Unsupported(UnsupportedCodec::Video(codec)));
    }

    if body.len() < 5 {
        return Err(FlvError::Truncated("AVC video"));
    }
    let packet_type = body[1];
    // Sign-extend the 24-bit composition time through the top byte.
    let composition_time_ms = i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8;
    let data = body.slice(5..);
    match packet_type {
        0 => {
            let record = parse_avc_decoder_config(&data)?;
            Ok(VideoTag::AvcSequenceHeader(TrackConfig {
                codec: Codec::H264,
                description: data,
                width: record.sps.width,
                height: record.sps.height,
                sample_rate: 0,
                channels: 0,
            }))
        }
        1 => Ok(VideoTag::AvcFrame(AvcFrame {
            keyframe: frame_type == FRAME_TYPE_KEY,
            composition_time_ms,
            data,
        })),
        _ => Ok(VideoTag::AvcEndOfSequence),
    }
}

/// Parses the body of an RTMP audio message.
pub fn parse_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Truncated("audio"))?;
    let format = first >> 4;
    if format == SOUND_FORMAT_ENHANCED {
        let code = body
            .get(1..5)
            .ok_or(FlvError::Truncated("enhanced audio"))?;
        let mut fourcc = [0; 4];
        fourcc.copy_from_slice(code);
        return Ok(AudioTag::Unsupported(UnsupportedCodec::FourCc(fourcc)));
    }
    if format != SOUND_FORMAT_AAC {
        return Ok(AudioTag::Unsupported(UnsupportedCodec::Audio(format)));
    }

    let packet_type = *body.get(1).ok_or(FlvError::Truncated("AAC audio"))?;
    let data = body.slice(2..);
    if packet_type == 0 {
        // The sound rate and channel bits of the tag header are fixed for
        // AAC (44 kHz, stereo) and say nothing; the ASC is authoritative.
        let info = parse_audio_specific_config(&data)?;
        Ok(AudioTag::AacSequenceHeader(TrackConfig {
            codec: Codec::Aac,
            description: data,
            width: 0,
            height: 0,
            sample_rate: info.sample_rate,
            channels: info.channels,
        }))
    } else {
        Ok(AudioTag::AacFrame(data))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("test vectors are hex"))
            .collect()
    }

    const SPS_640X360: &str = "6764001eacd940a02ff970110000030001000003003c0f162d96";

    fn avc_sequence_header() -> Bytes {
        let sps = hex(SPS_640X360);
        let mut body = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e, 0xff, 0xe1];
        body.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        body.extend_from_slice(&sps);
        body.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        Bytes::from(body)
    }

    #[test]
    fn avc_sequence_header_becomes_config() {
        let body = avc_sequence_header();
        let VideoTag::AvcSequenceHeader(config) = parse_video(&body).unwrap() else {
            panic!("not a sequence header");
        };
        assert_eq!(config.codec, Codec::H264);
        assert_eq!((config.width, config.height), (640, 360));
        assert_eq!(config.description, body.slice(5..));
    }

    #[test]
    fn avc_frames_carry_signed_composition_time() {
        let body = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xdf, 0, 0, 0, 1, 0x41]);
        let VideoTag::AvcFrame(frame) = parse_video(&body).unwrap() else {
            panic!("not a frame");
        };
        assert!(!frame.keyframe);
        assert_eq!(frame.composition_time_ms, -33);
        assert_eq!(&frame.data[..], &[0, 0, 0, 1, 0x41]);

        let body = Bytes::from_static(&[0x17, 1, 0, 0, 0x43, 0, 0, 0, 1, 0x65]);
        let VideoTag::AvcFrame(frame) = parse_video(&body).unwrap() else {
            panic!("not a frame");
        };
        assert!(frame.keyframe);
        assert_eq!(frame.composition_time_ms, 67);
    }

    #[test]
    fn other_video_codecs_are_unsupported() {
        let hevc = Bytes::from_static(&[0x1c, 0, 0, 0, 0]);
        assert_eq!(
            parse_video(&hevc).unwrap(),
            VideoTag::Unsupported(UnsupportedCodec::Video(12))
        );
        let enhanced = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3]);
        let tag = parse_video(&enhanced).unwrap();
        assert_eq!(
            tag,
            VideoTag::Unsupported(UnsupportedCodec::FourCc(*b"hvc1"))
        );
        let VideoTag::Unsupported(codec) = tag else {
            unreachable!()
        };
        assert_eq!(codec.to_string(), "enhanced-rtmp hvc1");
        assert_eq!(
            parse_video(&Bytes::from_static(&[0x57, 0])).unwrap(),
            VideoTag::Command
        );
    }

    #[test]
    fn aac_sequence_header_and_frames() {
        let header = Bytes::from_static(&[0xaf, 0, 0x11, 0x88]);
        let AudioTag::AacSequenceHeader(config) = parse_audio(&header).unwrap() else {
            panic!("not a sequence header");
        };
        assert_eq!(
            (config.codec, config.sample_rate, config.channels),
            (Codec::Aac, 48000, 1)
        );
        assert_eq!(&config.description[..], &[0x11, 0x88]);

        let frame = Bytes::from_static(&[0xaf, 1, 0x21, 0x10]);
        assert_eq!(
            parse_audio(&frame).unwrap(),
            AudioTag::AacFrame(Bytes::from_static(&[0x21, 0x10]))
        );
    }

    #[test]
    fn other_audio_codecs_are_unsupported() {
        let mp3 = Bytes::from_static(&[0x2f, 0xff, 0xfb]);
        let AudioTag::Unsupported(codec) = parse_audio(&mp3).unwrap() else {
            panic!("mp3 accepted");
        };
        assert_eq!(codec.to_string(), "mp3 (flv sound format 2)");
        let speex = Bytes::from_static(&[0xb6, 0]);
        assert_eq!(
            parse_audio(&speex).unwrap(),
            AudioTag::Unsupported(UnsupportedCodec::Audio(11))
        );
        let opus = Bytes::from_static(&[0x90, b'O', b'p', b'u', b's']);
        assert_eq!(
            parse_audio(&opus).unwrap(),
            AudioTag::Unsupported(UnsupportedCodec::FourCc(*b"Opus"))
        );
    }

    #[test]
    fn truncated_bodies_are_errors() {
        assert!(parse_video(&Bytes::new()).is_err());
        assert!(parse_video(&Bytes::from_static(&[0x17, 0, 0])).is_err());
        assert!(parse_video(&Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])).is_err());
        assert!(parse_audio(&Bytes::from_static(&[0xaf])).is_err());
        assert!(parse_audio(&Bytes::from_static(&[0xaf, 0, 0x12])).is_err());
    }

    /// Guards against panics on hostile input: every prefix and many
    /// pseudo-random mutations of valid bodies parse or fail cleanly.
    #[test]
    fn arbitrary_bodies_never_panic() {
        let seeds = [
            avc_sequence_header(),
            Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xdf, 0, 0, 0, 1, 0x41]),
            Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            for end in 0..=seed.len() {
                let _ = parse_video(&seed.slice(..end));
                let _ = parse_audio(&seed.slice(..end));
            }
            for _ in 0..2000 {
                let mut body = seed.to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % body.len();
                    body[at] = next() as u8;
                }
                let body = Bytes::from(body);
                let _ = parse_video(&body);
                let _ = parse_audio(&body);
            }
        }
    }
}
