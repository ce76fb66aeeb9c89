//! Reassembly of RTMP messages from the peer's chunk stream (RTMP 1.0, 5.3).
//!
//! rml_rtmp's `ChunkDeserializer` keeps one buffer for the message being
//! assembled, whatever its chunk stream, so chunks of two chunk streams
//! interleaved mid-message (which the spec allows) corrupt both; and some
//! hostile headers make it subtract past zero. This reader keeps a partial
//! message per chunk stream, bounds what a peer can make it buffer, and
//! parses a chunk only once all of it has arrived, so input may be split
//! anywhere.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

/// The chunk size both directions start with.
const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Message lengths are 24-bit fields.
const MAX_MESSAGE_LENGTH: u32 = 0xff_ffff;
/// Protocol control and user control messages are a few bytes.
const MAX_CONTROL_LENGTH: u32 = 64;
/// Commands and metadata are small; a larger one is an attack or garbage.
const MAX_COMMAND_LENGTH: u32 = 64 * 1024;
/// Payload bytes of unfinished messages, over all chunk streams.
const MAX_UNFINISHED_BYTES: usize = 32 << 20;
/// The same bound before the connection publishes: until then only
/// commands are of use, and idle connections must stay cheap.
const MAX_UNFINISHED_BYTES_UNTIL_PUBLISHING: usize = 1 << 20;
/// Encoders use a handful of chunk streams; the id space allows 65 599.
const MAX_CHUNK_STREAMS: usize = 64;
/// A timestamp field of this value means a 32-bit extended field follows.
const EXTENDED_TIMESTAMP: u32 = 0xff_ffff;

/// RTMP message type ids (RTMP 1.0, 5.4 and 7.1).
#[allow(missing_docs)] // the names are the specification's
pub mod message_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

use message_type as kind;

/// One reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Milliseconds on the peer's clock; wraps at 2^32.
    pub timestamp: u32,
    /// The message type ([`message_type`]).
    pub type_id: u8,
    /// The message stream it belongs to (0: the connection itself).
    pub stream_id: u32,
    /// The reassembled body.
    pub payload: Bytes,
}

/// Why the chunk stream cannot be read any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A compressed header referred to a chunk stream never seen before.
    #[error("chunk stream {0} continues without a previous header")]
    NoPreviousHeader(u32),
    /// More chunk streams than any encoder uses.
    #[error("more than {MAX_CHUNK_STREAMS} chunk streams")]
    TooManyChunkStreams,
    /// A message claims a length its type never has.
    #[error("message type {type_id} of {length} bytes exceeds {limit}")]
    TooLong {
        /// The message type.
        type_id: u8,
        /// The length it announced.
        length: u32,
        /// The most that type may have.
        limit: u32,
    },
    /// `SetChunkSize` with 0 or the reserved top bit set.
    #[error("chunk size {0} is out of range")]
    ChunkSize(u32),
    /// A protocol control message shorter than its fields.
    #[error("protocol control message type {0} is truncated")]
    TruncatedControl(u8),
    /// The peer started more message bytes than it finished.
    #[error("unfinished input exceeds {0} bytes")]
    Backlog(usize),
}

/// Turns the bytes after the handshake into messages.
pub struct ChunkReader {
    input: BytesMut,
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    unfinished_bytes: usize,
    /// Bound on unfinished messages plus unparsed input.
    backlog_limit: usize,
}

#[derive(Default)]
struct ChunkStream {
    header: Header,
    /// Payload received so far of the message in progress.
    unfinished: Option<BytesMut>,
}

/// The header state a compressed chunk header inherits.
#[derive(Debug, Default, Clone, Copy)]
struct Header {
    timestamp: u32,
    /// Applied to the previous timestamp by a type-3 chunk starting a message.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last type 0-2 header had an extended timestamp, so type-3 chunks
    /// of this stream carry one as well.
    extended: bool,
    extended_value: u32,
}

