//! Offers as real clients write them, from `tests/offers/`: what the edge
//! answers, and why it refuses the ones it cannot serve.

use buildstream_edge::webrtc::{Network, OfferError, SessionError, WebrtcConfig, WebrtcEdge};
use buildstream_mesh::{TrackName, Tracks};
use tokio_util::sync::CancellationToken;

fn offer(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/offers")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn edge() -> WebrtcEdge {
    WebrtcEdge::bind(
        WebrtcConfig {
            udp_listen: "127.0.0.1:0".parse().unwrap(),
            announce: Vec::new(),
            remote_networks: Network::loopback(),
        },
        Tracks::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

fn tracks() -> (TrackName, TrackName) {
    (
        TrackName::new("s1", "src", "video").unwrap(),
        TrackName::new("s1", "src", "audio").unwrap(),
    )
}

async fn publish(name: &str) -> Result<String, SessionError> {
    let (video, audio) = tracks();
    edge()
        .await
        .publish(&offer(name), video, audio, "test")
        .map(|accepted| accepted.answer)
}

/// The `a=rtpmap` codec names of the answer's media sections, in order.
fn answered_codecs(answer: &str) -> Vec<Vec<String>> {
    let mut sections: Vec<Vec<String>> = Vec::new();
    for line in answer.lines() {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let codec = rest
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            if let Some(section) = sections.last_mut() {
                section.push(codec.to_owned());
            }
        }
    }
    sections
}

fn candidate_lines(answer: &str) -> Vec<&str> {
    answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect()
}

#[tokio::test]
async fn a_browser_offer_is_answered_with_opus_and_vp8_or_h264() {
    let answer = publish("browser-sendonly.sdp").await.unwrap();
    let codecs = answered_codecs(&answer);
    assert_eq!(codecs.len(), 2, "{answer}");
    assert!(codecs[0].iter().any(|c| c == "opus"), "{answer}");
    assert!(
        codecs[1].iter().any(|c| c == "VP8" || c == "H264"),
        "{answer}"
    );
    assert!(
        !codecs[1].iter().any(|c| c == "VP9" || c == "AV1"),
        "{answer}"
    );
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=recvonly"), "{answer}");
    let candidates = candidate_lines(&answer);
    assert!(!candidates.is_empty(), "{answer}");
    assert!(
        candidates.iter().all(|c| c.contains(" 127.0.0.1 ")),
        "only the loopback host candidate is announced: {candidates:?}"
    );
}

#[tokio::test]
async fn safari_h264_at_level_5_2_negotiates() {
    let answer = publish("safari-h264-level-5-2.sdp").await.unwrap();
    let codecs = answered_codecs(&answer);
    assert!(codecs[1].iter().any(|c| c == "H264"), "{answer}");
    let fmtp: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=fmtp:") && l.contains("profile-level-id"))
        .collect();
    assert!(
        fmtp.iter()
            .any(|l| l.contains("profile-level-id=64") || l.contains("profile-level-id=42e0")),
        "high or constrained baseline taken: {fmtp:?}"
    );
}

#[tokio::test]
async fn session_level_credentials_odd_groups_and_capital_codec_names_are_taken() {
    let answer = publish("encoder-session-level.sdp").await.unwrap();
    let codecs = answered_codecs(&answer);
    assert!(codecs[0].iter().any(|c| c == "opus"), "{answer}");
    assert!(codecs[1].iter().any(|c| c == "H264"), "{answer}");
    assert!(
        answer.contains("profile-level-id=4d"),
        "main profile: {answer}"
    );
    assert!(!answer.contains("a=group:LS"));
}

#[tokio::test]
async fn audio_only_and_video_only_offers_are_taken() {
    let audio = publish("audio-only.sdp").await.unwrap();
    assert_eq!(answered_codecs(&audio), [vec!["opus".to_owned()]]);
    let video = publish("video-only-baseline.sdp").await.unwrap();
    let codecs = answered_codecs(&video);
    assert_eq!(codecs.len(), 1);
    assert!(codecs[0].iter().any(|c| c == "H264"), "{video}");
}

#[tokio::test]
async fn offers_with_nothing_acceptable_are_refused_with_the_reason() {
    for (file, offered) in [("vp9-only.sdp", "VP9"), ("h264-high10-only.sdp", "H264")] {
        match publish(file).await {
            Err(SessionError::Offer(OfferError::NotAcceptable(why))) => {
                assert!(why.contains("video section 0"), "{file}: {why}");
                assert!(why.contains(offered), "{file}: {why}");
                assert!(why.contains("VP8"), "names what is taken: {why}");
            }
            other => panic!("{file}: expected a refusal, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_offer_that_only_receives_cannot_publish() {
    let recvonly = offer("audio-only.sdp").replace("a=sendonly", "a=recvonly");
    let (video, audio) = tracks();
    match edge().await.publish(&recvonly, video, audio, "test") {
        Err(SessionError::Offer(OfferError::NotAcceptable(why))) => {
            assert!(why.contains("sends no audio or video"), "{why}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_is_malformed_and_the_edge_keeps_serving() {
    let edge = edge().await;
    for garbage in [
        "",
        "hello",
        "v=0\r\nm=video\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
        "\u{0}\u{1}\u{2}",
    ] {
        let (video, audio) = tracks();
        assert!(
            matches!(
                edge.publish(garbage, video, audio, "test"),
                Err(SessionError::Offer(_))
            ),
            "{garbage:?}"
        );
    }
    let (video, audio) = tracks();
    edge.publish(&offer("browser-sendonly.sdp"), video, audio, "test")
        .expect("a good offer after the bad ones");
    assert_eq!(edge.session_count(), 1);
}

#[tokio::test]
async fn trickled_candidates_outside_the_allowed_networks_are_ignored() {
    let edge = edge().await;
    let (video, audio) = tracks();
    let accepted = edge
        .publish(&offer("browser-sendonly.sdp"), video, audio, "test")
        .unwrap();
    let fragment = "a=ice-ufrag:Br0w\r\na=ice-pwd:browserpassword0123456789\r\na=mid:0\r\n\
        a=candidate:1 1 udp 2122260223 192.168.1.20 50000 typ host\r\n\
        a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host\r\n\
        a=candidate:garbage\r\n";
    assert_eq!(edge.trickle(&accepted.id, fragment), Some(1));
    assert_eq!(edge.trickle("no-such-session", fragment), None);
    assert!(edge.close(&accepted.id));
    assert!(!edge.close(&accepted.id));
}

#[tokio::test]
async fn an_offer_binding_one_payload_type_to_two_codecs_is_refused_not_a_crash() {
    // PT 96 is VP8 in the video section and Opus in the audio one: str0m
    // panics on this inside its negotiation; the edge refuses it instead.
    let contradictory = offer("browser-sendonly.sdp")
        .replace(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
            "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        )
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:96 opus/48000/2")
        .replace("a=sendonly", "a=recvonly");
    let edge = edge().await;
    let (video, audio) = tracks();
    let refused = edge.play(&contradictory, Some(video), Some(audio), "test");
    assert!(
        matches!(refused, Err(SessionError::Offer(_))),
        "{refused:?}"
    );
    // And the edge goes on.
    let (video, audio) = tracks();
    edge.publish(&offer("browser-sendonly.sdp"), video, audio, "test")
        .expect("a good offer afterwards");
}

#[tokio::test]
async fn offers_with_too_many_media_sections_are_refused() {
    let one = offer("audio-only.sdp");
    let section = &one[one.find("m=audio").unwrap()..];
    let mut many = one.clone();
    for _ in 0..12 {
        many.push_str(section);
    }
    let (video, audio) = tracks();
    assert!(matches!(
        edge().await.publish(&many, video, audio, "test"),
        Err(SessionError::Offer(OfferError::Malformed(_)))
    ));
}

#[tokio::test]
async fn one_owner_cannot_take_every_session() {
    let edge = edge().await;
    for _ in 0..2 {
        let (video, audio) = tracks();
        edge.publish(&offer("browser-sendonly.sdp"), video, audio, "whip:s1/src")
            .expect("within the encoder's share");
    }
    let (video, audio) = tracks();
    assert!(matches!(
        edge.publish(&offer("browser-sendonly.sdp"), video, audio, "whip:s1/src"),
        Err(SessionError::TooMany(2))
    ));
    // Someone else is not affected.
    let (video, audio) = tracks();
    edge.publish(
        &offer("browser-sendonly.sdp"),
        video,
        audio,
        "whip:s1/other",
    )
    .expect("another encoder");
}
