//! H.264 decoder configuration (`avcC`) and sequence parameter sets.

use super::bits::{BitReader, EndOfData};
use super::FlvError;

/// What an `AVCDecoderConfigurationRecord` says about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// Bytes in each NAL unit's length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    /// The first sequence parameter set, parsed.
    pub sps: SpsInfo,
}

/// The fields of a sequence parameter set a consumer needs before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc` (66 baseline, 77 main, 100 high, 244 high 4:4:4, ...).
    pub profile_idc: u8,
    /// `level_idc`, ten times the level number.
    pub level_idc: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    /// Displayed width in pixels, after cropping.
    pub width: u32,
    /// Displayed height in pixels, after cropping; whole frames, not fields.
    pub height: u32,
}

/// Profiles whose SPS carries chroma format, bit depth and scaling lists.
const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

const NAL_TYPE_SPS: u8 = 7;

/// Parses an `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 5.2.4.1) and
/// the first SPS in it.
pub fn parse_avc_decoder_config(record: &[u8]) -> Result<AvcDecoderConfig, FlvError> {
    let fail = |why: &'static str| FlvError::AvcConfig(why);
    if record.len() < 8 {
        return Err(fail("record shorter than its fixed fields"));
    }
    if record[0] != 1 {
        return Err(fail("configurationVersion is not 1"));
    }
    let nal_length_size = (record[4] & 0b11) + 1;
    if nal_length_size == 3 {
        return Err(fail("NAL length size of 3 bytes is not allowed"));
    }
    let sps_count = record[5] & 0b1_1111;
    if sps_count == 0 {
        return Err(fail("record has no sequence parameter set"));
    }
    let length = usize::from(u16::from_be_bytes([record[6], record[7]]));
    let sps = record
        .get(8..8 + length)
        .ok_or(fail("sequence parameter set is truncated"))?;
    Ok(AvcDecoderConfig {
        nal_length_size,
        sps: parse_sps(sps)?,
    })
}

/// Parses a sequence parameter set NAL unit (with its one-byte NAL header,
/// emulation-prevention bytes still in place), ITU-T H.264 7.3.2.1.1.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, FlvError> {
    let header = *nal.first().ok_or(FlvError::Sps("empty NAL unit"))?;
    if header & 0x80 != 0 || header & 0x1f != NAL_TYPE_SPS {
        return Err(FlvError::Sps("NAL unit is not a sequence parameter set"));
    }
    let rbsp = unescape(&nal[1..]);
    read_sps(&mut BitReader::new(&rbsp)).map_err(|SpsError(why)| FlvError::Sps(why))
}

