//! Two real QUIC endpoints on 127.0.0.1 talking MoQ: a server publishing from
//! its `Tracks` registry and a client subscribing through a `MeshSession`.
//!
//! Nothing here sleeps: every wait is on an event, wrapped in a generous
//! timeout only so that a bug fails the test instead of hanging it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use buildstream_mesh::{
    AllowedPeers, CertFingerprint, Codec, Frame, MeshClient, MeshError, MeshServer, MeshSession,
    NodeIdentity, TrackConfig, TrackConsumer, TrackName, Tracks,
};
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait; loopback answers in microseconds.
const PATIENCE: Duration = Duration::from_secs(10);

struct Node {
    tracks: Tracks,
    addr: SocketAddr,
    fingerprint: CertFingerprint,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Node {
    fn start() -> Self {
        Self::start_with(MeshServer::bind)
    }

    fn start_with(
        bind: impl FnOnce(
            SocketAddr,
            &NodeIdentity,
            Tracks,
        ) -> Result<MeshServer, buildstream_mesh::ServerError>,
    ) -> Self {
        init_tracing();
        let identity = NodeIdentity::generate(&[]).unwrap();
        let tracks = Tracks::new();
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = bind(loopback, &identity, tracks.clone()).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.run(cancel.clone()));
        Self {
            tracks,
            addr,
            fingerprint: identity.fingerprint(),
            cancel,
            task,
        }
    }

    async fn session(&self) -> MeshSession {
        let client = client(&NodeIdentity::generate(&[]).unwrap());
        within(client.connect(self.addr, self.fingerprint))
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        within(self.task).await.unwrap();
    }
}

