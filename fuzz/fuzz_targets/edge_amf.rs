//! The bounded AMF0 decoding (rtmp/src/amf.rs): a depth check in
//! front of rml_amf0, whose recursion a nested command could otherwise
//! drive into a stack overflow.
//!
//! What is decoded must nest no deeper than the limit; and what the check
//! refuses as too deep must really be too deep, or real clients' commands
//! would be refused.

#![no_main]

use std::io::Cursor;

use buildstream_rtmp::amf::{decode, MAX_DEPTH as AMF_MAX_DEPTH};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::rml_amf0::{self, Amf0Value};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(values) => {
            let depth = values.iter().map(depth).max().unwrap_or(0);
            assert!(depth <= AMF_MAX_DEPTH, "decoded values nest {depth} deep");
        }
        Err(buildstream_rtmp::amf::AmfError::TooDeep) => {
            // Decode without the check, on a stack deep enough for any
            // input the fuzzer makes, to see whether the refusal was right.
            let bytes = data.to_vec();
            let unchecked = std::thread::Builder::new()
                .stack_size(512 << 20)
                .spawn(move || rml_amf0::deserialize(&mut Cursor::new(&bytes[..])))
                .expect("a thread for the unchecked decode")
                .join()
                .expect("rml_amf0 returned");
            if let Ok(values) = unchecked {
                let depth = values.iter().map(depth).max().unwrap_or(0);
                assert!(
                    depth > AMF_MAX_DEPTH,
                    "refused as too deep, but nests only {depth} levels"
                );
            }
        }
        Err(_) => {}
    }
});

/// Containers from the outermost to the innermost, the value itself
/// included (a scalar is 0 deep).
fn depth(value: &Amf0Value) -> usize {
    match value {
        Amf0Value::Object(properties) => 1 + properties.values().map(depth).max().unwrap_or(0),
        Amf0Value::StrictArray(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
