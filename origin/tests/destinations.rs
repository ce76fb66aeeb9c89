//! Destinations against real nginx-rtmp servers: one refusing, one slow, one
//! restarting, and destinations coming and going while live.

mod support;

use std::time::Duration;

use buildstream_mesh::Tracks;
use buildstream_origin::destinations::DestinationId;
use buildstream_origin::{BroadcastSpec, DestinationSpec, OriginConfig};
use serde_json::json;
use support::nginx::Nginx;
use support::probe::probe;
use support::source::TestSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A small program (no sources on stage: background, banner and silence)
/// is enough to exercise the senders.
fn spec(destinations: serde_json::Value) -> BroadcastSpec {
    serde_json::from_value(json!({
        "output": {"width": 640, "height": 360, "framerate": 30, "video_bitrate_kbps": 800},
        "scene": {"banner": {"text": "destinations", "visible": true}},
        "destinations": destinations,
    }))
    .expect("spec")
}

fn destination(value: serde_json::Value) -> DestinationSpec {
    serde_json::from_value(value).expect("destination")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_destination_retries_while_the_other_stays_live() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let nobody = support::free_port();
    let broadcasts = support::origin(&Tracks::new(), OriginConfig::default());
    let studio = support::studio("refused");
    broadcasts
        .start(
            &studio,
            spec(json!([
                {"id": "good", "url": nginx.url(), "stream_key": "good"},
                {"id": "dead", "url": format!("rtmp://127.0.0.1:{nobody}/live"),
                 "stream_key": "dead"},
            ])),
        )
        .await
        .expect("start");

    let status = support::wait_for_state(
        &broadcasts,
        &studio,
        "dead",
        "retrying",
        Duration::from_secs(10),
    )
    .await;
    let dead = support::destination(&status, "dead").unwrap();
    assert_eq!(dead.state, "retrying", "{status:?}");
    let error = dead.last_error.clone().unwrap_or_default();
    assert!(error.contains("refused"), "{error}");

    let status = support::wait_for_state(
        &broadcasts,
        &studio,
        "good",
        "live",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        support::destination(&status, "good").unwrap().is_live(),
        "{status:?}"
    );
    let sent = support::destination(&status, "good").unwrap().bytes_sent;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = broadcasts.status(&studio).unwrap();
    let good = support::destination(&status, "good").unwrap();
    assert!(good.is_live() && good.bytes_sent > sent, "{status:?}");
    assert_ne!(support::destination(&status, "dead").unwrap().state, "live");
    assert!(nginx.recorded_bytes("good") > 0);

    broadcasts.stop(&studio).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_reconnects_after_nginx_restarts() {
    let _serial = support::serial().await;
    let mut nginx = Nginx::start().await;
    let broadcasts = support::origin(&Tracks::new(), OriginConfig::default());
    let studio = support::studio("restart");
    broadcasts
        .start(
            &studio,
            spec(json!([{"id": "local", "url": nginx.url(), "stream_key": "again"}])),
        )
        .await
        .expect("start");
    support::wait_for_state(
        &broadcasts,
        &studio,
        "local",
        "live",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        nginx
            .wait_for_recording("again", 10_000, Duration::from_secs(10))
            .await
    );

    nginx.restart().await;
    // Back live on a second connection, by itself.
    let mut status = None;
    support::wait_until(Duration::from_secs(20), || {
        let current = broadcasts.status(&studio).unwrap();
        let local = support::destination(&current, "local").unwrap();
        let done = local.is_live() && local.connections >= 2;
        status = Some(current);
        done
    })
    .await;
    let status = status.unwrap();
    let local = support::destination(&status, "local").unwrap();
    assert!(local.is_live() && local.connections >= 2, "{status:?}");
    assert!(
        local.last_error.is_some(),
        "the drop was noticed: {status:?}"
    );

    // The new recording starts with sequence headers and a keyframe: it
    // decodes.
    assert!(
        nginx
            .wait_for_recording("again", 30_000, Duration::from_secs(15))
            .await
    );
    let probe = probe(&nginx.recording("again")).await;
    assert_eq!(
        (probe.video_codec.as_str(), probe.width, probe.height),
        ("h264", 640, 360),
        "{probe:?}"
    );
    assert!(probe.video_frames > 0, "{probe:?}");
    assert_eq!(probe.audio_codec, "aac", "{probe:?}");

    broadcasts.stop(&studio).await.expect("stop");
}

/// Forwards to nginx, but reads from the origin at `bytes_per_second`: a
/// destination behind a thin pipe.
async fn throttled_proxy(upstream_port: u16, bytes_per_second: usize) -> u16 {
    // A small receive window, inherited by accepted sockets, so that the
    // kernel does not soak up minutes of stream before the sender notices.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = socket.listen(16).expect("listen");
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut upstream_read, mut upstream_write) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
                });
                let chunk = bytes_per_second / 10;
                let mut buffer = vec![0u8; chunk];
                loop {
                    let Ok(n) = client_read.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 || upstream_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_drops_its_own_packets_only() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let slow_port = throttled_proxy(nginx.port(), 4_000).await;
    // A moving source, so that the program has a real bitrate (a still
    // frame and silence compress to almost nothing).
    let tracks = Tracks::new();
    let source = TestSource::start_moving(&tracks, "slow", "pattern");
    let broadcasts = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("slow");
    let mut start = spec(json!([
        {"id": "fast", "url": nginx.url(), "stream_key": "fast"},
        {"id": "slow", "url": format!("rtmp://127.0.0.1:{slow_port}/live"), "stream_key": "slow"},
    ]));
    start.scene = serde_json::from_value(json!({"on_stage": ["pattern"]})).expect("scene");
    broadcasts.start(&studio, start).await.expect("start");
    support::wait_for_state(
        &broadcasts,
        &studio,
        "fast",
        "live",
        Duration::from_secs(10),
    )
    .await;

    let mut last = None;
    let overflowed = support::wait_until(Duration::from_secs(30), || {
        let status = broadcasts.status(&studio).unwrap();
        let dropped = support::destination(&status, "slow")
            .unwrap()
            .packets_dropped;
        last = Some(status);
        dropped > 0
    })
    .await;
    let status = last.unwrap();
    assert!(overflowed, "the slow queue overflowed: {status:?}");
    let fast = support::destination(&status, "fast").unwrap();
    assert!(fast.is_live(), "{status:?}");
    assert_eq!(fast.packets_dropped, 0, "{status:?}");

    // The encoder never waited for the slow one: the fast recording kept
    // its real-time pace.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe = probe(&nginx.recording("fast")).await;
    assert!((27.0..=31.0).contains(&probe.frame_rate()), "{probe:?}");

    broadcasts.stop(&studio).await.expect("stop");
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_come_and_go_while_live_and_bound_the_bitrate() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let broadcasts = support::origin(&Tracks::new(), OriginConfig::default());
    let studio = support::studio("changing");
    let mut start = spec(json!([]));
    start.output =
        serde_json::from_value(json!({"width": 640, "height": 360, "video_bitrate_kbps": 1500}))
            .expect("profile");
    broadcasts.start(&studio, start).await.expect("start");
    assert!(broadcasts.status(&studio).unwrap().destinations.is_empty());

    let first = DestinationId::new("first").unwrap();
    broadcasts
        .add_destination(
            &studio,
            first.clone(),
            destination(json!({"url": nginx.url(), "stream_key": "first"})),
        )
        .await
        .expect("add first");
    support::wait_for_state(
        &broadcasts,
        &studio,
        "first",
        "live",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(broadcasts.status(&studio).unwrap().video_bitrate_kbps, 1500);

    // Facebook takes at most 1000 kb/s at 360p: the encoder follows, live.
    let facebook = DestinationId::new("fb").unwrap();
    broadcasts
        .add_destination(
            &studio,
            facebook.clone(),
            destination(json!({"platform": "facebook", "url": nginx.url(), "stream_key": "fb"})),
        )
        .await
        .expect("add facebook");
    let status =
        support::wait_for_state(&broadcasts, &studio, "fb", "live", Duration::from_secs(10)).await;
    assert_eq!(status.video_bitrate_kbps, 1000, "{status:?}");
    assert!(support::destination(&status, "first").unwrap().is_live());

    broadcasts
        .remove_destination(&studio, &facebook)
        .await
        .expect("remove");
    let status = broadcasts.status(&studio).unwrap();
    assert_eq!(status.video_bitrate_kbps, 1500);
    assert!(support::destination(&status, "fb").is_none());
    assert!(support::destination(&status, "first").unwrap().is_live());

    // A removed destination stops receiving.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = nginx.recorded_bytes("fb");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(nginx.recorded_bytes("fb"), frozen);
    assert!(broadcasts
        .remove_destination(&studio, &facebook)
        .await
        .is_err());

    broadcasts.stop(&studio).await.expect("stop");
}
