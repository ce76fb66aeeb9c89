//! Going live end to end, with real peers: ffmpeg publishes two sources over
//! RTMP, the studio composes them and restreams to two nginx-rtmp servers
//! (one behind TLS, trusted through a test CA) and to a port where nothing
//! listens. ffprobe and decoded frames check what arrived.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// Each deployment composes 720p30 from two publishers; two at once would
/// starve a small CI machine, so the tests here take turns.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The whole go-live flow against one deployment.
async fn go_live(deployment: &Deployment, ca: &TestCa) {
    let mut plain = Nginx::start("sink-plain", None);
    let tls = Nginx::start("sink-tls", Some(ca));
    let refused_port = free_tcp_port();

    let api = Api::sign_up(&deployment.api).await;
    let studio = api.create_studio("End to end").await;
    let mut sources = Vec::new();
    for name in ["Red camera", "Blue camera"] {
        let source = api
            .ok(
                "POST",
                &format!("/api/v1/studios/{studio}/sources"),
                Some(json!({"kind": "rtmp", "name": name})),
            )
            .await;
        assert_eq!(
            source["ingest_url"],
            format!("rtmp://127.0.0.1:{}/live", deployment.ingest_port)
        );
        sources.push(source);
    }
    let ids: Vec<String> = sources
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();

    api.ok(
        "PUT",
        &format!("/api/v1/studios/{studio}/scene"),
        Some(json!({"layout": "split", "on_stage": ids, "brand_color": "#00c000"})),
    )
    .await;

    let mut destinations = Vec::new();
    for (name, url, key) in [
        ("plain", plain.rtmp_url(), "program"),
        ("tls", tls.rtmps_url(), "program"),
        (
            "refusing",
            format!("rtmp://127.0.0.1:{refused_port}/live"),
            "nothing",
        ),
    ] {
        let dest = api
            .ok(
                "POST",
                &format!("/api/v1/studios/{studio}/destinations"),
                Some(json!({"platform": "custom", "name": name, "url": url, "stream_key": key})),
            )
            .await;
        destinations.push(dest["id"].as_str().unwrap().to_owned());
    }

    // The red camera is on before the show starts, the blue one joins after:
    // its slot shows a placeholder until then.
    let mut red = publish_color(sources[0]["publish_url"].as_str().unwrap(), "red", &[]);
    let blue_url = sources[1]["publish_url"].as_str().unwrap().to_owned();

    // Where the control plane's events can be read, to see the refusing
    // destination reported.
    let event_queue = buildstream_backend::testing::unique_name("test.golive-events.");
    let mut events = match deployment.amqp_events {
        true => Some(
            buildstream_backend::bus::open(Some(&buildstream_backend::testing::amqp_url()))
                .await
                .unwrap()
                .subscribe(&event_queue, &["destination.*"])
                .await
                .unwrap(),
        ),
        false => None,
    };

    let cpu_before = deployment.cpu_seconds();
    let started = Instant::now();
    let (status, body) = api
        .call("POST", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    let mut blue = publish_color(&blue_url, "blue", &[]);

    let plain_recording = plain.recording("program");
    let tls_recording = tls.recording("program");
    wait_for("first media at the sink", Duration::from_secs(30), || {
        (std::fs::metadata(&plain_recording)
            .map(|m| m.len())
            .unwrap_or(0)
            > 0)
        .then_some(())
    });
    println!(
        "time from go-live to first media at the sink: {:?}",
        started.elapsed()
    );

    // Both live sinks get the program; the refusing one retries with its error.
    let status = wait_status(&api, &studio, "destination states", |s| {
        destination(s, &destinations[0])["state"] == "live"
            && destination(s, &destinations[1])["state"] == "live"
            && destination(s, &destinations[2])["state"] == "retrying"
    })
    .await;
    assert_eq!(status["state"], "live", "{status}");
    assert!(
        status["output_frames"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    let refused = destination(&status, &destinations[2]);
    assert!(
        refused["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{refused}"
    );

    // The origin reports it with its heartbeat: one destination.failed for
    // the outage, however many retries it takes.
    if let Some(events) = &mut events {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Ok(Some(delivery)) =
                tokio::time::timeout(Duration::from_secs(1), events.next()).await
            else {
                if !seen.is_empty() {
                    break;
                }
                continue;
            };
            if delivery.event.data["destination_id"] == destinations[2].as_str() {
                seen.push(delivery.event.clone());
            }
            delivery.ack().await.unwrap();
            if seen.len() == 1 {
                // Later heartbeats must not repeat it.
                tokio::time::sleep(Duration::from_secs(11)).await;
            }
        }
        assert_eq!(seen.len(), 1, "{seen:?}");
        let failed = &seen[0];
        assert_eq!(failed.kind, "destination.failed");
        assert_eq!(failed.data["studio_id"], studio.as_str());
        assert_eq!(failed.data["state"], "retrying");
        assert!(
            failed.data["error"]
                .as_str()
                .is_some_and(|e| e.contains("refused")),
            "{failed:?}"
        );
    }
    drop(events);
    if deployment.amqp_events {
        buildstream_backend::testing::delete_amqp_queues(&[&event_queue]).await;
    }

    // The origin's gauges: one broadcast, two destinations live, one
    // retrying (set with each heartbeat).
    let metrics_url = format!("{}/metrics", deployment.origin);
    wait_for_async("origin gauges", Duration::from_secs(15), || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        (text.contains("origin_broadcasts 1")
            && text.contains("origin_destinations{state=\"live\"} 2")
            && text.contains("origin_destinations{state=\"retrying\"} 1"))
        .then_some(())
    })
    .await;
    let edge_metrics = get_text(&format!("{}/metrics", deployment.edge_http)).await;
    assert!(
        edge_metrics.contains("edge_webrtc_sessions"),
        "{edge_metrics}"
    );

    wait_for(
        "12 s of program at both sinks",
        Duration::from_secs(60),
        || {
            (recorded_seconds(&plain_recording) >= 12.0 && recorded_seconds(&tls_recording) >= 12.0)
                .then_some(())
        },
    );
    let cpu_used = deployment.cpu_seconds() - cpu_before;
    println!(
        "cpu seconds per minute of output (2 sources, 720p30, 3 destinations): {:.1}",
        cpu_used / started.elapsed().as_secs_f64() * 60.0
    );

    for recording in [&plain_recording, &tls_recording] {
        let probe = ffprobe(recording).expect("probing the recording");
        assert_eq!(probe.video_codec, "h264", "{probe:?}");
        assert_eq!((probe.width, probe.height), (1280, 720), "{probe:?}");
        assert!((probe.frame_rate - 30.0).abs() < 1.0, "{probe:?}");
        assert_eq!(probe.audio_codec, "aac", "{probe:?}");
        let frame = RgbFrame::grab(recording, 1.0).expect("decoding a frame");
        let (left, right) = (frame.mean(0.25, 0.5, 40), frame.mean(0.75, 0.5, 40));
        assert!(
            looks(left, "red"),
            "left half should be the red source: {left:?}"
        );
        assert!(
            looks(right, "blue"),
            "right half should be the blue source: {right:?}"
        );
    }

    // A sink that restarts mid-stream gets the program again on its own,
    // and its recording continues.
    let before_restart = recorded_seconds(&plain_recording);
    plain.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    plain.resume();
    wait_status(&api, &studio, "the restarted sink to be live again", |s| {
        let d = destination(s, &destinations[0]);
        d["state"] == "live" && d["connections"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    wait_for("the recording to continue", Duration::from_secs(30), || {
        (recorded_seconds(&plain_recording) >= before_restart + 4.0).then_some(())
    });
    let status = api
        .ok("GET", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    assert_eq!(
        destination(&status, &destinations[1])["connections"],
        1,
        "the TLS sink was not disturbed"
    );

    // A source that vanishes leaves a placeholder in its slot while the
    // program goes on; when it comes back, it is back in its slot.
    blue.kill();
    let dropped_at = recorded_seconds(&tls_recording);
    wait_for(
        "the program to go on without the blue camera",
        Duration::from_secs(30),
        || (recorded_seconds(&tls_recording) >= dropped_at + 4.0).then_some(()),
    );
    let frame = RgbFrame::grab(&tls_recording, 0.5).expect("decoding a frame");
    let (left, right) = (frame.mean(0.25, 0.5, 40), frame.mean(0.75, 0.5, 40));
    assert!(looks(left, "red"), "the red source stays: {left:?}");
    assert!(
        !looks(right, "blue"),
        "the blue slot shows a placeholder: {right:?}"
    );
    let _blue_again = publish_color(&blue_url, "blue", &[]);
    wait_for(
        "the blue camera back in its slot",
        Duration::from_secs(30),
        || {
            let frame = RgbFrame::grab(&tls_recording, 0.5)?;
            looks(frame.mean(0.75, 0.5, 40), "blue").then_some(())
        },
    );

    // A scene change applies live: solo shows the first source full frame,
    // the banner appears in the brand colour over the lower third.
    api.ok(
        "PUT",
        &format!("/api/v1/studios/{studio}/scene"),
        Some(json!({
            "layout": "solo",
            "on_stage": [ids[0]],
            "banner": {"text": "Scene changed", "visible": true},
            "brand_color": "#00c000"
        })),
    )
    .await;
    let changed_at = recorded_seconds(&tls_recording);
    wait_for(
        "the scene change to be recorded",
        Duration::from_secs(30),
        || (recorded_seconds(&tls_recording) >= changed_at + 4.0).then_some(()),
    );
    let frame = RgbFrame::grab(&tls_recording, 1.0).expect("decoding a frame");
    let top_right = frame.mean(0.75, 0.3, 40);
    assert!(
        looks(top_right, "red"),
        "solo: the red source fills the frame: {top_right:?}"
    );
    let banner = frame.mean(0.9, 0.86, 10);
    assert!(
        looks(banner, "green"),
        "banner bar in the brand colour: {banner:?}"
    );

    for proc in &deployment.procs {
        println!(
            "peak memory of {}: {} kB",
            proc.name,
            peak_memory_kb(proc.pid())
        );
    }

    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/studios/{studio}/broadcast"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let status = api
        .ok("GET", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    assert_eq!(status["state"], "offline");

    // Rotating a key disconnects the encoder still publishing with it.
    assert!(red.is_running(), "the red encoder is still publishing");
    api.ok(
        "POST",
        &format!("/api/v1/studios/{studio}/sources/{}/key", ids[0]),
        None,
    )
    .await;
    wait_for(
        "the encoder with the old key to be disconnected",
        Duration::from_secs(30),
        || (!red.is_running()).then_some(()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_live_in_one_process() {
    let _turn = HEAVY.lock().await;
    init();
    let certs = TempDir::new("ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::dev(&ca).await;
    go_live(&deployment, &ca).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_live_with_control_edge_and_origin_as_processes() {
    let _turn = HEAVY.lock().await;
    init();
    let certs = TempDir::new("ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::three_processes(&ca).await;
    go_live(&deployment, &ca).await;
}

/// The origin's view of one studio: the HTTP status of its broadcast.
async fn origin_has(deployment: &Deployment, studio: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{}/internal/v1/broadcasts/{studio}",
            deployment.origin
        ))
        .bearer_auth(NODE_TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_and_origin_agree_on_what_is_live_even_when_one_is_gone() {
    let _turn = HEAVY.lock().await;
    init();
    let certs = TempDir::new("ca");
    let ca = TestCa::create(certs.path());
    let mut deployment = Deployment::three_processes(&ca).await;
    let api = Api::sign_up(&deployment.api).await;
    let studio = api.create_studio("Agreement").await;
    // Unknown routes and methods answer in the same JSON as other errors,
    // on the control plane and on the origin.
    let http = reqwest::Client::new();
    for (method, url, status, code) in [
        (
            "GET",
            format!("{}/api/v1/nothing", deployment.api),
            404,
            "not_found",
        ),
        (
            "PATCH",
            format!("{}/healthz", deployment.api),
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            format!("{}/internal/v1/nothing", deployment.origin),
            404,
            "not_found",
        ),
    ] {
        let response = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(NODE_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {url}");
    }

    let nowhere = format!("rtmp://127.0.0.1:{}/live", free_tcp_port());
    api.ok(
        "POST",
        &format!("/api/v1/studios/{studio}/destinations"),
        Some(json!({"platform": "custom", "name": "nowhere", "url": nowhere, "stream_key": "k"})),
    )
    .await;
    let (status, _) = api
        .call("POST", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    assert_eq!(status, 202);
    assert_eq!(origin_has(&deployment, &studio).await, 200);

    // A scene the origin cannot apply (a logo whose header passes but whose
    // pixels do not decode) is refused with the origin's reason and not
    // stored.
    let before = api
        .ok("GET", &format!("/api/v1/studios/{studio}/scene"), None)
        .await;
    let mut broken_png =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x40\0\0\0\x20\x08\x06\0\0\0".to_vec();
    broken_png.extend([0x5a; 200]);
    use base64::Engine as _;
    let logo = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&broken_png)
    );
    let (status, body) = api
        .call(
            "PUT",
            &format!("/api/v1/studios/{studio}/scene"),
            Some(json!({"layout": "solo", "logo": logo})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_image", "{body}");
    let after = api
        .ok("GET", &format!("/api/v1/studios/{studio}/scene"), None)
        .await;
    assert_eq!(before, after, "a refused scene is not stored");

    // A broadcast the control plane never recorded (a start it gave up on,
    // a stop that was lost) ends at the origin's next heartbeat; the one
    // on record stays.
    let orphan = "orphan-studio";
    let started = reqwest::Client::new()
        .put(format!(
            "{}/internal/v1/broadcasts/{orphan}",
            deployment.origin
        ))
        .bearer_auth(NODE_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(started.status().is_success(), "{}", started.status());
    let deadline = Instant::now() + Duration::from_secs(20);
    while origin_has(&deployment, orphan).await != 404 {
        assert!(Instant::now() < deadline, "the orphan is still live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(origin_has(&deployment, &studio).await, 200);

    // The edge's mesh port serves only origins the control plane knows: a
    // QUIC client with any other certificate gets no tracks.
    let edges = registered(&deployment.api, "edge").await;
    let edge_addr = edges[0]["mesh_addr"].as_str().unwrap().parse().unwrap();
    let edge_pin = edges[0]["fingerprint"].as_str().unwrap().parse().unwrap();
    let stranger = buildstream_mesh::NodeIdentity::generate(&[]).unwrap();
    let client = buildstream_mesh::MeshClient::new(&stranger).unwrap();
    let track = buildstream_mesh::TrackName::new(&studio, "anything", "video").unwrap();
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        let session = client.connect(edge_addr, edge_pin).await?;
        session.subscribe(&track).await.map(drop)
    })
    .await
    .expect("the edge answers one way or another");
    assert!(
        matches!(
            reached,
            Err(ref e) if !matches!(e, buildstream_mesh::MeshError::TrackNotFound(_))
        ),
        "a stranger was let in: {reached:?}"
    );

    // With the origin gone, the host can still end the show and delete
    // the studio; the answer says the origin did not confirm.
    deployment.procs[2].kill();
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/api/v1/studios/{studio}/broadcast"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let view = api
        .ok("GET", &format!("/api/v1/studios/{studio}/broadcast"), None)
        .await;
    assert_eq!(view["state"], "offline");
    let (status, body) = api
        .call("DELETE", &format!("/api/v1/studios/{studio}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
}
