//! Checking offers before the engine sees them, and saying why one cannot
//! be served.
//!
//! Real clients' offers differ from what a strict parser expects: ICE
//! credentials and the DTLS fingerprint at session level (allowed by
//! RFC 8839/8842, common in WHIP encoders), `a=group` semantics other than
//! BUNDLE, codec names in any case, H.264 levels above ours (Safari offers
//! level 5.2). str0m takes all of these as they are; `tests/offers.rs`
//! holds it to that with recorded offers. What is left here is a cheap
//! shape and size check ([`check`]), and, after the offer is accepted,
//! [`refusals`]: a media section that would carry media but was answered
//! without a codec becomes a reason to refuse the whole offer, rather than a
//! track that never plays.

use std::fmt::Write as _;

/// The largest offer read. Real offers are 2-10 KiB; simulcast with many
/// codecs stays under 20 KiB.
pub(crate) const MAX_OFFER_BYTES: usize = 64 * 1024;

/// The most media sections an offer may have: a camera, a microphone and a
/// screen with its sound need four; negotiating hundreds costs the edge
/// real time for nothing.
pub(crate) const MAX_MEDIA_SECTIONS: usize = 8;

/// Why an offer cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The body is not an SDP offer.
    #[error("not an SDP offer: {0}")]
    Malformed(String),
    /// The offer carries no audio or video to exchange.
    #[error("the offer has no audio or video section")]
    NoMedia,
    /// No codec the edge takes, for at least one media section.
    #[error("{0}")]
    NotAcceptable(String),
}

struct Section<'a> {
    /// The `m=` line, or `None` for the session section.
    media: Option<&'a str>,
    lines: Vec<String>,
}

fn sections(sdp: &str) -> Result<Vec<Section<'_>>, OfferError> {
    let mut out = vec![Section {
        media: None,
        lines: Vec::new(),
    }];
    for (index, line) in sdp.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if index == 0 && line != "v=0" {
            return Err(OfferError::Malformed("it must begin with v=0".into()));
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
            return Err(OfferError::Malformed(format!(
                "line {} is not of the form x=...",
                index + 1
            )));
        }
        if line.starts_with("m=") {
            out.push(Section {
                media: Some(line),
                lines: Vec::new(),
            });
        } else if let Some(section) = out.last_mut() {
            section.lines.push(line.to_owned());
        }
    }
    if out[0].lines.is_empty() {
        return Err(OfferError::Malformed("the body is empty".into()));
    }
    Ok(out)
}

/// Refuses what is not an SDP offer of a sane size, before the engine
/// parses it.
pub(crate) fn check(offer: &str) -> Result<(), OfferError> {
    if offer.len() > MAX_OFFER_BYTES {
        return Err(OfferError::Malformed(format!(
            "it is larger than {MAX_OFFER_BYTES} bytes"
        )));
    }
    let parts = sections(offer)?;
    if parts.len() < 2 {
        return Err(OfferError::NoMedia);
    }
    if parts.len() - 1 > MAX_MEDIA_SECTIONS {
        return Err(OfferError::Malformed(format!(
            "it has more than {MAX_MEDIA_SECTIONS} media sections"
        )));
    }
    Ok(())
}

/// Which way media flows in a section, seen from the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// The client sends (WHIP, a participant's camera).
    FromClient,
    /// The edge sends (WHEP, another participant's camera).
    ToClient,
}

struct MediaSummary {
    kind: String,
    port_zero: bool,
    direction: String,
    codecs: Vec<String>,
}

