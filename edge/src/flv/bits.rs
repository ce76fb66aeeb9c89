//! A big-endian bit reader for codec headers (SPS, AudioSpecificConfig).

/// The input ended before a field did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EndOfData;

/// Reads bits most-significant first, as H.264 and AAC headers are written.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    position: usize,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, position: 0 }
    }

    pub(super) fn bit(&mut self) -> Result<bool, EndOfData> {
        let byte = self.data.get(self.position / 8).ok_or(EndOfData)?;
        let bit = (byte >> (7 - self.position % 8)) & 1;
        self.position += 1;
        Ok(bit == 1)
    }

    /// Reads `count` bits (at most 32) as an unsigned number.
    pub(super) fn bits(&mut self, count: u32) -> Result<u32, EndOfData> {
        debug_assert!(count <= 32, "fields are at most 32 bits wide");
        let mut value = 0u64;
        for _ in 0..count {
            value = (value << 1) | u64::from(self.bit()?);
        }
        // `count` is at most 32, so the value fits.
        Ok(value as u32)
    }

    pub(super) fn skip(&mut self, count: usize) -> Result<(), EndOfData> {
        let end = self.position.checked_add(count).ok_or(EndOfData)?;
        if end > self.data.len() * 8 {
            return Err(EndOfData);
        }
        self.position = end;
        Ok(())
    }

    /// Unsigned exp-Golomb, `ue(v)` in H.264. Values need at most 32
    /// leading zeros to reach `u32::MAX`; more than that is corrupt input.
    pub(super) fn ue(&mut self) -> Result<u32, EndOfData> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(EndOfData);
            }
        }
        let suffix = u64::from(self.bits(zeros)?);
        // (1 << zeros) - 1 + suffix <= 2^32 - 2 for zeros <= 31.
        Ok(((1u64 << zeros) - 1 + suffix) as u32)
    }

    /// Signed exp-Golomb, `se(v)` in H.264.
    pub(super) fn se(&mut self) -> Result<i64, EndOfData> {
        let code = i64::from(self.ue()?);
        Ok(if code % 2 == 1 {
            (code + 1) / 2
        } else {
            -(code / 2)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fixed_width_fields() {
        let mut bits = BitReader::new(&[0b1010_1100, 0xff]);
        assert!(bits.bit().unwrap());
        assert_eq!(bits.bits(3).unwrap(), 0b010);
        assert_eq!(bits.bits(8).unwrap(), 0b1100_1111);
        bits.skip(4).unwrap();
        assert_eq!(bits.bit(), Err(EndOfData));
    }

    #[test]
    fn reads_exp_golomb() {
        // ue: 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3; se of 00101 (4) -> -2.
        let mut bits = BitReader::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000]);
        assert_eq!(bits.ue().unwrap(), 0);
        assert_eq!(bits.ue().unwrap(), 1);
        assert_eq!(bits.ue().unwrap(), 2);
        assert_eq!(bits.ue().unwrap(), 3);
        assert_eq!(bits.se().unwrap(), -2);
    }

    #[test]
    fn refuses_overlong_exp_golomb() {
        let zeros = [0u8; 8];
        assert_eq!(BitReader::new(&zeros).ue(), Err(EndOfData));
    }
}
