//! FLV tags (Adobe FLV spec v10.1, E.4): building the audio and video tag
//! bodies RTMP carries, and reading an FLV byte stream back into tags.
//!
//! RTMP audio and video messages are FLV tag bodies, so the program is kept
//! in that form once and shared by every destination. The reader is what
//! turns an encoder's FLV output (ffmpeg, OBS recordings) into frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Tag type of audio tags.
pub const TAG_AUDIO: u8 = 8;
/// Tag type of video tags.
pub const TAG_VIDEO: u8 = 9;
/// Tag type of script data (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

/// Video codec id of AVC (H.264).
const CODEC_AVC: u8 = 7;
/// Sound format of AAC.
const SOUND_AAC: u8 = 10;
/// The first byte of every AAC audio tag: AAC, 44 kHz, 16-bit, stereo. The
/// spec fixes these bits for AAC; the real parameters are in the ASC.
const AAC_HEADER: u8 = 0xAF;

/// Largest tag body accepted by the reader. Sizes are 24-bit (16 MiB); a
/// real frame is far smaller, and a hostile stream should not make us
/// buffer that much.
const MAX_TAG_SIZE: usize = 4 * 1024 * 1024;

/// Why FLV data was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The stream does not start with the `FLV` signature.
    #[error("not an FLV stream")]
    Signature,
    /// A tag is larger than the reader accepts.
    #[error("FLV tag of {0} bytes is too large")]
    TooLarge(usize),
    /// A tag body is shorter than its own header.
    #[error("FLV tag body is truncated")]
    Truncated,
    /// The video codec is not AVC.
    #[error("unsupported FLV video codec {0}")]
    VideoCodec(u8),
    /// The sound format is not AAC.
    #[error("unsupported FLV sound format {0}")]
    SoundFormat(u8),
    /// An AVC or AAC packet type this reader does not know.
    #[error("unknown FLV packet type {0}")]
    PacketType(u8),
}

/// The body of an AVC video tag carrying one access unit (AVC NALUs with
/// 4-byte length prefixes). `cts_ms` is presentation minus decode time.
pub fn avc_frame_body(keyframe: bool, cts_ms: i32, data: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + data.len());
    body.put_u8(video_header_byte(keyframe));
    body.put_u8(1);
    put_i24(&mut body, cts_ms);
    body.put_slice(data);
    body.freeze()
}

/// The body of the AVC sequence header tag carrying an `avcC` record.
pub fn avc_sequence_header_body(avcc: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + avcc.len());
    body.put_u8(video_header_byte(true));
    body.put_u8(0);
    put_i24(&mut body, 0);
    body.put_slice(avcc);
    body.freeze()
}

/// The body of an AAC audio tag carrying one raw access unit.
pub fn aac_frame_body(data: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + data.len());
    body.put_u8(AAC_HEADER);
    body.put_u8(1);
    body.put_slice(data);
    body.freeze()
}

/// The body of the AAC sequence header tag carrying an AudioSpecificConfig.
pub fn aac_sequence_header_body(asc: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + asc.len());
    body.put_u8(AAC_HEADER);
    body.put_u8(0);
    body.put_slice(asc);
    body.freeze()
}

fn video_header_byte(keyframe: bool) -> u8 {
    let frame_type = if keyframe { 1 } else { 2 };
    (frame_type << 4) | CODEC_AVC
}

fn put_i24(body: &mut BytesMut, value: i32) {
    let bytes = value.to_be_bytes();
    body.put_slice(&bytes[1..]);
}

/// One FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// [`TAG_AUDIO`], [`TAG_VIDEO`], [`TAG_SCRIPT`] or another type.
    pub kind: u8,
    /// Decode timestamp in milliseconds (32 bits with the extension byte).
    pub timestamp_ms: u32,
    /// The tag body, sharing the reader's buffer.
    pub body: Bytes,
}