fn summarize(sdp: &str) -> Vec<MediaSummary> {
    let Ok(parts) = sections(sdp) else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|section| {
            let m = section.media?;
            let mut fields = m[2..].split_whitespace();
            let kind = fields.next().unwrap_or_default().to_owned();
            let port_zero = fields.next() == Some("0");
            let direction = section
                .lines
                .iter()
                .filter_map(|l| l.strip_prefix("a="))
                .find(|a| ["sendrecv", "sendonly", "recvonly", "inactive"].contains(a))
                .unwrap_or("sendrecv")
                .to_owned();
            let mut codecs: Vec<String> = Vec::new();
            for line in &section.lines {
                if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                    let name = rest
                        .split_once(' ')
                        .map(|(_, enc)| enc.split('/').next().unwrap_or(enc))
                        .unwrap_or_default();
                    let is_helper = [
                        "rtx",
                        "red",
                        "ulpfec",
                        "flexfec-03",
                        "telephone-event",
                        "CN",
                    ]
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(name));
                    if !is_helper && !codecs.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                        codecs.push(name.to_owned());
                    }
                }
            }
            Some(MediaSummary {
                kind,
                port_zero,
                direction,
                codecs,
            })
        })
        .collect()
}

fn carries(direction: &str, flow: Flow, offer_side: bool) -> bool {
    // The offer's direction is the client's; the answer's is the edge's.
    let sends = |d: &str| d == "sendrecv" || d == "sendonly";
    let receives = |d: &str| d == "sendrecv" || d == "recvonly";
    match (flow, offer_side) {
        (Flow::FromClient, true) | (Flow::ToClient, false) => sends(direction),
        (Flow::FromClient, false) | (Flow::ToClient, true) => receives(direction),
    }
}

/// The media sections the offer asked to carry that the answer left
/// without a codec, as one sentence; `None` when every one was taken.
pub(crate) fn refusals(offer: &str, answer: &str, flow: Flow) -> Option<String> {
    let offered = summarize(offer);
    let answered = summarize(answer);
    let mut reasons = String::new();
    let mut carried = 0;
    for (index, offer) in offered.iter().enumerate() {
        let wanted = (offer.kind == "audio" || offer.kind == "video")
            && !offer.port_zero
            && carries(&offer.direction, flow, true);
        if !wanted {
            continue;
        }
        let taken = answered.get(index).is_some_and(|answer| {
            !answer.port_zero
                && !answer.codecs.is_empty()
                && carries(&answer.direction, flow, false)
        });
        if taken {
            carried += 1;
            continue;
        }
        if !reasons.is_empty() {
            reasons.push_str("; ");
        }
        let accepted = if offer.kind == "video" {
            "H264 (baseline, constrained baseline, main or high profile) or VP8"
        } else {
            "opus"
        };
        let offered = if offer.codecs.is_empty() {
            "no codec".to_owned()
        } else {
            offer.codecs.join(", ")
        };
        let _ = write!(
            reasons,
            "{} section {index} offers {offered}; the edge takes {accepted}",
            offer.kind
        );
    }
    if reasons.is_empty() && carried == 0 {
        return Some(match flow {
            Flow::FromClient => "the offer sends no audio or video".to_owned(),
            Flow::ToClient => "the offer receives no audio or video".to_owned(),
        });
    }
    (!reasons.is_empty()).then_some(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(matches!(check(""), Err(OfferError::Malformed(_))));
        assert!(matches!(check("hello"), Err(OfferError::Malformed(_))));
        assert!(matches!(
            check("v=0\r\nthis is not sdp\r\n"),
            Err(OfferError::Malformed(_))
        ));
        assert_eq!(
            check("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"),
            Err(OfferError::NoMedia)
        );
        assert_eq!(
            check("v=0\no=- 1 1 IN IP4 0.0.0.0\nm=audio 9 RTP/AVP 0\n"),
            Ok(())
        );
        let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(MAX_OFFER_BYTES));
        assert!(matches!(check(&huge), Err(OfferError::Malformed(_))));
    }

    #[test]
    fn refusals_name_the_section_and_the_codecs() {
        let offer = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\na=sendonly\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:99 rtx/90000\r\n";
        let answer = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 0\r\na=inactive\r\n";
        let why = refusals(offer, answer, Flow::FromClient).unwrap();
        assert!(why.contains("video section 1 offers VP9"), "{why}");
        assert!(!why.contains("rtx"));
        assert!(!why.contains("audio"));
    }
}
