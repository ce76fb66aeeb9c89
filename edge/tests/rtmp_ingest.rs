//! RTMP ingest against a hand-written client that controls every byte.

mod support;

use std::sync::Arc;
use std::time::Duration;

use buildstream_edge::{AuthorizeError, IngestConfig, KeyAuthority, RtmpIngest, SourceGrant};
use buildstream_mesh::{Codec, Tracks};
use support::*;

/// Sends both sequence headers and a keyframe, the way encoders open.
async fn open_av(client: &mut RtmpClient, stream: u32, marker: u8) {
    client
        .video(stream, 0, &avc_sequence_header(SPS_640X360))
        .await;
    client.audio(stream, 0, &aac_sequence_header()).await;
    client
        .video(stream, 0, &avc_frame(true, 0, marker, 900))
        .await;
}

#[tokio::test]
async fn valid_key_publishes_video_and_audio_tracks() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;

    let metadata = obj(&[
        ("width", Amf::Number(640.0)),
        ("height", Amf::Number(360.0)),
        ("videocodecid", Amf::Number(7.0)),
        ("audiocodecid", Amf::Number(10.0)),
        ("encoder", s("test")),
    ]);
    let data = amf_encode(&[s("@setDataFrame"), s("onMetaData"), metadata]);
    client
        .send_message(CSID_STREAM_COMMAND, 0, TYPE_DATA, stream, &data)
        .await;
    open_av(&mut client, stream, 1).await;
    client.audio(stream, 0, &aac_frame(1)).await;

    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let mut audio = subscribe(&ingest.tracks, &track("audio")).await;
    let key = next_frame(&mut video).await;
    assert!(key.keyframe);
    assert_eq!(key.config.codec, Codec::H264);
    assert_eq!((key.config.width, key.config.height), (640, 360));
    assert_eq!(&key.payload[..], &nal_unit(true, 1, 900)[..]);
    let first_audio = next_frame(&mut audio).await;
    assert_eq!(
        (first_audio.config.sample_rate, first_audio.config.channels),
        (44100, 2)
    );
    assert_eq!(&first_audio.payload[..], &aac_frame(1)[2..]);

    client
        .video(stream, 33, &avc_frame(false, 33, 2, 300))
        .await;
    client.audio(stream, 23, &aac_frame(2)).await;
    let inter = next_frame(&mut video).await;
    assert!(!inter.keyframe);
    assert_eq!(
        (inter.timestamp_us, inter.composition_offset_us),
        (33_000, 33_000)
    );
    assert!(Arc::ptr_eq(&inter.config, &key.config));
    assert_eq!(next_frame(&mut audio).await.timestamp_us, 23_000);
}

#[tokio::test]
async fn key_in_the_app_path_with_empty_name_is_accepted() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    client.connect_app(&format!("live/{KEY}")).await;
    let stream = client.create_stream().await;
    let status = client.publish(stream, "").await;
    assert_eq!(status.code, "NetStream.Publish.Start");
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
}

#[tokio::test]
async fn wrong_key_is_refused_with_a_status_and_closed() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    client.connect_app("live").await;
    let stream = client.create_stream().await;
    let status = client.publish(stream, "not-the-key").await;
    assert_eq!(status.level, "error");
    assert_eq!(status.code, "NetStream.Publish.BadName");
    assert!(status.description.contains("refused"), "{status:?}");
    assert!(
        client.closed_within(PATIENCE).await,
        "refused publisher stays connected"
    );
    assert!(ingest.tracks.names().is_empty());

    // The server goes on serving the right key.
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
}

