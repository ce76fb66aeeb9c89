//! Spans exported over OTLP/HTTP when an endpoint is set: the control
//! plane (`buildstream control`, every service behind the gateway) sends
//! its request spans to a collector stand-in on loopback, in the caller's
//! trace and under the caller's span, and so does the handling of the
//! events a request causes.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use support::*;

/// What the collector stand-in received: content type and body of each
/// export request.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn collect(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    received.lock().unwrap().push((content_type, body.to_vec()));
    StatusCode::OK
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_in_the_callers_trace() {
    init();
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let data = TempDir::new("otlp");
    let port = free_tcp_port();
    let _control = Proc::spawn(
        "buildstream control",
        Command::new(buildstream_bin())
            .arg("control")
            .env("BUILDSTREAM_DATA_DIR", data.path())
            .env("BUILDSTREAM_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("BUILDSTREAM_TOKEN_SECRET", TOKEN_SECRET)
            .env("BUILDSTREAM_NODE_TOKEN", NODE_TOKEN)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
            .env("OTEL_BSP_SCHEDULE_DELAY", "200"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{base}/readyz"), Duration::from_secs(60)).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .get(format!("{base}/api/v1/users/me"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let answered = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(answered.contains(trace_id), "{answered}");

    // Exported as protobuf: the ids are there as raw bytes, the gateway's
    // span a child of the caller's, the service's a child of the gateway's
    // (the span id the gateway answered with).
    let gateway_span = answered.split('-').nth(2).unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let batches = received.lock().unwrap().clone();
        let all: Vec<u8> = batches.iter().flat_map(|(_, b)| b.clone()).collect();
        // The gateway's span id twice: its own, and the service span's
        // parent.
        let done = count(&all, &unhex(trace_id)) >= 2
            && count(&all, &unhex(caller_span)) >= 1
            && count(&all, &unhex(&gateway_span)) >= 2
            && count(&all, b"buildstream-control") >= 1
            && count(&all, b"GET /api/v1/users/me") >= 1;
        if done {
            assert!(
                batches
                    .iter()
                    .all(|(kind, _)| kind == "application/x-protobuf"),
                "{:?}",
                batches.iter().map(|(k, _)| k).collect::<Vec<_>>()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans not exported: {} batches, {} bytes",
            batches.len(),
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An event's handling joins the trace of the request that caused it:
    // the search indexer's span for the studio created.
    let api = Api::sign_up(&base).await;
    let studio_trace = "5b8aa5a2d2c872e8321cf37308d69df2";
    let created = api
        .http
        .post(format!("{base}/api/v1/studios"))
        .bearer_auth(&api.token)
        .header("traceparent", format!("00-{studio_trace}-{caller_span}-01"))
        .json(&serde_json::json!({"name": "Traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<u8> = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect();
        // Gateway, service and indexer spans.
        if count(&all, &unhex(studio_trace)) >= 3 && count(&all, b"handle studio.created") >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event's span was not exported in the request's trace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
