//! A small RTMP publisher written from the spec for tests: handshake, chunks
//! built by hand (so tests control every header), AMF0, and enough of a
//! reader to see the server's answers. Plus helpers to run an ingest and
//! read its tracks.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use buildstream_edge::{IngestConfig, MemoryKeyAuthority, RtmpIngest, SourceGrant};
use buildstream_mesh::{Frame, TrackConsumer, TrackName, Tracks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

/// Generous bound for anything that should happen promptly; only reached
/// when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub const STUDIO: &str = "studio-1";
pub const SOURCE: &str = "obs";
pub const KEY: &str = "live_5f8c2a_secret";

/// x264 SPS for 640x360 and 1280x720 (High and Main profile).
pub const SPS_640X360: &str = "6764001eacd940a02ff970110000030001000003003c0f162d96";
pub const SPS_1280X720: &str = "674d401feca02802dd8088000003000800000301e078c18cb0";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub struct Ingest {
    pub ingest: RtmpIngest,
    pub tracks: Tracks,
    pub keys: Arc<MemoryKeyAuthority>,
}

impl Ingest {
    pub async fn start(config: IngestConfig) -> Self {
        init_tracing();
        let keys = Arc::new(MemoryKeyAuthority::new());
        keys.insert(
            KEY,
            SourceGrant {
                studio: STUDIO.to_owned(),
                source: SOURCE.to_owned(),
            },
        );
        let tracks = Tracks::new();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let ingest = RtmpIngest::bind_with_config(addr, keys.clone(), tracks.clone(), config)
            .await
            .expect("ingest binds to a free loopback port");
        Self {
            ingest,
            tracks,
            keys,
        }
    }

    pub async fn start_default() -> Self {
        Self::start(IngestConfig::default()).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.ingest.local_addr()
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.addr())
    }
}

pub fn track(kind: &str) -> TrackName {
    TrackName::new(STUDIO, SOURCE, kind).unwrap()
}

/// Subscribes once the track is live.
pub async fn subscribe(tracks: &Tracks, name: &TrackName) -> TrackConsumer {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(consumer) = tracks.subscribe(name) {
            return consumer;
        }
        assert!(Instant::now() < deadline, "track {name} never went live");
        sleep(Duration::from_millis(10)).await;
    }
}

pub async fn next_frame(consumer: &mut TrackConsumer) -> Frame {
    timeout(PATIENCE, consumer.next())
        .await
        .expect("a frame arrives")
        .expect("the track is still live")
}

/// The first frame of whatever publisher is live on `name` once one is,
/// skipping a track that ends while being subscribed (a takeover).
pub async fn first_live_frame(tracks: &Tracks, name: &TrackName) -> Frame {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut consumer = subscribe(tracks, name).await;
        if let Ok(Some(frame)) = timeout(PATIENCE, consumer.next()).await {
            return frame;
        }
        assert!(Instant::now() < deadline, "no live frame on {name}");
    }
}

