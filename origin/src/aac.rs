//! The AAC AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1): just enough of it
//! to learn a track's sample rate and channel count when its publisher did
//! not say.

/// Sampling frequencies by their 4-bit index.
const FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Why an AudioSpecificConfig was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AscError {
    /// The config ends before its fixed fields.
    #[error("AudioSpecificConfig is truncated")]
    Truncated,
    /// The frequency index is reserved.
    #[error("AudioSpecificConfig has a reserved frequency index {0}")]
    Frequency(u8),
}

/// The fields of an AudioSpecificConfig the origin cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type (2 is AAC-LC).
    pub object_type: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// Channel configuration (1 mono, 2 stereo, ...; 0 means "in the stream").
    pub channels: u8,
}

impl AudioSpecificConfig {
    /// Parses the leading fields of an AudioSpecificConfig.
    pub fn parse(data: &[u8]) -> Result<Self, AscError> {
        let mut bits = BitReader { data, position: 0 };
        let mut object_type = bits.read(5)? as u8;
        if object_type == 31 {
            object_type = 32 + bits.read(6)? as u8;
        }
        let index = bits.read(4)? as u8;
        let sample_rate = if index == 15 {
            bits.read(24)?
        } else {
            *FREQUENCIES
                .get(usize::from(index))
                .ok_or(AscError::Frequency(index))?
        };
        let channels = bits.read(4)? as u8;
        Ok(Self {
            object_type,
            sample_rate,
            channels,
        })
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn read(&mut self, count: usize) -> Result<u32, AscError> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self
                .data
                .get(self.position / 8)
                .ok_or(AscError::Truncated)?;
            let bit = (byte >> (7 - self.position % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.position += 1;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_stereo_48k() {
        // 00010 0011 0010 000: AAC-LC, index 3 (48 kHz), 2 channels.
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!(
            asc,
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 48_000,
                channels: 2
            }
        );
    }

    #[test]
    fn parses_lc_mono_44k1() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x08]).unwrap();
        assert_eq!((asc.sample_rate, asc.channels), (44_100, 1));
    }

    #[test]
    fn parses_explicit_frequency() {
        // Object 2, index 15, an explicit 24-bit 24000, 1 channel: 37 bits
        // at the top of five bytes.
        let bits: u64 = (2 << 35) | (15 << 31) | (24_000 << 7) | (1 << 3);
        let bytes = bits.to_be_bytes();
        let asc = AudioSpecificConfig::parse(&bytes[3..]).unwrap();
        assert_eq!(
            (asc.object_type, asc.sample_rate, asc.channels),
            (2, 24_000, 1)
        );
    }

    #[test]
    fn refuses_truncated_and_reserved() {
        assert_eq!(
            AudioSpecificConfig::parse(&[0x11]),
            Err(AscError::Truncated)
        );
        assert_eq!(
            AudioSpecificConfig::parse(&[0x16, 0x90]),
            Err(AscError::Frequency(13))
        );
    }
}
