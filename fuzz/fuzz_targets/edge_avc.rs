//! The edge's H.264 parsers (`buildstream_edge::flv::parse_avc_decoder_config`
//! and `parse_sps`) on arbitrary `avcC` records and SPS NAL units.
//!
//! A parsed SPS must describe a picture with a size and a valid chroma
//! format, and a record's SPS must parse the same on its own.

#![no_main]

use buildstream_edge::flv::{parse_avc_decoder_config, parse_sps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sps) = parse_sps(data) {
        assert!(sps.width > 0 && sps.height > 0, "{sps:?}");
        assert!(sps.chroma_format_idc <= 3, "{sps:?}");
    }

    if let Ok(record) = parse_avc_decoder_config(data) {
        assert!(matches!(record.nal_length_size, 1 | 2 | 4), "{record:?}");
        let length = usize::from(u16::from_be_bytes([data[6], data[7]]));
        assert_eq!(parse_sps(&data[8..8 + length]), Ok(record.sps));
    }
});
