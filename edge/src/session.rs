//! The server side of one RTMP publishing connection, without I/O.
//!
//! Bytes from the socket go into [`Session::handle_input`]; bytes to send
//! come out of [`Session::take_transmit`] and what the driver must act on
//! out of [`Session::poll_event`]. A publish request waits for the driver's
//! verdict ([`Session::accept_publish`] or [`Session::refuse_publish`]),
//! which lets it consult the key authority asynchronously.
//!
//! rml_rtmp provides the handshake, the outbound chunk serializer and AMF0.
//! Its `ServerSession` is not used: it panics on short `@setDataFrame` data
//! and on commands with fewer than three values, acknowledges with the bytes
//! since the last acknowledgement instead of the running total, and refuses
//! a publish with `_error` rather than the `onStatus` encoders act on.
//! Inbound chunks go through `buildstream_rtmp`'s [`ChunkReader`] (see
//! there for why).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use rml_rtmp::chunk_io::{ChunkSerializationError, ChunkSerializer};
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::{
    MessageSerializationError, PeerBandwidthLimitType, RtmpMessage, UserControlEventType,
};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use buildstream_rtmp::amf::{self, AmfError};
use buildstream_rtmp::chunk::{message_type as kind, ChunkError, ChunkReader, Message};

/// Chunk size for what we send; responses are small, so any size works.
const OUTBOUND_CHUNK_SIZE: u32 = 4096;
/// How often the peer should acknowledge what we send, and the bandwidth
/// we allow it; we send little, so these only need to be plausible.
const WINDOW_ACK_SIZE: u32 = 2_500_000;
const PEER_BANDWIDTH: u32 = 2_500_000;
/// Encoders create one stream; a few more are harmless, thousands are not.
const MAX_STREAMS: u32 = 8;
const USER_CONTROL_PING_REQUEST: u16 = 6;

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The RTMP handshake failed (bad version byte, for one).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream is malformed.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A command's AMF0 could not be decoded.
    #[error("command: {0}")]
    Amf(#[from] AmfError),
    /// A command broke the protocol's order or form.
    #[error("command: {0}")]
    Command(&'static str),
    /// A response could not be encoded (not expected to happen).
    #[error("encoding a response: {0}")]
    Encode(String),
}

impl From<ChunkSerializationError> for SessionError {
    fn from(error: ChunkSerializationError) -> Self {
        SessionError::Encode(error.to_string())
    }
}

impl From<MessageSerializationError> for SessionError {
    fn from(error: MessageSerializationError) -> Self {
        SessionError::Encode(error.to_string())
    }
}

/// Something the driver acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SessionEvent {
    /// The peer asks to publish with this key; answer with
    /// [`Session::accept_publish`] or [`Session::refuse_publish`].
    PublishRequested { app: String, stream_key: String },
    /// Audio or video of the accepted publish.
    Media(Media),
    /// The peer stopped publishing (deleteStream or closeStream).
    PublishFinished,
}

/// One audio or video message: an FLV tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Media {
    pub(crate) kind: MediaKind,
    /// Milliseconds on the publisher's clock; wraps at 2^32.
    pub(crate) timestamp_ms: u32,
    pub(crate) data: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Audio,
    Video,
}

/// Why a publish is refused; each maps to the `onStatus` the peer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The key authority refused the key.
    BadKey,
    /// The key authority could not be reached.
    Unavailable,
    /// Neither the publish name nor the app carried a key.
    MissingKey,
    /// This connection already publishes.
    AlreadyPublishing,
    /// Publishing on a stream id that `createStream` never returned.
    UnknownStream,
    /// The key was rotated or its source deleted while publishing.
    Revoked,
}

impl Refusal {
    fn status(self) -> (&'static str, &'static str) {
        match self {
            Refusal::BadKey => ("NetStream.Publish.BadName", "Stream key refused."),
            Refusal::Unavailable => (
                "NetStream.Publish.Failed",
                "Stream key could not be checked; try again shortly.",
            ),
            Refusal::MissingKey => ("NetStream.Publish.BadName", "No stream key given."),
            Refusal::AlreadyPublishing => (
                "NetStream.Publish.BadName",
                "This connection is already publishing.",
            ),
            Refusal::UnknownStream => (
                "NetStream.Publish.BadName",
                "Publish on a stream that was not created.",
            ),
            Refusal::Revoked => (
                "NetStream.Publish.BadName",
                "Stream key no longer valid (rotated, or the source was deleted).",
            ),
        }
    }
}

