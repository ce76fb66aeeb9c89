//! Writes the seed corpora in `seeds/<target>/` from real encoder output,
//! so that the fuzzers start from what encoders and servers really send
//! rather than having to discover RTMP and FLV from nothing.
//!
//! ffmpeg publishes a fraction of a second of H.264 and AAC over RTMP to an
//! edge ingest session on a loopback port; its reads become the session
//! and chunk seeds, the messages in them the AMF, FLV, SPS and ASC seeds,
//! and the frames, encoded as mesh objects, the mesh seeds. The origin's
//! publisher talks to the same ingest session in memory for the origin's
//! RTMP seeds, and ffmpeg writes an FLV stream for the origin's reader.
//!
//! Run from `fuzz/`: `cargo run --example seeds`. Needs ffmpeg.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use buildstream_edge::flv::{self, AudioTag, VideoTag};
use buildstream_edge::fuzzing::Ingest;
use buildstream_fuzz::{write_record, HANDSHAKE_LEN};
use buildstream_mesh::object::{encode, TrackEncoder};
use buildstream_mesh::{Frame, TrackConfig};
use buildstream_origin::rtmp::{ProgramInfo, PublishTarget, Publisher};
use buildstream_rtmp::chunk::{ChunkReader, Message};

const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
const DATA_AMF0: u8 = 18;
const COMMAND_AMF0: u8 = 20;

/// Half a second of a small test picture and a tone: a few keyframes,
/// B-frames, and both sequence headers, in little data.
const ENCODE_ARGS: &[&str] = &[
    "-hide_banner",
    "-loglevel",
    "error",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=160x90:rate=10",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=48000",
    "-t",
    "0.5",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-bf",
    "2",
    "-g",
    "3",
    "-threads",
    "1",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
    "-ac",
    "1",
    "-b:a",
    "24k",
    "-f",
    "flv",
];

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut seeds = Seeds::default();

    let reads = capture_ffmpeg_publish();
    let chunk_stream: Vec<u8> = reads.concat();
    seeds.add("edge_session", "ffmpeg-publish", session_input(0, &reads));
    seeds.add(
        "edge_session",
        "ffmpeg-publish-refused",
        session_input(1, &reads),
    );
    seeds.add("edge_chunk", "ffmpeg-publish", chunk_stream.clone());
    seeds.add(
        "edge_chunk",
        "ffmpeg-connect",
        chunk_stream[..4096.min(chunk_stream.len())].to_vec(),
    );

    let messages = read_messages(&chunk_stream);
    media_seeds(&mut seeds, &messages);
    for (index, message) in messages.iter().enumerate() {
        if matches!(message.type_id, COMMAND_AMF0 | DATA_AMF0) {
            seeds.add(
                "edge_amf",
                &format!("ffmpeg-{index}"),
                message.payload.to_vec(),
            );
        }
    }

    seeds.add("origin_rtmp", "edge-session", origin_publish_against_edge());
    seeds.add("origin_flv", "ffmpeg-flv", ffmpeg_flv_file());
    seeds.add(
        "mesh_track_name",
        "source",
        b"studio/s1/cam\0video".to_vec(),
    );
    seeds.add(
        "mesh_track_name",
        "program",
        b"studio/s1/program\0program".to_vec(),
    );

    seeds.write(&root);
}

/// Every seed, by target and name.
#[derive(Default)]
struct Seeds(BTreeMap<(String, String), Vec<u8>>);

impl Seeds {
    fn add(&mut self, target: &str, name: &str, data: Vec<u8>) {
        self.0.insert((target.to_owned(), name.to_owned()), data);
    }

    fn write(&self, root: &Path) {
        for ((target, name), data) in &self.0 {
            let dir = root.join(target);
            fs::create_dir_all(&dir).expect("seed directory");
            fs::write(dir.join(name), data).expect("seed file");
            println!("{target}/{name}: {} bytes", data.len());
        }
    }
}

/// What ffmpeg sends an edge ingest session, one entry per socket read,
/// with the handshake left out.
fn capture_ffmpeg_publish() -> Vec<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("bound address").port();
    let mut ffmpeg = spawn_ffmpeg(&format!("rtmp://127.0.0.1:{port}/live/seed-key"));
    let (mut socket, _) = listener.accept().expect("ffmpeg connects");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");

    let reads = serve(&mut socket);
    let status = ffmpeg.wait().expect("ffmpeg exits");
    assert!(status.success(), "ffmpeg failed to publish: {status}");
    strip_handshake(reads)
}

