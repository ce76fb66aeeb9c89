//! RTMP ingest against a real encoder: ffmpeg publishing generated test
//! patterns, as OBS would publish a camera.

mod support;

use std::process::Stdio;
use std::time::Duration;

use buildstream_mesh::{Codec, Frame, TrackConsumer};
use support::*;
use tokio::process::{Child, Command};
use tokio::time::timeout;

const VIDEO_INPUT: [&str; 5] = ["-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"];
const AUDIO_INPUT: [&str; 4] = ["-f", "lavfi", "-i", "sine=frequency=440"];

/// ffmpeg publishing to `url` with the given inputs and encoder options.
/// It stops after a minute if a test forgets it; dropping the child kills it.
fn ffmpeg(inputs: &[&str], options: &[&str], url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(inputs)
        .args(options)
        .args(["-t", "60", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg is installed (scripts/setup.sh)")
}

fn av_options() -> Vec<&'static str> {
    vec!["-c:v", "libx264", "-g", "60", "-c:a", "aac"]
}

async fn collect(consumer: &mut TrackConsumer, count: usize) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        frames.push(next_frame(consumer).await);
    }
    frames
}

fn assert_decode_order(frames: &[Frame]) {
    for pair in frames.windows(2) {
        assert!(
            pair[1].timestamp_us >= pair[0].timestamp_us,
            "decode timestamps go back: {} then {}",
            pair[0].timestamp_us,
            pair[1].timestamp_us
        );
    }
}

#[tokio::test]
async fn ffmpeg_publishes_h264_and_aac() {
    let ingest = Ingest::start_default().await;
    let inputs = [&VIDEO_INPUT[..], &AUDIO_INPUT[..]].concat();
    let _encoder = ffmpeg(&inputs, &av_options(), &ingest.url(KEY));

    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let mut audio = subscribe(&ingest.tracks, &track("audio")).await;
    let frames = collect(&mut video, 70).await;
    assert!(frames[0].keyframe, "a consumer starts at a keyframe");
    let config = &frames[0].config;
    assert_eq!(config.codec, Codec::H264);
    assert_eq!((config.width, config.height), (640, 360));
    assert_eq!(config.description[0], 1, "avcC record");
    frames.iter().for_each(assert_whole_avc);
    assert_decode_order(&frames);
    // -g 60: the next keyframe comes 60 frames after the first.
    assert!(frames[60].keyframe);
    assert!(frames[1..60].iter().all(|f| !f.keyframe));
    let span = frames[60].timestamp_us - frames[0].timestamp_us;
    assert!(
        (1_900_000..=2_100_000).contains(&span),
        "60 frames at 30 fps span {span} us"
    );

    let sound = collect(&mut audio, 20).await;
    assert_eq!(sound[0].config.codec, Codec::Aac);
    // lavfi's sine is 44.1 kHz mono.
    assert_eq!(
        (sound[0].config.sample_rate, sound[0].config.channels),
        (44100, 1)
    );
    assert!(sound.iter().all(|f| f.keyframe && !f.payload.is_empty()));
    assert_decode_order(&sound);
}

#[tokio::test]
async fn ffmpeg_b_frames_carry_composition_offsets() {
    let ingest = Ingest::start_default().await;
    let inputs = [&VIDEO_INPUT[..], &AUDIO_INPUT[..]].concat();
    let mut options = av_options();
    options.extend(["-bf", "2"]);
    let _encoder = ffmpeg(&inputs, &options, &ingest.url(KEY));

    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let frames = collect(&mut video, 60).await;
    frames.iter().for_each(assert_whole_avc);
    assert_decode_order(&frames);
    assert!(frames.iter().any(|f| f.composition_offset_us > 0));
    // B-frames: presentation order differs from decode order.
    let reordered = frames
        .windows(2)
        .any(|pair| pair[1].presentation_us() < pair[0].presentation_us());
    assert!(reordered, "no frame presented before its predecessor");
}

#[tokio::test]
async fn ffmpeg_audio_only_publishes_audio() {
    let ingest = Ingest::start_default().await;
    let inputs = ["-re", "-f", "lavfi", "-i", "sine=frequency=440"];
    let _encoder = ffmpeg(&inputs, &["-c:a", "aac"], &ingest.url(KEY));

    let mut audio = subscribe(&ingest.tracks, &track("audio")).await;
    let sound = collect(&mut audio, 30).await;
    assert_eq!(sound[0].config.codec, Codec::Aac);
    assert_eq!(ingest.tracks.names(), [track("audio")]);
}

#[tokio::test]
async fn ffmpeg_video_only_publishes_video() {
    let ingest = Ingest::start_default().await;
    let _encoder = ffmpeg(
        &VIDEO_INPUT,
        &["-c:v", "libx264", "-g", "30"],
        &ingest.url(KEY),
    );

    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let frames = collect(&mut video, 35).await;
    frames.iter().for_each(assert_whole_avc);
    assert_eq!(ingest.tracks.names(), [track("video")]);
}