/// Reads an FLV byte stream into tags, however the bytes are split.
#[derive(Debug, Default)]
pub struct Reader {
    buffer: BytesMut,
    header_done: bool,
}

/// FLV file header (9 bytes) plus the first, always-zero, previous-tag-size.
const FILE_HEADER_LEN: usize = 13;
/// Tag header length.
const TAG_HEADER_LEN: usize = 11;

impl Reader {
    /// A reader expecting the FLV file header first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<Tag>, FlvError> {
        if !self.header_done {
            if self.buffer.len() < FILE_HEADER_LEN {
                return Ok(None);
            }
            if &self.buffer[..3] != b"FLV" {
                return Err(FlvError::Signature);
            }
            // The header says how long it is; skip anything extra.
            let header_len = u32::from_be_bytes([
                self.buffer[5],
                self.buffer[6],
                self.buffer[7],
                self.buffer[8],
            ]) as usize;
            let skip = header_len.max(9) + 4;
            if self.buffer.len() < skip {
                return Ok(None);
            }
            self.buffer.advance(skip);
            self.header_done = true;
        }
        if self.buffer.len() < TAG_HEADER_LEN {
            return Ok(None);
        }
        let header = &self.buffer[..TAG_HEADER_LEN];
        // The top bits of the first byte are "reserved" and "filter"; an
        // encrypted (filtered) tag is still framed the same way.
        let kind = header[0] & 0x1F;
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        if size > MAX_TAG_SIZE {
            return Err(FlvError::TooLarge(size));
        }
        let timestamp_ms = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let total = TAG_HEADER_LEN + size + 4;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let mut tag = self.buffer.split_to(total);
        tag.advance(TAG_HEADER_LEN);
        tag.truncate(size);
        Ok(Some(Tag {
            kind,
            timestamp_ms,
            body: tag.freeze(),
        }))
    }
}

/// What an AVC video tag body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket {
    /// The `avcC` decoder configuration record.
    SequenceHeader(Bytes),
    /// One access unit.
    Frame {
        /// Whether this is a keyframe.
        keyframe: bool,
        /// Presentation minus decode time in milliseconds.
        cts_ms: i32,
        /// Length-prefixed NALUs, sharing the tag's buffer.
        data: Bytes,
    },
    /// End of sequence; carries nothing.
    EndOfSequence,
}

/// Splits an AVC video tag body into its packet.
pub fn parse_video_body(body: &Bytes) -> Result<VideoPacket, FlvError> {
    if body.len() < 5 {
        return Err(FlvError::Truncated);
    }
    let codec = body[0] & 0x0F;
    if codec != CODEC_AVC {
        return Err(FlvError::VideoCodec(codec));
    }
    let keyframe = body[0] >> 4 == 1;
    // Sign-extend the 24-bit composition time.
    let cts_ms = i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8;
    match body[1] {
        0 => Ok(VideoPacket::SequenceHeader(body.slice(5..))),
        1 => Ok(VideoPacket::Frame {
            keyframe,
            cts_ms,
            data: body.slice(5..),
        }),
        2 => Ok(VideoPacket::EndOfSequence),
        other => Err(FlvError::PacketType(other)),
    }
}

/// What an AAC audio tag body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket {
    /// The AudioSpecificConfig.
    SequenceHeader(Bytes),
    /// One raw access unit.
    Frame(Bytes),
}

