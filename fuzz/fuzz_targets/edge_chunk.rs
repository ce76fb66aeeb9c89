//! The RTMP chunk reader (rtmp/src/chunk.rs), which the edge's ingest and
//! the origin's publisher read peers with, on arbitrary bytes.
//!
//! Besides not panicking, the reader must give the same messages (and the
//! same error at the same point) however the input is split, since TCP may
//! split it anywhere; and it must never return a message longer than its
//! type allows, nor the control messages it acts on itself.

#![no_main]

use buildstream_fuzz::pieces;
use buildstream_rtmp::chunk::{ChunkReader, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = read_all([data]);
    let split = read_all(pieces(data));
    assert_eq!(whole, split, "result depends on how the input is split");

    for message in &whole.0 {
        let limit = match message.type_id {
            1..=6 => 64,
            8 | 9 | 22 => 0xff_ffff,
            _ => 64 * 1024,
        };
        assert!(
            message.payload.len() <= limit,
            "type {} message of {} bytes",
            message.type_id,
            message.payload.len()
        );
        // Set chunk size and abort act inside the reader.
        assert!(!matches!(message.type_id, 1 | 2), "{message:?}");
    }
});

/// Every message until the input runs out or the reader gives up, and why
/// it gave up.
fn read_all<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Message>, Option<String>) {
    let mut reader = ChunkReader::new();
    let mut messages = Vec::new();
    for piece in pieces {
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => return (messages, Some(error.to_string())),
            }
        }
    }
    (messages, None)
}
