//! AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).

use super::bits::{BitReader, EndOfData};
use super::FlvError;

/// What an AudioSpecificConfig says about the decoded audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacInfo {
    /// The signalled audio object type: 2 AAC-LC, 5 HE-AAC (SBR), 29 HE-AAC v2 (PS), ...
    pub object_type: u8,
    /// Output sample rate in Hz; for explicitly signalled SBR the extension
    /// rate, which is what a decoder produces.
    pub sample_rate: u32,
    /// Output channel count; parametric stereo turns one coded channel into two.
    pub channels: u8,
}

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

const OBJECT_SBR: u8 = 5;
const OBJECT_PS: u8 = 29;
const OBJECT_ER_BSAC: u8 = 22;

/// Object types whose config is a GASpecificConfig, which may carry a
/// program config element with the channel layout.
const GENERAL_AUDIO: [u8; 12] = [1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23];

/// Parses an AudioSpecificConfig for object type, sample rate and channels.
pub fn parse_audio_specific_config(config: &[u8]) -> Result<AacInfo, FlvError> {
    read_config(&mut BitReader::new(config)).map_err(|AscError(why)| FlvError::Asc(why))
}

struct AscError(&'static str);

impl From<EndOfData> for AscError {
    fn from(_: EndOfData) -> Self {
        AscError("AudioSpecificConfig is truncated")
    }
}

fn read_config(bits: &mut BitReader<'_>) -> Result<AacInfo, AscError> {
    let object_type = read_object_type(bits)?;
    let mut sample_rate = read_sample_rate(bits)?;
    // Four bits, so the cast cannot truncate.
    let channel_config = bits.bits(4)? as u8;

    // Explicit hierarchical SBR/PS signalling: the extension rate follows,
    // then the object type of the core the extension sits on.
    let mut core_type = object_type;
    if object_type == OBJECT_SBR || object_type == OBJECT_PS {
        sample_rate = read_sample_rate(bits)?;
        core_type = read_object_type(bits)?;
        if core_type == OBJECT_ER_BSAC {
            bits.skip(4)?; // extensionChannelConfiguration
        }
    }

    let channels = match channel_config {
        0 if GENERAL_AUDIO.contains(&core_type) => {
            skip_general_audio_header(bits)?;
            program_config_channels(bits)?
        }
        0 => {
            return Err(AscError(
                "channel layout of this object type is not supported",
            ))
        }
        1..=6 => channel_config,
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        _ => return Err(AscError("reserved channel configuration")),
    };
    let channels = if object_type == OBJECT_PS && channels == 1 {
        2
    } else {
        channels
    };

    Ok(AacInfo {
        object_type,
        sample_rate,
        channels,
    })
}

fn read_object_type(bits: &mut BitReader<'_>) -> Result<u8, AscError> {
    // Five or six bits: the casts cannot truncate.
    let object_type = bits.bits(5)? as u8;
    Ok(if object_type == 31 {
        32 + bits.bits(6)? as u8
    } else {
        object_type
    })
}

fn read_sample_rate(bits: &mut BitReader<'_>) -> Result<u32, AscError> {
    let index = bits.bits(4)? as usize;
    let rate = match index {
        0xf => bits.bits(24)?,
        _ => *SAMPLE_RATES
            .get(index)
            .ok_or(AscError("reserved sampling frequency index"))?,
    };
    if rate == 0 {
        return Err(AscError("sample rate of zero"));
    }
    Ok(rate)
}

/// The GASpecificConfig fields in front of its program config element.
fn skip_general_audio_header(bits: &mut BitReader<'_>) -> Result<(), AscError> {
    bits.skip(1)?; // frameLengthFlag
    if bits.bit()? {
        bits.skip(14)?; // coreCoderDelay
    }
    bits.skip(1)?; // extensionFlag
    Ok(())
}

/// Counts the channels a `program_config_element()` (4.4.1.1) lays out.
fn program_config_channels(bits: &mut BitReader<'_>) -> Result<u8, AscError> {
    bits.skip(4 + 2 + 4)?; // element_instance_tag, object_type, sampling_frequency_index
    let front = bits.bits(4)?;
    let side = bits.bits(4)?;
    let back = bits.bits(4)?;
    let lfe = bits.bits(2)?;
    bits.skip(3 + 4)?; // num_assoc_data_elements, num_valid_cc_elements
    for mixdown_bits in [4, 4, 3] {
        // mono and stereo mixdown element numbers, matrix mixdown index
        if bits.bit()? {
            bits.skip(mixdown_bits)?;
        }
    }
    let mut channels = lfe;
    for _ in 0..front + side + back {
        let is_pair = bits.bit()?;
        bits.skip(4)?; // element tag
        channels += if is_pair { 2 } else { 1 };
    }
    // At most 45 elements of two channels plus 3 LFE: fits in a u8.
    let channels = channels as u8;
    if channels == 0 {
        return Err(AscError("program config element lays out no channels"));
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Bits(Vec<bool>);

    impl Bits {
        fn put(&mut self, value: u32, count: u32) -> &mut Self {
            for shift in (0..count).rev() {
                self.0.push((value >> shift) & 1 == 1);
            }
            self
        }
        fn bytes(&self) -> Vec<u8> {
            self.0
                .chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << (7 - i)))
                })
                .collect()
        }
    }

    fn parse(bits: &Bits) -> AacInfo {
        parse_audio_specific_config(&bits.bytes()).unwrap()
    }

    #[test]
    fn parses_ffmpeg_aac_lc_configs() {
        // What ffmpeg's aac encoder writes for 44.1 kHz stereo and 48 kHz mono.
        let stereo = parse_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!(
            (stereo.object_type, stereo.sample_rate, stereo.channels),
            (2, 44100, 2)
        );
        let mono = parse_audio_specific_config(&[0x11, 0x88]).unwrap();
        assert_eq!(
            (mono.object_type, mono.sample_rate, mono.channels),
            (2, 48000, 1)
        );
    }

    #[test]
    fn explicit_sbr_reports_extension_rate() {
        let mut asc = Bits::default();
        asc.put(5, 5).put(6, 4).put(2, 4).put(3, 4).put(2, 5); // SBR 24k -> 48k, LC core
        let info = parse(&asc);
        assert_eq!(
            (info.object_type, info.sample_rate, info.channels),
            (5, 48000, 2)
        );
    }

    #[test]
    fn parametric_stereo_outputs_two_channels() {
        let mut asc = Bits::default();
        asc.put(29, 5).put(7, 4).put(1, 4).put(4, 4).put(2, 5);
        let info = parse(&asc);
        assert_eq!((info.sample_rate, info.channels), (44100, 2));
    }

    #[test]
    fn escaped_object_type_and_explicit_rate() {
        let mut asc = Bits::default();
        asc.put(31, 5)
            .put(3, 6)
            .put(0xf, 4)
            .put(37_800, 24)
            .put(7, 4);
        let info = parse(&asc);
        assert_eq!(
            (info.object_type, info.sample_rate, info.channels),
            (35, 37_800, 8)
        );
    }

    #[test]
    fn program_config_element_lays_out_channels() {
        let mut asc = Bits::default();
        asc.put(2, 5).put(3, 4).put(0, 4); // LC, 48 kHz, layout in the PCE
        asc.put(0, 1).put(0, 1).put(0, 1); // GASpecificConfig
        asc.put(0, 4).put(1, 2).put(3, 4); // tag, profile, rate index
        asc.put(2, 4).put(0, 4).put(1, 4).put(1, 2); // 2 front, 0 side, 1 back, 1 LFE
        asc.put(0, 3)
            .put(0, 4)
            .put(0, 1)
            .put(1, 1)
            .put(5, 4)
            .put(0, 1);
        asc.put(0, 1).put(0, 4).put(1, 1).put(1, 4); // front: C, L+R
        asc.put(1, 1).put(2, 4); // back: Ls+Rs
        asc.put(0, 4); // LFE tag
        assert_eq!(parse(&asc).channels, 6);
    }

    #[test]
    fn refuses_reserved_values() {
        assert!(parse_audio_specific_config(&[0x16, 0x90]).is_err()); // rate index 13
        assert!(parse_audio_specific_config(&[0x12, 0x40]).is_err()); // channel config 8
        assert!(parse_audio_specific_config(&[0x12]).is_err());
    }
}
