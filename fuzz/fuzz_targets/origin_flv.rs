//! The origin's FLV stream reader and tag body parsers
//! (`buildstream_origin::flv::Reader`, `parse_video_body`,
//! `parse_audio_body`) on arbitrary bytes.
//!
//! The reader must give the same tags (and the same error at the same
//! point) however the stream is split, and no tag larger than it accepts.

#![no_main]

use buildstream_fuzz::pieces;
use buildstream_origin::flv::{parse_audio_body, parse_video_body, Reader, Tag};
use buildstream_origin::flv::{TAG_AUDIO, TAG_VIDEO};
use libfuzzer_sys::fuzz_target;

/// The largest tag body the reader promises to accept.
const MAX_TAG_SIZE: usize = 4 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let whole = read_all([data]);
    let split = read_all(pieces(data));
    assert_eq!(whole, split, "result depends on how the stream is split");

    for tag in &whole.0 {
        assert!(tag.body.len() <= MAX_TAG_SIZE);
        match tag.kind {
            TAG_VIDEO => drop(parse_video_body(&tag.body)),
            TAG_AUDIO => drop(parse_audio_body(&tag.body)),
            _ => {}
        }
    }
});

fn read_all<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Tag>, Option<String>) {
    let mut reader = Reader::new();
    let mut tags = Vec::new();
    for piece in pieces {
        reader.push(piece);
        loop {
            match reader.next_tag() {
                Ok(Some(tag)) => tags.push(tag),
                Ok(None) => break,
                Err(error) => return (tags, Some(error.to_string())),
            }
        }
    }
    (tags, None)
}
