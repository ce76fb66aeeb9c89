//! Publishing the program over RTMP, without I/O.
//!
//! [`Publisher`] is fed the bytes read from the server and program packets
//! to send, and accumulates the bytes to write. It runs the handshake, then
//! `connect`, `releaseStream`/`FCPublish`, `createStream`, `publish`, sends
//! `@setDataFrame onMetaData` once publishing is accepted, then the
//! sequence headers and the frames from a keyframe on; on `finish` it sends
//! `FCUnpublish` and `deleteStream`. Timestamps start at zero on every
//! connection.
//!
//! What the server sends is read with `buildstream_rtmp`'s bounded chunk
//! reader and AMF0 decoder, so that no answer a server gives (malformed,
//! hostile or merely unusual) can do more than end the connection with an
//! error. rml_rtmp's handshake and chunk serializer write what we send.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use buildstream_rtmp::amf;
use buildstream_rtmp::chunk::{message_type as kind, ChunkReader, Message};
use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use crate::program::{Media, ProgramPacket};

/// Outbound chunk size once connected: big enough that most audio frames and
/// small video frames fit in one chunk.
const CHUNK_SIZE: u32 = 4096;
/// Transaction ids of the commands we send; answers are matched by them.
mod transaction {
    pub(super) const CONNECT: f64 = 1.0;
    pub(super) const RELEASE_STREAM: f64 = 2.0;
    pub(super) const FC_PUBLISH: f64 = 3.0;
    pub(super) const CREATE_STREAM: f64 = 4.0;
    pub(super) const PUBLISH: f64 = 5.0;
    pub(super) const FC_UNPUBLISH: f64 = 6.0;
    pub(super) const DELETE_STREAM: f64 = 7.0;
}
/// User control events (RTMP 1.0, 7.1.7).
const PING_REQUEST: u16 = 6;
/// What we announce ourselves as in `connect`; ingest servers of the big
/// platforms expect an FMLE-style client.
const FLASH_VERSION: &str = "FMLE/3.0 (compatible; BuildStream)";

/// Why publishing failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RtmpError {
    /// The handshake failed.
    #[error("rtmp handshake failed: {0}")]
    Handshake(String),
    /// The server sent something the session could not handle.
    #[error("rtmp session error: {0}")]
    Session(String),
    /// The server refused the connection or the publish request.
    #[error("rejected by server: {0}")]
    Rejected(String),
    /// A frame was offered before publishing was accepted.
    #[error("not publishing yet")]
    NotPublishing,
}

impl From<buildstream_rtmp::chunk::ChunkError> for RtmpError {
    fn from(error: buildstream_rtmp::chunk::ChunkError) -> Self {
        RtmpError::Session(error.to_string())
    }
}

impl From<rml_rtmp::chunk_io::ChunkSerializationError> for RtmpError {
    fn from(error: rml_rtmp::chunk_io::ChunkSerializationError) -> Self {
        RtmpError::Session(error.to_string())
    }
}

impl From<rml_rtmp::messages::MessageSerializationError> for RtmpError {
    fn from(error: rml_rtmp::messages::MessageSerializationError) -> Self {
        RtmpError::Session(error.to_string())
    }
}

/// Where to publish: the RTMP application, its `tcUrl`, and the stream key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishTarget {
    /// Application name (the URL path, e.g. `live2`).
    pub app: String,
    /// The `tcUrl` sent with `connect` (the URL up to the application).
    pub tc_url: String,
    /// The stream key; secret, never logged.
    pub stream_key: String,
}

impl fmt::Debug for PublishTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishTarget")
            .field("app", &self.app)
            .field("tc_url", &self.tc_url)
            .field("stream_key", &"<redacted>")
            .finish()
    }
}

/// What the program looks like, for `onMetaData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub framerate: u32,
    /// Video bitrate in kb/s.
    pub video_bitrate_kbps: u32,
    /// Audio bitrate in kb/s.
    pub audio_bitrate_kbps: u32,
    /// Audio sample rate in Hz.
    pub audio_sample_rate: u32,
    /// Audio channels.
    pub audio_channels: u32,
}

/// Something the server made happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherEvent {
    /// The server accepted the publish request; frames may flow.
    Publishing,
}

