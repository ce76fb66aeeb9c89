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
//! rml_rtmp's `ClientSession` does the chunking and the connect / publish
//! exchange. The commands it does not know (`releaseStream`, `FCPublish`,
//! `FCUnpublish`) are framed here on a chunk stream of their own with full
//! headers, so they never disturb the session's header compression.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionError, ClientSessionEvent,
    ClientSessionResult, PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;

use crate::program::{Media, ProgramPacket};

/// Outbound chunk size once connected: big enough that most audio frames and
/// small video frames fit in one chunk.
const CHUNK_SIZE: u32 = 4096;
/// Chunk stream for the commands framed here; rml_rtmp uses 2 to 6.
const OWN_CHUNK_STREAM: u8 = 8;
/// Transaction ids for the commands framed here, far above the session's own
/// (which count up from 1), so a server's answer is never mistaken for one
/// the session waits for.
const OWN_TRANSACTION: f64 = 1_000_001.0;
/// AMF0 command message type.
const AMF0_COMMAND: u8 = 20;

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

impl From<ClientSessionError> for RtmpError {
    fn from(error: ClientSessionError) -> Self {
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
    Connecting(Box<ClientSession>),
    Publishing(Box<ClientSession>),
    Finished,
}

/// A sans-IO RTMP publisher for one connection.
pub struct Publisher {
    phase: Phase,
    target: PublishTarget,
    info: ProgramInfo,
    outbound: Vec<u8>,
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
        matches!(self.phase, Phase::Publishing(_))
    }