impl Header {
    /// Applies a chunk's timestamp field (`None` for type 3) and extended
    /// timestamp to the inherited header.
    fn advance_time(
        &mut self,
        format: u8,
        field: Option<u32>,
        extended: Option<u32>,
        continuing: bool,
    ) {
        match (format, field) {
            (0, Some(field)) => {
                self.timestamp = extended.unwrap_or(field);
                // ffmpeg and SRS reuse a type-0 field as the delta of a
                // type-3 message that follows it; do the same.
                self.delta = self.timestamp;
            }
            (_, Some(field)) => {
                self.delta = extended.unwrap_or(field);
                self.timestamp = self.timestamp.wrapping_add(self.delta);
            }
            (_, None) if !continuing => {
                self.delta = extended.unwrap_or(self.delta);
                self.timestamp = self.timestamp.wrapping_add(self.delta);
            }
            (_, None) => {}
        }
        if field.is_some() {
            self.extended = extended.is_some();
        }
        if let Some(value) = extended {
            self.extended_value = value;
        }
    }
}

/// A chunk whose bytes have all arrived, read but not yet consumed.
struct ChunkStart {
    csid: u32,
    /// The chunk stream's header once this chunk is taken.
    header: Header,
    continuing: bool,
    /// Payload bytes of the message received before this chunk.
    received: usize,
    /// Basic, message and extended timestamp header bytes.
    header_bytes: usize,
    /// Payload bytes in this chunk.
    size: usize,
}

