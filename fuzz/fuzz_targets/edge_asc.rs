//! AAC AudioSpecificConfig parsing: the edge's
//! (`buildstream_edge::flv::parse_audio_specific_config`) and the origin's
//! (`buildstream_origin::aac::AudioSpecificConfig::parse`), on arbitrary
//! bytes.
//!
//! A parsed config must have a rate and channels, and where both parsers
//! read the same plain fields (no SBR/PS extension rate, a channel
//! configuration that is the channel count) they must agree.

#![no_main]

use buildstream_edge::flv::parse_audio_specific_config;
use buildstream_origin::aac::AudioSpecificConfig;
use libfuzzer_sys::fuzz_target;

const OBJECT_SBR: u8 = 5;
const OBJECT_PS: u8 = 29;

fuzz_target!(|data: &[u8]| {
    let origin = AudioSpecificConfig::parse(data);
    let Ok(edge) = parse_audio_specific_config(data) else {
        return;
    };
    assert!(edge.sample_rate > 0 && edge.channels > 0, "{edge:?}");

    // The edge reads at least the fields the origin reads.
    let origin = origin.expect("the origin refuses a config the edge reads");
    assert_eq!(origin.object_type, edge.object_type);
    if edge.object_type != OBJECT_SBR && edge.object_type != OBJECT_PS {
        assert_eq!(origin.sample_rate, edge.sample_rate, "{origin:?} {edge:?}");
        if (1..=6).contains(&origin.channels) {
            assert_eq!(origin.channels, edge.channels, "{origin:?} {edge:?}");
        }
    }
});
