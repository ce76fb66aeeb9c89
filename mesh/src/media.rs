use std::sync::Arc;

use bytes::Bytes;

/// The codec of a track's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 in AVC (length-prefixed) form; the config holds an `avcC` record.
    H264,
    /// VP8; the config holds no description.
    Vp8,
    /// AAC, raw access units; the config holds the AudioSpecificConfig.
    Aac,
    /// Opus packets; the config may hold an `OpusHead`.
    Opus,
}

impl Codec {
    /// Whether frames of this codec are video.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::Vp8)
    }

    /// Stable wire name, used by the mesh and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Vp8 => "vp8",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
        }
    }

    /// Parses a wire name written by [`Codec::as_str`].
    pub fn parse(name: &str) -> Option<Codec> {
        match name {
            "h264" => Some(Codec::H264),
            "vp8" => Some(Codec::Vp8),
            "aac" => Some(Codec::Aac),
            "opus" => Some(Codec::Opus),
            _ => None,
        }
    }
}

/// How a track's frames are to be decoded. It may change mid-stream; a new
/// configuration takes effect at the frame that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    /// The codec.
    pub codec: Codec,
    /// Codec-specific description: `avcC` for H.264, AudioSpecificConfig for AAC.
    pub description: Bytes,
    /// Coded width in pixels, when known (video only; 0 otherwise).
    pub width: u32,
    /// Coded height in pixels, when known (video only; 0 otherwise).
    pub height: u32,
    /// Sample rate in Hz (audio only; 0 otherwise).
    pub sample_rate: u32,
    /// Channel count (audio only; 0 otherwise).
    pub channels: u8,
}

/// One encoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Decode timestamp in microseconds on the publisher's clock.
    pub timestamp_us: i64,
    /// Presentation minus decode time in microseconds (B-frames make it
    /// positive; it may be negative in broken streams and is passed on as is).
    pub composition_offset_us: i32,
    /// Whether a decoder can start at this frame.
    pub keyframe: bool,
    /// The encoded bytes, in the codec's framing described by the config.
    pub payload: Bytes,
    /// The configuration this frame was encoded with. Consumers compare it by
    /// pointer ([`Arc::ptr_eq`]) to notice a change cheaply.
    pub config: Arc<TrackConfig>,
}

impl Frame {
    /// Presentation timestamp in microseconds.
    pub fn presentation_us(&self) -> i64 {
        self.timestamp_us + i64::from(self.composition_offset_us)
    }
}
