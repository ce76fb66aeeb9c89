//! The browser studio through its UI, served by `buildstream dev`: headless
//! Chromium signs up a host, who creates a studio, invites a guest (a second
//! browser context), admits them, puts both on stage in split with a
//! banner and a ticker, adds a local nginx-rtmp destination and goes live. The program
//! that reaches nginx is checked with ffprobe and decoded frames; the page
//! must say the destination is live; a screenshot of the studio at that
//! moment is kept in the test's target directory. The guest then reloads
//! the tab and must be back on stage within seconds.
//!
//! Needs the built app (`make web`, which `make test` runs first).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::AsyncBufReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_guest_go_live_from_the_browser_studio() {
    init();
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        web.join("dist/index.html").exists(),
        "the web app is not built: run `make web` (make test does)"
    );
    let certs = TempDir::new("ui-ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::dev(&ca).await;
    let sink = Nginx::start("ui-sink", None);
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("studio-live.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut script = tokio::process::Command::new("node")
        .arg(web.join("e2e/studio-ui.mjs"))
        .args([&deployment.api, &sink.rtmp_url(), "studio"])
        .arg(&screenshot)
        .arg("6")
        .current_dir(&web)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the UI script");
    let mut lines = tokio::io::BufReader::new(script.stdout.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let mut next_step = async |name: &str| -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {name} step in time; saw {seen:?}"))
                .expect("script output")
                .unwrap_or_else(|| panic!("script ended before {name}; saw {seen:?}"));
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            println!("{value}");
            seen.push(value.clone());
            if value["step"] == name {
                return value;
            }
        }
    };

    next_step("on stage").await;
    next_step("live").await;
    let recording = sink.recording("studio");
    wait_for("6 s of program at nginx", Duration::from_secs(60), || {
        (recorded_seconds(&recording) >= 6.0).then_some(())
    });
    let probe = ffprobe(&recording).expect("probe");
    assert_eq!(probe.video_codec, "h264");
    assert_eq!((probe.width, probe.height), (1280, 720));
    assert_eq!(probe.audio_codec, "aac");
    // Both halves hold a camera (Chromium's fake one is green), and the
    // banner runs across the bottom in the brand colour.
    let frame = RgbFrame::grab(&recording, 1.0).expect("a frame");
    for (x, who) in [(0.25, "host"), (0.75, "guest")] {
        let rgb = frame.mean(x, 0.5, 40);
        assert!(looks(rgb, "green"), "{who}'s camera: {rgb:?}");
    }
    let banner = frame.mean(0.9, 0.855, 20);
    assert!(
        banner[2] > 150 && banner[0] < 120,
        "banner in the default brand blue: {banner:?}"
    );
    // The ticker scrolls along the bottom.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = RgbFrame::grab(&recording, 1.0).expect("a later frame");
    let moved = band_changed(&frame, &later, 0.95, 0.99);
    assert!(moved > 0.02, "the ticker moves: {moved}");
    let shot = next_step("screenshot").await;
    println!("studio screenshot kept at {}", shot["path"]);

    // Screen share: the guest's screen large on the left, the two cameras
    // in a column on the right. (Chromium's fake screen is green too, so
    // the layout's geometry tells it: the screen tile ends short of where
    // the split layout's right tile would be, and the speakers sit in
    // the column.)
    let shared = next_step("screen shared").await;
    assert!(
        shared["main_source"]
            .as_str()
            .unwrap_or("")
            .starts_with("scr_"),
        "{shared}"
    );
    next_step("screen on stage").await;
    // The recording runs a few seconds behind, and on a loaded machine a
    // camera may show its placeholder for a moment while its connection is
    // re-established: look until the layout shows (the script holds it
    // for 15 s).
    let (mut screen, mut gap, mut speaker) = ([0; 3], [0; 3], [0; 3]);
    for _ in 0..20 {
        let frame = RgbFrame::grab(&recording, 1.0).expect("a frame with the screen");
        screen = frame.mean(0.05, 0.5, 10);
        gap = frame.mean(0.733, 0.5, 4);
        speaker = frame.mean(0.86, 0.36, 16);
        if looks(screen, "green") && gap.iter().all(|&c| c < 60) && looks(speaker, "green") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(looks(screen, "green"), "the screen, large: {screen:?}");
    assert!(
        gap.iter().all(|&c| c < 60),
        "between screen and speakers: {gap:?}"
    );
    assert!(
        looks(speaker, "green"),
        "a camera beside the screen: {speaker:?}"
    );

    let back = next_step("guest back").await;
    assert!(back["seconds"].as_f64().unwrap() < 20.0, "{back}");
    let mut rgb = [0; 3];
    for _ in 0..20 {
        let frame = RgbFrame::grab(&recording, 0.5).expect("a frame after the reload");
        rgb = frame.mean(0.75, 0.5, 40);
        if looks(rgb, "green") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        looks(rgb, "green"),
        "the guest is back in their slot: {rgb:?}"
    );
    next_step("done").await;
    let status = tokio::time::timeout(Duration::from_secs(60), script.wait())
        .await
        .expect("script exits")
        .unwrap();
    assert!(status.success());
    let png = std::fs::read(&screenshot).expect("the screenshot was kept");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000);
}

/// The share of pixels between the heights `from` and `to` (fractions of
/// the frame) that differ clearly between two frames.
fn band_changed(a: &RgbFrame, b: &RgbFrame, from: f64, to: f64) -> f64 {
    let (y0, y1) = (
        (from * a.height as f64) as usize,
        (to * a.height as f64) as usize,
    );
    let mut changed = 0usize;
    for y in y0..y1 {
        for x in 0..a.width {
            let i = (y * a.width + x) * 3;
            changed += usize::from((0..3).any(|c| a.pixels[i + c].abs_diff(b.pixels[i + c]) > 60));
        }
    }
    changed as f64 / ((y1 - y0) * a.width).max(1) as f64
}
