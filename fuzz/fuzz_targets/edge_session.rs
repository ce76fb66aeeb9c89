//! The edge's RTMP server session (edge/src/session.rs) and what an
//! accepted publish feeds (edge/src/source.rs, the FLV parsers), driven as
//! the ingest drives them, from the first chunk after the handshake.
//!
//! Input: one flags byte (bit 0 set: refuse publish requests), then the
//! peer's reads as records (see the crate docs). The session acts on
//! events after each read, so a publish is accepted between two records.

#![no_main]

use buildstream_edge::fuzzing::Ingest;
use buildstream_fuzz::{handshake_ingest, records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let accept = flags & 1 == 0;
    let mut ingest = Ingest::new();
    handshake_ingest(&mut ingest);
    for read in records(rest) {
        if ingest.handle_input(read, accept).is_err() {
            return;
        }
        ingest.take_transmit();
        assert!(
            accept || !ingest.is_publishing(),
            "publishing though refused"
        );
        if ingest.is_closing() {
            return;
        }
    }
});