#[tokio::test]
async fn ffmpeg_timestamps_cross_24_bits() {
    let ingest = Ingest::start_default().await;
    let inputs = [&VIDEO_INPUT[..], &AUDIO_INPUT[..]].concat();
    let mut options = av_options();
    // Start 1.2 s below 0xffffff ms, so the stream crosses into extended
    // timestamps while it runs.
    options.extend(["-output_ts_offset", "16776"]);
    let _encoder = ffmpeg(&inputs, &options, &ingest.url(KEY));

    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let mut audio = subscribe(&ingest.tracks, &track("audio")).await;
    let frames = collect(&mut video, 75).await;
    frames.iter().for_each(assert_whole_avc);
    assert_decode_order(&frames);
    let boundary = 0xff_ffff_i64 * 1000;
    assert!(frames[0].timestamp_us < boundary);
    assert!(frames[74].timestamp_us > boundary);
    assert!(frames[74].timestamp_us < boundary + 2_000_000);
    let sound = collect(&mut audio, 20).await;
    assert_decode_order(&sound);
}

#[tokio::test]
async fn ffmpeg_starting_past_24_bits_sends_extended_timestamps() {
    let ingest = Ingest::start_default().await;
    let inputs = [&VIDEO_INPUT[..], &AUDIO_INPUT[..]].concat();
    let mut options = av_options();
    // B-frames put the first decode timestamps a little before the offset.
    options.extend(["-output_ts_offset", "40000"]);
    let _encoder = ffmpeg(&inputs, &options, &ingest.url(KEY));

    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let frames = collect(&mut video, 40).await;
    frames.iter().for_each(assert_whole_avc);
    assert_decode_order(&frames);
    let times: Vec<_> = frames.iter().map(|f| f.timestamp_us).collect();
    assert!(
        times
            .iter()
            .all(|t| (39_999_000_000..40_010_000_000).contains(t)),
        "{times:?}"
    );
}

#[tokio::test]
async fn ffmpeg_with_a_wrong_key_is_refused() {
    let ingest = Ingest::start_default().await;
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin"])
        .args(VIDEO_INPUT)
        .args(["-c:v", "libx264", "-t", "10", "-f", "flv"])
        .arg(ingest.url("wrong-key"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = timeout(PATIENCE, output)
        .await
        .expect("ffmpeg gives up promptly")
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "ffmpeg published with a wrong key"
    );
    assert!(
        stderr.contains("Stream key refused"),
        "ffmpeg said: {stderr}"
    );
    assert!(ingest.tracks.names().is_empty());
}

#[tokio::test]
async fn ffmpeg_mp3_audio_is_refused_video_goes_on() {
    let ingest = Ingest::start_default().await;
    let inputs = [&VIDEO_INPUT[..], &AUDIO_INPUT[..]].concat();
    let options = [
        "-c:v",
        "libx264",
        "-g",
        "30",
        "-c:a",
        "libmp3lame",
        "-ar",
        "44100",
    ];
    let _encoder = ffmpeg(&inputs, &options, &ingest.url(KEY));

    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    collect(&mut video, 45).await;
    assert_eq!(ingest.tracks.names(), [track("video")]);
}

#[tokio::test]
async fn ffmpeg_video_beyond_4k_is_refused_audio_goes_on() {
    let ingest = Ingest::start_default().await;
    // 4112 pixels wide: past the 4096 a side a studio takes, and cheap to
    // encode at 16 lines.
    let inputs = [
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=4112x16:rate=15",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
    ];
    let _encoder = ffmpeg(&inputs, &av_options(), &ingest.url(KEY));

    let mut audio = subscribe(&ingest.tracks, &track("audio")).await;
    collect(&mut audio, 40).await;
    assert_eq!(ingest.tracks.names(), [track("audio")]);
}

/// The encoder freezes with its connection open (SIGSTOP: no FIN, no
/// bytes), and a second encoder publishes with the same key: it takes
/// over at once, well before the idle timeout.
#[tokio::test]
async fn ffmpeg_frozen_publisher_is_taken_over_by_a_new_one() {
    let config = buildstream_edge::IngestConfig {
        idle_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let ingest = Ingest::start(config).await;
    let mut frozen = ffmpeg(
        &VIDEO_INPUT,
        &["-c:v", "libx264", "-g", "30"],
        &ingest.url(KEY),
    );
    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let first = collect(&mut video, 5).await;
    assert_eq!((first[0].config.width, first[0].config.height), (640, 360));

    let pid = frozen.id().expect("ffmpeg is running").to_string();
    let stopped = Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .await
        .unwrap();
    assert!(stopped.success());

    let smaller = ["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"];
    let _fresh = ffmpeg(&smaller, &["-c:v", "libx264", "-g", "30"], &ingest.url(KEY));
    // The frozen publisher's track ends...
    let ended = timeout(PATIENCE, async { while video.next().await.is_some() {} });
    assert!(ended.await.is_ok(), "frozen publisher's track still live");
    // ...and a new subscription gets the new encoder's picture.
    let frame = first_live_frame(&ingest.tracks, &track("video")).await;
    assert_eq!((frame.config.width, frame.config.height), (320, 240));

    frozen.kill().await.unwrap();
}