enum Phase {
    Handshaking(Box<Handshake>),
    /// `connect` sent; waiting for its `_result`.
    Connecting,
    /// `createStream` sent; waiting for the stream id.
    CreatingStream,
    /// `publish` sent on this stream; waiting for `NetStream.Publish.Start`.
    Starting {
        stream_id: u32,
    },
    /// Frames flow on this stream.
    Publishing {
        stream_id: u32,
    },
    Finished,
}

/// A sans-IO RTMP publisher for one connection.
pub struct Publisher {
    phase: Phase,
    target: PublishTarget,
    info: ProgramInfo,
    outbound: Vec<u8>,
    writer: ChunkSerializer,
    reader: ChunkReader,
    /// The acknowledgement window the server asked for, if any, and the
    /// bytes received and acknowledged since the handshake.
    ack_window: Option<u32>,
    received: u64,
    acknowledged: u64,
    /// Sequence headers sent on this connection, by pointer.
    video_header: Option<Arc<Bytes>>,
    audio_header: Option<Arc<Bytes>>,
    /// Running time of the first frame sent; RTMP time zero.
    base_dts_us: Option<i64>,
}

impl Publisher {
    /// Starts a connection: the handshake's first bytes are ready to send.
    pub fn new(target: PublishTarget, info: ProgramInfo) -> Result<Self, RtmpError> {
        let mut handshake = Handshake::new(PeerType::Client);
        let hello = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| RtmpError::Handshake(e.to_string()))?;
        Ok(Self {
            phase: Phase::Handshaking(Box::new(handshake)),
            target,
            info,
            outbound: hello,
            writer: ChunkSerializer::new(),
            reader: ChunkReader::new(),
            ack_window: None,
            received: 0,
            acknowledged: 0,
            video_header: None,
            audio_header: None,
            base_dts_us: None,
        })
    }

    /// Bytes to write to the server, in order; empties the buffer.
    pub fn take_outbound(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbound)
    }

    /// Whether there are bytes waiting to be written.
    pub fn has_outbound(&self) -> bool {
        !self.outbound.is_empty()
    }

    /// Whether the server accepted the publish request.
    pub fn is_publishing(&self) -> bool {
        matches!(self.phase, Phase::Publishing { .. })
    }

    /// Feeds bytes read from the server.
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<PublisherEvent>, RtmpError> {
        let input = match &mut self.phase {
            Phase::Finished => return Ok(Vec::new()),
            Phase::Handshaking(handshake) => {
                let result = handshake
                    .process_bytes(data)
                    .map_err(|e| RtmpError::Handshake(e.to_string()))?;
                match result {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        self.outbound.extend_from_slice(&response_bytes);
                        return Ok(Vec::new());
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        self.outbound.extend_from_slice(&response_bytes);
                        self.connect()?;
                        remaining_bytes
                    }
                }
            }
            _ => data.to_vec(),
        };
        let outcome = self.read(&input);
        if outcome.is_err() {
            self.phase = Phase::Finished;
        }
        outcome
    }

    fn read(&mut self, input: &[u8]) -> Result<Vec<PublisherEvent>, RtmpError> {
        self.received += input.len() as u64;
        self.reader.push(input);
        let mut events = Vec::new();
        while let Some(message) = self.reader.next_message()? {
            if let Some(event) = self.handle_message(message)? {
                events.push(event);
            }
        }
        self.acknowledge()?;
        Ok(events)
    }

    /// Queues a program packet. Returns whether it was sent: nothing is sent
    /// before the first video keyframe, nor audio older than it.
    pub fn send(&mut self, packet: &ProgramPacket) -> Result<bool, RtmpError> {
        let Phase::Publishing { stream_id } = self.phase else {
            return Err(RtmpError::NotPublishing);
        };
        let base = match self.base_dts_us {
            Some(base) => base,
            None if packet.is_resume_point() => *self.base_dts_us.insert(packet.dts_us),
            None => return Ok(false),
        };
        if packet.dts_us < base {
            return Ok(false);
        }
        // RTMP timestamps are 32-bit milliseconds and wrap after 49 days.
        let timestamp = RtmpTimestamp::new(((packet.dts_us - base) / 1000) as u32);

        let sent_header = match packet.media {
            Media::Video => &mut self.video_header,
            Media::Audio => &mut self.audio_header,
        };
        let header_changed = !sent_header
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(h, &packet.sequence_header));
        let mut bodies = Vec::with_capacity(2);
        if header_changed {
            *sent_header = Some(packet.sequence_header.clone());
            bodies.push((*packet.sequence_header).clone());
        }
        bodies.push(packet.body.clone());

        for data in bodies {
            let message = match packet.media {
                Media::Video => RtmpMessage::VideoData { data },
                Media::Audio => RtmpMessage::AudioData { data },
            };
            self.write(message, timestamp, stream_id)?;
        }
        Ok(true)
    }

    /// Ends publishing: `FCUnpublish` then `deleteStream`. The caller writes
    /// the outbound bytes and closes the connection.
    pub fn finish(&mut self) -> Result<(), RtmpError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        if let Phase::Publishing { stream_id } = phase {
            let key = Amf0Value::Utf8String(self.target.stream_key.clone());
            self.command("FCUnpublish", transaction::FC_UNPUBLISH, vec![key], 0)?;
            let stream = Amf0Value::Number(f64::from(stream_id));
            self.command("deleteStream", transaction::DELETE_STREAM, vec![stream], 0)?;
        }
        Ok(())
    }

    /// After the handshake: our chunk size, then `connect`.
    fn connect(&mut self) -> Result<(), RtmpError> {
        let packet = self
            .writer
            .set_max_chunk_size(CHUNK_SIZE, RtmpTimestamp::new(0))?;
        self.outbound.extend_from_slice(&packet.bytes);
        let text = |s: &str| Amf0Value::Utf8String(s.to_owned());
        let properties = HashMap::from([
            ("app".to_owned(), text(&self.target.app)),
            ("type".to_owned(), text("nonprivate")),
            ("flashVer".to_owned(), text(FLASH_VERSION)),
            ("tcUrl".to_owned(), text(&self.target.tc_url)),
        ]);
        self.phase = Phase::Connecting;
        self.write(
            RtmpMessage::Amf0Command {
                command_name: "connect".to_owned(),
                transaction_id: transaction::CONNECT,
                command_object: Amf0Value::Object(properties),
                additional_arguments: Vec::new(),
            },
            RtmpTimestamp::new(0),
            0,
        )
    }

    fn handle_message(&mut self, message: Message) -> Result<Option<PublisherEvent>, RtmpError> {
        match message.type_id {
            kind::COMMAND_AMF0 => self.handle_command(&message.payload),
            // An AMF3 command is AMF0 after a format byte.
            kind::COMMAND_AMF3 => match message.payload.get(1..) {
                Some(body) => self.handle_command(body),
                None => Ok(None),
            },
            kind::WINDOW_ACK_SIZE => {
                let size = message
                    .payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                self.ack_window = size.filter(|size| *size > 0);
                Ok(None)
            }
            kind::USER_CONTROL => {
                if let Some(&[a, b, t0, t1, t2, t3]) = message.payload.get(..6) {
                    if u16::from_be_bytes([a, b]) == PING_REQUEST {
                        let time = u32::from_be_bytes([t0, t1, t2, t3]);
                        self.write(
                            RtmpMessage::UserControl {
                                event_type: UserControlEventType::PingResponse,
                                stream_id: None,
                                buffer_length: None,
                                timestamp: Some(RtmpTimestamp::new(time)),
                            },
                            RtmpTimestamp::new(0),
                            0,
                        )?;
                    }
                }
                Ok(None)
            }
            // Bandwidth hints, data, media: nothing a publisher acts on.
            _ => Ok(None),
        }
    }

    fn handle_command(&mut self, body: &[u8]) -> Result<Option<PublisherEvent>, RtmpError> {
        let values = amf::decode(body).map_err(|e| RtmpError::Session(e.to_string()))?;
        let mut values = values.into_iter();
        let (Some(Amf0Value::Utf8String(name)), transaction) = (values.next(), values.next())
        else {
            tracing::debug!("rtmp command without a name ignored");
            return Ok(None);
        };
        // Some servers leave the transaction id out of notifications.
        let transaction = match transaction {
            Some(Amf0Value::Number(transaction)) => transaction,
            _ => 0.0,
        };
        // The command object, then the arguments.
        let arguments: Vec<Amf0Value> = values.skip(1).collect();
        match (name.as_str(), &self.phase) {
            ("_result", Phase::Connecting) if transaction == transaction::CONNECT => {
                let key = Amf0Value::Utf8String(self.target.stream_key.clone());
                // FMLE's announcement before createStream; servers that do
                // not know it answer `_error`, which is ignored below.
                self.command(
                    "releaseStream",
                    transaction::RELEASE_STREAM,
                    vec![key.clone()],
                    0,
                )?;
                self.command("FCPublish", transaction::FC_PUBLISH, vec![key], 0)?;
                self.command("createStream", transaction::CREATE_STREAM, Vec::new(), 0)?;
                self.phase = Phase::CreatingStream;
                Ok(None)
            }
            ("_result", Phase::CreatingStream) if transaction == transaction::CREATE_STREAM => {
                let stream_id = match arguments.first() {
                    Some(Amf0Value::Number(id)) if *id >= 1.0 && *id <= f64::from(u32::MAX) => {
                        *id as u32
                    }
                    _ => {
                        return Err(RtmpError::Session(
                            "createStream answered without a stream id".to_owned(),
                        ))
                    }
                };
                let key = Amf0Value::Utf8String(self.target.stream_key.clone());
                let live = Amf0Value::Utf8String("live".to_owned());
                self.command("publish", transaction::PUBLISH, vec![key, live], stream_id)?;
                self.phase = Phase::Starting { stream_id };
                Ok(None)
            }
            ("onStatus", _) => {
                let (level, code) = status_of(&arguments);
                match self.phase {
                    Phase::Starting { stream_id } if code == "NetStream.Publish.Start" => {
                        self.send_metadata(stream_id)?;
                        self.phase = Phase::Publishing { stream_id };
                        Ok(Some(PublisherEvent::Publishing))
                    }
                    _ if level == "error" || is_refusal(&code) => Err(RtmpError::Rejected(code)),
                    _ => Ok(None),
                }
            }
            // Answers to our own exchange, and to transaction 0, which some
            // servers use to refuse a publish; `_error` for releaseStream or
            // FCPublish only means the server does not know them.
            ("_error", _)
                if [
                    0.0,
                    transaction::CONNECT,
                    transaction::CREATE_STREAM,
                    transaction::PUBLISH,
                ]
                .contains(&transaction) =>
            {
                let (_, code) = status_of(&arguments);
                Err(RtmpError::Rejected(if code.is_empty() {
                    "the server answered _error".to_owned()
                } else {
                    code
                }))
            }
            _ => {
                tracing::trace!(command = %name, transaction, "rtmp command ignored");
                Ok(None)
            }
        }
    }

    /// Sends `@setDataFrame onMetaData` describing the program.
    fn send_metadata(&mut self, stream_id: u32) -> Result<(), RtmpError> {
        let info = self.info;
        let number = |n: u32| Amf0Value::Number(f64::from(n));
        let properties = HashMap::from([
            ("width".to_owned(), number(info.width)),
            ("height".to_owned(), number(info.height)),
            ("videocodecid".to_owned(), number(7)),
            ("framerate".to_owned(), number(info.framerate)),
            ("videodatarate".to_owned(), number(info.video_bitrate_kbps)),
            ("audiocodecid".to_owned(), number(10)),
            ("audiodatarate".to_owned(), number(info.audio_bitrate_kbps)),
            ("audiosamplerate".to_owned(), number(info.audio_sample_rate)),
            ("audiochannels".to_owned(), number(info.audio_channels)),
            (
                "stereo".to_owned(),
                Amf0Value::Boolean(info.audio_channels == 2),
            ),
            (
                "encoder".to_owned(),
                Amf0Value::Utf8String("BuildStream".to_owned()),
            ),
        ]);
        self.write(
            RtmpMessage::Amf0Data {
                values: vec![
                    Amf0Value::Utf8String("@setDataFrame".to_owned()),
                    Amf0Value::Utf8String("onMetaData".to_owned()),
                    Amf0Value::Object(properties),
                ],
            },
            RtmpTimestamp::new(0),
            stream_id,
        )
    }

    /// Acknowledges what was received once a window's worth has arrived.
    fn acknowledge(&mut self) -> Result<(), RtmpError> {
        let Some(window) = self.ack_window else {
            return Ok(());
        };
        if self.received - self.acknowledged < u64::from(window) {
            return Ok(());
        }
        self.acknowledged = self.received;
        self.write(
            RtmpMessage::Acknowledgement {
                // The count wraps at 2^32, as the field does.
                sequence_number: self.received as u32,
            },
            RtmpTimestamp::new(0),
            0,
        )
    }

    fn command(
        &mut self,
        name: &str,
        transaction: f64,
        arguments: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<(), RtmpError> {
        self.write(
            RtmpMessage::Amf0Command {
                command_name: name.to_owned(),
                transaction_id: transaction,
                command_object: Amf0Value::Null,
                additional_arguments: arguments,
            },
            RtmpTimestamp::new(0),
            stream_id,
        )
    }

    fn write(
        &mut self,
        message: RtmpMessage,
        timestamp: RtmpTimestamp,
        stream_id: u32,
    ) -> Result<(), RtmpError> {
        let payload = message.into_message_payload(timestamp, stream_id)?;
        let packet = self.writer.serialize(&payload, false, false)?;
        if self.outbound.is_empty() {
            // The usual case for a frame: take the chunked bytes as they are.
            self.outbound = packet.bytes;
        } else {
            self.outbound.extend_from_slice(&packet.bytes);
        }
        Ok(())
    }
}