/// Runs an edge ingest session on `socket` until the peer closes.
fn serve(socket: &mut TcpStream) -> Vec<Vec<u8>> {
    let mut ingest = Ingest::new();
    let mut reads = Vec::new();
    let mut buffer = vec![0; 4096];
    loop {
        let count = match socket.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) => panic!("reading from ffmpeg: {error}"),
        };
        reads.push(buffer[..count].to_vec());
        ingest
            .handle_input(&buffer[..count], true)
            .expect("the edge takes what ffmpeg sends");
        while let Some(bytes) = ingest.take_transmit() {
            socket.write_all(&bytes).expect("writing to ffmpeg");
        }
    }
    assert!(
        ingest.take_transmit().is_none(),
        "nothing left unsent at the end"
    );
    reads
}

fn spawn_ffmpeg(output: &str) -> Child {
    Command::new("ffmpeg")
        .args(ENCODE_ARGS)
        .arg(output)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed (scripts/setup.sh)")
}

/// An FLV stream as ffmpeg writes it.
fn ffmpeg_flv_file() -> Vec<u8> {
    let child = spawn_ffmpeg("pipe:1");
    let output = child.wait_with_output().expect("ffmpeg exits");
    assert!(output.status.success(), "ffmpeg failed to write FLV");
    output.stdout
}

/// Drops the first [`HANDSHAKE_LEN`] bytes of a conversation, keeping the
/// read boundaries of the rest.
fn strip_handshake(reads: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut skip = HANDSHAKE_LEN;
    let mut out = Vec::new();
    for read in reads {
        if skip >= read.len() {
            skip -= read.len();
            continue;
        }
        out.push(read[skip..].to_vec());
        skip = 0;
    }
    assert_eq!(skip, 0, "the conversation is shorter than a handshake");
    out
}

fn session_input(flags: u8, reads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![flags];
    for read in reads {
        write_record(&mut out, read);
    }
    out
}

fn read_messages(stream: &[u8]) -> Vec<Message> {
    let mut reader = ChunkReader::new();
    reader.push(stream);
    let mut messages = Vec::new();
    while let Some(message) = reader.next_message().expect("ffmpeg's chunks read") {
        messages.push(message);
    }
    messages
}

