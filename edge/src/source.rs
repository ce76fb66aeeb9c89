//! One accepted RTMP publish, turned into mesh tracks.
//!
//! Tracks are published lazily, each when its first sequence header arrives,
//! so an audio-only or video-only encoder publishes one track and metadata
//! (which may be missing or wrong) plays no part. A later sequence header
//! with different bytes becomes a new [`TrackConfig`] that following frames
//! point at; an identical one (OBS repeats them) changes nothing.

use std::sync::Arc;

use buildstream_mesh::{Frame, NameError, TrackConfig, TrackName, TrackProducer, Tracks};
use bytes::Bytes;

use crate::authority::SourceGrant;
use crate::flv::{self, AudioTag, UnsupportedCodec, VideoTag};
use crate::session::{Media, MediaKind};

/// Why the publish cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The grant names no valid track (a control-plane bug).
    #[error("granted source does not name a valid track: {0}")]
    Name(#[from] NameError),
    /// Another publisher took the track over; this one must stop.
    #[error("track {0} was taken over by another publisher")]
    Superseded(TrackName),
}

/// Publishes one source's audio and video tracks.
pub(crate) struct SourcePublisher {
    tracks: Tracks,
    video: TrackSlot,
    audio: TrackSlot,
    clock: Clock,
}

struct TrackSlot {
    name: TrackName,
    live: Option<LiveTrack>,
    /// The codec last refused, so that the warning is given once.
    refused: Option<UnsupportedCodec>,
    /// The picture size last refused, likewise.
    oversized: Option<(u32, u32)>,
    /// Frames dropped for want of a sequence header.
    unconfigured_frames: u64,
}

struct LiveTrack {
    producer: TrackProducer,
    config: Arc<TrackConfig>,
}

/// The largest picture a source may send: 4K UHD, either way round, and no
/// side beyond 4096. A decoder's memory grows with the picture; an encoder
/// claiming 16K would cost the origin gigabytes for no studio's benefit.
pub(crate) const MAX_SIDE: u32 = 4096;
pub(crate) const MAX_PIXELS: u32 = 3840 * 2160;

pub(crate) fn is_oversized(width: u32, height: u32) -> bool {
    width > MAX_SIDE || height > MAX_SIDE || width.saturating_mul(height) > MAX_PIXELS
}

impl SourcePublisher {
    pub(crate) fn new(tracks: Tracks, grant: &SourceGrant) -> Result<Self, SourceError> {
        let slot = |track| -> Result<TrackSlot, SourceError> {
            Ok(TrackSlot {
                name: TrackName::new(&grant.studio, &grant.source, track)?,
                live: None,
                refused: None,
                oversized: None,
                unconfigured_frames: 0,
            })
        };
        Ok(Self {
            video: slot("video")?,
            audio: slot("audio")?,
            tracks,
            clock: Clock::default(),
        })
    }

    /// Handles one audio or video message.
    pub(crate) fn push(&mut self, media: Media) -> Result<(), SourceError> {
        let timestamp_ms = self.clock.extend(media.timestamp_ms);
        match media.kind {
            MediaKind::Video => match flv::parse_video(&media.data) {
                Ok(VideoTag::AvcSequenceHeader(config)) => {
                    if is_oversized(config.width, config.height) {
                        self.video.refuse_size(config.width, config.height);
                    } else {
                        self.video.configure(&self.tracks, config);
                    }
                    Ok(())
                }
                Ok(VideoTag::AvcFrame(frame)) => self.video.write(
                    timestamp_ms,
                    frame.composition_time_ms,
                    frame.keyframe,
                    frame.data,
                ),
                Ok(VideoTag::AvcEndOfSequence | VideoTag::Command) => Ok(()),
                Ok(VideoTag::Unsupported(codec)) => {
                    self.video.refuse(codec);
                    Ok(())
                }
                Err(error) => {
                    tracing::debug!(track = %self.video.name, %error, "unreadable video tag dropped");
                    Ok(())
                }
            },
            MediaKind::Audio => match flv::parse_audio(&media.data) {
                Ok(AudioTag::AacSequenceHeader(config)) => {
                    self.audio.configure(&self.tracks, config);
                    Ok(())
                }
                // Every AAC access unit decodes on its own.
                Ok(AudioTag::AacFrame(data)) => self.audio.write(timestamp_ms, 0, true, data),
                Ok(AudioTag::Unsupported(codec)) => {
                    self.audio.refuse(codec);
                    Ok(())
                }
                Err(error) => {
                    tracing::debug!(track = %self.audio.name, %error, "unreadable audio tag dropped");
                    Ok(())
                }
            },
        }
    }
}