enum Step {
    NeedMore,
    Partial,
    Complete(Message),
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkReader {
    /// A reader at the default chunk size (128), with the small backlog
    /// bound of a connection that does not carry media yet.
    pub fn new() -> Self {
        Self {
            input: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            unfinished_bytes: 0,
            backlog_limit: MAX_UNFINISHED_BYTES_UNTIL_PUBLISHING,
        }
    }

    /// Raises the backlog bound to what a publishing connection needs:
    /// whole keyframes interleaved with audio.
    pub fn allow_media(&mut self) {
        self.backlog_limit = MAX_UNFINISHED_BYTES;
    }

    /// Appends received bytes; read them out with [`ChunkReader::next_message`].
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The next complete message, or `None` until more input arrives.
    /// `SetChunkSize` and `Abort` act here and are not returned.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            match self.next_chunk()? {
                Step::NeedMore => {
                    // A chunk announced as huge waits in `input` whole;
                    // count it with the unfinished messages.
                    if self.input.len() + self.unfinished_bytes > self.backlog_limit {
                        return Err(ChunkError::Backlog(self.backlog_limit));
                    }
                    return Ok(None);
                }
                Step::Partial => continue,
                Step::Complete(message) => match message.type_id {
                    kind::SET_CHUNK_SIZE => self.set_chunk_size(&message.payload)?,
                    kind::ABORT => self.abort(&message.payload)?,
                    _ => return Ok(Some(message)),
                },
            }
        }
    }

    fn next_chunk(&mut self) -> Result<Step, ChunkError> {
        match self.peek_chunk()? {
            Some(chunk) => self.take_chunk(chunk),
            None => Ok(Step::NeedMore),
        }
    }

    /// Reads the next chunk's headers without consuming anything; `None`
    /// until the whole chunk, payload included, has arrived.
    fn peek_chunk(&self) -> Result<Option<ChunkStart>, ChunkError> {
        let input = &self.input[..];
        let Some((format, csid, mut at)) = basic_header(input) else {
            return Ok(None);
        };
        let header_length = [11, 7, 3, 0][usize::from(format)];
        let Some(fields) = input.get(at..at + header_length) else {
            return Ok(None);
        };
        at += header_length;

        let known = self.streams.get(&csid);
        if known.is_none() && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(ChunkError::TooManyChunkStreams);
        }
        let previous = known.map(|stream| stream.header);
        let received = known.and_then(|stream| stream.unfinished.as_ref().map(BytesMut::len));
        // Only a type-3 chunk continues a message; any other header on a
        // stream with a message in progress starts over.
        let continuing = format == 3 && received.is_some();

        let mut header = match (format, previous) {
            (0, _) => Header {
                length: be24(&fields[3..6]),
                type_id: fields[6],
                stream_id: u32::from_le_bytes([fields[7], fields[8], fields[9], fields[10]]),
                ..Header::default()
            },
            // librtmp opens chunk stream 2 with a type-1 header; the message
            // stream id it leaves out can only be 0 there.
            (1, previous) => Header {
                length: be24(&fields[3..6]),
                type_id: fields[6],
                ..previous.unwrap_or_default()
            },
            (_, Some(previous)) => previous,
            (_, None) => return Err(ChunkError::NoPreviousHeader(csid)),
        };
        let field = (format < 3).then(|| be24(&fields[0..3]));

        // The extended timestamp: present after a type 0-2 header whose
        // field is 0xffffff, and after the type-3 headers that follow one.
        let mut extended = None;
        if field == Some(EXTENDED_TIMESTAMP) || (format == 3 && header.extended) {
            let Some(value) = input.get(at..at + 4).map(be32) else {
                return Ok(None);
            };
            // Continuation chunks repeat the message's value (ffmpeg, OBS and
            // the spec agree); a few encoders leave it out, and then these
            // four bytes are payload. Telling them apart by the value is
            // exact unless the payload happens to begin with it.
            if !continuing || value == header.extended_value {
                extended = Some(value);
                at += 4;
            }
        }
        header.advance_time(format, field, extended, continuing);

        if !continuing {
            let limit = max_length(header.type_id);
            if header.length > limit {
                return Err(ChunkError::TooLong {
                    type_id: header.type_id,
                    length: header.length,
                    limit,
                });
            }
        }
        let received = if continuing { received.unwrap_or(0) } else { 0 };
        let size = (self.chunk_size as usize).min(header.length as usize - received);
        if input.len() < at + size {
            return Ok(None);
        }
        Ok(Some(ChunkStart {
            csid,
            header,
            continuing,
            received,
            header_bytes: at,
            size,
        }))
    }

    /// Consumes a chunk that [`ChunkReader::peek_chunk`] found complete.
    fn take_chunk(&mut self, chunk: ChunkStart) -> Result<Step, ChunkError> {
        self.input.advance(chunk.header_bytes);
        let data = self.input.split_to(chunk.size);
        let stream = self.streams.entry(chunk.csid).or_default();
        stream.header = chunk.header;
        if !chunk.continuing {
            if let Some(dropped) = stream.unfinished.take() {
                tracing::debug!(
                    csid = chunk.csid,
                    bytes = dropped.len(),
                    "chunk stream restarted mid-message"
                );
                self.unfinished_bytes -= dropped.len();
            }
        }

        let header = chunk.header;
        if chunk.received + chunk.size == header.length as usize {
            let payload = match stream.unfinished.take() {
                Some(mut unfinished) => {
                    self.unfinished_bytes -= unfinished.len();
                    unfinished.extend_from_slice(&data);
                    unfinished.freeze()
                }
                None => data.freeze(),
            };
            return Ok(Step::Complete(Message {
                timestamp: header.timestamp,
                type_id: header.type_id,
                stream_id: header.stream_id,
                payload,
            }));
        }

        stream
            .unfinished
            .get_or_insert_with(BytesMut::new)
            .extend_from_slice(&data);
        self.unfinished_bytes += data.len();
        if self.unfinished_bytes > self.backlog_limit {
            return Err(ChunkError::Backlog(self.backlog_limit));
        }
        Ok(Step::Partial)
    }

    fn set_chunk_size(&mut self, payload: &[u8]) -> Result<(), ChunkError> {
        let size = payload
            .get(..4)
            .map(be32)
            .ok_or(ChunkError::TruncatedControl(kind::SET_CHUNK_SIZE))?;
        if size == 0 || size > 0x7fff_ffff {
            return Err(ChunkError::ChunkSize(size));
        }
        tracing::trace!(size, "peer chunk size");
        // No chunk carries more than a whole message.
        self.chunk_size = size.min(MAX_MESSAGE_LENGTH);
        Ok(())
    }

    fn abort(&mut self, payload: &[u8]) -> Result<(), ChunkError> {
        let csid = payload
            .get(..4)
            .map(be32)
            .ok_or(ChunkError::TruncatedControl(kind::ABORT))?;
        if let Some(dropped) = self
            .streams
            .get_mut(&csid)
            .and_then(|s| s.unfinished.take())
        {
            self.unfinished_bytes -= dropped.len();
        }
        Ok(())
    }
}