struct SpsError(&'static str);

impl From<EndOfData> for SpsError {
    fn from(_: EndOfData) -> Self {
        SpsError("sequence parameter set is truncated")
    }
}

fn read_sps(bits: &mut BitReader<'_>) -> Result<SpsInfo, SpsError> {
    // The bit-width arguments are constants of at most 8, so the casts
    // below cannot truncate.
    let profile_idc = bits.bits(8)? as u8;
    bits.skip(8)?; // constraint_set flags and reserved bits
    let level_idc = bits.bits(8)? as u8;
    if bits.ue()? > 31 {
        return Err(SpsError("seq_parameter_set_id out of range"));
    }

    let mut chroma_format_idc = 1;
    let mut separate_colour_planes = false;
    if HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc > 3 {
            return Err(SpsError("chroma_format_idc out of range"));
        }
        if chroma_format_idc == 3 {
            separate_colour_planes = bits.bit()?;
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.bit()? {
            // seq_scaling_matrix_present_flag: the lists only need skipping.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for index in 0..lists {
                if bits.bit()? {
                    skip_scaling_list(bits, if index < 6 { 16 } else { 64 })?;
                }
            }
        }
    }

    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.skip(1)?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            let cycle = bits.ue()?;
            if cycle > 255 {
                return Err(SpsError(
                    "num_ref_frames_in_pic_order_cnt_cycle out of range",
                ));
            }
            for _ in 0..cycle {
                bits.se()?;
            }
        }
        2 => {}
        _ => return Err(SpsError("pic_order_cnt_type out of range")),
    }
    bits.ue()?; // max_num_ref_frames
    bits.skip(1)?; // gaps_in_frame_num_value_allowed_flag

    let width_in_mbs = u64::from(bits.ue()?) + 1;
    let height_in_map_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = bits.bit()?;
    if !frame_mbs_only {
        bits.skip(1)?; // mb_adaptive_frame_field_flag
    }
    bits.skip(1)?; // direct_8x8_inference_flag
    let crop = if bits.bit()? {
        [bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?].map(u64::from)
    } else {
        [0; 4]
    };

    // Field-coded streams count map units per field; a frame is two.
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let coded_width = width_in_mbs * 16;
    let coded_height = field_factor * height_in_map_units * 16;

    // Cropping is counted in chroma samples (7.4.2.1.1), which span one or
    // two luma samples per direction depending on the chroma format.
    let chroma_array_type = if separate_colour_planes {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = match chroma_array_type {
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let [left, right, top, bottom] = crop;
    let crop_x = (left + right) * crop_unit_x;
    let crop_y = (top + bottom) * crop_unit_y;
    if crop_x >= coded_width || crop_y >= coded_height {
        return Err(SpsError("cropping removes the whole picture"));
    }
    let width = u32::try_from(coded_width - crop_x).map_err(|_| SpsError("width out of range"))?;
    let height =
        u32::try_from(coded_height - crop_y).map_err(|_| SpsError("height out of range"))?;

    Ok(SpsInfo {
        profile_idc,
        level_idc,
        // Checked to be at most 3 above.
        chroma_format_idc: chroma_format_idc as u8,
        width,
        height,
    })
}

/// Walks a `scaling_list()` (7.3.2.1.1.1) without keeping it.
fn skip_scaling_list(bits: &mut BitReader<'_>, size: usize) -> Result<(), SpsError> {
    let mut last_scale = 8i64;
    let mut next_scale = 8i64;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = bits.se()?;
            next_scale = (last_scale + delta).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Removes emulation-prevention bytes: `00 00 03` becomes `00 00`.
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &byte in data {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tests::hex;

    /// SPS NAL units written by x264 (through ffmpeg) for the sizes and
    /// formats named; the expected sizes are what ffprobe reports.
    const X264_SPS: &[(&str, &str, u32, u32, u8)] = &[
        (
            "640x360 high 4:2:0, bottom crop",
            "6764001eacd940a02ff970110000030001000003003c0f162d96",
            640,
            360,
            1,
        ),
        (
            "1920x1080 high 4:2:0, bottom crop",
            "67640028acd940780227e5c044000003000400000300f03c60c658",
            1920,
            1080,
            1,
        ),
        (
            "320x240 constrained baseline",
            "6742c00dd90141fb0110000003001000000303c0f142a480",
            320,
            240,
            1,
        ),
        (
            "1280x720 main",
            "674d401feca02802dd8088000003000800000301e078c18cb0",
            1280,
            720,
            1,
        ),
        (
            "1278x718 high 4:2:0, right and bottom crop",
            "6764001facd9405005beab0110000003001000000303c0f1831960",
            1278,
            718,
            1,
        ),
        (
            "641x361 high 4:4:4, crop unit of one sample",
            "67f4001e919b281485fc2111ff8b480b4488000003000800000301e078b16cb0",
            641,
            361,
            3,
        ),
        (
            "854x361 high 4:2:2, vertical crop unit of one sample",
            "677a001ebcd940d82fe688ffc2d203c0c4000003000400000300f03c58b658",
            854,
            361,
            2,
        ),
        (
            "1920x1080 interlaced, field crop unit",
            "67640028acd94078044fde0220000003002000000783e2c5b2c0",
            1920,
            1080,
            1,
        ),
        (
            "720x576 interlaced",
            "6764001facd940b424dff80200016880000003008000001e0f8b16cb",
            720,
            576,
            1,
        ),
    ];

    #[test]
    fn parses_x264_sequence_parameter_sets() {
        for &(what, sps, width, height, chroma) in X264_SPS {
            let info = parse_sps(&hex(sps)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!((info.width, info.height), (width, height), "{what}");
            assert_eq!(info.chroma_format_idc, chroma, "{what}");
        }
    }

    /// Writes SPS syntax elements, for cases x264 does not produce.
    #[derive(Default)]
    struct SpsWriter {
        bits: Vec<bool>,
    }

    impl SpsWriter {
        fn bits(&mut self, value: u32, count: u32) -> &mut Self {
            for shift in (0..count).rev() {
                self.bits.push((value >> shift) & 1 == 1);
            }
            self
        }
        fn ue(&mut self, value: u32) -> &mut Self {
            let code = u64::from(value) + 1;
            let width = 64 - code.leading_zeros();
            for _ in 1..width {
                self.bits.push(false);
            }
            for shift in (0..width).rev() {
                self.bits.push((code >> shift) & 1 == 1);
            }
            self
        }
        fn se(&mut self, value: i32) -> &mut Self {
            let code = if value > 0 {
                2 * value as u32 - 1
            } else {
                2 * value.unsigned_abs()
            };
            self.ue(code)
        }
        /// The NAL unit: header, RBSP with stop bit, emulation prevention.
        fn finish(&mut self) -> Vec<u8> {
            self.bits.push(true);
            while !self.bits.len().is_multiple_of(8) {
                self.bits.push(false);
            }
            let mut nal = vec![0x67];
            let mut zeros = 0;
            for chunk in self.bits.chunks(8) {
                let byte = chunk.iter().fold(0u8, |b, &bit| (b << 1) | u8::from(bit));
                if zeros >= 2 && byte <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if byte == 0 { zeros + 1 } else { 0 };
                nal.push(byte);
            }
            nal
        }
    }

    #[test]
    fn skips_scaling_lists_and_pic_order_cycle() {
        let mut sps = SpsWriter::default();
        sps.bits(100, 8).bits(0, 8).bits(40, 8).ue(0);
        sps.ue(1).ue(0).ue(0).bits(0, 1); // 4:2:0, 8 bit, no bypass
        sps.bits(1, 1); // seq_scaling_matrix_present_flag
        for index in 0..8 {
            let present = index % 2 == 0;
            sps.bits(u32::from(present), 1);
            if present {
                let size = if index < 6 { 16 } else { 64 };
                // A delta that returns to zero ends the list early.
                for j in 0..size {
                    sps.se(if j == 3 { -11 } else { 1 });
                    if j == 3 {
                        break;
                    }
                }
            }
        }
        sps.ue(0).ue(1); // log2_max_frame_num, pic_order_cnt_type 1
        sps.bits(0, 1).se(-3).se(7).ue(3).se(1).se(-1).se(200);
        sps.ue(4).bits(0, 1); // max_num_ref_frames, gaps
        sps.ue(79).ue(44).bits(1, 1).bits(1, 1); // 1280x720, frame_mbs_only
        sps.bits(1, 1).ue(2).ue(3).ue(0).ue(4); // cropping
        sps.bits(0, 1); // no VUI
        let info = parse_sps(&sps.finish()).unwrap();
        assert_eq!(info.profile_idc, 100);
        assert_eq!((info.width, info.height), (1280 - 10, 720 - 8));
    }

    #[test]
    fn separate_colour_planes_crop_in_luma_samples() {
        let mut sps = SpsWriter::default();
        sps.bits(244, 8).bits(0, 8).bits(40, 8).ue(0);
        sps.ue(3).bits(1, 1).ue(0).ue(0).bits(0, 1).bits(0, 1);
        sps.ue(0).ue(2).ue(1).bits(0, 1); // poc type 2
        sps.ue(9).ue(8).bits(1, 1).bits(1, 1); // 160x144
        sps.bits(1, 1).ue(1).ue(0).ue(0).ue(3).bits(0, 1);
        let info = parse_sps(&sps.finish()).unwrap();
        assert_eq!((info.width, info.height), (159, 141));
    }

    #[test]
    fn refuses_impossible_cropping() {
        let mut sps = SpsWriter::default();
        sps.bits(66, 8).bits(0, 8).bits(30, 8).ue(0);
        sps.ue(0).ue(2).ue(1).bits(0, 1);
        sps.ue(0).ue(0).bits(1, 1).bits(1, 1); // 16x16
        sps.bits(1, 1).ue(4).ue(4).ue(0).ue(0).bits(0, 1);
        assert!(matches!(parse_sps(&sps.finish()), Err(FlvError::Sps(_))));
    }

    #[test]
    fn parses_decoder_config_record() {
        let sps = hex(X264_SPS[0].1);
        let mut record = vec![1, 0x64, 0, 0x1e, 0xff, 0xe1];
        record.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        record.extend_from_slice(&sps);
        record.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        let config = parse_avc_decoder_config(&record).unwrap();
        assert_eq!(config.nal_length_size, 4);
        assert_eq!((config.sps.width, config.sps.height), (640, 360));

        record.truncate(20);
        assert!(parse_avc_decoder_config(&record).is_err());
        assert!(parse_avc_decoder_config(&[1, 0x64, 0, 0x1e, 0xff, 0xe0, 0, 0]).is_err());
    }

    #[test]
    fn removes_emulation_prevention() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }
}