    /// Feeds bytes read from the server.
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<PublisherEvent>, RtmpError> {
        let mut events = Vec::new();
        match &mut self.phase {
            Phase::Handshaking(handshake) => {
                let result = handshake
                    .process_bytes(data)
                    .map_err(|e| RtmpError::Handshake(e.to_string()))?;
                match result {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        self.outbound.extend_from_slice(&response_bytes);
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        self.outbound.extend_from_slice(&response_bytes);
                        self.start_session()?;
                        if !remaining_bytes.is_empty() {
                            events = self.receive(&remaining_bytes)?;
                        }
                    }
                }
            }
            Phase::Connecting(session) | Phase::Publishing(session) => {
                // rml_rtmp's client session panics on some malformed replies
                // (a command with fewer than three values, a shorter header
                // in the middle of a message). A destination server must not
                // be able to kill its sender, so a panic here is contained and
                // ends this connection like any protocol error; the sender
                // reconnects with a fresh session.
                let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    session.handle_input(data)
                }));
                let results = match handled {
                    Ok(results) => results?,
                    Err(_) => {
                        self.phase = Phase::Finished;
                        return Err(RtmpError::Session(
                            "malformed message from the server".to_owned(),
                        ));
                    }
                };
                events = self.handle_results(results)?;
            }
            Phase::Finished => {}
        }
        Ok(events)
    }

    /// Queues a program packet. Returns whether it was sent: nothing is sent
    /// before the first video keyframe, nor audio older than it.
    pub fn send(&mut self, packet: &ProgramPacket) -> Result<bool, RtmpError> {
        let Phase::Publishing(session) = &mut self.phase else {
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
        let mut messages = Vec::with_capacity(2);
        if header_changed {
            *sent_header = Some(packet.sequence_header.clone());
            messages.push((*packet.sequence_header).clone());
        }
        messages.push(packet.body.clone());

        for body in messages {
            let result = match packet.media {
                Media::Video => session.publish_video_data(body, timestamp, false)?,
                Media::Audio => session.publish_audio_data(body, timestamp, false)?,
            };
            push_result(&mut self.outbound, result);
        }
        Ok(true)
    }

    /// Ends publishing: `FCUnpublish` then `deleteStream`. The caller writes
    /// the outbound bytes and closes the connection.
    pub fn finish(&mut self) -> Result<(), RtmpError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        if let Phase::Publishing(mut session) = phase {
            let key = Amf0Value::Utf8String(self.target.stream_key.clone());
            self.outbound
                .extend_from_slice(&own_command("FCUnpublish", vec![key])?);
            for result in session.stop_publishing()? {
                push_result(&mut self.outbound, result);
            }
        }
        Ok(())
    }

    fn start_session(&mut self) -> Result<(), RtmpError> {
        let mut config = ClientSessionConfig::new();
        config.chunk_size = CHUNK_SIZE;
        config.tc_url = Some(self.target.tc_url.clone());
        config.flash_version = "FMLE/3.0 (compatible; BuildStream)".to_owned();
        let (mut session, results) = ClientSession::new(config)?;
        for result in results {
            push_result(&mut self.outbound, result);
        }
        let request = session.request_connection(self.target.app.clone())?;
        push_result(&mut self.outbound, request);
        self.phase = Phase::Connecting(Box::new(session));
        Ok(())
    }

    fn handle_results(
        &mut self,
        results: Vec<ClientSessionResult>,
    ) -> Result<Vec<PublisherEvent>, RtmpError> {
        // Write everything the session produced before acting on events:
        // the chunk size announcement comes after the "connected" event.
        let mut raised = Vec::new();
        for result in results {
            match result {
                ClientSessionResult::RaisedEvent(event) => raised.push(event),
                other => push_result(&mut self.outbound, other),
            }
        }
        let mut events = Vec::new();
        for event in raised {
            if let Some(event) = self.handle_event(event)? {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn handle_event(
        &mut self,
        event: ClientSessionEvent,
    ) -> Result<Option<PublisherEvent>, RtmpError> {
        match event {
            ClientSessionEvent::ConnectionRequestAccepted => {
                let Phase::Connecting(session) = &mut self.phase else {
                    return Ok(None);
                };
                // Ingest servers of the big platforms expect the FMLE-style
                // announcement before createStream; others ignore it.
                let key = Amf0Value::Utf8String(self.target.stream_key.clone());
                self.outbound
                    .extend_from_slice(&own_command("releaseStream", vec![key.clone()])?);
                self.outbound
                    .extend_from_slice(&own_command("FCPublish", vec![key])?);
                let request = session
                    .request_publishing(self.target.stream_key.clone(), PublishRequestType::Live)?;
                push_result(&mut self.outbound, request);
                Ok(None)
            }
            ClientSessionEvent::PublishRequestAccepted => {
                let phase = std::mem::replace(&mut self.phase, Phase::Finished);
                let Phase::Connecting(mut session) = phase else {
                    self.phase = phase;
                    return Ok(None);
                };
                let metadata = self.metadata();
                push_result(&mut self.outbound, session.publish_metadata(&metadata)?);
                self.phase = Phase::Publishing(session);
                Ok(Some(PublisherEvent::Publishing))
            }
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                Err(RtmpError::Rejected(description))
            }
            ClientSessionEvent::UnhandleableOnStatusCode { code } if is_refusal(&code) => {
                Err(RtmpError::Rejected(code))
            }
            // Some servers refuse a publish with an `_error` on transaction
            // zero rather than an `onStatus`; answers to the commands framed
            // here carry their own transaction id and are never refusals.
            ClientSessionEvent::UnknownTransactionResultReceived {
                transaction_id,
                additional_values,
                ..
            } if transaction_id != OWN_TRANSACTION => match error_code(&additional_values) {
                Some(code) => Err(RtmpError::Rejected(code)),
                None => Ok(None),
            },
            other => {
                tracing::trace!(event = ?other, "rtmp event ignored");
                Ok(None)
            }
        }
    }

    fn metadata(&self) -> StreamMetadata {
        let mut metadata = StreamMetadata::new();
        metadata.video_width = Some(self.info.width);
        metadata.video_height = Some(self.info.height);
        metadata.video_codec_id = Some(7);
        metadata.video_frame_rate = Some(self.info.framerate as f32);
        metadata.video_bitrate_kbps = Some(self.info.video_bitrate_kbps);
        metadata.audio_codec_id = Some(10);
        metadata.audio_bitrate_kbps = Some(self.info.audio_bitrate_kbps);
        metadata.audio_sample_rate = Some(self.info.audio_sample_rate);
        metadata.audio_channels = Some(self.info.audio_channels);
        metadata.audio_is_stereo = Some(self.info.audio_channels == 2);
        metadata.encoder = Some("BuildStream".to_owned());
        metadata
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

/// The `code` of an error-level status object among command arguments.
fn error_code(values: &[Amf0Value]) -> Option<String> {
    values.iter().find_map(|value| {
        let Amf0Value::Object(properties) = value else {
            return None;
        };
        let level = properties.get("level");
        let is_error =
            matches!(level, Some(Amf0Value::Utf8String(l)) if l == "error" || l == "_error");
        match properties.get("code") {
            Some(Amf0Value::Utf8String(code)) if is_error => Some(code.clone()),
            _ => None,
        }
    })
}

fn push_result(outbound: &mut Vec<u8>, result: ClientSessionResult) {
    if let ClientSessionResult::OutboundResponse(packet) = result {
        if outbound.is_empty() {
            // The usual case for a frame: take the chunked bytes as they are.
            *outbound = packet.bytes;
        } else {
            outbound.extend_from_slice(&packet.bytes);
        }
    }
}

/// Frames an AMF0 command on [`OWN_CHUNK_STREAM`]: a full (type 0) header,
/// then type 3 continuation headers every [`CHUNK_SIZE`] bytes.
fn own_command(name: &str, arguments: Vec<Amf0Value>) -> Result<Vec<u8>, RtmpError> {
    let message = RtmpMessage::Amf0Command {
        command_name: name.to_owned(),
        transaction_id: OWN_TRANSACTION,
        command_object: Amf0Value::Null,
        additional_arguments: arguments,
    };
    let payload = message
        .into_message_payload(RtmpTimestamp::new(0), 0)
        .map_err(|e| RtmpError::Session(e.to_string()))?;
    let data = &payload.data;
    let length = (data.len() as u32).to_be_bytes();

    let mut out = Vec::with_capacity(12 + data.len() + data.len() / CHUNK_SIZE as usize);
    out.push(OWN_CHUNK_STREAM);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&length[1..]);
    out.push(AMF0_COMMAND);
    out.extend_from_slice(&0u32.to_le_bytes());
    for (index, chunk) in data.chunks(CHUNK_SIZE as usize).enumerate() {
        if index > 0 {
            out.push(0xC0 | OWN_CHUNK_STREAM);
        }
        out.extend_from_slice(chunk);
    }
    Ok(out)
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

    /// Guards against a server's malformed reply panicking the sender (rml_rtmp's
    /// client session indexes a command's first three values unchecked).
    #[test]
    fn a_malformed_server_command_is_an_error_not_a_panic() {
        let mut publisher = Publisher::new(target(), info()).unwrap();
        let mut server = Server::new();
        pump(&mut publisher, &mut server).unwrap();
        assert!(publisher.is_publishing());
        // Chunk stream 3, type 0 header: AMF0 command (0x14) of 4 bytes on
        // stream 0 holding only the string "x".
        let reply = [
            0x03, 0, 0, 0, 0, 0, 4, 0x14, 0, 0, 0, 0, 0x02, 0x00, 0x01, b'x',
        ];
        let error = publisher.receive(&reply).unwrap_err();
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
    fn own_commands_span_chunks() {
        let long_key = Amf0Value::Utf8String("k".repeat(5000));
        let framed = own_command("FCUnpublish", vec![long_key]).unwrap();
        // One full header (12 bytes) and one continuation byte.
        let continuation = framed.get(12 + CHUNK_SIZE as usize).copied();
        assert_eq!(continuation, Some(0xC0 | OWN_CHUNK_STREAM));

        // A real deserializer reads it back whole.
        let mut reader = rml_rtmp::chunk_io::ChunkDeserializer::new();
        reader.set_max_chunk_size(CHUNK_SIZE as usize).unwrap();
        let payload = reader.get_next_message(&framed).unwrap().unwrap();
        match payload.to_rtmp_message().unwrap() {
            RtmpMessage::Amf0Command {
                command_name,
                additional_arguments,
                ..
            } => {
                assert_eq!(command_name, "FCUnpublish");
                assert_eq!(
                    additional_arguments,
                    vec![Amf0Value::Utf8String("k".repeat(5000))]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_stream_key_stays_out_of_debug_output() {
        assert!(!format!("{:?}", target()).contains("secret-key"));
    }
}