/// Splits an AAC audio tag body into its packet.
pub fn parse_audio_body(body: &Bytes) -> Result<AudioPacket, FlvError> {
    if body.len() < 2 {
        return Err(FlvError::Truncated);
    }
    let format = body[0] >> 4;
    if format != SOUND_AAC {
        return Err(FlvError::SoundFormat(format));
    }
    match body[1] {
        0 => Ok(AudioPacket::SequenceHeader(body.slice(2..))),
        1 => Ok(AudioPacket::Frame(body.slice(2..))),
        other => Err(FlvError::PacketType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tags: &[(u8, u32, &[u8])]) -> Vec<u8> {
        let mut out = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        for (kind, ts, body) in tags {
            let size = body.len() as u32;
            out.push(*kind);
            out.extend_from_slice(&size.to_be_bytes()[1..]);
            out.extend_from_slice(&ts.to_be_bytes()[1..]);
            out.push((ts >> 24) as u8);
            out.extend_from_slice(&[0, 0, 0]);
            out.extend_from_slice(body);
            out.extend_from_slice(&(size + 11).to_be_bytes());
        }
        out
    }

    #[test]
    fn builds_and_parses_video_bodies() {
        let header = avc_sequence_header_body(&[1, 0x64, 0, 0x1f]);
        assert_eq!(
            parse_video_body(&header).unwrap(),
            VideoPacket::SequenceHeader(Bytes::from_static(&[1, 0x64, 0, 0x1f]))
        );
        let frame = avc_frame_body(false, -40, &[0, 0, 0, 1, 0x41]);
        assert_eq!(frame[0], 0x27);
        assert_eq!(
            parse_video_body(&frame).unwrap(),
            VideoPacket::Frame {
                keyframe: false,
                cts_ms: -40,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
            }
        );
        assert_eq!(avc_frame_body(true, 66, &[])[..5], [0x17, 1, 0, 0, 66]);
    }

    #[test]
    fn builds_and_parses_audio_bodies() {
        let header = aac_sequence_header_body(&[0x11, 0x90]);
        assert_eq!(&header[..], &[0xAF, 0, 0x11, 0x90]);
        assert_eq!(
            parse_audio_body(&aac_frame_body(&[7, 8])).unwrap(),
            AudioPacket::Frame(Bytes::from_static(&[7, 8]))
        );
        assert_eq!(
            parse_audio_body(&Bytes::from_static(&[0x2F, 1])),
            Err(FlvError::SoundFormat(2))
        );
    }

    #[test]
    fn reads_tags_split_anywhere() {
        let data = file(&[
            (TAG_SCRIPT, 0, b"meta"),
            (TAG_VIDEO, 0x0100_0002, &[0x17, 0, 0, 0, 0]),
            (TAG_AUDIO, 23, &[0xAF, 1, 9]),
        ]);
        for split in 0..data.len() {
            let mut reader = Reader::new();
            let mut tags = Vec::new();
            reader.push(&data[..split]);
            while let Some(tag) = reader.next_tag().unwrap() {
                tags.push(tag);
            }
            reader.push(&data[split..]);
            while let Some(tag) = reader.next_tag().unwrap() {
                tags.push(tag);
            }
            assert_eq!(tags.len(), 3, "split at {split}");
            assert_eq!(tags[1].timestamp_ms, 0x0100_0002);
            assert_eq!(tags[2].kind, TAG_AUDIO);
            assert_eq!(&tags[2].body[..], &[0xAF, 1, 9]);
        }
    }

    #[test]
    fn refuses_bad_signature_and_huge_tags() {
        let mut reader = Reader::new();
        reader.push(b"FLX\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        assert_eq!(reader.next_tag(), Err(FlvError::Signature));

        let mut reader = Reader::new();
        reader.push(&file(&[])[..]);
        reader.push(&[9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reader.next_tag(), Err(FlvError::TooLarge(0xFF_FFFF)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap stand-in for a fuzzer: deterministic pseudo-random input,
        // every prefix after a valid header.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut noise = Vec::new();
        for _ in 0..4096 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.push(state as u8);
        }
        let mut reader = Reader::new();
        reader.push(&file(&[]));
        reader.push(&noise);
        while let Ok(Some(tag)) = reader.next_tag() {
            let _ = parse_video_body(&tag.body);
            let _ = parse_audio_body(&tag.body);
        }
        for len in 0..64 {
            let body = Bytes::copy_from_slice(&noise[..len]);
            let _ = parse_video_body(&body);
            let _ = parse_audio_body(&body);
        }
    }
}