#[tokio::test]
async fn chunk_size_changes_at_any_point() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    // Small chunks through connect and publish.
    client.set_chunk_size(50).await;
    let stream = client.start_publishing(KEY).await;
    client
        .video(stream, 0, &avc_sequence_header(SPS_640X360))
        .await;

    // Larger after publish.
    client.set_chunk_size(4096).await;
    client
        .video(stream, 0, &avc_frame(true, 0, 1, 10_000))
        .await;
    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    assert_eq!(
        &next_frame(&mut video).await.payload[..],
        &nal_unit(true, 1, 10_000)[..]
    );

    // A change while a video message is half sent, with an audio message
    // interleaved between its chunks.
    let frame = avc_frame(false, 0, 2, 6000);
    let mut wire = chunk_message(4096, CSID_VIDEO, 33, TYPE_VIDEO, stream, &frame);
    let rest = wire.split_off(12 + 4096);
    wire.extend(chunk_message(
        4096,
        CSID_CONTROL,
        0,
        TYPE_SET_CHUNK_SIZE,
        0,
        &1000u32.to_be_bytes(),
    ));
    wire.extend(chunk_message(
        1000,
        CSID_AUDIO,
        20,
        TYPE_AUDIO,
        stream,
        &aac_sequence_header(),
    ));
    for part in rest[1..].chunks(1000) {
        wire.push(0xc0 | CSID_VIDEO);
        wire.extend_from_slice(part);
    }
    client.send_raw(&wire).await;
    client.assume_chunk_size(1000);
    assert_eq!(
        &next_frame(&mut video).await.payload[..],
        &nal_unit(false, 2, 6000)[..]
    );

    // The largest chunk size: a big frame in one chunk.
    client.set_chunk_size(0x7fff_ffff).await;
    client
        .video(stream, 66, &avc_frame(false, 0, 3, 200_000))
        .await;
    assert_eq!(
        &next_frame(&mut video).await.payload[..],
        &nal_unit(false, 3, 200_000)[..]
    );
    // And the smallest.
    client.set_chunk_size(1).await;
    client.video(stream, 99, &avc_frame(false, 0, 4, 500)).await;
    assert_eq!(
        &next_frame(&mut video).await.payload[..],
        &nal_unit(false, 4, 500)[..]
    );
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
}

#[tokio::test]
async fn extended_timestamps_repeated_on_continuation_chunks() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    client
        .video(stream, 0, &avc_sequence_header(SPS_640X360))
        .await;

    // Cross the 24-bit boundary: type-0 chunks with extended timestamps on
    // every continuation chunk (300-byte frames at 128-byte chunks).
    let start = 0xff_ffff - 40;
    let mut video = None;
    let mut timestamps = Vec::new();
    for index in 0..5u32 {
        let timestamp = start + index * 20;
        client
            .video(
                stream,
                timestamp,
                &avc_frame(index == 0, 0, index as u8, 300),
            )
            .await;
        let consumer = match &mut video {
            Some(consumer) => consumer,
            None => video.insert(subscribe(&ingest.tracks, &track("video")).await),
        };
        let frame = next_frame(consumer).await;
        assert_eq!(
            &frame.payload[..],
            &nal_unit(index == 0, index as u8, 300)[..]
        );
        timestamps.push(frame.timestamp_us);
    }
    let expected: Vec<i64> = (0..5).map(|i| i64::from(start + i * 20) * 1000).collect();
    assert_eq!(timestamps, expected);

    // A delta header after an extended one, then a type-3 message that
    // repeats the delta.
    let consumer = video.as_mut().unwrap();
    let base = start + 80;
    let mut wire = Vec::new();
    let body = avc_frame(false, 0, 9, 60);
    wire.push(0x40 | CSID_VIDEO);
    wire.extend_from_slice(&33u32.to_be_bytes()[1..]);
    wire.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    wire.push(TYPE_VIDEO);
    wire.extend_from_slice(&body);
    wire.push(0xc0 | CSID_VIDEO);
    wire.extend_from_slice(&body);
    client.send_raw(&wire).await;
    assert_eq!(
        next_frame(consumer).await.timestamp_us,
        i64::from(base + 33) * 1000
    );
    assert_eq!(
        next_frame(consumer).await.timestamp_us,
        i64::from(base + 66) * 1000
    );
}

#[tokio::test]
async fn metadata_without_codec_ids_or_missing_changes_nothing() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    // onMetaData without codec ids, then a bare @setDataFrame (which
    // panics rml_rtmp's ServerSession), then a bare onMetaData string.
    let partial = obj(&[
        ("width", Amf::Number(640.0)),
        ("duration", Amf::Number(0.0)),
    ]);
    for values in [
        vec![s("@setDataFrame"), s("onMetaData"), partial],
        vec![s("@setDataFrame")],
        vec![s("onMetaData")],
    ] {
        client
            .send_message(
                CSID_STREAM_COMMAND,
                0,
                TYPE_DATA,
                stream,
                &amf_encode(&values),
            )
            .await;
    }
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
    drop(client);
    wait_for_tracks(&ingest.tracks, &[]).await;

    // No metadata at all.
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    open_av(&mut client, stream, 2).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
}

