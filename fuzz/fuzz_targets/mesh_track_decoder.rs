//! `buildstream_mesh::object::TrackDecoder::decode` on a track's worth of
//! arbitrary objects (records, see the crate docs).
//!
//! Each frame must carry the config of the last object that had one, and
//! an unchanged config must stay the same allocation, since consumers
//! compare configs by pointer to notice a change.

#![no_main]

use std::sync::Arc;

use buildstream_fuzz::records;
use buildstream_mesh::object::{decode, TrackDecoder};
use buildstream_mesh::TrackConfig;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = TrackDecoder::new();
    let mut current: Option<Arc<TrackConfig>> = None;
    for record in records(data) {
        let object = Bytes::copy_from_slice(record);
        let plain = decode(object.clone());
        let Ok(frame) = decoder.decode(object) else {
            // A frame before any config is refused, and so is what does
            // not decode; neither may change the current config.
            assert!(plain.is_err() || current.is_none());
            continue;
        };
        let plain = plain.expect("the decoder decoded the same bytes");
        assert_eq!(frame.payload, plain.payload);
        match (&current, plain.config) {
            (Some(previous), Some(config)) if **previous == config => {
                assert!(
                    Arc::ptr_eq(previous, &frame.config),
                    "unchanged config reallocated"
                );
            }
            (_, Some(config)) => assert_eq!(*frame.config, config),
            (Some(previous), None) => assert!(Arc::ptr_eq(previous, &frame.config)),
            (None, None) => unreachable!("a frame without any config decoded"),
        }
        current = Some(frame.config);
    }
});