impl TrackSlot {
    fn configure(&mut self, tracks: &Tracks, config: TrackConfig) {
        self.refused = None;
        self.oversized = None;
        match &mut self.live {
            Some(live) if *live.config == config => {}
            Some(live) => {
                tracing::info!(
                    track = %self.name,
                    width = config.width,
                    height = config.height,
                    sample_rate = config.sample_rate,
                    channels = config.channels,
                    "track reconfigured"
                );
                live.config = Arc::new(config);
            }
            None => {
                tracing::info!(
                    track = %self.name,
                    codec = config.codec.as_str(),
                    width = config.width,
                    height = config.height,
                    sample_rate = config.sample_rate,
                    channels = config.channels,
                    "track live"
                );
                self.live = Some(LiveTrack {
                    producer: tracks.publish(self.name.clone()),
                    config: Arc::new(config),
                });
            }
        }
    }

    fn write(
        &mut self,
        timestamp_ms: i64,
        composition_time_ms: i32,
        keyframe: bool,
        payload: Bytes,
    ) -> Result<(), SourceError> {
        let Some(live) = &self.live else {
            self.unconfigured_frames += 1;
            if self.unconfigured_frames == 1 {
                tracing::debug!(track = %self.name, "frames before the sequence header dropped");
            }
            return Ok(());
        };
        if payload.is_empty() {
            return Ok(());
        }
        let frame = Frame {
            // A publisher can push the extended clock arbitrarily far;
            // saturating keeps a hostile one from overflowing it.
            timestamp_us: timestamp_ms.saturating_mul(1000),
            // 24-bit milliseconds reach ±8.4e9 µs, past i32; real offsets
            // are a few frames, so saturating loses nothing.
            composition_offset_us: composition_time_ms.saturating_mul(1000),
            keyframe,
            payload,
            config: live.config.clone(),
        };
        live.producer
            .write(frame)
            .map_err(|_| SourceError::Superseded(self.name.clone()))
    }

    /// Ends the track on a picture larger than the studio takes; the other
    /// track of the source goes on.
    fn refuse_size(&mut self, width: u32, height: u32) {
        if self.oversized != Some((width, height)) {
            tracing::warn!(track = %self.name, width, height,
                max_width = MAX_SIDE, max_height = MAX_SIDE, max_pixels = MAX_PIXELS,
                "video larger than 4K refused; track refused");
            self.oversized = Some((width, height));
        }
        self.live = None;
    }

    /// Ends the track on a codec the mesh cannot carry; the other track
    /// of the source goes on.
    fn refuse(&mut self, codec: UnsupportedCodec) {
        if self.refused != Some(codec) {
            tracing::warn!(track = %self.name, %codec, "unsupported codec; track refused");
            self.refused = Some(codec);
        }
        self.live = None;
    }
}

/// Extends the publisher's 32-bit millisecond clock, which wraps after
/// 49.7 days, to 64 bits. Audio and video share it.
#[derive(Default)]
struct Clock {
    last: Option<(u32, i64)>,
}

impl Clock {
    fn extend(&mut self, timestamp: u32) -> i64 {
        let extended = match self.last {
            // The signed distance keeps small backward steps (audio and video
            // interleave slightly out of order) and counts wraps forward.
            Some((raw, extended)) => {
                extended.saturating_add(i64::from(timestamp.wrapping_sub(raw) as i32))
            }
            None => i64::from(timestamp),
        };
        self.last = Some((timestamp, extended));
        extended
    }
}

