//! Composition end to end: ffmpeg-encoded sources go through mesh tracks
//! into the compositor, the program goes to a real nginx-rtmp, and ffmpeg /
//! ffprobe look at what came out.

mod support;

use std::time::Duration;

use buildstream_mesh::{Codec, TrackName, Tracks};
use buildstream_origin::{BroadcastSpec, OriginConfig, Scene};
use serde_json::json;
use support::nginx::Nginx;
use support::probe::{grab, mean_volume_db, probe, Colour, Picture};
use support::source::TestSource;
use support::webrtc_like::Vp8OpusSource;

const W: u32 = 1280;
const H: u32 = 720;

fn spec(nginx: &Nginx, key: &str, scene: serde_json::Value) -> BroadcastSpec {
    serde_json::from_value(json!({
        "output": {"width": W, "height": H, "framerate": 30},
        "scene": scene,
        "destinations": [{"id": "local", "name": "nginx", "url": nginx.url(), "stream_key": key}],
    }))
    .expect("spec")
}

/// Starts the broadcast and waits until its `local` destination is live.
async fn live(
    broadcasts: &buildstream_origin::Broadcasts,
    studio: &buildstream_origin::broadcast::StudioId,
    spec: BroadcastSpec,
) -> buildstream_origin::BroadcastStatus {
    broadcasts.start(studio, spec).await.expect("start");
    support::wait_for_state(broadcasts, studio, "local", "live", Duration::from_secs(15)).await
}

fn scene(value: serde_json::Value) -> Scene {
    serde_json::from_value(value).expect("scene")
}

