//! Between WebRTC frames and mesh frames.
//!
//! WebRTC carries H.264 in Annex B form (start codes, parameter sets in
//! band); the mesh carries it as AVC (length-prefixed NAL units) with an
//! `avcC` record in the track config, as RTMP does. VP8 and Opus frames pass
//! through unchanged; only their configs are derived here.

use std::sync::Arc;

use buildstream_mesh::{Codec, TrackConfig};
use bytes::{BufMut, Bytes, BytesMut};

use crate::flv::parse_sps;

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const NAL_IDR: u8 = 5;

/// Splits an Annex B byte stream into NAL units (without start codes).
pub(crate) fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || loop {
        let start = find_start_code(rest)?;
        let after = &rest[start.0 + start.1..];
        let end = find_start_code(after).map_or(after.len(), |(at, _)| at);
        let unit = &after[..end];
        rest = &after[end..];
        // Trailing zero bytes belong to the next start code, not the unit.
        let trimmed = trim_trailing_zeros(unit);
        if !trimmed.is_empty() {
            return Some(trimmed);
        }
        if rest.is_empty() {
            return None;
        }
    })
}

/// Position and length of the first start code (`00 00 01` or `00 00 00 01`).
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let at = data.windows(3).position(|w| w == [0, 0, 1])?;
    if at > 0 && data[at - 1] == 0 {
        Some((at - 1, 4))
    } else {
        Some((at, 3))
    }
}

fn trim_trailing_zeros(unit: &[u8]) -> &[u8] {
    let end = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &unit[..end]
}

/// Turns a WebRTC H.264 stream into mesh frames, keeping the parameter sets
/// seen so far and making a new config when they change.
#[derive(Default)]
pub(crate) struct H264Framer {
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    config: Option<Arc<TrackConfig>>,
}

/// One access unit in mesh form.
pub(crate) struct AvcFrame {
    pub payload: Bytes,
    pub keyframe: bool,
    pub config: Arc<TrackConfig>,
}

impl H264Framer {
    /// Converts one access unit. `None` until a keyframe with its parameter
    /// sets has been seen (a decoder could do nothing with it).
    pub(crate) fn push(&mut self, annex_b: &[u8]) -> Option<AvcFrame> {
        let mut payload = BytesMut::with_capacity(annex_b.len() + 16);
        let mut keyframe = false;
        let mut new_sets = false;
        for unit in annex_b_units(annex_b) {
            match unit[0] & 0x1f {
                NAL_SPS => new_sets |= replace(&mut self.sps, unit),
                NAL_PPS => new_sets |= replace(&mut self.pps, unit),
                NAL_AUD => continue,
                NAL_IDR => keyframe = true,
                _ => {}
            }
            payload.put_u32(unit.len() as u32);
            payload.put_slice(unit);
        }
        if new_sets || self.config.is_none() {
            self.config = self.make_config();
        }
        let config = self.config.clone()?;
        if payload.is_empty() {
            return None;
        }
        Some(AvcFrame {
            payload: payload.freeze(),
            keyframe,
            config,
        })
    }

    fn make_config(&self) -> Option<Arc<TrackConfig>> {
        let (sps, pps) = (self.sps.as_ref()?, self.pps.as_ref()?);
        let info = parse_sps(sps).ok()?;
        Some(Arc::new(TrackConfig {
            codec: Codec::H264,
            description: avc_decoder_config(sps, pps)?,
            width: info.width,
            height: info.height,
            sample_rate: 0,
            channels: 0,
        }))
    }
}

fn replace(slot: &mut Option<Bytes>, unit: &[u8]) -> bool {
    if slot.as_deref() == Some(unit) {
        return false;
    }
    *slot = Some(Bytes::copy_from_slice(unit));
    true
}

/// An `AVCDecoderConfigurationRecord` holding one SPS and one PPS, with
/// four-byte NAL lengths.
fn avc_decoder_config(sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    if sps.len() < 4 || sps.len() > usize::from(u16::MAX) || pps.len() > usize::from(u16::MAX) {
        return None;
    }
    let mut record = BytesMut::with_capacity(11 + sps.len() + pps.len());
    record.put_slice(&[1, sps[1], sps[2], sps[3], 0xff, 0xe1]);
    record.put_u16(sps.len() as u16);
    record.put_slice(sps);
    record.put_u8(1);
    record.put_u16(pps.len() as u16);
    record.put_slice(pps);
    Some(record.freeze())
}

