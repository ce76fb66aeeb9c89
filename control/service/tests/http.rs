//! The public listener's limits, against raw TCP clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use buildstream_service::http::{serve, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
    let app = Router::new()
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, app, limits, stop.clone().cancelled_owned()));
    (addr, stop)
}

/// Sends a request and reads the whole response (the server closes).
async fn get_path(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Whether the server closes `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn requests_are_served_with_the_peer_address() {
    let (addr, stop) = start(Limits::default()).await;
    let response = get_path(addr, "/peer").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("127.0.0.1"), "{response}");
    stop.cancel();
}

#[tokio::test]
async fn a_head_trickled_in_is_cut_off() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (addr, stop) = start(limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    for _ in 0..20 {
        if slow.write_all(b"X-Drip: 1\r\n").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A connection that says nothing at all is let go as well.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    stop.cancel();
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let (addr, stop) = start(limits).await;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let third = tokio::spawn(get_path(addr, "/peer"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "served past the cap");
    drop(first);
    let response = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stop.cancel();
}

#[tokio::test]
async fn stopping_lets_a_request_in_progress_finish() {
    let (addr, stop) = start(Limits::default()).await;
    let slow = tokio::spawn(get_path(addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let response = slow.await.unwrap();
    assert!(response.ends_with("done"), "{response}");
    // And nothing new is accepted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn one_peer_cannot_take_every_slot() {
    let limits = Limits {
        max_connections: 8,
        max_connections_per_peer: 2,
        header_read_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let (addr, stop) = start(limits).await;
    let _first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    stop.cancel();
}