/// Waits until the tracks of the source are exactly `kinds`.
pub async fn wait_for_tracks(tracks: &Tracks, kinds: &[&str]) {
    let want: Vec<TrackName> = kinds.iter().map(|k| track(k)).collect();
    let deadline = Instant::now() + PATIENCE;
    while tracks.names() != want {
        assert!(
            Instant::now() < deadline,
            "tracks are {:?}, want {want:?}",
            tracks.names()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- AMF0

#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
}

pub fn s(text: &str) -> Amf {
    Amf::Str(text.to_owned())
}

pub fn obj(properties: &[(&str, Amf)]) -> Amf {
    Amf::Object(
        properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

pub fn amf_encode(values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        encode_value(value, &mut out);
    }
    out
}

fn encode_value(value: &Amf, out: &mut Vec<u8>) {
    match value {
        Amf::Number(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Amf::Str(text) => {
            out.push(2);
            out.extend_from_slice(&(text.len() as u16).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        Amf::Object(properties) => {
            out.push(3);
            for (key, value) in properties {
                out.extend_from_slice(&(key.len() as u16).to_be_bytes());
                out.extend_from_slice(key.as_bytes());
                encode_value(value, out);
            }
            out.extend_from_slice(&[0, 0, 9]);
        }
        Amf::Null => out.push(5),
        Amf::Undefined => out.push(6),
    }
}

fn amf_decode(mut bytes: &[u8]) -> Vec<Amf> {
    let mut values = Vec::new();
    while !bytes.is_empty() {
        match decode_value(&mut bytes) {
            Some(value) => values.push(value),
            None => break,
        }
    }
    values
}

fn take<'a>(bytes: &mut &'a [u8], count: usize) -> Option<&'a [u8]> {
    if bytes.len() < count {
        return None;
    }
    let (head, tail) = bytes.split_at(count);
    *bytes = tail;
    Some(head)
}

fn decode_string(bytes: &mut &[u8]) -> Option<String> {
    let length = take(bytes, 2)?;
    let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
    Some(String::from_utf8_lossy(take(bytes, length)?).into_owned())
}

fn decode_value(bytes: &mut &[u8]) -> Option<Amf> {
    let marker = take(bytes, 1)?[0];
    Some(match marker {
        0 => Amf::Number(f64::from_be_bytes(take(bytes, 8)?.try_into().ok()?)),
        1 => Amf::Bool(take(bytes, 1)?[0] != 0),
        2 => Amf::Str(decode_string(bytes)?),
        3 | 8 => {
            if marker == 8 {
                take(bytes, 4)?;
            }
            let mut properties = Vec::new();
            loop {
                let key = decode_string(bytes)?;
                if key.is_empty() {
                    take(bytes, 1)?;
                    break;
                }
                properties.push((key, decode_value(bytes)?));
            }
            Amf::Object(properties)
        }
        5 => Amf::Null,
        6 => Amf::Undefined,
        _ => return None,
    })
}

pub fn property<'a>(value: &'a Amf, key: &str) -> Option<&'a Amf> {
    match value {
        Amf::Object(properties) => properties.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

// ---------------------------------------------------------------- FLV bodies

pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// An AVC sequence header tag body around the given SPS.
pub fn avc_sequence_header(sps_hex: &str) -> Vec<u8> {
    let sps = hex(sps_hex);
    let mut body = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    body.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    body.extend_from_slice(&sps);
    body.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
    body
}

/// The length-prefixed NAL unit an [`avc_frame`] carries.
pub fn nal_unit(keyframe: bool, marker: u8, size: usize) -> Vec<u8> {
    let mut nal = vec![if keyframe { 0x65 } else { 0x41 }];
    nal.extend((0..size.saturating_sub(1)).map(|i| (i as u8) ^ marker));
    let mut out = (nal.len() as u32).to_be_bytes().to_vec();
    out.extend(nal);
    out
}

/// An AVC frame tag body: one NAL unit of `size` bytes tagged by `marker`.
pub fn avc_frame(keyframe: bool, cts_ms: i32, marker: u8, size: usize) -> Vec<u8> {
    let cts = cts_ms.to_be_bytes();
    let mut body = vec![
        if keyframe { 0x17 } else { 0x27 },
        1,
        cts[1],
        cts[2],
        cts[3],
    ];
    body.extend(nal_unit(keyframe, marker, size));
    body
}

pub fn aac_sequence_header() -> Vec<u8> {
    vec![0xaf, 0, 0x12, 0x10] // AAC-LC, 44.1 kHz, stereo
}

pub fn aac_frame(marker: u8) -> Vec<u8> {
    vec![0xaf, 1, 0x21, marker, 0x80]
}

// ---------------------------------------------------------------- RTMP

pub const CSID_CONTROL: u8 = 2;
pub const CSID_COMMAND: u8 = 3;
pub const CSID_AUDIO: u8 = 4;
pub const CSID_STREAM_COMMAND: u8 = 5;
pub const CSID_VIDEO: u8 = 6;

pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_DATA: u8 = 18;
pub const TYPE_COMMAND: u8 = 20;

/// A message from the server, decoded as far as tests need.
#[derive(Debug)]
pub struct Reply {
    pub type_id: u8,
    pub stream_id: u32,
    pub values: Vec<Amf>,
}

impl Reply {
    pub fn command(&self) -> Option<&str> {
        match self.values.first() {
            Some(Amf::Str(name)) if self.type_id == TYPE_COMMAND => Some(name),
            _ => None,
        }
    }
}

/// What `onStatus` said.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub level: String,
    pub code: String,
    pub description: String,
}

pub struct RtmpClient {
    stream: TcpStream,
    /// Our outbound chunk size.
    chunk_size: usize,
    inbound: Vec<u8>,
    inbound_chunk_size: usize,
    inbound_headers: std::collections::HashMap<u32, (u32, u8, u32, Vec<u8>)>,
    next_transaction: f64,
}

impl RtmpClient {
    /// Connects and completes the handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut client = Self::connect_tcp(addr).await;
        client.handshake().await;
        client
    }

    pub async fn connect_tcp(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("ingest accepts");
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            chunk_size: 128,
            inbound: Vec::new(),
            inbound_chunk_size: 128,
            inbound_headers: Default::default(),
            next_transaction: 1.0,
        }
    }

    /// The plain handshake of the spec: C0, C1 with zero time and version,
    /// then C2 echoing S1.
    pub async fn handshake(&mut self) {
        let mut c0c1 = vec![3u8];
        c0c1.extend((0..1536).map(|i| if i < 8 { 0 } else { (i * 7) as u8 }));
        self.send_raw(&c0c1).await;
        let mut s0s1s2 = vec![0; 1 + 1536 * 2];
        timeout(PATIENCE, self.stream.read_exact(&mut s0s1s2))
            .await
            .expect("handshake answered in time")
            .expect("handshake answered");
        assert_eq!(s0s1s2[0], 3);
        assert_eq!(&s0s1s2[1 + 1536..], &c0c1[1..], "S2 echoes C1");
        let s1 = s0s1s2[1..1 + 1536].to_vec();
        self.send_raw(&s1).await;
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to ingest");
    }

    /// Writes without panicking; the server may have closed already.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Builds a message as a type-0 chunk and type-3 continuations at the
    /// current chunk size, repeating an extended timestamp on each.
    pub fn chunks(
        &self,
        csid: u8,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        chunk_message(
            self.chunk_size,
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        )
    }

    pub async fn send_message(
        &mut self,
        csid: u8,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        let bytes = self.chunks(csid, timestamp, type_id, stream_id, payload);
        self.send_raw(&bytes).await;
    }

    pub async fn set_chunk_size(&mut self, size: u32) {
        self.send_message(CSID_CONTROL, 0, TYPE_SET_CHUNK_SIZE, 0, &size.to_be_bytes())
            .await;
        self.chunk_size = size.min(0xff_ffff) as usize;
    }

    /// Changes only our idea of the chunk size (for hand-built sequences).
    pub fn assume_chunk_size(&mut self, size: usize) {
        self.chunk_size = size;
    }

    pub async fn command(&mut self, stream_id: u32, values: &[Amf]) {
        let csid = if stream_id == 0 {
            CSID_COMMAND
        } else {
            CSID_STREAM_COMMAND
        };
        self.send_message(csid, 0, TYPE_COMMAND, stream_id, &amf_encode(values))
            .await;
    }

    fn transaction(&mut self) -> f64 {
        let transaction = self.next_transaction;
        self.next_transaction += 1.0;
        transaction
    }

    /// `connect` to an app and wait for `_result`.
    pub async fn connect_app(&mut self, app: &str) {
        let transaction = self.transaction();
        let tc_url = format!("rtmp://{}/{app}", self.stream.peer_addr().unwrap());
        let object = obj(&[
            ("app", s(app)),
            ("type", s("nonprivate")),
            ("flashVer", s("FMLE/3.0 (compatible; test)")),
            ("tcUrl", Amf::Str(tc_url)),
        ]);
        self.command(0, &[s("connect"), Amf::Number(transaction), object])
            .await;
        let reply = self.result_for(transaction).await;
        let status = reply
            .values
            .get(3)
            .expect("connect result has an info object");
        assert_eq!(
            property(status, "code"),
            Some(&s("NetConnection.Connect.Success"))
        );
    }

    pub async fn create_stream(&mut self) -> u32 {
        let transaction = self.transaction();
        for name in ["releaseStream", "FCPublish"] {
            let t = self.transaction();
            self.command(0, &[s(name), Amf::Number(t), Amf::Null, s("x")])
                .await;
        }
        self.command(0, &[s("createStream"), Amf::Number(transaction), Amf::Null])
            .await;
        let reply = self.result_for(transaction).await;
        match reply.values.get(3) {
            Some(Amf::Number(id)) => *id as u32,
            other => panic!("createStream answered {other:?}"),
        }
    }

    /// `publish` and the `onStatus` that answers it.
    pub async fn publish(&mut self, stream_id: u32, name: &str) -> Status {
        self.command(
            stream_id,
            &[
                s("publish"),
                Amf::Number(0.0),
                Amf::Null,
                s(name),
                s("live"),
            ],
        )
        .await;
        loop {
            let reply = self
                .read_reply()
                .await
                .expect("publish answered before close");
            if reply.command() == Some("onStatus") {
                let info = reply.values.get(3).expect("onStatus has an info object");
                let text = |key| match property(info, key) {
                    Some(Amf::Str(text)) => text.clone(),
                    other => panic!("onStatus {key} is {other:?}"),
                };
                return Status {
                    level: text("level"),
                    code: text("code"),
                    description: text("description"),
                };
            }
        }
    }

    /// connect, createStream and a publish that must succeed; returns the stream id.
    pub async fn start_publishing(&mut self, key: &str) -> u32 {
        self.connect_app("live").await;
        let stream_id = self.create_stream().await;
        let status = self.publish(stream_id, key).await;
        assert_eq!(status.code, "NetStream.Publish.Start", "{status:?}");
        stream_id
    }

    pub async fn video(&mut self, stream_id: u32, timestamp: u32, body: &[u8]) {
        self.send_message(CSID_VIDEO, timestamp, TYPE_VIDEO, stream_id, body)
            .await;
    }

    pub async fn audio(&mut self, stream_id: u32, timestamp: u32, body: &[u8]) {
        self.send_message(CSID_AUDIO, timestamp, TYPE_AUDIO, stream_id, body)
            .await;
    }

    async fn result_for(&mut self, transaction: f64) -> Reply {
        loop {
            let reply = self
                .read_reply()
                .await
                .expect("server answers before closing");
            if reply.command() == Some("_result")
                && reply.values.get(1) == Some(&Amf::Number(transaction))
            {
                return reply;
            }
        }
    }

    /// The next complete message from the server, or `None` once it closed.
    pub async fn read_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(reply) = self.parse_inbound() {
                return Some(reply);
            }
            let mut buffer = [0; 8192];
            let count = timeout(PATIENCE, self.stream.read(&mut buffer))
                .await
                .expect("server says something in time")
                .ok()?;
            if count == 0 {
                return None;
            }
            self.inbound.extend_from_slice(&buffer[..count]);
        }
    }

    /// Whether the server closes the connection within `within`, reading
    /// and discarding whatever it still sends.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buffer = [0; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.stream.read(&mut buffer)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    fn parse_inbound(&mut self) -> Option<Reply> {
        loop {
            let input = &self.inbound;
            let first = *input.first()?;
            let format = first >> 6;
            let csid = u32::from(first & 0x3f);
            assert!(csid >= 2, "server uses one-byte chunk stream ids");
            let header_length = [11, 7, 3, 0][usize::from(format)];
            if input.len() < 1 + header_length {
                return None;
            }
            let header = &input[1..1 + header_length];
            let be24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
            let previous = self.inbound_headers.get(&csid).cloned();
            let (length, type_id, stream_id, mut partial) = match format {
                0 => (
                    be24(&header[3..6]),
                    header[6],
                    u32::from_le_bytes(header[7..11].try_into().unwrap()),
                    Vec::new(),
                ),
                1 => {
                    let (_, _, stream_id, partial) = previous.unwrap_or_default();
                    (be24(&header[3..6]), header[6], stream_id, partial)
                }
                _ => previous.expect("compressed header after a full one"),
            };
            if format != 3 {
                partial.clear();
            }
            let size = self.inbound_chunk_size.min(length as usize - partial.len());
            if input.len() < 1 + header_length + size {
                return None;
            }
            let data = input[1 + header_length..1 + header_length + size].to_vec();
            self.inbound.drain(..1 + header_length + size);
            partial.extend_from_slice(&data);
            if partial.len() < length as usize {
                self.inbound_headers
                    .insert(csid, (length, type_id, stream_id, partial));
                continue;
            }
            self.inbound_headers
                .insert(csid, (length, type_id, stream_id, Vec::new()));
            if type_id == TYPE_SET_CHUNK_SIZE {
                self.inbound_chunk_size =
                    u32::from_be_bytes(partial[..4].try_into().unwrap()) as usize;
                continue;
            }
            let values = if type_id == TYPE_COMMAND || type_id == TYPE_DATA {
                amf_decode(&partial)
            } else {
                Vec::new()
            };
            return Some(Reply {
                type_id,
                stream_id,
                values,
            });
        }
    }
}