/// Converts a mesh H.264 frame back to Annex B for a WebRTC receiver. On a
/// keyframe the config's parameter sets go first, so a receiver that joins
/// at it can decode.
pub(crate) fn avc_to_annex_b(frame: &[u8], config: &TrackConfig, keyframe: bool) -> Vec<u8> {
    const START: [u8; 4] = [0, 0, 0, 1];
    let mut out = Vec::with_capacity(frame.len() + 64);
    if keyframe {
        for set in parameter_sets(&config.description) {
            out.extend_from_slice(&START);
            out.extend_from_slice(set);
        }
    }
    let size = nal_length_size(&config.description);
    let mut rest = frame;
    while rest.len() >= size {
        let len = rest[..size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some(unit) = rest.get(size..size + len) else {
            break;
        };
        out.extend_from_slice(&START);
        out.extend_from_slice(unit);
        rest = &rest[size + len..];
    }
    out
}

fn nal_length_size(avcc: &[u8]) -> usize {
    avcc.get(4).map_or(4, |b| usize::from(b & 0b11) + 1)
}

/// The SPS and PPS units of an `avcC` record; malformed records yield what
/// could be read.
fn parameter_sets(avcc: &[u8]) -> Vec<&[u8]> {
    let mut sets = Vec::new();
    let Some(&count) = avcc.get(5) else {
        return sets;
    };
    let mut at = 6;
    fn read<'a>(avcc: &'a [u8], at: &mut usize, sets: &mut Vec<&'a [u8]>) -> Option<()> {
        let len = usize::from(u16::from_be_bytes([*avcc.get(*at)?, *avcc.get(*at + 1)?]));
        sets.push(avcc.get(*at + 2..*at + 2 + len)?);
        *at += 2 + len;
        Some(())
    }
    for _ in 0..(count & 0x1f) {
        if read(avcc, &mut at, &mut sets).is_none() {
            return sets;
        }
    }
    let Some(&pps_count) = avcc.get(at) else {
        return sets;
    };
    at += 1;
    for _ in 0..pps_count {
        if read(avcc, &mut at, &mut sets).is_none() {
            break;
        }
    }
    sets
}

/// The picture size in a VP8 keyframe header (RFC 6386 9.1), if `frame` is
/// a keyframe.
pub(crate) fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((u32::from(width), u32::from(height)))
}

/// The config for VP8 frames of the given size.
pub(crate) fn vp8_config(width: u32, height: u32) -> TrackConfig {
    TrackConfig {
        codec: Codec::Vp8,
        description: Bytes::new(),
        width,
        height,
        sample_rate: 0,
        channels: 0,
    }
}

/// The config for WebRTC Opus: always 48 kHz, stereo as negotiated by
/// `opus/48000/2` (a mono sender is decoded as stereo).
pub(crate) fn opus_config() -> TrackConfig {
    TrackConfig {
        codec: Codec::Opus,
        description: Bytes::new(),
        width: 0,
        height: 0,
        sample_rate: 48_000,
        channels: 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tests::hex;

    const SPS_640X360: &str = "6764001eacd940a02ff970110000030001000003003c0f162d96";
    const PPS: &str = "68ebe3cb";

    fn annex_b(units: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, unit) in units.iter().enumerate() {
            // Both start code lengths occur in real streams.
            if i % 2 == 0 {
                out.extend_from_slice(&[0, 0, 0, 1]);
            } else {
                out.extend_from_slice(&[0, 0, 1]);
            }
            out.extend_from_slice(unit);
        }
        out
    }

    #[test]
    fn annex_b_splits_on_both_start_codes() {
        let stream = annex_b(&[&[0x67, 1, 2], &[0x68, 3], &[0x65, 4, 0, 5]]);
        let units: Vec<_> = annex_b_units(&stream).collect();
        assert_eq!(units, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 0, 5]]);
        assert_eq!(annex_b_units(&[0, 0, 0]).count(), 0);
        assert_eq!(annex_b_units(&[]).count(), 0);
    }

    #[test]
    fn h264_frames_wait_for_parameter_sets_and_round_trip() {
        let sps = hex(SPS_640X360);
        let pps = hex(PPS);
        let mut framer = H264Framer::default();
        assert!(framer.push(&annex_b(&[&[0x41, 9, 9]])).is_none());

        let key = framer
            .push(&annex_b(&[&[0x09, 0xf0], &sps, &pps, &[0x65, 1, 2, 3]]))
            .expect("keyframe with parameter sets");
        assert!(key.keyframe);
        assert_eq!((key.config.width, key.config.height), (640, 360));
        let delta = framer.push(&annex_b(&[&[0x41, 7]])).unwrap();
        assert!(!delta.keyframe);
        assert!(Arc::ptr_eq(&key.config, &delta.config));
        assert_eq!(&delta.payload[..], &[0, 0, 0, 2, 0x41, 7]);

        // Back to Annex B: the parameter sets lead the keyframe.
        let back = avc_to_annex_b(&key.payload, &key.config, true);
        let units: Vec<_> = annex_b_units(&back).collect();
        assert_eq!(units[0], &sps[..]);
        assert_eq!(units[1], &pps[..]);
        assert_eq!(units.last().unwrap(), &[0x65, 1, 2, 3]);
    }

    #[test]
    fn vp8_size_comes_from_keyframes_only() {
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        assert_eq!(vp8_keyframe_size(&key), Some((640, 480)));
        let mut delta = key;
        delta[0] |= 1;
        assert_eq!(vp8_keyframe_size(&delta), None);
        assert_eq!(vp8_keyframe_size(&key[..5]), None);
    }

    #[test]
    fn malformed_avcc_yields_what_it_can() {
        assert!(parameter_sets(&[1, 2, 3]).is_empty());
        assert!(parameter_sets(&[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 50, 1]).is_empty());
    }
}