/// FLV, H.264 and AAC seeds from the media messages, and mesh objects of
/// the frames they carry.
fn media_seeds(seeds: &mut Seeds, messages: &[Message]) {
    let mut video_config: Option<Arc<TrackConfig>> = None;
    let mut audio_config: Option<Arc<TrackConfig>> = None;
    let mut frames = Vec::new();
    let (mut video_bodies, mut audio_bodies) = (0, 0);

    for message in messages {
        let body = &message.payload;
        let timestamp_us = i64::from(message.timestamp) * 1000;
        match message.type_id {
            VIDEO => {
                if video_bodies < 4 {
                    video_bodies += 1;
                    seeds.add("edge_flv", &format!("video-{video_bodies}"), body.to_vec());
                }
                match flv::parse_video(body).expect("ffmpeg's video tags parse") {
                    VideoTag::AvcSequenceHeader(config) => {
                        let record = config.description.to_vec();
                        let length = usize::from(u16::from_be_bytes([record[6], record[7]]));
                        seeds.add("edge_avc", "avcc", record.clone());
                        seeds.add("edge_avc", "sps", record[8..8 + length].to_vec());
                        video_config = Some(Arc::new(config));
                    }
                    VideoTag::AvcFrame(frame) => {
                        let config = video_config.clone().expect("header before frames");
                        frames.push(Frame {
                            timestamp_us,
                            composition_offset_us: frame.composition_time_ms * 1000,
                            keyframe: frame.keyframe,
                            payload: frame.data,
                            config,
                        });
                    }
                    _ => {}
                }
            }
            AUDIO => {
                if audio_bodies < 3 {
                    audio_bodies += 1;
                    seeds.add("edge_flv", &format!("audio-{audio_bodies}"), body.to_vec());
                }
                match flv::parse_audio(body).expect("ffmpeg's audio tags parse") {
                    AudioTag::AacSequenceHeader(config) => {
                        seeds.add("edge_asc", "ffmpeg-aac", config.description.to_vec());
                        audio_config = Some(Arc::new(config));
                    }
                    AudioTag::AacFrame(data) => {
                        let config = audio_config.clone().expect("header before frames");
                        frames.push(Frame {
                            timestamp_us,
                            composition_offset_us: 0,
                            keyframe: true,
                            payload: data,
                            config,
                        });
                    }
                    AudioTag::Unsupported(_) => {}
                }
            }
            _ => {}
        }
    }

    // AAC configs ffmpeg does not write: HE-AAC v1 and v2 signalled
    // explicitly (the edge's unit tests decode the same bits), an escaped
    // object type with an explicit rate, and a program config element.
    seeds.add("edge_asc", "lc-44100-stereo", vec![0x12, 0x10]);
    seeds.add("edge_asc", "he-aac-explicit", vec![0x2b, 0x11, 0x88]);
    seeds.add("edge_asc", "he-aac-v2-explicit", vec![0xeb, 0x8a, 0x08]);
    seeds.add(
        "edge_asc",
        "escaped-type",
        vec![0xf8, 0x7e, 0x01, 0x27, 0x50, 0xe0],
    );
    let pce = vec![0x11, 0x80, 0x04, 0xc8, 0x05, 0x00, 0xa8, 0x11, 0x90, 0x00];
    seeds.add("edge_asc", "pce-5.1", pce);
    for (name, asc) in &seeds.0 {
        if name.0 == "edge_asc" {
            flv::parse_audio_specific_config(asc).expect("every ASC seed parses");
        }
    }

    let video = frames.iter().find(|f| f.config.codec.is_video());
    let audio = frames.iter().find(|f| !f.config.codec.is_video());
    for (name, frame) in [("video", video), ("audio", audio)] {
        let frame = frame.expect("ffmpeg sent both tracks");
        seeds.add(
            "mesh_object",
            &format!("{name}-with-config"),
            encode(frame, true).to_vec(),
        );
        seeds.add(
            "mesh_object",
            &format!("{name}-plain"),
            encode(frame, false).to_vec(),
        );
    }

    for media in [true, false] {
        let mut encoder = TrackEncoder::new();
        let mut track = Vec::new();
        for frame in frames.iter().filter(|f| f.config.codec.is_video() == media) {
            write_record(&mut track, &encoder.push(frame).payload);
        }
        let name = if media { "video-track" } else { "audio-track" };
        seeds.add("mesh_track_decoder", name, track);
    }
}

/// What an edge ingest session sends the origin's publisher, with the
/// handshake left out, one record per write.
fn origin_publish_against_edge() -> Vec<u8> {
    let target = PublishTarget {
        app: "live".to_owned(),
        tc_url: "rtmp://127.0.0.1/live".to_owned(),
        stream_key: "fuzz-key".to_owned(),
    };
    let info = ProgramInfo {
        width: 1280,
        height: 720,
        framerate: 30,
        video_bitrate_kbps: 2500,
        audio_bitrate_kbps: 128,
        audio_sample_rate: 48_000,
        audio_channels: 2,
    };
    let mut publisher = Publisher::new(target, info).expect("a publisher starts");
    let mut ingest = Ingest::new();
    let mut writes = Vec::new();
    let mut finished = false;
    loop {
        let outbound = publisher.take_outbound();
        if !outbound.is_empty() {
            ingest
                .handle_input(&outbound, true)
                .expect("the edge takes what the origin sends");
        }
        match ingest.take_transmit() {
            Some(bytes) => {
                publisher
                    .receive(&bytes)
                    .expect("the origin takes what the edge sends");
                writes.push(bytes);
            }
            None if !outbound.is_empty() => {}
            None if !finished && publisher.is_publishing() => {
                publisher.finish().expect("the publisher finishes");
                finished = true;
            }
            None => break,
        }
    }
    assert!(finished, "the origin never got to publish");

    let mut out = Vec::new();
    for write in strip_handshake(writes) {
        write_record(&mut out, &write);
    }
    out
}