#[tokio::test]
async fn composition_offsets_reach_frames() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    client
        .video(stream, 0, &avc_sequence_header(SPS_640X360))
        .await;
    // Decode order I P B B with presentation order I B B P.
    client.video(stream, 0, &avc_frame(true, 33, 1, 100)).await;
    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let frames = [(33, 100, 2), (66, -33, 3), (100, -33, 4)];
    for (timestamp, cts, marker) in frames {
        client
            .video(stream, timestamp, &avc_frame(false, cts, marker, 100))
            .await;
    }
    let mut seen = vec![];
    for _ in 0..4 {
        let frame = next_frame(&mut video).await;
        seen.push((
            frame.timestamp_us,
            frame.composition_offset_us,
            frame.presentation_us(),
        ));
    }
    assert_eq!(
        seen,
        [
            (0, 33_000, 33_000),
            (33_000, 100_000, 133_000),
            (66_000, -33_000, 33_000),
            (100_000, -33_000, 67_000),
        ]
    );
}

#[tokio::test]
async fn audio_only_and_video_only_publish_one_track() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    client.audio(stream, 0, &aac_sequence_header()).await;
    client.audio(stream, 0, &aac_frame(1)).await;
    wait_for_tracks(&ingest.tracks, &["audio"]).await;
    drop(client);
    wait_for_tracks(&ingest.tracks, &[]).await;

    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    client
        .video(stream, 0, &avc_sequence_header(SPS_640X360))
        .await;
    client.video(stream, 0, &avc_frame(true, 0, 1, 100)).await;
    wait_for_tracks(&ingest.tracks, &["video"]).await;
}

#[tokio::test]
async fn unsupported_codecs_refuse_their_track_only() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    // Enhanced-RTMP HEVC video and MP3 audio, then AAC audio.
    client
        .video(stream, 0, &[0x90, b'h', b'v', b'c', b'1', 1, 2, 3])
        .await;
    client.audio(stream, 0, &[0x2f, 0xff, 0xfb, 0x90, 0]).await;
    client.audio(stream, 0, &aac_sequence_header()).await;
    client.audio(stream, 0, &aac_frame(1)).await;
    wait_for_tracks(&ingest.tracks, &["audio"]).await;
    let mut audio = subscribe(&ingest.tracks, &track("audio")).await;
    assert_eq!(next_frame(&mut audio).await.config.codec, Codec::Aac);
}

#[tokio::test]
async fn new_sequence_header_mid_stream_changes_the_config() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    client
        .video(stream, 0, &avc_sequence_header(SPS_640X360))
        .await;
    client.video(stream, 0, &avc_frame(true, 0, 1, 100)).await;
    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    let before = next_frame(&mut video).await;

    client
        .video(stream, 33, &avc_sequence_header(SPS_1280X720))
        .await;
    client.video(stream, 33, &avc_frame(true, 0, 2, 100)).await;
    let after = next_frame(&mut video).await;
    assert_eq!((before.config.width, before.config.height), (640, 360));
    assert_eq!((after.config.width, after.config.height), (1280, 720));
    assert!(!Arc::ptr_eq(&before.config, &after.config));
}