/// `onStatus` codes that mean the server will not take the stream.
fn is_refusal(code: &str) -> bool {
    [
        "BadName",
        "Denied",
        "Failed",
        "Rejected",
        "Error",
        "Unauthorized",
    ]
    .iter()
    .any(|word| code.contains(word))
}

/// The `level` and `code` of the status object among a command's arguments
/// (empty where absent).
fn status_of(arguments: &[Amf0Value]) -> (String, String) {
    let text = |properties: &HashMap<String, Amf0Value>, key: &str| match properties.get(key) {
        Some(Amf0Value::Utf8String(value)) => value.clone(),
        _ => String::new(),
    };
    arguments
        .iter()
        .find_map(|value| match value {
            Amf0Value::Object(properties) => {
                let code = text(properties, "code");
                let code = if code.is_empty() {
                    text(properties, "description")
                } else {
                    code
                };
                Some((text(properties, "level"), code))
            }
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };

    use super::*;

    /// An rml_rtmp server session on the other end of an in-memory pipe.
    struct Server {
        handshake: Handshake,
        session: Option<ServerSession>,
        events: Vec<ServerSessionEvent>,
        outbound: Vec<u8>,
        reject_publish: bool,
    }

    impl Server {
        fn new() -> Self {
            Self {
                handshake: Handshake::new(PeerType::Server),
                session: None,
                events: Vec::new(),
                outbound: Vec::new(),
                reject_publish: false,
            }
        }

        fn receive(&mut self, data: &[u8]) {
            if self.session.is_none() {
                match self.handshake.process_bytes(data).unwrap() {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        self.outbound.extend(response_bytes);
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        self.outbound.extend(response_bytes);
                        let (session, results) =
                            ServerSession::new(ServerSessionConfig::new()).unwrap();
                        self.session = Some(session);
                        self.handle(results);
                        if !remaining_bytes.is_empty() {
                            self.receive(&remaining_bytes);
                        }
                    }
                }
                return;
            }
            let results = self.session.as_mut().unwrap().handle_input(data).unwrap();
            self.handle(results);
        }

        fn handle(&mut self, results: Vec<ServerSessionResult>) {
            for result in results {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => {
                        self.outbound.extend(packet.bytes)
                    }
                    ServerSessionResult::RaisedEvent(event) => {
                        let session = self.session.as_mut().unwrap();
                        let more = match &event {
                            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                                session.accept_request(*request_id).unwrap()
                            }
                            ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                                if self.reject_publish {
                                    session
                                        .reject_request(
                                            *request_id,
                                            "NetStream.Publish.BadName",
                                            "no",
                                        )
                                        .unwrap()
                                } else {
                                    session.accept_request(*request_id).unwrap()
                                }
                            }
                            _ => Vec::new(),
                        };
                        self.events.push(event);
                        self.handle(more);
                    }
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
    }

    fn target() -> PublishTarget {
        PublishTarget {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            stream_key: "secret-key".into(),
        }
    }

    fn info() -> ProgramInfo {
        ProgramInfo {
            width: 1280,
            height: 720,
            framerate: 30,
            video_bitrate_kbps: 3000,
            audio_bitrate_kbps: 128,
            audio_sample_rate: 48_000,
            audio_channels: 2,
        }
    }

    /// Shuttles bytes both ways until neither side has anything to say.
    fn pump(
        publisher: &mut Publisher,
        server: &mut Server,
    ) -> Result<Vec<PublisherEvent>, RtmpError> {
        let mut events = Vec::new();
        loop {
            let out = publisher.take_outbound();
            if !out.is_empty() {
                server.receive(&out);
            }
            let back = std::mem::take(&mut server.outbound);
            if !back.is_empty() {
                events.extend(publisher.receive(&back)?);
            }
            if out.is_empty() && back.is_empty() {
                return Ok(events);
            }
        }
    }

    fn packet(media: Media, keyframe: bool, dts_us: i64, header: &Arc<Bytes>) -> ProgramPacket {
        let body = match media {
            Media::Video => crate::flv::avc_frame_body(keyframe, 0, &[0, 0, 0, 1, 0x65]),
            Media::Audio => crate::flv::aac_frame_body(&[0x21, 0x10]),
        };
        ProgramPacket {
            media,
            dts_us,
            keyframe,
            body,
            sequence_header: header.clone(),
        }
    }

    #[test]
    fn publishes_headers_then_frames_from_a_keyframe_and_unpublishes() {
        let mut publisher = Publisher::new(target(), info()).unwrap();
        let mut server = Server::new();
        let events = pump(&mut publisher, &mut server).unwrap();
        assert_eq!(events, vec![PublisherEvent::Publishing]);
        assert!(publisher.is_publishing());
        assert!(server.events.iter().any(|e| matches!(e,
            ServerSessionEvent::PublishStreamRequested { stream_key, app_name, .. }
                if stream_key == "secret-key" && app_name == "live")));
        assert!(server.events.iter().any(|e| matches!(e,
            ServerSessionEvent::StreamMetadataChanged { metadata, .. }
                if metadata.video_width == Some(1280)
                    && metadata.audio_sample_rate == Some(48_000))));

        let video_header = Arc::new(crate::flv::avc_sequence_header_body(&[1, 0x64, 0, 0x1f]));
        let audio_header = Arc::new(crate::flv::aac_sequence_header_body(&[0x11, 0x90]));
        // Audio and a delta frame before the first keyframe are held back.
        assert!(!publisher
            .send(&packet(Media::Audio, true, 5_000_000, &audio_header))
            .unwrap());
        assert!(!publisher
            .send(&packet(Media::Video, false, 5_010_000, &video_header))
            .unwrap());
        assert!(publisher
            .send(&packet(Media::Video, true, 5_033_000, &video_header))
            .unwrap());
        assert!(!publisher
            .send(&packet(Media::Audio, true, 5_020_000, &audio_header))
            .unwrap());
        assert!(publisher
            .send(&packet(Media::Audio, true, 5_054_000, &audio_header))
            .unwrap());
        assert!(publisher
            .send(&packet(Media::Video, false, 5_066_000, &video_header))
            .unwrap());
        pump(&mut publisher, &mut server).unwrap();

        let media: Vec<(bool, u32, u8, u8)> = server
            .events
            .iter()
            .filter_map(|e| match e {
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => Some((true, timestamp.value, data[0], data[1])),
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => Some((false, timestamp.value, data[0], data[1])),
                _ => None,
            })
            .collect();
        assert_eq!(
            media,
            vec![
                (true, 0, 0x17, 0),   // AVC sequence header
                (true, 0, 0x17, 1),   // the keyframe, RTMP time zero
                (false, 21, 0xAF, 0), // AAC sequence header
                (false, 21, 0xAF, 1),
                (true, 33, 0x27, 1),
            ]
        );

        publisher.finish().unwrap();
        pump(&mut publisher, &mut server).unwrap();
        assert!(server.events.iter().any(|e| matches!(e,
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. }
                if command_name == "FCUnpublish")));
        assert!(matches!(
            server.events.last(),
            Some(ServerSessionEvent::PublishStreamFinished { stream_key, .. })
                if stream_key == "secret-key"
        ));
    }

    #[test]
    fn a_changed_sequence_header_is_sent_again() {
        let mut publisher = Publisher::new(target(), info()).unwrap();
        let mut server = Server::new();
        pump(&mut publisher, &mut server).unwrap();
        let first = Arc::new(crate::flv::avc_sequence_header_body(&[1, 0x64, 0, 0x1f]));
        let second = Arc::new(crate::flv::avc_sequence_header_body(&[1, 0x64, 0, 0x28]));
        publisher
            .send(&packet(Media::Video, true, 0, &first))
            .unwrap();
        publisher
            .send(&packet(Media::Video, false, 33_000, &first))
            .unwrap();
        publisher
            .send(&packet(Media::Video, true, 66_000, &second))
            .unwrap();
        pump(&mut publisher, &mut server).unwrap();
        let headers = server
            .events
            .iter()
            .filter(
                |e| matches!(e, ServerSessionEvent::VideoDataReceived { data, .. } if data[1] == 0),
            )
            .count();
        assert_eq!(headers, 2);
    }

    /// A server's malformed reply ends the connection with an error (rml_rtmp's
    /// client session, used before, panicked on it).
    #[test]
    fn malformed_server_commands_neither_panic_nor_stop_the_stream() {
        let mut publisher = Publisher::new(target(), info()).unwrap();
        let mut server = Server::new();
        pump(&mut publisher, &mut server).unwrap();
        assert!(publisher.is_publishing());
        // Chunk stream 3, type 0 header: AMF0 command (0x14) of 4 bytes on
        // stream 0 holding only the string "x": an unknown notification.
        let reply = [
            0x03, 0, 0, 0, 0, 0, 4, 0x14, 0, 0, 0, 0, 0x02, 0x00, 0x01, b'x',
        ];
        assert_eq!(publisher.receive(&reply), Ok(Vec::new()));
        assert!(publisher.is_publishing());
        // A control message that breaks the chunk stream is an error for
        // the connection: a chunk size of zero.
        let error = publisher.receive(&chunk(1, 0, &[0, 0, 0, 0])).unwrap_err();
        assert!(matches!(error, RtmpError::Session(_)), "{error:?}");
        assert!(!publisher.is_publishing());
    }

    #[test]
    fn a_refused_publish_is_an_error() {
        let mut publisher = Publisher::new(target(), info()).unwrap();
        let mut server = Server::new();
        server.reject_publish = true;
        let error = pump(&mut publisher, &mut server).unwrap_err();
        assert_eq!(
            error,
            RtmpError::Rejected("NetStream.Publish.BadName".into())
        );
        assert!(!publisher.is_publishing());
    }

    #[test]
    fn frames_before_publishing_are_refused() {
        let mut publisher = Publisher::new(target(), info()).unwrap();
        let header = Arc::new(Bytes::new());
        assert_eq!(
            publisher.send(&packet(Media::Video, true, 0, &header)),
            Err(RtmpError::NotPublishing)
        );
    }

    #[test]
    fn a_key_longer_than_a_chunk_arrives_whole() {
        let long = PublishTarget {
            stream_key: "k".repeat(5000),
            ..target()
        };
        let mut publisher = Publisher::new(long, info()).unwrap();
        let mut server = Server::new();
        pump(&mut publisher, &mut server).unwrap();
        assert!(server.events.iter().any(|e| matches!(e,
            ServerSessionEvent::PublishStreamRequested { stream_key, .. }
                if stream_key.len() == 5000)));
    }

    /// A publisher that has seen the handshake through and `connect` out.
    fn connecting() -> Publisher {
        let mut publisher = Publisher::new(target(), info()).unwrap();
        let mut server = Server::new();
        server.receive(&publisher.take_outbound());
        let s0s1s2 = std::mem::take(&mut server.outbound);
        publisher.receive(&s0s1s2).unwrap();
        publisher.take_outbound();
        publisher
    }

    /// A server message as one type-0 chunk on chunk stream 3.
    fn chunk(type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
        assert!(body.len() <= 128);
        let mut out = vec![0x03, 0, 0, 0];
        out.extend(&(body.len() as u32).to_be_bytes()[1..]);
        out.push(type_id);
        out.extend(stream_id.to_le_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn pings_are_answered_and_acknowledgements_kept() {
        let mut publisher = connecting();
        // Ping request (event 6) with time 0x01020304.
        publisher
            .receive(&chunk(4, 0, &[0, 6, 1, 2, 3, 4]))
            .unwrap();
        let answer = publisher.take_outbound();
        assert!(
            answer.ends_with(&[0, 7, 1, 2, 3, 4]),
            "ping response: {answer:?}"
        );
        // A window of 100 bytes: the next read past it is acknowledged.
        publisher
            .receive(&chunk(5, 0, &100u32.to_be_bytes()))
            .unwrap();
        publisher.take_outbound();
        publisher.receive(&chunk(18, 0, &[0; 5])).unwrap();
        publisher.receive(&chunk(18, 0, &[0; 80])).unwrap();
        let ack = publisher.take_outbound();
        assert_eq!(ack.get(7), Some(&3), "acknowledgement message: {ack:?}");
    }

    #[test]
    fn a_server_refusing_create_stream_is_a_refusal() {
        let mut publisher = connecting();
        let result = [
            Amf0Value::Utf8String("_result".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Null,
            Amf0Value::Null,
        ];
        let body = rml_rtmp::rml_amf0::serialize(&result.to_vec()).unwrap();
        publisher.receive(&chunk(20, 0, &body)).unwrap();
        let mut info = std::collections::HashMap::new();
        info.insert("level".to_owned(), Amf0Value::Utf8String("error".into()));
        info.insert(
            "code".to_owned(),
            Amf0Value::Utf8String("NetConnection.Call.Failed".into()),
        );
        let error = [
            Amf0Value::Utf8String("_error".into()),
            Amf0Value::Number(4.0),
            Amf0Value::Null,
            Amf0Value::Object(info),
        ];
        let body = rml_rtmp::rml_amf0::serialize(&error.to_vec()).unwrap();
        assert_eq!(
            publisher.receive(&chunk(20, 0, &body)).unwrap_err(),
            RtmpError::Rejected("NetConnection.Call.Failed".into())
        );
    }

    #[test]
    fn notifications_without_a_transaction_id_are_tolerated() {
        let mut publisher = connecting();
        let notice = [Amf0Value::Utf8String("onFCPublish".into()), Amf0Value::Null];
        let body = rml_rtmp::rml_amf0::serialize(&notice.to_vec()).unwrap();
        assert_eq!(publisher.receive(&chunk(20, 0, &body)), Ok(Vec::new()));
        // Not even a name: ignored as well.
        let body = rml_rtmp::rml_amf0::serialize(&vec![Amf0Value::Number(3.0)]).unwrap();
        assert_eq!(publisher.receive(&chunk(20, 0, &body)), Ok(Vec::new()));
    }

    #[test]
    fn deeply_nested_answers_are_refused_without_recursing() {
        let mut publisher = connecting();
        // "_result", 1, then objects nested far deeper than any server sends.
        let mut body = vec![0x02, 0, 7];
        body.extend(b"_result");
        body.push(0x00);
        body.extend(1.0f64.to_be_bytes());
        // Fits in one 128-byte chunk: 100 levels of `{"": {...`.
        for _ in 0..100 {
            body.extend([0x03, 0, 0]);
        }
        body.truncate(128);
        let error = publisher.receive(&chunk(20, 0, &body)).unwrap_err();
        assert!(matches!(error, RtmpError::Session(_)), "{error:?}");
    }

    #[test]
    fn the_stream_key_stays_out_of_debug_output() {
        assert!(!format!("{:?}", target()).contains("secret-key"));
    }
}
