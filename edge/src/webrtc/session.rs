//! One peer connection, driven on its own task.
//!
//! A session either publishes (the client sends a camera, microphone or
//! screen, which become mesh tracks) or plays (the edge sends mesh tracks to
//! the client). Either way the client's media never gets decoded: frames are
//! depacketized, passed on, and packetized again for each receiver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildstream_mesh::{
    Codec, Frame, KeyframeRequests, TrackConfig, TrackConsumer, TrackName, TrackProducer, Tracks,
};
use bytes::Bytes;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Frequency, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frames::{self, H264Framer};
use super::Registry;

/// A session that has not connected by then is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a player looks for a track that is not live yet.
const RESUBSCRIBE_EVERY: Duration = Duration::from_millis(250);
/// The least time between two keyframe requests sent upstream.
const KEYFRAME_REQUEST_GAP: Duration = Duration::from_millis(300);
/// How often a publisher is asked for a keyframe regardless. Browsers send
/// one only when asked; the mesh and the origin, like any decoder joining
/// late or losing a frame, need one regularly, as RTMP encoders give them
/// every two seconds.
const KEYFRAME_EVERY: Duration = Duration::from_secs(2);

/// What arrives for a session from outside its task.
pub(crate) enum Inbound {
    Datagram { from: SocketAddr, data: Vec<u8> },
    Candidate(Candidate),
    Close,
}

/// What the session does with media.
pub(crate) enum Role {
    /// The client's audio and video become these tracks.
    Publish { video: TrackName, audio: TrackName },
    /// These tracks go to the client.
    Play {
        video: Option<TrackName>,
        audio: Option<TrackName>,
    },
}

pub(crate) struct Session {
    pub id: String,
    pub rtc: Rtc,
    pub role: Role,
    pub socket: Arc<UdpSocket>,
    pub local: SocketAddr,
    pub tracks: Tracks,
    pub inbox: mpsc::Receiver<Inbound>,
    pub registry: Arc<Registry>,
    pub cancel: CancellationToken,
}

/// Why a session ended, for the log.
#[derive(Debug)]
enum End {
    Closed,
    Disconnected,
    NeverConnected,
    Superseded,
    Failed,
    Shutdown,
}

impl Session {
    pub(crate) async fn run(self) {
        let Session {
            id,
            rtc,
            role,
            socket,
            local,
            tracks,
            mut inbox,
            registry,
            cancel,
        } = self;
        let mut driver = Driver {
            id: id.clone(),
            registry: registry.clone(),
            sends_to: None,
            rtc,
            socket,
            connected: false,
            video_mid: None,
            audio_mid: None,
            publish: match &role {
                Role::Publish { video, audio } => Some(Publishing::new(video, audio)),
                Role::Play { .. } => None,
            },
            play: match role {
                Role::Play { video, audio } => Some(Playing::new(video, audio)),
                Role::Publish { .. } => None,
            },
            tracks,
            ended: None,
        };
        let started = tokio::time::Instant::now();
        let is_publisher = driver.publish.is_some();
        let mut keyframe_clock = tokio::time::interval(KEYFRAME_EVERY);
        keyframe_clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A clock of its own, not a sleep made afresh on every turn of the
        // loop: frames of one track arriving every 20 ms would otherwise
        // keep the other track from ever being looked for again.
        let mut resubscribe_clock = tokio::time::interval(RESUBSCRIBE_EVERY);
        resubscribe_clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let timeout = driver.drain().await;
            if let Some(end) = driver.ended.take() {
                break end;
            }
            if !driver.rtc.is_alive() {
                break End::Disconnected;
            }
            if !driver.connected && started.elapsed() > CONNECT_TIMEOUT {
                break End::NeverConnected;
            }
            let deadline = tokio::time::Instant::from_std(timeout)
                .min(tokio::time::Instant::now() + Duration::from_secs(1));
            let play = driver.play.as_mut();
            let (video_next, audio_next, has_play) = match play {
                Some(play) => (
                    play.video.consumer.as_mut(),
                    play.audio.consumer.as_mut(),
                    true,
                ),
                None => (None, None, false),
            };
            let keyframe_wanted = driver
                .publish
                .as_mut()
                .and_then(|p| p.video.keyframe_requests.as_mut());
            tokio::select! {
                _ = cancel.cancelled() => break End::Shutdown,
                message = inbox.recv() => match message {
                    None | Some(Inbound::Close) => break End::Closed,
                    Some(Inbound::Datagram { from, data }) => {
                        let Ok(contents) = data.as_slice().try_into() else { continue };
                        let input = Input::Receive(Instant::now(), Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: local,
                            contents,
                        });
                        driver.input(input);
                    }
                    Some(Inbound::Candidate(candidate)) => driver.rtc.add_remote_candidate(candidate),
                },
                _ = tokio::time::sleep_until(deadline) => driver.input(Input::Timeout(Instant::now())),
                frame = next_frame(video_next) => driver.frame_out(MediaKind::Video, frame),
                frame = next_frame(audio_next) => driver.frame_out(MediaKind::Audio, frame),
                _ = resubscribe_clock.tick(), if has_play => driver.resubscribe(),
                _ = keyframe_requested(keyframe_wanted) => driver.request_keyframe_upstream(),
                _ = keyframe_clock.tick(), if is_publisher && driver.connected => driver.request_keyframe_upstream(),
            }
        };
        registry.remove(&id);
        match end {
            End::Closed | End::Shutdown => {
                tracing::debug!(session = %id, reason = ?end, "webrtc session ended")
            }
            _ => tracing::info!(session = %id, reason = ?end, "webrtc session ended"),
        }
    }
}