#[cfg(test)]
mod tests {
    use buildstream_mesh::{Codec, WriteError};

    use super::*;
    use crate::flv::tests::hex;

    /// Guards against a publisher pushing the extended clock (and the
    /// microsecond timestamps made from it) past i64 with huge forward steps.
    #[test]
    fn the_clock_saturates_instead_of_overflowing() {
        let mut clock = Clock {
            last: Some((0, i64::MAX - 10)),
        };
        assert_eq!(clock.extend(0x7fff_ffff), i64::MAX);
        assert_eq!(i64::MAX.saturating_mul(1000), i64::MAX);
    }

    const SPS_640X360: &str = "6764001eacd940a02ff970110000030001000003003c0f162d96";
    const SPS_1280X720: &str = "674d401feca02802dd8088000003000800000301e078c18cb0";

    fn grant() -> SourceGrant {
        SourceGrant {
            studio: "s1".to_owned(),
            source: "cam".to_owned(),
        }
    }

    fn name(track: &str) -> TrackName {
        TrackName::new("s1", "cam", track).unwrap()
    }

    fn video(timestamp_ms: u32, data: Vec<u8>) -> Media {
        Media {
            kind: MediaKind::Video,
            timestamp_ms,
            data: Bytes::from(data),
        }
    }

    fn audio(timestamp_ms: u32, data: &[u8]) -> Media {
        Media {
            kind: MediaKind::Audio,
            timestamp_ms,
            data: Bytes::copy_from_slice(data),
        }
    }

    fn sequence_header(sps: &str) -> Vec<u8> {
        let sps = hex(sps);
        let mut body = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        body.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        body.extend_from_slice(&sps);
        body.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        body
    }

    fn avc_frame(keyframe: bool, cts: i32, marker: u8) -> Vec<u8> {
        let cts = cts.to_be_bytes();
        let kind = if keyframe { 0x17 } else { 0x27 };
        vec![kind, 1, cts[1], cts[2], cts[3], 0, 0, 0, 2, 0x65, marker]
    }

    #[tokio::test]
    async fn tracks_appear_with_their_sequence_headers() {
        let tracks = Tracks::new();
        let mut source = SourcePublisher::new(tracks.clone(), &grant()).unwrap();

        source.push(video(0, avc_frame(true, 0, 1))).unwrap();
        assert!(
            tracks.names().is_empty(),
            "a frame before its header publishes nothing"
        );

        source.push(video(0, sequence_header(SPS_640X360))).unwrap();
        assert_eq!(tracks.names(), [name("video")]);
        source.push(video(40, avc_frame(true, 80, 2))).unwrap();
        source.push(video(73, avc_frame(false, -33, 3))).unwrap();

        let mut consumer = tracks.subscribe(&name("video")).unwrap();
        let first = consumer.next().await.unwrap();
        assert_eq!((first.config.width, first.config.height), (640, 360));
        assert!(first.keyframe);
        assert_eq!(
            (first.timestamp_us, first.composition_offset_us),
            (40_000, 80_000)
        );
        assert_eq!(&first.payload[..], &[0, 0, 0, 2, 0x65, 2]);
        let second = consumer.next().await.unwrap();
        assert_eq!(
            (second.timestamp_us, second.composition_offset_us),
            (73_000, -33_000)
        );
        assert!(!second.keyframe);

        source.push(audio(20, &[0xaf, 1, 0x21])).unwrap();
        assert_eq!(
            tracks.names(),
            [name("video")],
            "audio before its header is dropped"
        );
        source.push(audio(21, &[0xaf, 0, 0x12, 0x10])).unwrap();
        source.push(audio(43, &[0xaf, 1, 0x21, 0x22])).unwrap();
        let mut audio_consumer = tracks.subscribe(&name("audio")).unwrap();
        let frame = audio_consumer.next().await.unwrap();
        assert_eq!(frame.config.codec, Codec::Aac);
        assert_eq!(
            (frame.config.sample_rate, frame.config.channels),
            (44100, 2)
        );
        assert!(frame.keyframe);
        assert_eq!(&frame.payload[..], &[0x21, 0x22]);
    }