/// A publisher that went silent with its connection still open (power cut,
/// NAT drop) reconnects with the same key: the new one takes over at once.
#[tokio::test]
async fn silent_publisher_is_replaced_by_its_reconnect() {
    let config = IngestConfig {
        idle_timeout: Duration::from_secs(60),
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(config).await;
    let mut stale = RtmpClient::connect(ingest.addr()).await;
    let stream = stale.start_publishing(KEY).await;
    open_av(&mut stale, stream, 1).await;
    let mut before = subscribe(&ingest.tracks, &track("video")).await;
    assert_eq!(
        &next_frame(&mut before).await.payload[..],
        &nal_unit(true, 1, 900)[..]
    );

    let mut fresh = RtmpClient::connect(ingest.addr()).await;
    let stream = fresh.start_publishing(KEY).await;
    // Long before the idle timeout, the stale connection is gone.
    assert!(stale.closed_within(PATIENCE).await, "stale publisher kept");
    open_av(&mut fresh, stream, 2).await;

    // The old consumer saw its track end; a new subscription sees the new publisher.
    assert!(
        tokio::time::timeout(PATIENCE, before.next())
            .await
            .unwrap()
            .is_none(),
        "old track ends"
    );
    let mut after = subscribe(&ingest.tracks, &track("video")).await;
    let frame = next_frame(&mut after).await;
    assert_eq!(&frame.payload[..], &nal_unit(true, 2, 900)[..]);
}

/// A publisher whose connection dies without a FIN (reset) and reconnects.
#[tokio::test]
async fn reset_publisher_reconnects_at_once() {
    let ingest = Ingest::start_default().await;
    let mut stale = RtmpClient::connect(ingest.addr()).await;
    let stream = stale.start_publishing(KEY).await;
    open_av(&mut stale, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
    // Abort: linger zero makes the close a reset, no FIN, no RTMP goodbye.
    // (Deprecated because a nonzero linger blocks on drop; zero does not.)
    #[allow(deprecated)]
    stale.stream().set_linger(Some(Duration::ZERO)).unwrap();
    drop(stale);

    let mut fresh = RtmpClient::connect(ingest.addr()).await;
    let stream = fresh.start_publishing(KEY).await;
    open_av(&mut fresh, stream, 2).await;
    let mut video = subscribe(&ingest.tracks, &track("video")).await;
    assert_eq!(
        &next_frame(&mut video).await.payload[..],
        &nal_unit(true, 2, 900)[..]
    );
}

/// Another publisher on the same track (another ingest on this node, say)
/// supersedes the RTMP one, which then closes its connection.
#[tokio::test]
async fn superseded_publisher_closes_its_connection() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;

    let _other = ingest.tracks.publish(track("video"));
    client.video(stream, 33, &avc_frame(false, 0, 2, 100)).await;
    assert!(
        client.closed_within(PATIENCE).await,
        "superseded publisher kept"
    );
}

#[tokio::test]
async fn idle_connections_are_dropped() {
    let config = IngestConfig {
        idle_timeout: Duration::from_secs(1),
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(config).await;
    let mut silent = RtmpClient::connect_tcp(ingest.addr()).await;
    let mut publisher = RtmpClient::connect(ingest.addr()).await;
    let stream = publisher.start_publishing(KEY).await;
    open_av(&mut publisher, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;

    assert!(silent.closed_within(PATIENCE).await, "silent socket kept");
    assert!(
        publisher.closed_within(PATIENCE).await,
        "silent publisher kept"
    );
    wait_for_tracks(&ingest.tracks, &[]).await;
}

#[tokio::test]
async fn a_key_revoked_while_live_ends_the_publish_and_an_outage_does_not() {
    let config = IngestConfig {
        recheck_interval: Duration::from_millis(200),
        authorize_timeout: Duration::from_millis(200),
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(config).await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;

    // Several checks pass while the key stands.
    for step in 1..=8 {
        client
            .video(stream, step * 100, &avc_frame(false, 0, 2, 100))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!client.closed_within(Duration::from_millis(100)).await);

    // The key is rotated (or the source deleted): the publisher is told why
    // and goes, well before the idle timeout could have closed it.
    ingest.keys.remove(KEY);
    let told = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(reply) = client.read_reply().await {
            if reply.command() == Some("onStatus") {
                return Some(reply);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("an onStatus before the close");
    assert!(
        format!("{:?}", told.values).contains("no longer valid"),
        "{:?}",
        told.values
    );
    assert!(
        client.closed_within(Duration::from_secs(3)).await,
        "publisher with a revoked key kept"
    );
    wait_for_tracks(&ingest.tracks, &[]).await;
}

/// Accepts once, then cannot be reached.
struct FlakyAuthority {
    answered: std::sync::atomic::AtomicBool,
}

impl KeyAuthority for FlakyAuthority {
    async fn authorize(&self, _stream_key: &str) -> Result<SourceGrant, AuthorizeError> {
        if self
            .answered
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(AuthorizeError::Unavailable("control plane down".to_owned()));
        }
        Ok(SourceGrant {
            studio: STUDIO.to_owned(),
            source: SOURCE.to_owned(),
        })
    }
}

#[tokio::test]
async fn a_live_publisher_survives_an_authority_outage() {
    init_tracing();
    let config = IngestConfig {
        recheck_interval: Duration::from_millis(100),
        authorize_timeout: Duration::from_millis(100),
        ..IngestConfig::default()
    };
    let authority = FlakyAuthority {
        answered: std::sync::atomic::AtomicBool::new(false),
    };
    let tracks = Tracks::new();
    let ingest = RtmpIngest::bind_with_config(
        "127.0.0.1:0".parse().unwrap(),
        authority,
        tracks.clone(),
        config,
    )
    .await
    .unwrap();
    let mut client = RtmpClient::connect(ingest.local_addr()).await;
    let stream = client.start_publishing(KEY).await;
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&tracks, &["audio", "video"]).await;
    for step in 1..=10 {
        client
            .video(stream, step * 100, &avc_frame(false, 0, 2, 100))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!client.closed_within(Duration::from_millis(200)).await);
    wait_for_tracks(&tracks, &["audio", "video"]).await;
}

#[tokio::test]
async fn a_connection_that_never_publishes_is_dropped() {
    let config = IngestConfig {
        publish_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(config).await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    client.connect_app("live").await;
    // Busy, but never asking to publish: chatter does not keep it.
    let dropped = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if client.try_send_raw(&[]).await.is_err()
                || client.closed_within(Duration::from_millis(200)).await
            {
                return;
            }
            let _ = client
                .try_send_raw(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0])
                .await;
        }
    })
    .await;
    assert!(
        dropped.is_ok(),
        "a connection that never publishes was kept"
    );

    // A publisher that takes its time within the limit is fine.
    let mut publisher = RtmpClient::connect(ingest.addr()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = publisher.start_publishing(KEY).await;
    open_av(&mut publisher, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!publisher.closed_within(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_the_server_goes_on() {
    let config = IngestConfig {
        max_connections: 2,
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(config).await;
    let first = RtmpClient::connect(ingest.addr()).await;
    let _second = RtmpClient::connect(ingest.addr()).await;
    let mut third = RtmpClient::connect_tcp(ingest.addr()).await;
    assert!(third.closed_within(Duration::from_secs(3)).await);

    drop(first);
    let mut publisher = tokio::time::timeout(PATIENCE, async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut client = RtmpClient::connect_tcp(ingest.addr()).await;
            if !client.closed_within(Duration::from_millis(200)).await {
                client.handshake().await;
                return client;
            }
        }
    })
    .await
    .expect("a slot frees when a connection closes");
    let stream = publisher.start_publishing(KEY).await;
    open_av(&mut publisher, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
}

#[tokio::test]
async fn a_huge_chunk_before_publishing_is_refused_early() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    client.set_chunk_size(8 << 20).await;
    // A 4 MiB "video" message in one chunk, before any publish.
    let mut header = vec![CSID_VIDEO, 0, 0, 0];
    header.extend(&(4u32 << 20).to_be_bytes()[1..]);
    header.extend([TYPE_VIDEO, 1, 0, 0, 0]);
    client.send_raw(&header).await;
    let mut sent = 0usize;
    while sent < 4 << 20 {
        if client.try_send_raw(&[0; 64 << 10]).await.is_err() {
            break;
        }
        sent += 64 << 10;
    }
    assert!(sent < 4 << 20, "the server read 4 MiB it could not use");
    assert!(client.closed_within(PATIENCE).await);

    let mut next = RtmpClient::connect(ingest.addr()).await;
    let stream = next.start_publishing(KEY).await;
    open_av(&mut next, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
}

async fn assert_rejected(ingest: &Ingest, bytes: &[u8], handshake: bool) {
    let mut client = if handshake {
        RtmpClient::connect(ingest.addr()).await
    } else {
        RtmpClient::connect_tcp(ingest.addr()).await
    };
    // The server may close while we are still writing.
    let _ = client.try_send_raw(bytes).await;
    assert!(
        client.closed_within(PATIENCE).await,
        "garbage connection kept open"
    );
}

#[tokio::test]
async fn garbage_is_dropped_and_the_server_keeps_serving() {
    let config = IngestConfig {
        idle_timeout: Duration::from_secs(2),
        ..IngestConfig::default()
    };
    let ingest = Ingest::start(config).await;

    let mut state = 0x1234_5678_9abc_def1_u64;
    let mut random = |count: usize| -> Vec<u8> {
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };

    // Random bytes instead of a handshake.
    let mut noise = random(4000);
    noise[0] = 0x47;
    assert_rejected(&ingest, &noise, false).await;
    // A handshake asking for an unsupported version (RTMPE).
    let mut hello = vec![6];
    hello.extend(random(1536));
    assert_rejected(&ingest, &hello, false).await;
    // A command chunk claiming 16 MiB.
    let mut absurd = vec![
        CSID_COMMAND,
        0,
        0,
        0,
        0xff,
        0xff,
        0xff,
        TYPE_COMMAND,
        0,
        0,
        0,
        0,
    ];
    absurd.extend(random(128));
    assert_rejected(&ingest, &absurd, true).await;
    // A command nested deep enough to overflow a recursive AMF decoder.
    let mut nested = vec![2, 0, 7];
    nested.extend_from_slice(b"connect");
    nested.extend([0; 9]);
    for _ in 0..10_000 {
        nested.extend([3, 0, 1, b'a']);
    }
    let deep = chunk_message(128, CSID_COMMAND, 0, TYPE_COMMAND, 0, &nested);
    assert_rejected(&ingest, &deep, true).await;
    // A compressed header on a chunk stream never opened.
    assert_rejected(&ingest, &[0x80 | 9, 0, 0, 0, 1, 2, 3], true).await;
    // Random bytes after a good handshake.
    for _ in 0..4 {
        let noise = random(3000);
        assert_rejected(&ingest, &noise, true).await;
    }

    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;
}

#[tokio::test]
async fn shutdown_closes_publishers_and_ends_tracks() {
    let ingest = Ingest::start_default().await;
    let mut client = RtmpClient::connect(ingest.addr()).await;
    let stream = client.start_publishing(KEY).await;
    open_av(&mut client, stream, 1).await;
    wait_for_tracks(&ingest.tracks, &["audio", "video"]).await;

    let Ingest { ingest, tracks, .. } = ingest;
    tokio::time::timeout(PATIENCE, ingest.shutdown())
        .await
        .expect("shutdown finishes");
    assert!(tracks.names().is_empty());
    assert!(client.closed_within(PATIENCE).await);
}

/// The control plane answers that it cannot check keys.
struct DownAuthority;

impl KeyAuthority for DownAuthority {
    async fn authorize(&self, _stream_key: &str) -> Result<SourceGrant, AuthorizeError> {
        Err(AuthorizeError::Unavailable("control plane down".to_owned()))
    }
}

/// The control plane never answers.
struct StalledAuthority;

impl KeyAuthority for StalledAuthority {
    async fn authorize(&self, _stream_key: &str) -> Result<SourceGrant, AuthorizeError> {
        std::future::pending().await
    }
}

async fn publish_status<A: KeyAuthority>(authority: A) -> (Status, bool) {
    init_tracing();
    let config = IngestConfig {
        authorize_timeout: Duration::from_millis(200),
        ..IngestConfig::default()
    };
    let addr = "127.0.0.1:0".parse().unwrap();
    let ingest = RtmpIngest::bind_with_config(addr, authority, Tracks::new(), config)
        .await
        .unwrap();
    let mut client = RtmpClient::connect(ingest.local_addr()).await;
    client.connect_app("live").await;
    let stream = client.create_stream().await;
    let status = client.publish(stream, KEY).await;
    (status, client.closed_within(PATIENCE).await)
}

#[tokio::test]
async fn unavailable_authority_refuses_with_a_retry_status() {
    for (status, closed) in [
        publish_status(DownAuthority).await,
        publish_status(StalledAuthority).await,
    ] {
        assert_eq!(
            (status.level.as_str(), status.code.as_str()),
            ("error", "NetStream.Publish.Failed")
        );
        assert!(status.description.contains("try again"), "{status:?}");
        assert!(closed, "refused publisher stays connected");
    }
}
