//! RTMPS: nginx-rtmp behind a TLS terminator whose certificate comes from a
//! test CA. The origin trusts it only when told to.

mod support;

use std::time::Duration;

use buildstream_mesh::Tracks;
use buildstream_origin::{BroadcastSpec, OriginConfig};
use serde_json::json;
use support::nginx::Nginx;
use support::probe::probe;
use support::tls::{proxy, test_ca};

fn spec(url: &str, key: &str) -> BroadcastSpec {
    serde_json::from_value(json!({
        "output": {"width": 640, "height": 360, "framerate": 30, "video_bitrate_kbps": 800},
        "scene": {"banner": {"text": "over tls", "visible": true}},
        "destinations": [{"id": "secure", "url": url, "stream_key": key}],
    }))
    .expect("spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_reaches_nginx_through_tls_with_a_trusted_test_ca() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let dir = support::TempDir::new("ca");
    let ca = test_ca(dir.path());
    let (port, _proxy) = proxy(ca.server.clone(), nginx.port()).await;
    let url = format!("rtmps://127.0.0.1:{port}/live");
    let tracks = Tracks::new();

    // Without the test CA the certificate is refused, and said so.
    let untrusting = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("tls-untrusted");
    untrusting
        .start(&studio, spec(&url, "untrusted"))
        .await
        .expect("start");
    let status = support::wait_for_state(
        &untrusting,
        &studio,
        "secure",
        "retrying",
        Duration::from_secs(10),
    )
    .await;
    let secure = support::destination(&status, "secure").unwrap();
    let error = secure.last_error.clone().unwrap_or_default();
    assert_eq!(secure.state, "retrying", "{status:?}");
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "{error}"
    );
    // A certificate that keeps failing is a configuration problem, not a
    // network one: after a few attempts the destination gives up.
    let status = support::wait_for_state(
        &untrusting,
        &studio,
        "secure",
        "failed",
        Duration::from_secs(40),
    )
    .await;
    let secure = support::destination(&status, "secure").unwrap();
    assert_eq!(secure.state, "failed", "{status:?}");
    assert!(
        secure
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("UnknownIssuer"),
        "{status:?}"
    );
    untrusting.stop(&studio).await.expect("stop");
    assert_eq!(nginx.recorded_bytes("untrusted"), 0);

    // Trusting it, the stream goes through TLS into nginx.
    let trusting = support::origin(
        &tracks,
        OriginConfig {
            extra_ca_file: Some(ca.ca_file.clone()),
            ..OriginConfig::default()
        },
    );
    let studio = support::studio("tls-trusted");
    trusting
        .start(&studio, spec(&url, "trusted"))
        .await
        .expect("start");
    let status = support::wait_for_state(
        &trusting,
        &studio,
        "secure",
        "live",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        support::destination(&status, "secure").unwrap().is_live(),
        "{status:?}"
    );
    assert!(
        nginx
            .wait_for_recording("trusted", 30_000, Duration::from_secs(15))
            .await
    );
    let probe = probe(&nginx.recording("trusted")).await;
    assert_eq!(
        (probe.video_codec.as_str(), probe.width, probe.height),
        ("h264", 640, 360),
        "{probe:?}"
    );
    assert_eq!(probe.audio_codec, "aac", "{probe:?}");

    trusting.stop(&studio).await.expect("stop");
}
