//! What the fuzz targets and the seed generator share: the record framing
//! of conversation-shaped inputs and the RTMP handshakes that come before
//! the bytes worth fuzzing.
//!
//! Targets that model a conversation (the reads of an RTMP peer, the
//! objects of one track) take their input as records: a big-endian `u16`
//! length, then that many bytes. A last record shorter than its length
//! takes what is left, so every input frames somewhere and the fuzzer
//! wastes no runs on framing errors.

use buildstream_edge::fuzzing::Ingest;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

/// Splits `data` into records; see the crate docs for the framing.
pub fn records(data: &[u8]) -> Records<'_> {
    Records { rest: data }
}

/// Iterator over the records of an input.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (length, rest) = match self.rest {
            [] => return None,
            // A lone length byte frames nothing.
            [_] => return None,
            [high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low])), rest),
        };
        let (record, rest) = rest.split_at(length.min(rest.len()));
        self.rest = rest;
        Some(record)
    }
}

/// Appends `record` to `out` as one or more records (a record holds at
/// most 65 535 bytes; the targets feed longer data in pieces, which every
/// stream parser here must accept).
pub fn write_record(out: &mut Vec<u8>, record: &[u8]) {
    for piece in record.chunks(usize::from(u16::MAX)) {
        // `chunks` never yields more than u16::MAX bytes.
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    if record.is_empty() {
        out.extend_from_slice(&[0, 0]);
    }
}

/// Cuts `data` into pieces of 1 to 64 bytes, as TCP might deliver it. The
/// sizes come from a generator seeded with a hash of `data`, so that
/// boundaries fall somewhere else in every input yet a crash replays.
/// Inputs of at most [`BYTEWISE_LIMIT`] bytes are cut into single bytes,
/// every boundary at once; for longer ones that costs too many runs.
pub fn pieces(data: &[u8]) -> Vec<&[u8]> {
    if data.len() <= BYTEWISE_LIMIT {
        return data.chunks(1).collect();
    }
    // FNV-1a, then xorshift: any cheap, deterministic spread will do.
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // The modulus keeps the size within 1..=64.
        let size = 1 + (state % 64) as usize;
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// See [`pieces`].
pub const BYTEWISE_LIMIT: usize = 512;

/// Runs a client's RTMP handshake against `ingest`, so that what follows
/// is the chunk stream. The handshake itself is rml_rtmp's and fills its
/// packets with random bytes; nothing after it depends on them.
pub fn handshake_ingest(ingest: &mut Ingest) {
    let mut client = Handshake::new(PeerType::Client);
    let c0c1 = client
        .generate_outbound_p0_and_p1()
        .expect("a client handshake always starts");
    ingest
        .handle_input(&c0c1, true)
        .expect("the edge accepts a well-formed C0+C1");
    let s0s1s2 = ingest
        .take_transmit()
        .expect("the edge answers C1 with S0+S1+S2");
    let Ok(HandshakeProcessResult::Completed { response_bytes, .. }) =
        client.process_bytes(&s0s1s2)
    else {
        panic!("the client's handshake does not complete on the edge's S0+S1+S2");
    };
    ingest
        .handle_input(&response_bytes, true)
        .expect("the edge accepts C2");
}

/// Bytes a peer sends in the RTMP handshake (C0+C1+C2 or S0+S1+S2)
/// before its first chunk.
pub const HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tolerate_truncation() {
        let mut out = vec![];
        write_record(&mut out, b"abc");
        write_record(&mut out, b"");
        write_record(&mut out, &[7; 70_000]);
        let got: Vec<&[u8]> = records(&out).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], b"abc");
        assert_eq!(got[1], b"");
        assert_eq!(got[2].len() + got[3].len(), 70_000);

        let cut: Vec<&[u8]> = records(&[0, 9, 1, 2]).collect();
        assert_eq!(cut, [&[1u8, 2][..]]);
        assert_eq!(records(&[5]).count(), 0);
    }

    #[test]
    fn pieces_cover_the_input_in_order() {
        for len in [0, 1, BYTEWISE_LIMIT, BYTEWISE_LIMIT + 1, 10_000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let cut = pieces(&data);
            assert!(cut.iter().all(|p| (1..=64).contains(&p.len())));
            assert_eq!(cut.concat(), data);
            assert_eq!(cut, pieces(&data), "the same input is cut the same");
        }
    }
}