enum Publish {
    Idle,
    Authorizing { stream_id: u32 },
    Live { stream_id: u32 },
}

/// One connection's RTMP state.
pub(crate) struct Session {
    /// Present until the handshake completes.
    handshake: Option<Handshake>,
    reader: ChunkReader,
    writer: ChunkSerializer,
    transmit: Vec<u8>,
    events: VecDeque<SessionEvent>,
    /// The app named by `connect`, once connected.
    app: Option<String>,
    streams_created: u32,
    publish: Publish,
    /// A refusal was sent; the driver flushes it and closes.
    closing: bool,
    ack_window: Option<u32>,
    received: u64,
    acknowledged: u64,
    warned_aggregate: bool,
    published: bool,
}

impl Session {
    pub(crate) fn new() -> Self {
        Self {
            handshake: Some(Handshake::new(PeerType::Server)),
            reader: ChunkReader::new(),
            writer: ChunkSerializer::new(),
            transmit: Vec::new(),
            events: VecDeque::new(),
            app: None,
            streams_created: 0,
            publish: Publish::Idle,
            closing: false,
            ack_window: None,
            received: 0,
            acknowledged: 0,
            warned_aggregate: false,
            published: false,
        }
    }

    /// Feeds bytes received from the peer.
    pub(crate) fn handle_input(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        if self.closing {
            return Ok(());
        }
        let leftover;
        let input = match &mut self.handshake {
            Some(handshake) => match handshake.process_bytes(bytes)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.transmit.extend_from_slice(&response_bytes);
                    return Ok(());
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.transmit.extend_from_slice(&response_bytes);
                    self.handshake = None;
                    tracing::trace!("handshake complete");
                    leftover = remaining_bytes;
                    &leftover[..]
                }
            },
            None => bytes,
        };

        self.received += input.len() as u64;
        self.reader.push(input);
        while !self.closing {
            let Some(message) = self.reader.next_message()? else {
                break;
            };
            self.handle_message(message)?;
        }
        self.acknowledge()
    }

    /// The next thing for the driver to act on.
    pub(crate) fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Bytes to send to the peer, in order.
    pub(crate) fn take_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    /// Whether a refusal went out and the connection should close once
    /// the transmit buffer is flushed.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether a publish was ever accepted on this connection.
    pub(crate) fn has_published(&self) -> bool {
        self.published
    }

    /// Starts the requested publish. Returns false if the peer already
    /// gave it up (deleteStream while the key was being checked).
    pub(crate) fn accept_publish(&mut self) -> Result<bool, SessionError> {
        let Publish::Authorizing { stream_id } = self.publish else {
            return Ok(false);
        };
        self.publish = Publish::Live { stream_id };
        self.published = true;
        self.reader.allow_media();
        let begin = RtmpMessage::UserControl {
            event_type: UserControlEventType::StreamBegin,
            stream_id: Some(stream_id),
            buffer_length: None,
            timestamp: None,
        };
        self.send(begin, 0)?;
        let status = status_object("status", "NetStream.Publish.Start", "Publishing.");
        self.send(on_status(status), stream_id)?;
        Ok(true)
    }

    /// Ends the live publish because its key no longer holds: the peer is
    /// told why, and the session then closes.
    pub(crate) fn revoke_publish(&mut self) -> Result<(), SessionError> {
        match self.publish {
            Publish::Live { stream_id } => self.refuse(stream_id, Refusal::Revoked),
            _ => Ok(()),
        }
    }

    /// Refuses the requested publish; the session then closes.
    pub(crate) fn refuse_publish(&mut self, refusal: Refusal) -> Result<(), SessionError> {
        match self.publish {
            Publish::Authorizing { stream_id } => self.refuse(stream_id, refusal),
            _ => Ok(()),
        }
    }

    fn handle_message(&mut self, message: Message) -> Result<(), SessionError> {
        match message.type_id {
            kind::COMMAND_AMF0 | kind::COMMAND_AMF3 => self.handle_command(message),
            kind::AUDIO | kind::VIDEO => {
                self.handle_media(message);
                Ok(())
            }
            kind::DATA_AMF0 | kind::DATA_AMF3 => {
                log_metadata(&message);
                Ok(())
            }
            kind::USER_CONTROL => self.handle_user_control(&message.payload),
            kind::WINDOW_ACK_SIZE => {
                let size = be32(&message.payload).ok_or(SessionError::Command(
                    "window acknowledgement size truncated",
                ))?;
                self.ack_window = (size > 0).then_some(size);
                Ok(())
            }
            // We send little, so the peer's acknowledgements and bandwidth
            // limits ask nothing of us.
            kind::ACKNOWLEDGEMENT | kind::SET_PEER_BANDWIDTH => Ok(()),
            kind::AGGREGATE => {
                // TODO: aggregate messages (FLV tags bundled by FMS-style
                // relays) are dropped; encoders do not send them.
                if !self.warned_aggregate {
                    self.warned_aggregate = true;
                    tracing::warn!("aggregate messages are not supported; dropped");
                }
                Ok(())
            }
            other => {
                tracing::trace!(type_id = other, "message ignored");
                Ok(())
            }
        }
    }

    fn handle_media(&mut self, message: Message) {
        let Publish::Live { stream_id } = self.publish else {
            tracing::trace!("media before publish dropped");
            return;
        };
        if message.stream_id != stream_id || message.payload.is_empty() {
            return;
        }
        let kind = if message.type_id == kind::AUDIO {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        self.events.push_back(SessionEvent::Media(Media {
            kind,
            timestamp_ms: message.timestamp,
            data: message.payload,
        }));
    }

    fn handle_user_control(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let event = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        if event == Some(USER_CONTROL_PING_REQUEST) {
            let timestamp =
                be32(&payload[2..]).ok_or(SessionError::Command("ping request truncated"))?;
            let pong = RtmpMessage::UserControl {
                event_type: UserControlEventType::PingResponse,
                stream_id: None,
                buffer_length: None,
                timestamp: Some(RtmpTimestamp::new(timestamp)),
            };
            self.send(pong, 0)?;
        }
        Ok(())
    }

    fn handle_command(&mut self, message: Message) -> Result<(), SessionError> {
        let mut body = &message.payload[..];
        // AMF3 command messages start with a format byte, then AMF0.
        if message.type_id == kind::COMMAND_AMF3 && body.first() == Some(&0) {
            body = &body[1..];
        }
        let mut values = amf::decode(body)?.into_iter();
        let (Some(Amf0Value::Utf8String(name)), Some(Amf0Value::Number(transaction))) =
            (values.next(), values.next())
        else {
            return Err(SessionError::Command(
                "not a command name and transaction id",
            ));
        };
        let object = values.next().unwrap_or(Amf0Value::Null);
        let arguments: Vec<Amf0Value> = values.collect();
        tracing::debug!(command = %name, "command");

        if name == "connect" {
            return self.on_connect(transaction, object);
        }
        if self.app.is_none() {
            return Err(SessionError::Command("command before connect"));
        }
        match name.as_str() {
            "createStream" => self.on_create_stream(transaction),
            "publish" => self.on_publish(message.stream_id, arguments),
            "releaseStream" | "FCPublish" | "FCUnpublish" => {
                // Legacy housekeeping that clients announce; they accept
                // any answer, and some wait for one.
                if transaction != 0.0 {
                    self.send(
                        result(transaction, Amf0Value::Null, Amf0Value::Undefined),
                        0,
                    )?;
                }
                Ok(())
            }
            "deleteStream" | "closeStream" => {
                if !matches!(self.publish, Publish::Idle) {
                    self.publish = Publish::Idle;
                    self.events.push_back(SessionEvent::PublishFinished);
                }
                Ok(())
            }
            "play" | "play2" => {
                let status = status_object(
                    "error",
                    "NetStream.Play.Failed",
                    "This server only takes publishers.",
                );
                self.send(on_status(status), message.stream_id)?;
                self.closing = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_connect(&mut self, transaction: f64, object: Amf0Value) -> Result<(), SessionError> {
        if self.app.is_some() {
            return Err(SessionError::Command("connect sent twice"));
        }
        let Amf0Value::Object(mut properties) = object else {
            return Err(SessionError::Command("connect without a command object"));
        };
        let Some(Amf0Value::Utf8String(app)) = properties.remove("app") else {
            return Err(SessionError::Command("connect without an app"));
        };
        let app = app.trim_end_matches('/').to_owned();

        self.send(
            RtmpMessage::WindowAcknowledgement {
                size: WINDOW_ACK_SIZE,
            },
            0,
        )?;
        self.send(
            RtmpMessage::SetPeerBandwidth {
                size: PEER_BANDWIDTH,
                limit_type: PeerBandwidthLimitType::Dynamic,
            },
            0,
        )?;
        let resize = self
            .writer
            .set_max_chunk_size(OUTBOUND_CHUNK_SIZE, RtmpTimestamp::new(0))?;
        self.transmit.extend_from_slice(&resize.bytes);

        let mut server = HashMap::new();
        server.insert("fmsVer".to_owned(), text("FMS/3,5,7,7009"));
        server.insert("capabilities".to_owned(), Amf0Value::Number(31.0));
        server.insert("mode".to_owned(), Amf0Value::Number(1.0));
        let mut status = status_object("status", "NetConnection.Connect.Success", "Connected.");
        status.insert("objectEncoding".to_owned(), Amf0Value::Number(0.0));
        self.send(
            result(
                transaction,
                Amf0Value::Object(server),
                Amf0Value::Object(status),
            ),
            0,
        )?;
        self.app = Some(app);
        Ok(())
    }

    fn on_create_stream(&mut self, transaction: f64) -> Result<(), SessionError> {
        if self.streams_created >= MAX_STREAMS {
            return Err(SessionError::Command("too many streams created"));
        }
        self.streams_created += 1;
        let stream_id = f64::from(self.streams_created);
        self.send(
            result(transaction, Amf0Value::Null, Amf0Value::Number(stream_id)),
            0,
        )
    }

    fn on_publish(
        &mut self,
        stream_id: u32,
        arguments: Vec<Amf0Value>,
    ) -> Result<(), SessionError> {
        if stream_id == 0 || stream_id > self.streams_created {
            return self.refuse(stream_id, Refusal::UnknownStream);
        }
        if !matches!(self.publish, Publish::Idle) {
            return self.refuse(stream_id, Refusal::AlreadyPublishing);
        }
        let name = match arguments.into_iter().next() {
            Some(Amf0Value::Utf8String(name)) => name,
            _ => String::new(),
        };
        // `connect` guarantees the app is known by now.
        let app = self.app.as_deref().unwrap_or_default();
        let Some((app, stream_key)) = split_stream_key(app, &name) else {
            return self.refuse(stream_id, Refusal::MissingKey);
        };
        self.publish = Publish::Authorizing { stream_id };
        self.events
            .push_back(SessionEvent::PublishRequested { app, stream_key });
        Ok(())
    }

    fn refuse(&mut self, stream_id: u32, refusal: Refusal) -> Result<(), SessionError> {
        let (code, description) = refusal.status();
        self.send(
            on_status(status_object("error", code, description)),
            stream_id,
        )?;
        self.publish = Publish::Idle;
        self.closing = true;
        Ok(())
    }

    fn acknowledge(&mut self) -> Result<(), SessionError> {
        let Some(window) = self.ack_window else {
            return Ok(());
        };
        if self.received - self.acknowledged >= u64::from(window) {
            self.acknowledged = self.received;
            // The sequence number is the running total, wrapping at 2^32.
            let ack = RtmpMessage::Acknowledgement {
                sequence_number: self.received as u32,
            };
            self.send(ack, 0)?;
        }
        Ok(())
    }

    fn send(&mut self, message: RtmpMessage, stream_id: u32) -> Result<(), SessionError> {
        // Our own timestamps mean nothing to a publisher; 0 keeps headers small.
        let payload = message.into_message_payload(RtmpTimestamp::new(0), stream_id)?;
        let packet = self.writer.serialize(&payload, false, false)?;
        self.transmit.extend_from_slice(&packet.bytes);
        Ok(())
    }
}

/// Where the key is: `rtmp://host/app` with key `k` publishes `k` on app
/// `app`; `rtmp://host/app/k` with an empty key field arrives either the
/// same way (ffmpeg, librtmp split the URL) or as app `app/k` with an empty
/// publish name.
fn split_stream_key(app: &str, name: &str) -> Option<(String, String)> {
    if !name.is_empty() {
        return Some((app.to_owned(), name.to_owned()));
    }
    let (app, key) = app.rsplit_once('/')?;
    (!key.is_empty()).then(|| (app.to_owned(), key.to_owned()))
}

fn text(value: &str) -> Amf0Value {
    Amf0Value::Utf8String(value.to_owned())
}

fn status_object(level: &str, code: &str, description: &str) -> HashMap<String, Amf0Value> {
    let mut status = HashMap::new();
    status.insert("level".to_owned(), text(level));
    status.insert("code".to_owned(), text(code));
    status.insert("description".to_owned(), text(description));
    status
}

fn on_status(status: HashMap<String, Amf0Value>) -> RtmpMessage {
    RtmpMessage::Amf0Command {
        command_name: "onStatus".to_owned(),
        transaction_id: 0.0,
        command_object: Amf0Value::Null,
        additional_arguments: vec![Amf0Value::Object(status)],
    }
}

fn result(transaction: f64, object: Amf0Value, value: Amf0Value) -> RtmpMessage {
    RtmpMessage::Amf0Command {
        command_name: "_result".to_owned(),
        transaction_id: transaction,
        command_object: object,
        additional_arguments: vec![value],
    }
}

/// Logs what the encoder says about itself. Tracks come from sequence
/// headers, never from here: metadata may be missing or lack codec ids.
fn log_metadata(message: &Message) {
    let mut body = &message.payload[..];
    if message.type_id == kind::DATA_AMF3 && body.first() == Some(&0) {
        body = &body[1..];
    }
    let Ok(values) = amf::decode(body) else {
        tracing::debug!("unreadable data message ignored");
        return;
    };
    let properties = values.into_iter().find_map(|value| match value {
        Amf0Value::Object(properties) => Some(properties),
        _ => None,
    });
    let Some(properties) = properties else {
        return;
    };
    let number = |key: &str| match properties.get(key) {
        Some(Amf0Value::Number(n)) => Some(*n),
        _ => None,
    };
    let encoder = match properties.get("encoder") {
        Some(Amf0Value::Utf8String(name)) => name.as_str(),
        _ => "",
    };
    tracing::debug!(
        encoder,
        width = number("width"),
        height = number("height"),
        video_codec = number("videocodecid"),
        audio_codec = number("audiocodecid"),
        "stream metadata"
    );
}

fn be32(bytes: &[u8]) -> Option<u32> {
    bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };

    use super::*;

    /// Runs the client's handshake against the session.
    fn handshake(session: &mut Session) -> Handshake {
        let mut client = Handshake::new(PeerType::Client);
        let c0c1 = client.generate_outbound_p0_and_p1().unwrap();
        session.handle_input(&c0c1).unwrap();
        let s0s1s2 = session.take_transmit().unwrap();
        let HandshakeProcessResult::Completed { response_bytes, .. } =
            client.process_bytes(&s0s1s2).unwrap()
        else {
            panic!("client handshake incomplete");
        };
        session.handle_input(&response_bytes).unwrap();
        client
    }

    /// Delivers client packets to the session and session output back to
    /// the client, returning the client's events.
    fn exchange(
        session: &mut Session,
        client: &mut ClientSession,
        results: Vec<ClientSessionResult>,
    ) -> Vec<ClientSessionEvent> {
        let mut events = Vec::new();
        let mut pending = results;
        loop {
            for result in std::mem::take(&mut pending) {
                match result {
                    ClientSessionResult::OutboundResponse(packet) => {
                        session.handle_input(&packet.bytes).unwrap()
                    }
                    ClientSessionResult::RaisedEvent(event) => events.push(event),
                    ClientSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
            match session.take_transmit() {
                Some(bytes) => pending = client.handle_input(&bytes).unwrap(),
                None => return events,
            }
        }
    }

    fn connected_client(session: &mut Session) -> ClientSession {
        handshake(session);
        let (mut client, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        exchange(session, &mut client, results);
        let request = client.request_connection("live".to_owned()).unwrap();
        let events = exchange(session, &mut client, vec![request]);
        assert!(events.contains(&ClientSessionEvent::ConnectionRequestAccepted));
        client
    }

    #[test]
    fn rml_client_publishes_through_the_session() {
        let mut session = Session::new();
        let mut client = connected_client(&mut session);

        let request = client
            .request_publishing("the-key".to_owned(), PublishRequestType::Live)
            .unwrap();
        exchange(&mut session, &mut client, vec![request]);
        assert_eq!(
            session.poll_event(),
            Some(SessionEvent::PublishRequested {
                app: "live".to_owned(),
                stream_key: "the-key".to_owned(),
            })
        );
        assert!(session.accept_publish().unwrap());
        let events = exchange(&mut session, &mut client, vec![]);
        assert!(events.contains(&ClientSessionEvent::PublishRequestAccepted));

        let video = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        let packet = client
            .publish_video_data(video.clone(), RtmpTimestamp::new(40), false)
            .unwrap();
        exchange(&mut session, &mut client, vec![packet]);
        assert_eq!(
            session.poll_event(),
            Some(SessionEvent::Media(Media {
                kind: MediaKind::Video,
                timestamp_ms: 40,
                data: video,
            }))
        );

        let stop = client.stop_publishing().unwrap();
        exchange(&mut session, &mut client, stop);
        assert_eq!(session.poll_event(), Some(SessionEvent::PublishFinished));
    }

    #[test]
    fn ping_requests_are_answered() {
        let mut session = Session::new();
        let mut client = connected_client(&mut session);
        let mut payload = vec![0, 6];
        payload.extend_from_slice(&1234u32.to_be_bytes());
        let mut chunk = vec![0x02, 0, 0, 0, 0, 0, 6, kind::USER_CONTROL, 0, 0, 0, 0];
        chunk.extend_from_slice(&payload);
        session.handle_input(&chunk).unwrap();
        let reply = session.take_transmit().unwrap();
        let results = client.handle_input(&reply).unwrap();
        assert!(results.iter().any(|r| matches!(
            r,
            ClientSessionResult::RaisedEvent(ClientSessionEvent::PingResponseReceived { timestamp })
                if timestamp.value == 1234
        )));
    }

    #[test]
    fn refused_publish_gets_an_error_status_and_closes() {
        let mut session = Session::new();
        let mut client = connected_client(&mut session);
        let request = client
            .request_publishing("wrong".to_owned(), PublishRequestType::Live)
            .unwrap();
        exchange(&mut session, &mut client, vec![request]);
        assert!(matches!(
            session.poll_event(),
            Some(SessionEvent::PublishRequested { .. })
        ));
        session.refuse_publish(Refusal::BadKey).unwrap();
        assert!(session.is_closing());
        let results = client
            .handle_input(&session.take_transmit().unwrap())
            .unwrap();
        assert!(results.iter().any(|r| matches!(
            r,
            ClientSessionResult::RaisedEvent(ClientSessionEvent::UnhandleableOnStatusCode { code })
                if code == "NetStream.Publish.BadName"
        )));
        // Nothing more is read from a closing session.
        session.handle_input(&[0xff; 64]).unwrap();
        assert_eq!(session.poll_event(), None);
    }

    #[test]
    fn acknowledges_the_running_total() {
        let mut session = Session::new();
        handshake(&mut session);
        let mut window = vec![0x02, 0, 0, 0, 0, 0, 4, kind::WINDOW_ACK_SIZE, 0, 0, 0, 0];
        window.extend_from_slice(&100u32.to_be_bytes());
        session.handle_input(&window).unwrap();
        assert_eq!(session.take_transmit(), None);
        // Two acknowledgement messages of 16 bytes each, 32 bytes a round.
        let mut acks = Vec::new();
        for _ in 0..8 {
            let mut chunk = vec![0x02, 0, 0, 0, 0, 0, 4, kind::ACKNOWLEDGEMENT, 0, 0, 0, 0];
            chunk.extend_from_slice(&[0; 4]);
            chunk.extend(chunk.clone());
            session.handle_input(&chunk).unwrap();
            if let Some(bytes) = session.take_transmit() {
                acks.push(u32::from_be_bytes(
                    bytes[bytes.len() - 4..].try_into().unwrap(),
                ));
            }
        }
        assert_eq!(acks, [112, 240]);
    }

    #[test]
    fn bad_handshake_version_is_an_error() {
        let mut session = Session::new();
        let mut hello = vec![6u8];
        hello.extend_from_slice(&[0; 1536]);
        assert!(matches!(
            session.handle_input(&hello),
            Err(SessionError::Handshake(_))
        ));
    }

    #[test]
    fn stream_key_in_publish_name_or_app() {
        let split = |app, name| split_stream_key(app, name);
        assert_eq!(split("live", "k1"), Some(("live".into(), "k1".into())));
        assert_eq!(split("live/k2", ""), Some(("live".into(), "k2".into())));
        assert_eq!(split("live", ""), None);
        assert_eq!(split("live/", ""), None);
    }
}