/// A message as a type-0 chunk and type-3 continuations, repeating an
/// extended timestamp on every chunk as the spec says.
pub fn chunk_message(
    chunk_size: usize,
    csid: u8,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
) -> Vec<u8> {
    let extended = timestamp >= 0xff_ffff;
    let mut out = vec![csid];
    out.extend_from_slice(&timestamp.min(0xff_ffff).to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    for (index, part) in payload.chunks(chunk_size.max(1)).enumerate() {
        if index > 0 {
            out.push(0xc0 | csid);
            if extended {
                out.extend_from_slice(&timestamp.to_be_bytes());
            }
        }
        out.extend_from_slice(part);
    }
    out
}

/// Checks that a video frame is whole: length-prefixed NAL units that
/// exactly fill it. A misread chunk header shows up here.
pub fn assert_whole_avc(frame: &Frame) {
    let mut rest = &frame.payload[..];
    assert!(!rest.is_empty(), "empty video frame");
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "dangling bytes after the last NAL unit");
        let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(
            length > 0 && length <= rest.len() - 4,
            "NAL unit overruns the frame"
        );
        assert_eq!(
            rest[4] & 0x80,
            0,
            "forbidden_zero_bit set: frame is misaligned"
        );
        rest = &rest[4 + length..];
    }
}
