//! A studio source: ffmpeg encodes a solid colour and a tone to H.264 (with
//! B-frames) and AAC in FLV, in real time; the FLV is read back into mesh
//! frames and published as the source's `video` and `audio` tracks.

use std::process::Stdio;
use std::sync::Arc;

use buildstream_mesh::{Codec, Frame, TrackConfig, TrackName, Tracks};
use buildstream_origin::aac::AudioSpecificConfig;
use buildstream_origin::flv::{self, AudioPacket, VideoPacket};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

/// Source frames are 640x360; the compositor scales them.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 360;

pub struct TestSource {
    child: Child,
    task: JoinHandle<()>,
}

/// Rewrites a frame's timestamp and composition offset in µs, given the
/// frame's index in its track: a publisher with a broken clock.
pub type Restamp = fn(u64, i64, i32) -> (i64, i32);

fn keep(_: u64, timestamp_us: i64, composition_offset_us: i32) -> (i64, i32) {
    (timestamp_us, composition_offset_us)
}

impl TestSource {
    /// Starts publishing `studio/{studio}/{source}` in `color` (an ffmpeg
    /// colour name such as `red` or `0x0000ff`).
    pub fn start(tracks: &Tracks, studio: &str, source: &str, color: &str) -> Self {
        Self::start_restamped(tracks, studio, source, color, keep)
    }

    /// Like [`TestSource::start`], at another frame size.
    pub fn start_sized(
        tracks: &Tracks,
        studio: &str,
        source: &str,
        color: &str,
        size: (u32, u32),
    ) -> Self {
        Self::spawn(
            tracks,
            studio,
            source,
            &format!("color=c={color}"),
            size,
            keep,
        )
    }

    /// Starts publishing a moving test pattern: unlike a solid colour it
    /// costs real bitrate once composed and encoded.
    pub fn start_moving(tracks: &Tracks, studio: &str, source: &str) -> Self {
        Self::spawn(tracks, studio, source, "testsrc2", (WIDTH, HEIGHT), keep)
    }

    /// Like [`TestSource::start`], with every timestamp passed through
    /// `restamp`.
    pub fn start_restamped(
        tracks: &Tracks,
        studio: &str,
        source: &str,
        color: &str,
        restamp: Restamp,
    ) -> Self {
        Self::spawn(
            tracks,
            studio,
            source,
            &format!("color=c={color}"),
            (WIDTH, HEIGHT),
            restamp,
        )
    }

    fn spawn(
        tracks: &Tracks,
        studio: &str,
        source: &str,
        lavfi: &str,
        size: (u32, u32),
        restamp: Restamp,
    ) -> Self {
        let (width, height) = size;
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "{lavfi}{}s={width}x{height}:r=30",
                if lavfi.contains('=') { ':' } else { '=' }
            ))
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            // B-frames on purpose: decode and presentation order differ.
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "30",
            ])
            .args([
                "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
            ])
            .args(["-f", "flv", "-flush_packets", "1", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg starts");
        let stdout = child.stdout.take().expect("stdout");
        let video = tracks.publish(TrackName::new(studio, source, "video").expect("name"));
        let audio = tracks.publish(TrackName::new(studio, source, "audio").expect("name"));
        let task = tokio::spawn(pump(stdout, video, audio, size, restamp));
        Self { child, task }
    }

    /// Stops the encoder; the tracks end.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.task.await;
    }
}

async fn pump(
    mut stdout: ChildStdout,
    video: buildstream_mesh::TrackProducer,
    audio: buildstream_mesh::TrackProducer,
    (width, height): (u32, u32),
    restamp: Restamp,
) {
    let (mut video_index, mut audio_index) = (0u64, 0u64);
    let mut reader = flv::Reader::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut video_config: Option<Arc<TrackConfig>> = None;
    let mut audio_config: Option<Arc<TrackConfig>> = None;
    loop {
        let n = match stdout.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        reader.push(&buffer[..n]);
        while let Some(tag) = reader.next_tag().expect("ffmpeg writes valid FLV") {
            let timestamp_us = i64::from(tag.timestamp_ms) * 1000;
            match tag.kind {
                flv::TAG_VIDEO => match flv::parse_video_body(&tag.body).expect("AVC") {
                    VideoPacket::SequenceHeader(avcc) => {
                        video_config = Some(Arc::new(TrackConfig {
                            codec: Codec::H264,
                            description: avcc,
                            width,
                            height,
                            sample_rate: 0,
                            channels: 0,
                        }));
                    }
                    VideoPacket::Frame {
                        keyframe,
                        cts_ms,
                        data,
                    } => {
                        if let Some(config) = &video_config {
                            video_index += 1;
                            let (timestamp_us, composition_offset_us) =
                                restamp(video_index, timestamp_us, cts_ms * 1000);
                            let _ = video.write(Frame {
                                timestamp_us,
                                composition_offset_us,
                                keyframe,
                                payload: data,
                                config: config.clone(),
                            });
                        }
                    }
                    VideoPacket::EndOfSequence => {}
                },
                flv::TAG_AUDIO => match flv::parse_audio_body(&tag.body).expect("AAC") {
                    AudioPacket::SequenceHeader(asc) => {
                        let parsed = AudioSpecificConfig::parse(&asc).expect("ASC");
                        audio_config = Some(Arc::new(TrackConfig {
                            codec: Codec::Aac,
                            description: asc,
                            width: 0,
                            height: 0,
                            sample_rate: parsed.sample_rate,
                            channels: parsed.channels,
                        }));
                    }
                    AudioPacket::Frame(data) => {
                        if let Some(config) = &audio_config {
                            audio_index += 1;
                            let (timestamp_us, composition_offset_us) =
                                restamp(audio_index, timestamp_us, 0);
                            let _ = audio.write(Frame {
                                timestamp_us,
                                composition_offset_us,
                                keyframe: true,
                                payload: data,
                                config: config.clone(),
                            });
                        }
                    }
                },
                _ => {}
            }
        }
    }
}