fn client(identity: &NodeIdentity) -> MeshClient {
    MeshClient::bind(identity, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("timed out waiting on the mesh")
}

fn name(track: &str) -> TrackName {
    TrackName::new("studio-1", "guest-7", track).unwrap()
}

fn video_config(width: u32, height: u32) -> Arc<TrackConfig> {
    Arc::new(TrackConfig {
        codec: Codec::H264,
        description: Bytes::from(vec![1, 0x64, 0, 0x28, 0xff, 0xe1, width as u8]),
        width,
        height,
        sample_rate: 0,
        channels: 0,
    })
}

fn frame(ts: i64, keyframe: bool, config: &Arc<TrackConfig>) -> Frame {
    // Payload bytes derived from the timestamp, so a mix-up shows.
    let payload: Vec<u8> = (0..(64 + ts as usize % 300))
        .map(|i| (i as i64 * 31 + ts) as u8)
        .collect();
    Frame {
        timestamp_us: ts * 33_333,
        composition_offset_us: if keyframe { 0 } else { 66_666 },
        keyframe,
        payload: payload.into(),
        config: config.clone(),
    }
}

async fn next(consumer: &mut TrackConsumer) -> Frame {
    within(consumer.next())
        .await
        .expect("remote track ended early")
}

fn assert_same(sent: &Frame, received: &Frame) {
    assert_eq!(received.timestamp_us, sent.timestamp_us);
    assert_eq!(received.composition_offset_us, sent.composition_offset_us);
    assert_eq!(received.keyframe, sent.keyframe);
    assert_eq!(received.payload, sent.payload);
    assert_eq!(*received.config, *sent.config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_in_order_with_same_bytes_and_timestamps() {
    let node = Node::start();
    let producer = node.tracks.publish(name("video"));
    let session = node.session().await;
    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    assert_eq!(consumer.name(), &name("video"));

    // Three GOPs, each written in one burst. Each burst is read before the
    // next is written: the registry lets a reader that is a whole GOP
    // behind skip to the newest keyframe, which is right for live media but
    // would make this test depend on scheduling.
    let config = video_config(1280, 720);
    for gop in 0..3 {
        let sent: Vec<Frame> = (gop * 30..(gop + 1) * 30)
            .map(|i| frame(i, i % 30 == 0, &config))
            .collect();
        for f in &sent {
            producer.write(f.clone()).unwrap();
        }
        for f in &sent {
            assert_same(f, &next(&mut consumer).await);
        }
    }

    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_subscriber_starts_at_last_keyframe() {
    let node = Node::start();
    let producer = node.tracks.publish(name("video"));
    let config = video_config(1280, 720);
    for i in 0..8 {
        producer.write(frame(i, i == 0 || i == 5, &config)).unwrap();
    }

    let session = node.session().await;
    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    let first = next(&mut consumer).await;
    assert!(first.keyframe);
    assert_same(&frame(5, true, &config), &first);
    assert_same(&frame(6, false, &config), &next(&mut consumer).await);
    assert_same(&frame(7, false, &config), &next(&mut consumer).await);

    // And then it follows live.
    producer.write(frame(8, false, &config)).unwrap();
    producer.write(frame(9, true, &config)).unwrap();
    assert_same(&frame(8, false, &config), &next(&mut consumer).await);
    assert_same(&frame(9, true, &config), &next(&mut consumer).await);

    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_change_mid_stream_arrives_at_its_frame() {
    let node = Node::start();
    let producer = node.tracks.publish(name("video"));
    let session = node.session().await;
    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();

    let small = video_config(640, 360);
    let large = video_config(1920, 1080);
    // The change lands mid-group (frame 3 is not a keyframe), then a new
    // group repeats the large config.
    let sent = [
        frame(0, true, &small),
        frame(1, false, &small),
        frame(2, false, &small),
        frame(3, false, &large),
        frame(4, false, &large),
        frame(5, true, &large),
        frame(6, false, &large),
    ];
    // One GOP at a time, so the registry never skips ahead (see
    // `frames_arrive_in_order_with_same_bytes_and_timestamps`).
    let mut received = Vec::new();
    for gop in [&sent[..5], &sent[5..]] {
        for f in gop {
            producer.write(f.clone()).unwrap();
        }
        for f in gop {
            let got = next(&mut consumer).await;
            assert_same(f, &got);
            received.push(got);
        }
    }
    assert_eq!(received[2].config.width, 640);
    assert_eq!(received[3].config.width, 1920);
    // Consumers detect changes by pointer: unchanged configs share one Arc,
    // even across a group boundary that repeats the config on the wire.
    assert!(Arc::ptr_eq(&received[0].config, &received[2].config));
    assert!(!Arc::ptr_eq(&received[2].config, &received[3].config));
    assert!(Arc::ptr_eq(&received[3].config, &received[6].config));

    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_ending_ends_the_remote_consumer() {
    let node = Node::start();
    let producer = node.tracks.publish(name("audio"));
    let session = node.session().await;
    let mut consumer = within(session.subscribe(&name("audio"))).await.unwrap();

    let opus = Arc::new(TrackConfig {
        codec: Codec::Opus,
        description: Bytes::new(),
        width: 0,
        height: 0,
        sample_rate: 48_000,
        channels: 2,
    });
    // Enough audio frames to span several MoQ groups. Every audio frame is
    // a keyframe, so the registry keeps only the newest two: write each
    // frame once the previous one has arrived, as a live source would.
    for i in 0..80 {
        let sent = frame(i, true, &opus);
        producer.write(sent.clone()).unwrap();
        assert_same(&sent, &next(&mut consumer).await);
    }
    // The last frame is still in flight when the track ends.
    let last = frame(80, true, &opus);
    producer.write(last.clone()).unwrap();
    drop(producer);
    assert_same(&last, &next(&mut consumer).await);
    assert!(within(consumer.next()).await.is_none());

    // The session outlives the track.
    assert!(matches!(
        within(session.subscribe(&name("audio"))).await,
        Err(MeshError::TrackNotFound(_))
    ));
    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_missing_track_errors() {
    let node = Node::start();
    let _other = node.tracks.publish(name("video"));
    let session = node.session().await;

    match within(session.subscribe(&name("screen"))).await {
        Err(MeshError::TrackNotFound(missing)) => assert_eq!(missing, name("screen")),
        Err(other) => panic!("expected TrackNotFound, got {other}"),
        Ok(_) => panic!("expected TrackNotFound, got a consumer"),
    }
    // A refusal does not break the session.
    assert!(within(session.subscribe(&name("video"))).await.is_ok());

    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pinned_fingerprint_fails_to_connect() {
    let node = Node::start();
    let impostor = NodeIdentity::generate(&[]).unwrap().fingerprint();
    let client = client(&NodeIdentity::generate(&[]).unwrap());

    let result = within(client.connect(node.addr, impostor)).await;
    assert!(
        matches!(result, Err(MeshError::Connection(_))),
        "connect with a wrong pin must fail"
    );

    // The same client with the right pin gets through.
    let session = within(client.connect(node.addr, node.fingerprint))
        .await
        .unwrap();
    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_ends_the_remote_consumer_and_resubscribe_follows_the_new_publisher() {
    let node = Node::start();
    let config = video_config(1280, 720);
    let stale = node.tracks.publish(name("video"));
    stale.write(frame(0, true, &config)).unwrap();

    let session = node.session().await;
    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    assert_same(&frame(0, true, &config), &next(&mut consumer).await);

    // A reconnecting encoder takes the name over.
    let fresh = node.tracks.publish(name("video"));
    assert!(stale.write(frame(1, false, &config)).is_err());
    fresh.write(frame(100, true, &config)).unwrap();
    assert!(within(consumer.next()).await.is_none());

    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    assert_same(&frame(100, true, &config), &next(&mut consumer).await);
    fresh.write(frame(101, false, &config)).unwrap();
    assert_same(&frame(101, false, &config), &next(&mut consumer).await);

    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_readers_of_one_remote_track_share_it() {
    let node = Node::start();
    let config = video_config(1280, 720);
    let producer = node.tracks.publish(name("program"));
    let session = node.session().await;

    let mut first = within(session.subscribe(&name("program"))).await.unwrap();
    producer.write(frame(0, true, &config)).unwrap();
    producer.write(frame(1, false, &config)).unwrap();
    assert_same(&frame(0, true, &config), &next(&mut first).await);
    assert_same(&frame(1, false, &config), &next(&mut first).await);

    // A second reader joins at the current keyframe from the local copy.
    let mut second = within(session.subscribe(&name("program"))).await.unwrap();
    assert_same(&frame(0, true, &config), &next(&mut second).await);
    assert_same(&frame(1, false, &config), &next(&mut second).await);

    producer.write(frame(2, false, &config)).unwrap();
    assert_same(&frame(2, false, &config), &next(&mut first).await);
    assert_same(&frame(2, false, &config), &next(&mut second).await);

    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_session_ends_its_consumers() {
    let node = Node::start();
    let config = video_config(1280, 720);
    let producer = node.tracks.publish(name("video"));
    producer.write(frame(0, true, &config)).unwrap();
    let session = node.session().await;
    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    assert_same(&frame(0, true, &config), &next(&mut consumer).await);

    session.close().await;
    assert!(within(consumer.next()).await.is_none());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_closes_client_sessions() {
    let node = Node::start();
    let config = video_config(1280, 720);
    let producer = node.tracks.publish(name("video"));
    producer.write(frame(0, true, &config)).unwrap();
    let session = node.session().await;
    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    assert_same(&frame(0, true, &config), &next(&mut consumer).await);

    node.stop().await;
    assert!(matches!(
        within(session.closed()).await,
        MeshError::Connection(_)
    ));
    assert!(within(consumer.next()).await.is_none());
    assert!(within(session.subscribe(&name("video"))).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_server_admits_only_listed_clients() {
    let known = NodeIdentity::generate(&[]).unwrap();
    let allowed = AllowedPeers::new([known.fingerprint()]);
    let list = allowed.clone();
    let node = Node::start_with(move |addr, identity, tracks| {
        MeshServer::bind_allowing(addr, identity, tracks, list)
    });
    let _producer = node.tracks.publish(name("video"));

    let stranger_identity = NodeIdentity::generate(&[]).unwrap();
    let stranger = client(&stranger_identity);
    // TLS 1.3 lets the client finish before the server judges its
    // certificate, so the refusal may surface at connect or right after.
    match within(stranger.connect(node.addr, node.fingerprint)).await {
        Err(_) => {}
        Ok(session) => {
            assert!(matches!(
                within(session.closed()).await,
                MeshError::Connection(_)
            ));
        }
    }
    // Whoever keeps the list hears that someone unlisted knocked.
    within(allowed.refused()).await;

    // Listed later (a node that just registered), the same client gets in
    // without the server being rebound.
    allowed.replace([known.fingerprint(), stranger_identity.fingerprint()]);
    let session = within(stranger.connect(node.addr, node.fingerprint))
        .await
        .unwrap();
    assert!(within(session.subscribe(&name("video"))).await.is_ok());
    session.close().await;

    let session = within(client(&known).connect(node.addr, node.fingerprint))
        .await
        .unwrap();
    assert!(within(session.subscribe(&name("video"))).await.is_ok());
    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_reader_unsubscribes() {
    let node = Node::start();
    let config = video_config(1280, 720);
    let producer = node.tracks.publish(name("video"));
    producer.write(frame(0, true, &config)).unwrap();
    let session = node.session().await;

    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    assert_same(&frame(0, true, &config), &next(&mut consumer).await);
    assert_eq!(session.receiving(), [name("video")]);

    drop(consumer);
    within(async {
        while !session.receiving().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;

    // Subscribing again reaches the remote node afresh: its publisher sees
    // a new subscriber (and would produce a keyframe on demand).
    let mut requested = std::pin::pin!(producer.keyframe_requested());
    // Poll once so the wait registers before the subscription is made.
    tokio::select! {
        biased;
        () = &mut requested => panic!("no subscriber yet"),
        () = std::future::ready(()) => {}
    }
    let mut consumer = within(session.subscribe(&name("video"))).await.unwrap();
    within(requested).await;
    assert_same(&frame(0, true, &config), &next(&mut consumer).await);

    session.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_client_reaches_ipv4_and_ipv6_loopback() {
    init_tracing();
    let identity = NodeIdentity::generate(&[]).unwrap();
    let client = MeshClient::new(&NodeIdentity::generate(&[]).unwrap()).unwrap();
    for loopback in ["127.0.0.1:0", "[::1]:0"] {
        let tracks = Tracks::new();
        let server =
            MeshServer::bind(loopback.parse().unwrap(), &identity, tracks.clone()).unwrap();
        let addr = server.local_addr();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.run(cancel.clone()));

        let config = video_config(320, 240);
        let producer = tracks.publish(name("screen"));
        producer.write(frame(0, true, &config)).unwrap();
        let session = within(client.connect(addr, identity.fingerprint()))
            .await
            .unwrap();
        let mut consumer = within(session.subscribe(&name("screen"))).await.unwrap();
        assert_same(&frame(0, true, &config), &next(&mut consumer).await);

        session.close().await;
        cancel.cancel();
        within(task).await.unwrap();
    }
}

#[test]
fn handles_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync>() {}
    shareable::<MeshClient>();
    shareable::<MeshSession>();
    shareable::<MeshServer>();
    shareable::<NodeIdentity>();
    shareable::<MeshError>();
}

/// Guards against `subscribe` holding a non-`Send` guard across an await,
/// which would stop callers from boxing it as a `Send` future.
#[allow(dead_code)]
fn subscribe_future_is_send<'a>(
    session: &'a MeshSession,
    name: &'a TrackName,
) -> impl Future<Output = Result<TrackConsumer, MeshError>> + Send + 'a {
    session.subscribe(name)
}