async fn next_frame(consumer: Option<&mut TrackConsumer>) -> Option<Frame> {
    match consumer {
        Some(consumer) => consumer.next().await,
        None => std::future::pending().await,
    }
}

async fn keyframe_requested(requests: Option<&mut KeyframeRequests>) {
    match requests {
        Some(requests) => requests.next().await,
        None => std::future::pending().await,
    }
}

struct Driver {
    id: String,
    registry: Arc<Registry>,
    /// Where the session last sent to.
    sends_to: Option<SocketAddr>,
    rtc: Rtc,
    socket: Arc<UdpSocket>,
    connected: bool,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    publish: Option<Publishing>,
    play: Option<Playing>,
    tracks: Tracks,
    ended: Option<End>,
}

impl Driver {
    fn input(&mut self, input: Input<'_>) {
        if let Err(err) = self.rtc.handle_input(input) {
            tracing::debug!(error = %err, "webrtc input refused");
            self.rtc.disconnect();
        }
    }

    /// Polls the engine until it only has a timeout to give; sends what it
    /// transmits and handles its events.
    async fn drain(&mut self) -> Instant {
        loop {
            let output = match self.rtc.poll_output() {
                Ok(output) => output,
                Err(err) => {
                    tracing::warn!(error = %err, "webrtc session failed");
                    self.ended.get_or_insert(End::Failed);
                    self.rtc.disconnect();
                    return Instant::now();
                }
            };
            match output {
                Output::Timeout(at) => return at,
                Output::Transmit(transmit) => {
                    if self.sends_to != Some(transmit.destination) {
                        self.sends_to = Some(transmit.destination);
                        self.registry.claim(&self.id, transmit.destination);
                    }

                    // UDP: a full buffer or an unreachable peer loses the
                    // datagram, which RTP and ICE are built to survive.
                    let _ = self
                        .socket
                        .send_to(&transmit.contents, transmit.destination)
                        .await;
                }
                Output::Event(event) => self.event(event),
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                tracing::debug!("webrtc session connected");
                if let Some(play) = &self.play {
                    // Whatever was sent before DTLS came up was lost.
                    if let Some(consumer) = &play.video.consumer {
                        consumer.request_keyframe();
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.ended.get_or_insert(End::Disconnected);
            }
            Event::MediaAdded(added) => match added.kind {
                MediaKind::Video => {
                    self.video_mid.get_or_insert(added.mid);
                }
                MediaKind::Audio => {
                    self.audio_mid.get_or_insert(added.mid);
                }
            },
            Event::MediaData(data) => self.media_in(data),
            Event::KeyframeRequest(_) => {
                if let Some(play) = &mut self.play {
                    play.video.ask_upstream_for_keyframe();
                }
            }
            _ => {}
        }
    }

    fn media_in(&mut self, data: MediaData) {
        let Some(publish) = &mut self.publish else {
            return;
        };
        let result = if Some(data.mid) == self.video_mid {
            publish.video_in(&self.tracks, &data)
        } else if Some(data.mid) == self.audio_mid {
            publish.audio_in(&self.tracks, &data).map(|()| None)
        } else {
            Ok(None)
        };
        match result {
            Ok(Some(KeyframeNeed)) => self.request_keyframe_upstream(),
            Ok(None) => {}
            Err(Superseded) => {
                self.ended.get_or_insert(End::Superseded);
            }
        }
    }

    /// Asks the publishing client for a keyframe, at most every few hundred
    /// milliseconds.
    fn request_keyframe_upstream(&mut self) {
        let (Some(mid), Some(publish)) = (self.video_mid, &mut self.publish) else {
            return;
        };
        let now = Instant::now();
        if publish
            .last_keyframe_request
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_REQUEST_GAP)
        {
            return;
        }
        publish.last_keyframe_request = Some(now);
        if let Some(mut writer) = self.rtc.writer(mid) {
            if let Err(err) = writer.request_keyframe(None, KeyframeRequestKind::Pli) {
                tracing::debug!(error = %err, "keyframe request not sent");
            }
        }
    }

    fn resubscribe(&mut self) {
        if let Some(play) = &mut self.play {
            // A picture can start only from a keyframe; don't wait for the
            // publisher's next regular one.
            if play.video.subscribe(&self.tracks) && self.connected {
                if let Some(consumer) = &play.video.consumer {
                    consumer.request_keyframe();
                }
            }
            play.audio.subscribe(&self.tracks);
        }
    }

    fn frame_out(&mut self, kind: MediaKind, frame: Option<Frame>) {
        let Some(play) = &mut self.play else {
            return;
        };
        let (output, mid) = match kind {
            MediaKind::Video => (&mut play.video, self.video_mid),
            MediaKind::Audio => (&mut play.audio, self.audio_mid),
        };
        let Some(frame) = frame else {
            // The track ended (its publisher left or reconnected); look for
            // its successor.
            output.consumer = None;
            return;
        };
        let (Some(mid), true) = (mid, self.connected) else {
            return;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let wanted = match frame.config.codec {
            Codec::H264 => RtcCodec::H264,
            Codec::Vp8 => RtcCodec::Vp8,
            Codec::Opus => RtcCodec::Opus,
            Codec::Aac => {
                output.refuse(&frame.config, "AAC cannot be sent over WebRTC");
                return;
            }
        };
        let pt = writer
            .payload_params()
            .filter(|p| p.spec().codec == wanted)
            .max_by_key(|p| p.spec().format.packetization_mode == Some(1))
            .map(|p| p.pt());
        let Some(pt) = pt else {
            output.refuse(&frame.config, "the receiver did not negotiate this codec");
            return;
        };
        let pts_us = output.outgoing_us(frame.presentation_us(), kind, Instant::now());
        let (time, data): (MediaTime, Vec<u8>) = match frame.config.codec {
            Codec::H264 => (
                MediaTime::new(pts_us * 9 / 100, Frequency::NINETY_KHZ),
                frames::avc_to_annex_b(&frame.payload, &frame.config, frame.keyframe),
            ),
            Codec::Vp8 => (
                MediaTime::new(pts_us * 9 / 100, Frequency::NINETY_KHZ),
                frame.payload.to_vec(),
            ),
            _ => (
                MediaTime::new(pts_us * 48 / 1000, Frequency::FORTY_EIGHT_KHZ),
                frame.payload.to_vec(),
            ),
        };
        if let Err(err) = writer.write(pt, Instant::now(), time, data) {
            tracing::debug!(error = %err, "frame not sent");
        }
    }
}

struct KeyframeNeed;
struct Superseded;

/// The publishing half: client frames in, mesh frames out.
struct Publishing {
    video: PublishedTrack,
    audio: PublishedTrack,
    h264: H264Framer,
    last_keyframe_request: Option<Instant>,
    /// Wall-clock origin shared by both tracks, so they stay in sync.
    epoch: Instant,
    /// Video lost a frame since the last keyframe.
    video_broken: bool,
}

struct PublishedTrack {
    name: TrackName,
    producer: Option<TrackProducer>,
    keyframe_requests: Option<KeyframeRequests>,
    config: Option<Arc<TrackConfig>>,
    clock: RtpClock,
    /// The picture size last refused as too large, so it is logged once.
    refused_size: Option<(u32, u32)>,
}

impl Publishing {
    fn new(video: &TrackName, audio: &TrackName) -> Self {
        Self {
            video: PublishedTrack::new(video.clone()),
            audio: PublishedTrack::new(audio.clone()),
            h264: H264Framer::default(),
            last_keyframe_request: None,
            epoch: Instant::now(),
            video_broken: false,
        }
    }

    fn video_in(
        &mut self,
        tracks: &Tracks,
        data: &MediaData,
    ) -> Result<Option<KeyframeNeed>, Superseded> {
        let timestamp_us = self.video.clock.timestamp_us(data, self.epoch);
        let (payload, keyframe, config) = match data.params.spec().codec {
            RtcCodec::H264 => match self.h264.push(&data.data) {
                Some(frame) => (frame.payload, frame.keyframe, frame.config),
                None => return Ok(Some(KeyframeNeed)),
            },
            RtcCodec::Vp8 => {
                let size = frames::vp8_keyframe_size(&data.data);
                if let Some((width, height)) = size {
                    let fresh = frames::vp8_config(width, height);
                    if self.video.config.as_deref() != Some(&fresh) {
                        self.video.config = Some(Arc::new(fresh));
                    }
                }
                let Some(config) = self.video.config.clone() else {
                    return Ok(Some(KeyframeNeed));
                };
                (Bytes::copy_from_slice(&data.data), size.is_some(), config)
            }
            _ => return Ok(None),
        };
        // The same limit as for RTMP sources: a decoder's memory grows with
        // the picture, and a sender claiming 16K would cost the origin
        // gigabytes.
        if crate::source::is_oversized(config.width, config.height) {
            if self.video.refused_size != Some((config.width, config.height)) {
                tracing::warn!(track = %self.video.name, width = config.width, height = config.height,
                    max_side = crate::source::MAX_SIDE, max_pixels = crate::source::MAX_PIXELS,
                    "video larger than 4K refused");
                self.video.refused_size = Some((config.width, config.height));
            }
            // Dropping the producer ends the track; audio goes on.
            self.video.producer = None;
            self.video.keyframe_requests = None;
            return Ok(None);
        }
        self.video.refused_size = None;
        // A frame after a gap refers to what never arrived: decoders
        // downstream (the origin, other participants, whose packetizer
        // numbers pictures anew and so cannot see the gap) would draw
        // garbage until the next keyframe. Hold video back from the gap to
        // the keyframe asked for; the picture freezes instead.
        if !data.contiguous {
            self.video_broken = true;
        }
        if self.video_broken && !keyframe {
            return Ok(Some(KeyframeNeed));
        }
        if keyframe {
            tracing::trace!(track = %self.video.name, "keyframe");
        }
        self.video_broken = false;
        self.video
            .write(tracks, timestamp_us, keyframe, payload, config)?;
        Ok(None)
    }

    fn audio_in(&mut self, tracks: &Tracks, data: &MediaData) -> Result<(), Superseded> {
        if data.params.spec().codec != RtcCodec::Opus {
            return Ok(());
        }
        let timestamp_us = self.audio.clock.timestamp_us(data, self.epoch);
        let config = self
            .audio
            .config
            .get_or_insert_with(|| Arc::new(frames::opus_config()))
            .clone();
        self.audio.write(
            tracks,
            timestamp_us,
            true,
            Bytes::copy_from_slice(&data.data),
            config,
        )
    }
}

impl PublishedTrack {
    fn new(name: TrackName) -> Self {
        Self {
            name,
            producer: None,
            keyframe_requests: None,
            config: None,
            clock: RtpClock::default(),
            refused_size: None,
        }
    }

    fn write(
        &mut self,
        tracks: &Tracks,
        timestamp_us: i64,
        keyframe: bool,
        payload: Bytes,
        config: Arc<TrackConfig>,
    ) -> Result<(), Superseded> {
        if payload.is_empty() {
            return Ok(());
        }
        let producer = self.producer.get_or_insert_with(|| {
            tracing::info!(track = %self.name, codec = config.codec.as_str(),
                width = config.width, height = config.height, "webrtc track live");
            tracks.publish(self.name.clone())
        });
        if self.keyframe_requests.is_none() && config.codec.is_video() {
            self.keyframe_requests = Some(producer.keyframe_requests());
        }
        producer
            .write(Frame {
                timestamp_us,
                composition_offset_us: 0,
                keyframe,
                payload,
                config,
            })
            .map_err(|_| Superseded)
    }
}

/// Maps one RTP stream's media time onto the session's microsecond clock.
///
/// The first frame is placed at its arrival; later frames follow their RTP
/// timestamps, which are smooth where arrival is jittery. Audio and video
/// each start at their own arrival, so they line up to within the network's
/// jitter at the start. A jump of more than two seconds either way (a sender
/// that restarted its clock) re-anchors at the arrival.
#[derive(Default)]
struct RtpClock {
    anchor: Option<(u64, i64)>,
}

const REANCHOR_US: i64 = 2_000_000;

impl RtpClock {
    fn timestamp_us(&mut self, data: &MediaData, epoch: Instant) -> i64 {
        let arrival_us = data
            .network_time
            .saturating_duration_since(epoch)
            .as_micros() as i64;
        let media_us = data.time.as_micros();
        if let Some((anchor_media, anchor_us)) = self.anchor {
            let at = anchor_us + (media_us as i64 - anchor_media as i64);
            if (at - arrival_us).abs() <= REANCHOR_US {
                return at;
            }
        }
        self.anchor = Some((media_us, arrival_us));
        arrival_us
    }
}

/// The playing half: mesh frames in, client frames out.
struct Playing {
    video: PlayedTrack,
    audio: PlayedTrack,
}

struct PlayedTrack {
    name: Option<TrackName>,
    consumer: Option<TrackConsumer>,
    last_keyframe_request: Option<Instant>,
    refused: Option<Arc<TrackConfig>>,
    /// Added to the track's timestamps on the way out, so that they keep
    /// going forward when the track is replaced by a new publisher whose
    /// clock starts again (a reload, a reconnect): a receiver that saw time
    /// jump back would hold or drop the new frames.
    offset_us: i64,
    /// The last timestamp sent, microseconds, and when.
    last_out_us: Option<i64>,
    last_out_at: Option<Instant>,
    /// A new track was subscribed; its first frame sets `offset_us`.
    rebase: bool,
}

impl Playing {
    fn new(video: Option<TrackName>, audio: Option<TrackName>) -> Self {
        Self {
            video: PlayedTrack::new(video),
            audio: PlayedTrack::new(audio),
        }
    }
}

impl PlayedTrack {
    fn new(name: Option<TrackName>) -> Self {
        Self {
            name,
            consumer: None,
            last_keyframe_request: None,
            refused: None,
            offset_us: 0,
            last_out_us: None,
            last_out_at: None,
            rebase: false,
        }
    }

    /// Looks for the track if none is followed; true when one was found.
    fn subscribe(&mut self, tracks: &Tracks) -> bool {
        if self.consumer.is_some() {
            return false;
        }
        if let Some(name) = &self.name {
            self.consumer = tracks.subscribe(name);
        }
        self.rebase |= self.consumer.is_some();
        self.consumer.is_some()
    }

    /// The timestamp to send for a frame presented at `pts_us` by the
    /// current track, sent at `now`: the first frame of a replacing track
    /// follows the last one sent by the time that has passed since (at
    /// least one frame's), so that media time keeps pace with the clock as
    /// the receiver's jitter buffer expects.
    fn outgoing_us(&mut self, pts_us: i64, kind: MediaKind, now: Instant) -> u64 {
        if std::mem::take(&mut self.rebase) {
            let step = match kind {
                MediaKind::Video => 33_333,
                MediaKind::Audio => 20_000,
            };
            self.offset_us = match (self.last_out_us, self.last_out_at) {
                (Some(last), Some(at)) => {
                    let gap = i64::try_from(now.duration_since(at).as_micros()).unwrap_or(i64::MAX);
                    last.saturating_add(gap.max(step)) - pts_us
                }
                _ => 0,
            };
        }
        let out = pts_us.saturating_add(self.offset_us).max(0);
        self.last_out_us = Some(out);
        self.last_out_at = Some(now);
        out as u64
    }

    fn ask_upstream_for_keyframe(&mut self) {
        let now = Instant::now();
        if self
            .last_keyframe_request
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_REQUEST_GAP)
        {
            return;
        }
        self.last_keyframe_request = Some(now);
        if let Some(consumer) = &self.consumer {
            consumer.request_keyframe();
        }
    }

    fn refuse(&mut self, config: &Arc<TrackConfig>, why: &str) {
        if !self
            .refused
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, config))
        {
            tracing::warn!(
                codec = config.codec.as_str(),
                reason = why,
                "track not played"
            );
            self.refused = Some(config.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_going_forward_when_a_new_publisher_takes_over() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut track = PlayedTrack::new(None);
        track.rebase = true;
        // The first publisher's clock is kept as it is.
        assert_eq!(
            track.outgoing_us(30_000_000, MediaKind::Video, at(0)),
            30_000_000
        );
        assert_eq!(
            track.outgoing_us(30_033_333, MediaKind::Video, at(33)),
            30_033_333
        );
        // Its successor, 2.5 s later, starts again from zero; the receiver
        // sees media time advance by the 2.5 s that passed, then the new
        // track's own pace.
        track.rebase = true;
        assert_eq!(track.outgoing_us(0, MediaKind::Video, at(2533)), 32_533_333);
        assert_eq!(
            track.outgoing_us(40_000, MediaKind::Video, at(2573)),
            32_573_333
        );
        // One replacing it at once still moves on by a frame; a publisher
        // whose clock is ahead is brought back to follow on too.
        track.rebase = true;
        assert_eq!(
            track.outgoing_us(90_000_000, MediaKind::Video, at(2573)),
            32_606_666
        );
    }
}