    #[tokio::test]
    async fn new_sequence_header_becomes_a_new_config() {
        let tracks = Tracks::new();
        let mut source = SourcePublisher::new(tracks.clone(), &grant()).unwrap();
        source.push(video(0, sequence_header(SPS_640X360))).unwrap();
        source.push(video(0, avc_frame(true, 0, 1))).unwrap();
        let mut consumer = tracks.subscribe(&name("video")).unwrap();
        let first = consumer.next().await.unwrap();
        // Repeated identical header: same config.
        source
            .push(video(33, sequence_header(SPS_640X360)))
            .unwrap();
        source.push(video(33, avc_frame(false, 0, 2))).unwrap();
        source
            .push(video(66, sequence_header(SPS_1280X720)))
            .unwrap();
        source.push(video(66, avc_frame(true, 0, 3))).unwrap();

        let second = consumer.next().await.unwrap();
        let third = consumer.next().await.unwrap();
        assert!(Arc::ptr_eq(&first.config, &second.config));
        assert!(!Arc::ptr_eq(&second.config, &third.config));
        assert_eq!((third.config.width, third.config.height), (1280, 720));
    }

    #[tokio::test]
    async fn unsupported_codec_refuses_only_its_track() {
        let tracks = Tracks::new();
        let mut source = SourcePublisher::new(tracks.clone(), &grant()).unwrap();
        source.push(audio(0, &[0x2f, 0xff, 0xfb, 0x90])).unwrap(); // mp3
        source.push(video(0, sequence_header(SPS_640X360))).unwrap();
        source.push(video(0, avc_frame(true, 0, 1))).unwrap();
        assert_eq!(tracks.names(), [name("video")]);

        // An AAC track switching to an unsupported codec ends.
        source.push(audio(1, &[0xaf, 0, 0x12, 0x10])).unwrap();
        assert_eq!(tracks.names(), [name("audio"), name("video")]);
        source.push(audio(2, &[0xb6, 1, 2])).unwrap(); // speex
        assert_eq!(tracks.names(), [name("video")]);
    }

    #[tokio::test]
    async fn superseded_track_stops_the_publisher() {
        let tracks = Tracks::new();
        let mut source = SourcePublisher::new(tracks.clone(), &grant()).unwrap();
        source.push(video(0, sequence_header(SPS_640X360))).unwrap();
        source.push(video(0, avc_frame(true, 0, 1))).unwrap();
        let newer = tracks.publish(name("video"));
        assert!(matches!(
            source.push(video(33, avc_frame(false, 0, 2))),
            Err(SourceError::Superseded(_))
        ));
        assert_eq!(newer.write(any_frame()), Ok::<(), WriteError>(()));
    }

    fn any_frame() -> Frame {
        Frame {
            timestamp_us: 0,
            composition_offset_us: 0,
            keyframe: true,
            payload: Bytes::from_static(&[1]),
            config: Arc::new(TrackConfig {
                codec: Codec::H264,
                description: Bytes::new(),
                width: 0,
                height: 0,
                sample_rate: 0,
                channels: 0,
            }),
        }
    }

    #[test]
    fn invalid_grant_is_refused() {
        let bad = SourceGrant {
            studio: "a/b".to_owned(),
            source: "cam".to_owned(),
        };
        assert!(SourcePublisher::new(Tracks::new(), &bad).is_err());
    }

    #[test]
    fn clock_extends_across_wraps_and_keeps_small_steps_back() {
        let mut clock = Clock::default();
        assert_eq!(clock.extend(u32::MAX - 10), i64::from(u32::MAX) - 10);
        assert_eq!(clock.extend(5), i64::from(u32::MAX) + 6);
        assert_eq!(clock.extend(2), i64::from(u32::MAX) + 3);
        assert_eq!(clock.extend(1000), i64::from(u32::MAX) + 1001);
    }
}
