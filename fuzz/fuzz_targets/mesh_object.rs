//! `buildstream_mesh::object::decode` on arbitrary object payloads.
//!
//! The object layout has one encoding per object, so whatever decodes must
//! encode back to exactly the input bytes.

#![no_main]

use std::sync::Arc;

use buildstream_mesh::object::{decode, encode};
use buildstream_mesh::{Codec, Frame, TrackConfig};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let with_config = object.config.is_some();
    let config = object.config.clone().unwrap_or(TrackConfig {
        // Not encoded: `with_config` is false when the object had none.
        codec: Codec::Vp8,
        description: Bytes::new(),
        width: 0,
        height: 0,
        sample_rate: 0,
        channels: 0,
    });
    let frame = Frame {
        timestamp_us: object.timestamp_us,
        composition_offset_us: object.composition_offset_us,
        keyframe: object.keyframe,
        payload: object.payload.clone(),
        config: Arc::new(config),
    };
    assert_eq!(&encode(&frame, with_config)[..], data, "{object:?}");
});