/// A solid-colour image made by ffmpeg, base64: `codec` is `png` or `mjpeg`.
async fn image(color: &str, size: &str, codec: &str, pix_fmt: &str) -> String {
    let output = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", &format!("color=c={color}:s={size}"), "-frames:v", "1"])
        .args([
            "-pix_fmt",
            pix_fmt,
            "-f",
            "image2pipe",
            "-c:v",
            codec,
            "pipe:1",
        ])
        .output()
        .await
        .expect("ffmpeg makes an image");
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_program_reaches_nginx_with_both_sources_side_by_side() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let tracks = Tracks::new();
    let red = TestSource::start(&tracks, "studio1", "alice", "red");
    let blue = TestSource::start(&tracks, "studio1", "bob", "blue");
    let program = Tracks::new();
    let broadcasts = support::origin(
        &tracks,
        OriginConfig {
            program_tracks: Some(program.clone()),
            ..OriginConfig::default()
        },
    );
    let studio = support::studio("studio1");
    let layout = json!({"layout": "split", "on_stage": ["alice", "bob"]});
    let status = live(&broadcasts, &studio, spec(&nginx, "split", layout)).await;
    assert!(
        support::destination(&status, "local").unwrap().is_live(),
        "{status:?}"
    );

    // The program is also on the mesh, starting at a keyframe.
    let mut video = program
        .subscribe(&TrackName::new("studio1", "program", "video").unwrap())
        .expect("program video track");
    let first = tokio::time::timeout(Duration::from_secs(5), video.next())
        .await
        .unwrap()
        .unwrap();
    assert!(first.keyframe);
    assert_eq!(
        (first.config.codec, first.config.width, first.config.height),
        (Codec::H264, W, H)
    );
    let mut audio = program
        .subscribe(&TrackName::new("studio1", "program", "audio").unwrap())
        .expect("program audio track");
    let first = tokio::time::timeout(Duration::from_secs(5), audio.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            first.config.codec,
            first.config.sample_rate,
            first.config.channels
        ),
        (Codec::Aac, 48_000, 2)
    );
    // And in Opus, for WebRTC players, in 20 ms packets.
    let mut opus = program
        .subscribe(&TrackName::new("studio1", "program", "opus").unwrap())
        .expect("program opus track");
    let first = tokio::time::timeout(Duration::from_secs(5), opus.next())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), opus.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.config.codec, Codec::Opus);
    assert_eq!(second.timestamp_us - first.timestamp_us, 20_000);
    assert!(!second.payload.is_empty());

    tokio::time::sleep(Duration::from_secs(4)).await;
    let picture = grab(&format!("{}/split", nginx.url()), W, H).await;
    assert_eq!(picture.looks(W / 4, H / 2), Colour::Red, "left half");
    assert_eq!(picture.looks(3 * W / 4, H / 2), Colour::Blue, "right half");
    assert_eq!(
        picture.looks(W / 2, 40),
        Colour::Black,
        "background above the tiles"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe = probe(&nginx.recording("split")).await;
    assert_eq!(probe.video_codec, "h264", "{probe:?}");
    assert_eq!((probe.width, probe.height), (W, H), "{probe:?}");
    assert!((27.0..=31.0).contains(&probe.frame_rate()), "{probe:?}");
    assert_eq!(probe.audio_codec, "aac", "{probe:?}");
    assert_eq!(
        (probe.sample_rate, probe.channels),
        (48_000, 2),
        "{probe:?}"
    );
    assert!(probe.duration >= 6.0, "{probe:?}");
    // Both sources' tones are in the mix.
    // Silence measures about -91 dB and the two tones about -21 dB; a loaded
    // machine may drop some late audio, which still leaves the mix far above
    // silence.
    let volume = mean_volume_db(&nginx.recording("split")).await;
    assert!(volume > -60.0, "program audio is silent: {volume} dB");

    broadcasts.stop(&studio).await.expect("stop");
    red.stop().await;
    blue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scene_changes_show_in_the_output_without_a_restart() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let tracks = Tracks::new();
    let red = TestSource::start(&tracks, "studio2", "alice", "red");
    let blue = TestSource::start(&tracks, "studio2", "bob", "blue");
    let broadcasts = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("studio2");
    let split = json!({"layout": "split", "on_stage": ["alice", "bob"], "brand_color": "#00c000",
                       "banner": {"text": "Breaking news", "visible": false}});
    live(&broadcasts, &studio, spec(&nginx, "scenes", split.clone())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = format!("{}/scenes", nginx.url());
    let banner = (W - 80, H * 86 / 100);
    let logo = (W - 24 - 50, 24 + 50);

    let before = grab(&url, W, H).await;
    assert_eq!(before.looks(3 * W / 4, H / 2), Colour::Blue);
    assert_eq!(
        before.looks(banner.0, banner.1),
        Colour::Black,
        "no banner yet"
    );

    // Solo with the banner on and a logo: alice fills the frame, the
    // brand-colour bar crosses the lower third, the logo sits top right.
    let solo = scene(
        json!({"layout": "solo", "on_stage": ["alice", "bob"], "brand_color": "#00c000",
                            "banner": {"text": "Breaking news", "visible": true},
                            "logo": image("blue", "64x64", "png", "rgba").await}),
    );
    broadcasts.update_scene(&studio, solo).await.expect("solo");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = grab(&url, W, H).await;
    assert_eq!(after.looks(W / 2, H / 2), Colour::Red, "solo centre");
    assert_eq!(after.looks(3 * W / 4, H / 3), Colour::Red, "bob is hidden");
    assert_eq!(after.looks(banner.0, banner.1), Colour::Green, "banner bar");
    assert_eq!(after.looks(logo.0, logo.1), Colour::Blue, "logo");

    // And back: the banner and logo go away again.
    broadcasts
        .update_scene(&studio, scene(split.clone()))
        .await
        .expect("split again");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back = grab(&url, W, H).await;
    assert_eq!(back.looks(3 * W / 4, H / 2), Colour::Blue);
    assert_eq!(back.looks(banner.0, banner.1), Colour::Black);
    assert_eq!(back.looks(logo.0, logo.1), Colour::Black);

    // A ticker scrolls along the bottom: the same band differs a second
    // later, and its bar is dark where the text is not.
    let mut with_ticker = split.clone();
    with_ticker["ticker"] = json!({"text": "Ticker: the studio now scrolls news along the bottom of the frame", "visible": true});
    broadcasts
        .update_scene(&studio, scene(with_ticker))
        .await
        .expect("ticker");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = grab(&url, W, H).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = grab(&url, W, H).await;
    let band = (H - H * 6 / 100 + 2)..H - 2;
    let moved = changed_share(&first, &second, band.clone());
    assert!(moved > 0.02, "the ticker's text moves: {moved}");
    let bar = second.mean(W / 2, H - H * 3 / 100, 2);
    assert!(
        bar.iter().all(|&c| c < 60) || moved > 0.02,
        "dark bar: {bar:?}"
    );
    assert_eq!(
        second.looks(3 * W / 4, H / 2),
        Colour::Blue,
        "the stage is unchanged"
    );

    // A JPEG background shows around the tiles.
    let mut with_background = split;
    with_background["background"] =
        json!({"image": image("green", "320x180", "mjpeg", "yuvj420p").await});
    broadcasts
        .update_scene(&studio, scene(with_background))
        .await
        .expect("background");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let backdrop = grab(&url, W, H).await;
    assert_eq!(backdrop.looks(W / 2, 40), Colour::Green, "background image");
    assert_eq!(backdrop.looks(W / 4, H / 2), Colour::Red);

    // A broken image is refused and the program carries on.
    let mut broken = scene(json!({"layout": "split", "on_stage": ["alice", "bob"]}));
    broken.logo = Some(
        buildstream_origin::scene::Image::from_bytes(bytes::Bytes::from_static(
            b"\x89PNG\r\n\x1a\nbroken",
        ))
        .expect("png signature"),
    );
    assert!(broadcasts.update_scene(&studio, broken).await.is_err());
    assert_eq!(grab(&url, W, H).await.looks(W / 4, H / 2), Colour::Red);

    // One connection throughout: the output never restarted.
    let status = broadcasts.status(&studio).unwrap();
    let local = support::destination(&status, "local").unwrap();
    assert_eq!((local.state, local.connections), ("live", 1), "{status:?}");

    broadcasts.stop(&studio).await.expect("stop");
    red.stop().await;
    blue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_source_shows_its_placeholder_and_comes_back() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let tracks = Tracks::new();
    let red = TestSource::start(&tracks, "studio3", "alice", "red");
    let blue = TestSource::start(&tracks, "studio3", "bob", "blue");
    let broadcasts = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("studio3");
    let layout = json!({"layout": "split", "on_stage": ["alice", "bob"], "names": {"bob": "Bob"}});
    live(&broadcasts, &studio, spec(&nginx, "drop", layout)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let url = format!("{}/drop", nginx.url());
    // Inside bob's tile, away from the name written in its middle.
    let corner = (W / 2 + 60, H / 2 - 140);

    assert_eq!(
        grab(&url, W, H).await.looks(corner.0, corner.1),
        Colour::Blue
    );

    blue.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recorded = nginx.recorded_bytes("drop");
    let gone = grab(&url, W, H).await;
    assert_eq!(
        gone.looks(corner.0, corner.1),
        Colour::DarkGrey,
        "placeholder"
    );
    assert_eq!(gone.looks(W / 4, H / 2), Colour::Red, "alice unaffected");
    assert!(
        nginx
            .wait_for_recording("drop", recorded + 20_000, Duration::from_secs(10))
            .await,
        "the output keeps going"
    );

    // Bob returns from another camera: 4:3 and smaller. The decoder follows
    // the new configuration and the tile keeps his aspect (pillarboxed).
    let blue = TestSource::start_sized(&tracks, "studio3", "bob", "blue", (320, 240));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let back = grab(&url, W, H).await;
    assert_eq!(
        back.looks(3 * W / 4, H / 2),
        Colour::Blue,
        "bob is back in his slot"
    );
    assert_eq!(
        back.looks(corner.0, corner.1),
        Colour::Black,
        "pillarbox shows the background"
    );
    assert_eq!(back.looks(W / 4, H / 2), Colour::Red);

    broadcasts.stop(&studio).await.expect("stop");
    red.stop().await;
    blue.stop().await;
}

/// A publisher whose clock jumps about every frame: back to zero, five
/// seconds before it, an hour ahead, to the top of RTMP's 32-bit range,
/// with composition offsets at the ends of what the edge passes on.
fn wild_clock(index: u64, timestamp_us: i64, offset_us: i32) -> (i64, i32) {
    match index % 6 {
        0 => (timestamp_us, offset_us),
        1 => (-5_000_000, offset_us),
        2 => (timestamp_us + 3_600_000_000, offset_us),
        3 => (0xFFFF_FFF0 * 1000, offset_us),
        4 => (timestamp_us, i32::MAX),
        _ => (timestamp_us, i32::MIN),
    }
}

/// A publisher whose clock runs four times too fast.
fn fast_clock(_: u64, timestamp_us: i64, offset_us: i32) -> (i64, i32) {
    (timestamp_us * 4, offset_us)
}

/// A publisher whose frames all claim to be shown 33 minutes after they
/// are decoded.
fn late_showing(_: u64, timestamp_us: i64, _: i32) -> (i64, i32) {
    (timestamp_us, 2_000_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_with_broken_clocks_neither_stall_the_program_nor_its_scene_changes() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let tracks = Tracks::new();
    let red = TestSource::start(&tracks, "studio5", "alice", "red");
    let wild = TestSource::start_restamped(&tracks, "studio5", "bob", "blue", wild_clock);
    let fast = TestSource::start_restamped(&tracks, "studio5", "carol", "green", fast_clock);
    let late = TestSource::start_restamped(&tracks, "studio5", "dave", "blue", late_showing);
    let broadcasts = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("studio5");
    let grid = json!({"layout": "grid", "on_stage": ["alice", "bob", "carol", "dave"]});
    live(&broadcasts, &studio, spec(&nginx, "clocks", grid)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Taking the broken sources off stage returns promptly, and so do the
    // status reads around it.
    let solo = scene(json!({"layout": "solo", "on_stage": ["alice"]}));
    tokio::time::timeout(
        Duration::from_secs(10),
        broadcasts.update_scene(&studio, solo),
    )
    .await
    .expect("the scene change does not hang")
    .expect("scene change");
    let status = broadcasts.status(&studio).expect("status");
    assert!(status.failure.is_none(), "{status:?}");

    let recorded = nginx.recorded_bytes("clocks");
    assert!(
        nginx
            .wait_for_recording("clocks", recorded + 20_000, Duration::from_secs(10))
            .await,
        "the output keeps going"
    );
    let url = format!("{}/clocks", nginx.url());
    assert_eq!(grab(&url, W, H).await.looks(W / 2, H / 2), Colour::Red);

    // Back on stage and off again, then stop: nothing waits on them.
    let back = scene(json!({"layout": "grid", "on_stage": ["alice", "bob", "carol", "dave"]}));
    tokio::time::timeout(
        Duration::from_secs(10),
        broadcasts.update_scene(&studio, back),
    )
    .await
    .expect("the scene change does not hang")
    .expect("scene change");
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::time::timeout(Duration::from_secs(15), broadcasts.stop(&studio))
        .await
        .expect("stop does not hang")
        .expect("stop");
    red.stop().await;
    wild.stop().await;
    fast.stop().await;
    late.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_style_vp8_and_opus_sources_compose_beside_rtmp_ones() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let tracks = Tracks::new();
    let browser = Vp8OpusSource::start(&tracks, "studio6", "guest", 0xff00_00ff);
    let encoder = TestSource::start(&tracks, "studio6", "host", "red");
    let broadcasts = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("studio6");
    let layout = json!({"layout": "split", "on_stage": ["guest", "host"]});
    live(&broadcasts, &studio, spec(&nginx, "vp8", layout)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let picture = grab(&format!("{}/vp8", nginx.url()), W, H).await;
    assert_eq!(picture.looks(W / 4, H / 2), Colour::Blue, "VP8 guest, left");
    assert_eq!(
        picture.looks(3 * W / 4, H / 2),
        Colour::Red,
        "H.264 host, right"
    );

    // Only the browser source has a voice: its Opus tone is in the mix.
    broadcasts
        .update_scene(
            &studio,
            scene(json!({"layout": "solo", "on_stage": ["guest"]})),
        )
        .await
        .expect("solo");
    encoder.stop().await;
    // A destination added now records only what follows: the Opus tone.
    let later: buildstream_origin::destinations::DestinationSpec = serde_json::from_value(
        json!({"platform": "custom", "url": nginx.url(), "stream_key": "opus-only"}),
    )
    .unwrap();
    broadcasts
        .add_destination(
            &studio,
            buildstream_origin::destinations::DestinationId::new("later").unwrap(),
            later,
        )
        .await
        .expect("add");
    assert!(
        nginx
            .wait_for_recording("opus-only", 150_000, Duration::from_secs(20))
            .await
    );
    let volume = mean_volume_db(&nginx.recording("opus-only")).await;
    assert!(volume > -40.0, "the Opus source is not heard: {volume} dB");

    broadcasts.stop(&studio).await.expect("stop");
    drop(browser);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_brand_and_banner_changes_leaves_the_program_running() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let tracks = Tracks::new();
    let red = TestSource::start(&tracks, "studio7", "alice", "red");
    let broadcasts = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("studio7");
    let solo = json!({"layout": "solo", "on_stage": ["alice"]});
    live(&broadcasts, &studio, spec(&nginx, "storm", solo)).await;

    // Colours and texts change hundreds of times a second while the layers
    // render five frames a second, so that changes land while frames are
    // made (setting a videotestsrc colour then crashed within seconds);
    // they must neither crash the pipeline nor stall the output.
    let started = std::time::Instant::now();
    for step in 0u32..3000 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let colour = format!("#{:06x}", step.wrapping_mul(2_654_435_761) & 0xff_ffff);
        let next = scene(json!({
            "layout": if step % 7 == 0 { "pip" } else { "solo" },
            "on_stage": ["alice"],
            "brand_color": colour,
            "background": {"color": if step % 2 == 0 { "#101820" } else { colour.as_str() }},
            "banner": {"text": format!("headline {step}"), "visible": step % 3 != 0},
        }));
        broadcasts.update_scene(&studio, next).await.expect("scene");
    }
    println!("3000 scene changes took {:?}", started.elapsed());

    let status = broadcasts.status(&studio).expect("status");
    assert!(status.failure.is_none(), "{status:?}");
    let recorded = nginx.recorded_bytes("storm");
    assert!(
        nginx
            .wait_for_recording("storm", recorded + 50_000, Duration::from_secs(10))
            .await,
        "the output keeps going"
    );
    broadcasts.stop(&studio).await.expect("stop");
    red.stop().await;
}

/// The share of pixels in rows `rows` that differ clearly between two
/// pictures.
fn changed_share(a: &Picture, b: &Picture, rows: std::ops::Range<u32>) -> f64 {
    let mut changed = 0usize;
    let mut total = 0usize;
    for y in rows {
        for x in 0..a.width {
            let at = ((y * a.width + x) * 3) as usize;
            let differs = (0..3).any(|c| a.rgb[at + c].abs_diff(b.rgb[at + c]) > 60);
            changed += usize::from(differs);
            total += 1;
        }
    }
    changed as f64 / total.max(1) as f64
}