/// Format, chunk stream id and length of the basic header (5.3.1.1).
fn basic_header(input: &[u8]) -> Option<(u8, u32, usize)> {
    let first = *input.first()?;
    let format = first >> 6;
    Some(match first & 0x3f {
        0 => (format, 64 + u32::from(*input.get(1)?), 2),
        1 => {
            let id = input.get(1..3)?;
            (format, 64 + u32::from(id[0]) + 256 * u32::from(id[1]), 3)
        }
        id => (format, u32::from(id), 1),
    })
}

fn max_length(type_id: u8) -> u32 {
    match type_id {
        kind::SET_CHUNK_SIZE..=kind::SET_PEER_BANDWIDTH => MAX_CONTROL_LENGTH,
        kind::AUDIO | kind::VIDEO | kind::AGGREGATE => MAX_MESSAGE_LENGTH,
        _ => MAX_COMMAND_LENGTH,
    }
}

fn be24(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]])
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type0(csid: u8, timestamp: u32, length: usize, type_id: u8, stream_id: u32) -> Vec<u8> {
        let mut out = vec![csid];
        out.extend_from_slice(&timestamp.min(EXTENDED_TIMESTAMP).to_be_bytes()[1..]);
        out.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&stream_id.to_le_bytes());
        if timestamp >= EXTENDED_TIMESTAMP {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        out
    }

    fn type1(csid: u8, delta: u32, length: usize, type_id: u8) -> Vec<u8> {
        let mut out = vec![0x40 | csid];
        out.extend_from_slice(&delta.min(EXTENDED_TIMESTAMP).to_be_bytes()[1..]);
        out.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
        out.push(type_id);
        if delta >= EXTENDED_TIMESTAMP {
            out.extend_from_slice(&delta.to_be_bytes());
        }
        out
    }

    fn type2(csid: u8, delta: u32) -> Vec<u8> {
        let mut out = vec![0x80 | csid];
        out.extend_from_slice(&delta.to_be_bytes()[1..]);
        out
    }

    fn type3(csid: u8) -> Vec<u8> {
        vec![0xc0 | csid]
    }

    fn payload(length: usize, seed: u8) -> Vec<u8> {
        (0..length)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn read_all(reader: &mut ChunkReader) -> Vec<Message> {
        let mut messages = Vec::new();
        while let Some(message) = reader.next_message().unwrap() {
            messages.push(message);
        }
        messages
    }

    #[test]
    fn reassembles_across_chunks_fed_byte_by_byte() {
        let body = payload(300, 1);
        let mut wire = type0(6, 40, 300, kind::VIDEO, 1);
        wire.extend_from_slice(&body[..128]);
        wire.extend(type3(6));
        wire.extend_from_slice(&body[128..256]);
        wire.extend(type3(6));
        wire.extend_from_slice(&body[256..]);

        let mut reader = ChunkReader::new();
        let mut messages = Vec::new();
        for byte in wire {
            reader.push(&[byte]);
            messages.extend(read_all(&mut reader));
        }
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].timestamp, 40);
        assert_eq!(messages[0].stream_id, 1);
        assert_eq!(&messages[0].payload[..], &body[..]);
    }

    #[test]
    fn compressed_headers_inherit_and_add_deltas() {
        let mut wire = type0(4, 1000, 3, kind::AUDIO, 1);
        wire.extend(payload(3, 0));
        wire.extend(type1(4, 21, 4, kind::AUDIO));
        wire.extend(payload(4, 0));
        wire.extend(type2(4, 23));
        wire.extend(payload(4, 0));
        wire.extend(type3(4)); // a new message with the last delta again
        wire.extend(payload(4, 0));
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let times: Vec<_> = read_all(&mut reader).iter().map(|m| m.timestamp).collect();
        assert_eq!(times, [1000, 1021, 1044, 1067]);
    }

    #[test]
    fn interleaved_chunk_streams_keep_their_own_messages() {
        let video = payload(200, 7);
        let audio = payload(150, 9);
        let mut wire = type0(6, 0, 200, kind::VIDEO, 1);
        wire.extend_from_slice(&video[..128]);
        wire.extend(type0(4, 0, 150, kind::AUDIO, 1));
        wire.extend_from_slice(&audio[..128]);
        wire.extend(type3(6));
        wire.extend_from_slice(&video[128..]);
        wire.extend(type3(4));
        wire.extend_from_slice(&audio[128..]);
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let messages = read_all(&mut reader);
        assert_eq!(messages.len(), 2);
        assert_eq!(&messages[0].payload[..], &video[..]);
        assert_eq!(&messages[1].payload[..], &audio[..]);
    }

    #[test]
    fn chunk_size_changes_apply_from_the_next_chunk() {
        let big = payload(5000, 3);
        let mut wire = type0(6, 0, 5000, kind::VIDEO, 1);
        wire.extend_from_slice(&big[..128]);
        // The size changes while the video message is half done.
        wire.extend(type0(2, 0, 4, kind::SET_CHUNK_SIZE, 0));
        wire.extend(4096u32.to_be_bytes());
        wire.extend(type3(6));
        wire.extend_from_slice(&big[128..4224]);
        wire.extend(type3(6));
        wire.extend_from_slice(&big[4224..]);
        // And grows past any message length.
        wire.extend(type0(2, 0, 4, kind::SET_CHUNK_SIZE, 0));
        wire.extend(0x7fff_ffffu32.to_be_bytes());
        wire.extend(type0(6, 33, 5000, kind::VIDEO, 1));
        wire.extend_from_slice(&big);

        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let messages = read_all(&mut reader);
        assert_eq!(messages.len(), 2);
        assert!(messages.iter().all(|m| m.payload[..] == big[..]));
        assert_eq!(reader.chunk_size, MAX_MESSAGE_LENGTH);
    }

    #[test]
    fn extended_timestamps_repeat_on_continuation_chunks() {
        let body = payload(300, 5);
        let start = 0x0100_0000;
        let mut wire = type0(6, start, 300, kind::VIDEO, 1);
        wire.extend_from_slice(&body[..128]);
        for part in [&body[128..256], &body[256..]] {
            wire.extend(type3(6));
            wire.extend(start.to_be_bytes());
            wire.extend_from_slice(part);
        }
        // A delta header after an extended one, then a type-3 new message
        // repeating that delta.
        wire.extend(type1(6, 40, 2, kind::VIDEO));
        wire.extend([1, 2]);
        wire.extend(type3(6));
        wire.extend([3, 4]);
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let messages = read_all(&mut reader);
        assert_eq!(messages.len(), 3);
        assert_eq!(&messages[0].payload[..], &body[..]);
        let times: Vec<_> = messages.iter().map(|m| m.timestamp).collect();
        assert_eq!(times, [start, start + 40, start + 80]);
    }

    #[test]
    fn extended_timestamp_left_out_of_continuations_is_tolerated() {
        let body = payload(200, 11);
        let start = 0x00ff_ffff;
        let mut wire = type0(6, start, 200, kind::VIDEO, 1);
        wire.extend_from_slice(&body[..128]);
        wire.extend(type3(6));
        wire.extend_from_slice(&body[128..]);
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let messages = read_all(&mut reader);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].timestamp, start);
        assert_eq!(&messages[0].payload[..], &body[..]);
    }

    #[test]
    fn extended_delta_on_type1_header() {
        let mut wire = type0(4, 10, 1, kind::AUDIO, 1);
        wire.push(0);
        wire.extend(type1(4, 0x0200_0000, 1, kind::AUDIO));
        wire.push(1);
        wire.extend(type3(4)); // repeats the extended delta, with the field
        wire.extend(0x0200_0000u32.to_be_bytes());
        wire.push(2);
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let times: Vec<_> = read_all(&mut reader).iter().map(|m| m.timestamp).collect();
        assert_eq!(times, [10, 10 + 0x0200_0000, 10 + 0x0400_0000]);
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut wire = type0(4, 0xffff_fff0, 1, kind::AUDIO, 1);
        wire.push(0);
        wire.extend(type2(4, 0x20));
        wire.push(1);
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let times: Vec<_> = read_all(&mut reader).iter().map(|m| m.timestamp).collect();
        assert_eq!(times, [0xffff_fff0, 0x10]);
    }

    #[test]
    fn abort_drops_the_unfinished_message() {
        let mut wire = type0(6, 0, 200, kind::VIDEO, 1);
        wire.extend(payload(128, 0));
        wire.extend(type0(2, 0, 4, kind::ABORT, 0));
        wire.extend(6u32.to_be_bytes());
        wire.extend(type0(6, 5, 2, kind::VIDEO, 1));
        wire.extend([9, 9]);
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let messages = read_all(&mut reader);
        assert_eq!(messages.len(), 1);
        assert_eq!(&messages[0].payload[..], &[9, 9]);
        assert_eq!(reader.unfinished_bytes, 0);
    }

    #[test]
    fn absurd_lengths_and_sizes_are_errors() {
        let mut reader = ChunkReader::new();
        reader.push(&type0(3, 0, 0xff_ffff, kind::COMMAND_AMF0, 0));
        assert!(matches!(
            reader.next_message(),
            Err(ChunkError::TooLong { .. })
        ));

        let mut reader = ChunkReader::new();
        let mut wire = type0(2, 0, 4, kind::SET_CHUNK_SIZE, 0);
        wire.extend(0u32.to_be_bytes());
        reader.push(&wire);
        assert_eq!(reader.next_message(), Err(ChunkError::ChunkSize(0)));

        let mut reader = ChunkReader::new();
        reader.push(&type2(9, 0));
        assert_eq!(reader.next_message(), Err(ChunkError::NoPreviousHeader(9)));
    }

    #[test]
    fn librtmp_type1_opening_is_accepted() {
        let mut wire = type1(2, 0, 6, kind::USER_CONTROL);
        wire.extend([0, 6, 0, 0, 0, 1]);
        let mut reader = ChunkReader::new();
        reader.push(&wire);
        let message = reader.next_message().unwrap().unwrap();
        assert_eq!(
            (message.type_id, message.stream_id),
            (kind::USER_CONTROL, 0)
        );
    }

    #[test]
    fn unfinished_messages_are_bounded() {
        let mut reader = ChunkReader::new();
        reader.allow_media();
        let mut wire = type0(2, 0, 4, kind::SET_CHUNK_SIZE, 0);
        wire.extend((1u32 << 20).to_be_bytes());
        reader.push(&wire);
        let mut result = Ok(None);
        for csid in 3..40u8 {
            let mut wire = type0(csid, 0, 2 << 20, kind::VIDEO, 1);
            wire.extend(vec![0; 1 << 20]);
            reader.push(&wire);
            result = reader.next_message();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ChunkError::Backlog(MAX_UNFINISHED_BYTES)));
    }

    #[test]
    fn before_publishing_the_backlog_is_small_even_inside_one_chunk() {
        let mut reader = ChunkReader::new();
        let mut wire = type0(2, 0, 4, kind::SET_CHUNK_SIZE, 0);
        wire.extend((8u32 << 20).to_be_bytes());
        reader.push(&wire);
        assert_eq!(reader.next_message(), Ok(None));
        // One chunk announced at 4 MiB, sent in 64 KiB pieces.
        reader.push(&type0(3, 0, 4 << 20, kind::VIDEO, 1));
        let mut result = Ok(None);
        for _ in 0..64 {
            reader.push(&[0; 64 << 10]);
            result = reader.next_message();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(ChunkError::Backlog(MAX_UNFINISHED_BYTES_UNTIL_PUBLISHING))
        );
    }

    /// Guards against panics and unbounded loops on hostile input.
    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..500 {
            let mut reader = ChunkReader::new();
            for _ in 0..64 {
                let bytes: Vec<u8> = (0..1 + next() % 64).map(|_| next() as u8).collect();
                reader.push(&bytes);
                while let Ok(Some(_)) = reader.next_message() {}
            }
        }
    }
}
