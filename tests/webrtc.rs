//! WebRTC sources end to end, with real peers: headless Chromium (fake
//! camera and microphone) publishes over WHIP to the edge, the origin
//! composes it beside an ffmpeg RTMP source, nginx-rtmp records the
//! program and ffprobe checks it. Every ICE candidate in use is on
//! loopback: the edge ignores other networks here.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// Runs one of the browser scripts in `web/e2e`, its stdout's JSON lines
/// returned when it exits.
fn browser_script(script: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("node")
        .arg(web_dir().join("e2e").join(script))
        .args(args)
        .current_dir(web_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the browser script (make setup installs it)")
}

async fn finish(child: tokio::process::Child) -> Vec<Value> {
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("browser script finished")
        .expect("browser script ran");
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(output.status.success(), "browser script failed: {lines:?}");
    lines
}

fn step<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("no {name} step in {lines:?}"))
}

fn is_loopback(addr: &Value) -> bool {
    addr.as_str()
        .is_some_and(|a| a.starts_with("127.") || a.starts_with("[::1]") || a.starts_with("::1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_publishing_over_whip_is_composed_into_the_program() {
    init();
    let _turn = HEAVY.lock().await;
    let certs = TempDir::new("webrtc-ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::dev(&ca).await;
    let sink = Nginx::start("webrtc-sink", None);
    let api = Api::sign_up(&deployment.api).await;
    let studio = api.create_studio("Browser source").await;

    let browser = api
        .ok(
            "POST",
            &format!("/api/v1/studios/{studio}/sources"),
            Some(json!({"kind": "whip", "name": "Browser"})),
        )
        .await;
    let whip_url = browser["whip_url"].as_str().expect("whip_url").to_owned();
    let key = browser["stream_key"]
        .as_str()
        .expect("stream_key")
        .to_owned();
    assert_eq!(
        whip_url,
        format!(
            "{}/whip/{}",
            deployment.edge_http,
            browser["id"].as_str().unwrap()
        )
    );
    let camera = api
        .ok(
            "POST",
            &format!("/api/v1/studios/{studio}/sources"),
            Some(json!({"kind": "rtmp", "name": "Red camera"})),
        )
        .await;
    api.ok(
        "PUT",
        &format!("/api/v1/studios/{studio}/scene"),
        Some(
            json!({"layout": "split", "on_stage": [browser["id"], camera["id"]],
                    "brand_color": "#202020"}),
        ),
    )
    .await;
    api.ok(
        "POST",
        &format!("/api/v1/studios/{studio}/destinations"),
        Some(json!({"platform": "custom", "name": "sink", "url": sink.rtmp_url(), "stream_key": "program"})),
    )
    .await;

    let _red = publish_color(camera["publish_url"].as_str().unwrap(), "red", &[]);
    let publisher = browser_script("whip-publish.mjs", &[&whip_url, &key, "25"]);
    let (status, body) = api
        .call("POST", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    assert_eq!(status, 202, "{body}");

    let recording = sink.recording("program");
    wait_for("12 s of program", Duration::from_secs(60), || {
        (recorded_seconds(&recording) >= 12.0).then_some(())
    });
    let probe = ffprobe(&recording).expect("probe");
    assert_eq!((probe.width, probe.height), (1280, 720), "{probe:?}");
    assert_eq!(probe.audio_codec, "aac");

    // Left: the browser's camera, moving; right: the red RTMP camera.
    let first = RgbFrame::grab(&recording, 1.0).expect("a frame");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = RgbFrame::grab(&recording, 1.0).expect("a later frame");
    let right = second.mean(0.75, 0.5, 40);
    assert!(looks(right, "red"), "right slot {right:?}");
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::copy(&recording, artifacts.join("whip-program.flv")).ok();
    // Chromium's fake camera: a green picture with a turning wheel.
    let left = second.mean(0.06, 0.5, 20);
    assert!(looks(left, "green"), "left slot {left:?}");
    let moved = changed_share(&first, &second, 0.02, 0.48);
    println!(
        "browser slot pixels changed over 2 s: {:.1}%",
        moved * 100.0
    );
    assert!(moved > 0.01, "the browser's picture moves ({moved})");

    // A WHEP player watches the program while the show is live.
    let status = api
        .ok("GET", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    let whep_url = status["whep_url"].as_str().expect("whep_url while live");
    let viewer_token = status["viewer_token"].as_str().expect("viewer token");
    assert_eq!(whep_url, format!("{}/whep/{studio}", deployment.edge_http));
    let player = finish(browser_script(
        "whep-play.mjs",
        &[whep_url, viewer_token, "6"],
    ))
    .await;
    let playing = step(&player, "playing");
    let played = step(&player, "played");
    println!(
        "WHEP: first frame {} ms after the offer; {played}",
        playing["first_frame_ms"]
    );
    let advanced =
        played["current_time"].as_f64().unwrap() - playing["current_time"].as_f64().unwrap();
    assert!(advanced > 4.0, "the program plays: {advanced} s in 6 s");
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(played["video_codec"], "video/H264");
    assert_eq!(played["audio_codec"], "audio/opus");
    assert!(
        played["audio_packets"].as_u64().unwrap_or(0) > 100,
        "{played}"
    );
    assert!(is_loopback(&played["pair"]["local"]) && is_loopback(&played["pair"]["remote"]));
    assert_eq!(step(&player, "deleted")["status"], 200);

    // Only a viewer token for this studio opens its program.
    let offer = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("edge/tests/offers/browser-sendonly.sdp"),
    )
    .unwrap()
    .replace("a=sendonly", "a=recvonly");
    let http = reqwest::Client::new();
    let whep = |url: String, token: Option<String>| {
        let mut request = http
            .post(url)
            .header("content-type", "application/sdp")
            .body(offer.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let other_studio = api.create_studio("Another").await;
    for (url, token, expected) in [
        (whep_url.to_owned(), None, 401),
        (whep_url.to_owned(), Some(api.token.clone()), 401),
        (whep_url.to_owned(), Some("not.a.token".to_owned()), 401),
        (
            format!("{}/whep/{other_studio}", deployment.edge_http),
            Some(viewer_token.to_owned()),
            401,
        ),
    ] {
        let response = whep(url.clone(), token.clone()).await.unwrap();
        assert_eq!(response.status(), expected, "{url} with {token:?}");
    }

    let lines = finish(publisher).await;
    let connected = step(&lines, "connected");
    assert!(
        is_loopback(&connected["pair"]["local"]) && is_loopback(&connected["pair"]["remote"]),
        "ICE used loopback candidates only: {connected}"
    );
    let sent = step(&lines, "sent");
    assert!(sent["video_frames"].as_u64().unwrap_or(0) > 200, "{sent}");
    assert_eq!(step(&lines, "deleted")["status"], 200);

    // Once the show ends its program is gone, token or not.
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/studios/{studio}/broadcast"),
            None,
        )
        .await;
    assert!(status == 204 || status == 202, "{status}");
    let response = whep(whep_url.to_owned(), Some(viewer_token.to_owned()))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// The share of pixels in the band between the horizontal fractions
/// `from` and `to` (middle half of the height) that differ clearly between
/// two frames: a live camera moves, a placeholder does not.
fn changed_share(a: &RgbFrame, b: &RgbFrame, from: f64, to: f64) -> f64 {
    let x0 = (from * a.width as f64) as usize;
    let x1 = (to * a.width as f64) as usize;
    let (y0, y1) = (a.height / 4, a.height * 3 / 4);
    let mut changed = 0usize;
    let mut total = 0usize;
    for y in y0..y1 {
        for x in x0..x1 {
            let i = (y * a.width + x) * 3;
            let differs = (0..3).any(|c| a.pixels[i + c].abs_diff(b.pixels[i + c]) > 40);
            changed += usize::from(differs);
            total += 1;
        }
    }
    changed as f64 / total.max(1) as f64
}

/// What a WHIP client that gets something wrong is told, over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refuses_wrong_keys_and_unusable_offers_with_reasons() {
    init();
    let certs = TempDir::new("whip-refusals-ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::dev(&ca).await;
    let api = Api::sign_up(&deployment.api).await;
    let studio = api.create_studio("WHIP refusals").await;
    let mut sources = Vec::new();
    for name in ["one", "two"] {
        sources.push(
            api.ok(
                "POST",
                &format!("/api/v1/studios/{studio}/sources"),
                Some(json!({"kind": "whip", "name": name})),
            )
            .await,
        );
    }
    let url = sources[0]["whip_url"].as_str().unwrap().to_owned();
    let key = sources[0]["stream_key"].as_str().unwrap().to_owned();
    let other_key = sources[1]["stream_key"].as_str().unwrap().to_owned();
    let offers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("edge/tests/offers");
    let good = std::fs::read_to_string(offers.join("browser-sendonly.sdp")).unwrap();
    let vp9 = std::fs::read_to_string(offers.join("vp9-only.sdp")).unwrap();

    let http = reqwest::Client::new();
    let post = |token: Option<&str>, content_type: &str, body: &str| {
        let mut request = http
            .post(&url)
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let cases = [
        (None, "application/sdp", good.as_str(), 401, "unauthorized"),
        (
            Some("live_nope"),
            "application/sdp",
            &good,
            401,
            "unauthorized",
        ),
        (
            Some(other_key.as_str()),
            "application/sdp",
            &good,
            403,
            "wrong_source",
        ),
        (
            Some(key.as_str()),
            "text/plain",
            &good,
            415,
            "unsupported_media_type",
        ),
        (
            Some(key.as_str()),
            "application/sdp",
            "not sdp",
            400,
            "invalid_sdp",
        ),
        (
            Some(key.as_str()),
            "application/sdp",
            &vp9,
            406,
            "offer_not_acceptable",
        ),
    ];
    for (token, content_type, body, status, code) in cases {
        let response = post(token, content_type, body).await.unwrap();
        assert_eq!(response.status(), status, "{code}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // The VP9 refusal says what was offered and what is taken.
    let refusal: Value = post(Some(&key), "application/sdp", &vp9)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("VP9") && message.contains("VP8"),
        "{message}"
    );

    // A good offer still works after all that, and its session can be
    // ended only with the source's key.
    let response = post(Some(&key), "application/sdp", &good).await.unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/sdp"));
    let session = format!("{}{location}", deployment.edge_http);
    let delete = |token: String| http.delete(&session).bearer_auth(token).send();
    assert_eq!(delete(other_key.clone()).await.unwrap().status(), 403);
    let trickle = http
        .patch(&session)
        .bearer_auth(&key)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(trickle.status(), 204);
    assert_eq!(delete(key.clone()).await.unwrap().status(), 200);
    assert_eq!(delete(key.clone()).await.unwrap().status(), 404);
}

/// The studio room with two browsers: a host and a guest invited by link,
/// each receiving the other through the edge, both on stage in the program;
/// the guest reloads and is back in their slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_and_an_invited_guest_go_live_together_and_survive_a_reload() {
    use tokio::io::AsyncBufReadExt;

    init();
    let _turn = HEAVY.lock().await;
    let certs = TempDir::new("room-ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::dev(&ca).await;
    let sink = Nginx::start("room-sink", None);
    let api = Api::sign_up(&deployment.api).await;
    let studio = api.create_studio("Room").await;

    let mut script = browser_script(
        "room.mjs",
        &[&deployment.api, &api.token, &studio, &sink.rtmp_url(), "12"],
    );
    let mut lines = tokio::io::BufReader::new(script.stdout.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let mut next_step = async |name: &str| -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {name} step in time; saw {seen:?}"))
                .expect("script output")
                .unwrap_or_else(|| panic!("script ended before {name}; saw {seen:?}"));
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            seen.push(value.clone());
            if value["step"] == name {
                return value;
            }
        }
    };

    let connected = next_step("connected").await;
    println!("room: {connected}");
    let delay = next_step("delay").await;
    println!("participant to participant through the edge: {delay}");
    assert!(delay["samples"].as_u64().unwrap_or(0) >= 10, "{delay}");

    next_step("live").await;
    let recording = sink.recording("room");
    wait_for("8 s of program", Duration::from_secs(60), || {
        (recorded_seconds(&recording) >= 8.0).then_some(())
    });
    // On a loaded machine a picture may need a moment (a keyframe) after a
    // loss; look for a few seconds before deciding.
    let host_shows = |rgb: [u8; 3]| looks(rgb, "blue") || rgb.iter().all(|&c| c > 200);
    let (mut left, mut right) = ([0; 3], [0; 3]);
    for _ in 0..10 {
        let frame = RgbFrame::grab(&recording, 1.0).expect("a frame");
        (left, right) = (frame.mean(0.25, 0.5, 40), frame.mean(0.75, 0.5, 40));
        if host_shows(left) && looks(right, "green") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::copy(&recording, artifacts.join("room-program.flv")).ok();
    assert!(
        host_shows(left),
        "host (blue or white) on the left: {left:?}"
    );
    assert!(
        looks(right, "green"),
        "guest's camera on the right: {right:?}"
    );

    let sending = next_step("sending").await;
    println!("room media: {sending}");
    let reloaded = next_step("reloaded").await;
    println!("guest reload: {reloaded}");
    assert_eq!(reloaded["state"], "stage", "{reloaded}");
    assert_eq!(reloaded["same_camera"], true);
    let mut right = [0; 3];
    for _ in 0..20 {
        let frame = RgbFrame::grab(&recording, 0.5).expect("a frame after the reload");
        right = frame.mean(0.75, 0.5, 40);
        if looks(right, "green") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        looks(right, "green"),
        "the guest is back in their slot: {right:?}"
    );
    let removed = next_step("removed").await;
    println!("guest removed: {removed}");
    assert_eq!(removed["room_status"], 403, "{removed}");
    next_step("done").await;
    let status = tokio::time::timeout(Duration::from_secs(60), script.wait())
        .await
        .expect("script exits")
        .unwrap();
    assert!(status.success());
    let broadcast = api
        .ok("GET", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    assert_eq!(broadcast["destinations"][0]["state"], "live", "{broadcast}");
}

/// Room signaling at the edge wants the participant's own studio token:
/// none, another studio's, an expired one, a waiting guest's, or a
/// publish of someone else's camera are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_signaling_refuses_missing_foreign_expired_and_unadmitted_tokens() {
    init();
    let certs = TempDir::new("room-refusals-ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::dev(&ca).await;
    let api = Api::sign_up(&deployment.api).await;
    let studio = api.create_studio("Mine").await;
    let other = api.create_studio("Other").await;

    let join = |studio: String, token: String| {
        let api = &api;
        async move {
            let response = api
                .http
                .post(format!("{}/api/v1/studios/{studio}/room/join", api.base))
                .bearer_auth(token)
                .json(&json!({"name": "Host"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let mine = join(studio.clone(), api.token.clone()).await;
    let theirs = join(other.clone(), api.token.clone()).await;
    let edge = mine["edge_url"].as_str().unwrap().to_owned();
    assert_eq!(edge, deployment.edge_http);
    let camera = mine["room"]["you"]["camera_source"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = mine["media_token"].as_str().unwrap().to_owned();
    let foreign = theirs["media_token"].as_str().unwrap().to_owned();

    // A guest who is still waiting.
    let invite = api
        .ok(
            "POST",
            &format!("/api/v1/studios/{studio}/invites"),
            Some(json!({"hours": 1})),
        )
        .await;
    let pass: Value = api
        .http
        .post(format!("{}/api/v1/studios/{studio}/room/guests", api.base))
        .json(&json!({"invite": invite["invite_token"], "name": "Wanda"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let waiting = pass["guest_token"].as_str().unwrap().to_owned();
    let waiting_join = join(studio.clone(), waiting.clone()).await;
    let waiting_camera = waiting_join["room"]["you"]["camera_source"]
        .as_str()
        .unwrap()
        .to_owned();

    // A guest token that expired an hour ago, correctly signed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "gst_old", "studio": studio, "role": "guest", "name": "Old",
                "iat": now - 7200, "exp": now - 3600, "typ": "studio"}),
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()).unwrap(),
    )
    .unwrap();

    let offer = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("edge/tests/offers/browser-sendonly.sdp"),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let publish = |source: &str, token: Option<&str>| {
        let mut request = http
            .post(format!("{edge}/rtc/{studio}/publish/{source}"))
            .header("content-type", "application/sdp")
            .body(offer.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token.to_owned());
        }
        request.send()
    };
    for (what, source, token, status) in [
        ("no token", camera.as_str(), None, 401),
        ("garbage", &camera, Some("x.y.z"), 401),
        (
            "the account's access token",
            &camera,
            Some(api.token.as_str()),
            401,
        ),
        (
            "another studio's token",
            &camera,
            Some(foreign.as_str()),
            403,
        ),
        (
            "an expired guest token",
            &camera,
            Some(expired.as_str()),
            401,
        ),
        (
            "a waiting guest",
            &waiting_camera,
            Some(waiting.as_str()),
            403,
        ),
        (
            "someone else's camera",
            &waiting_camera,
            Some(token.as_str()),
            403,
        ),
    ] {
        let response = publish(source, token).await.unwrap();
        assert_eq!(response.status(), status, "{what}");
    }
    // The host's own camera with their own token is taken.
    let response = publish(&camera, Some(&token)).await.unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    // Only they may end it.
    let end = |token: String| {
        http.delete(format!("{edge}{location}"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(end(waiting.clone()).await.unwrap().status(), 404);
    assert_eq!(end(token.clone()).await.unwrap().status(), 200);
}
