use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::{Frame, TrackName};

/// Frames kept per track at most, whatever the group size; a publisher that
/// never sends a keyframe cannot grow a track without bound.
const MAX_RETAINED_FRAMES: usize = 1024;

/// The in-process registry of live tracks on one node.
///
/// Ingest publishes into it; local consumers (the compositor in `dev`) and the
/// mesh server (for remote subscribers) read from it. Cloning shares the
/// registry.
#[derive(Clone, Default)]
pub struct Tracks {
    live: Arc<Mutex<HashMap<TrackName, Arc<Shared>>>>,
}

impl Tracks {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts publishing `name`. A publisher already on that name is
    /// superseded: its consumers see the track end and its writes fail, so a
    /// reconnecting encoder takes over at once.
    pub fn publish(&self, name: TrackName) -> TrackProducer {
        let shared = Arc::new(Shared::new());
        let previous = lock(&self.live).insert(name.clone(), shared.clone());
        if let Some(previous) = previous {
            tracing::debug!(track = %name, "track superseded");
            previous.close();
        }
        TrackProducer {
            name,
            shared,
            registry: self.clone(),
        }
    }

    /// Subscribes to `name` if it is live. The consumer starts at the first
    /// frame of the current group (a keyframe), then follows live.
    pub fn subscribe(&self, name: &TrackName) -> Option<TrackConsumer> {
        let shared = lock(&self.live).get(name).cloned()?;
        shared.keyframe_requests.send_modify(|n| *n += 1);
        Some(TrackConsumer {
            name: name.clone(),
            changed: shared.changed.subscribe(),
            shared,
            position: None,
        })
    }

    /// Names of every live track, sorted.
    pub fn names(&self) -> Vec<TrackName> {
        let mut names: Vec<_> = lock(&self.live).keys().cloned().collect();
        names.sort();
        names
    }

    fn remove_if_same(&self, name: &TrackName, shared: &Arc<Shared>) {
        let mut live = lock(&self.live);
        if live.get(name).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            live.remove(name);
        }
    }
}

/// Why a frame could not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    /// Another publisher took the track over.
    #[error("track was taken over by another publisher")]
    Superseded,
}

/// The publishing end of a track. Dropping it ends the track.
pub struct TrackProducer {
    name: TrackName,
    shared: Arc<Shared>,
    registry: Tracks,
}

impl TrackProducer {
    /// The track's name.
    pub fn name(&self) -> &TrackName {
        &self.name
    }

    /// Appends a frame; a keyframe starts a new group.
    pub fn write(&self, frame: Frame) -> Result<(), WriteError> {
        let mut state = lock(&self.shared.state);
        if state.closed {
            return Err(WriteError::Superseded);
        }
        state.push(frame);
        let next = state.next_seq;
        drop(state);
        self.shared.changed.send_replace(next);
        Ok(())
    }

    /// Resolves when a new consumer arrived since the last call, so that a
    /// publisher able to produce a keyframe on demand (WebRTC) can do so.
    pub async fn keyframe_requested(&self) {
        self.keyframe_requests().next().await;
    }

    /// A stream of keyframe requests: one per consumer that arrived, and
    /// one per [`TrackConsumer::request_keyframe`], from now on. A loop that
    /// waits on it between other work misses none (close requests merge).
    pub fn keyframe_requests(&self) -> KeyframeRequests {
        KeyframeRequests(self.shared.keyframe_requests.subscribe())
    }

    /// Resolves once no consumer is attached (at once if none is). The mesh
    /// uses it to drop a remote subscription nobody reads any more.
    pub(crate) async fn unobserved(&self) {
        // Every consumer holds one receiver of `changed`, and nothing else
        // does.
        self.shared.changed.closed().await;
    }

    /// Whether any consumer is attached.
    pub fn is_observed(&self) -> bool {
        self.shared.changed.receiver_count() > 0
    }
}

impl Drop for TrackProducer {
    fn drop(&mut self) {
        // Unlist before closing: a consumer that sees the end and subscribes
        // again at once must not be handed the dead track.
        self.registry.remove_if_same(&self.name, &self.shared);
        self.shared.close();
    }
}

/// Keyframe requests for one producer; see [`TrackProducer::keyframe_requests`].
pub struct KeyframeRequests(watch::Receiver<u64>);

impl KeyframeRequests {
    /// Resolves at the next request, or never once the track has ended.
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The receiving end of a track.
pub struct TrackConsumer {
    name: TrackName,
    shared: Arc<Shared>,
    changed: watch::Receiver<u64>,
    /// Sequence number of the next frame to return; `None` until positioned
    /// at a group start.
    position: Option<u64>,
}

impl TrackConsumer {
    /// The track's name.
    pub fn name(&self) -> &TrackName {
        &self.name
    }

    /// Asks the publisher for a keyframe (a receiver lost one, or a new
    /// viewer joined downstream). Publishers that cannot make one on demand
    /// ignore it.
    pub fn request_keyframe(&self) {
        self.shared.keyframe_requests.send_modify(|n| *n += 1);
    }

    /// The next frame, or `None` once the track has ended. A consumer that
    /// falls behind by more than the retained frames skips ahead to the
    /// newest group start rather than receive undecodable frames.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            {
                let state = lock(&self.shared.state);
                if let Some(frame) = state.frame_for(&mut self.position) {
                    return Some(frame);
                }
                if state.closed {
                    return None;
                }
                self.changed.mark_unchanged();
            }
            if self.changed.changed().await.is_err() {
                return None;
            }
        }
    }
}

struct Shared {
    state: Mutex<TrackState>,
    changed: watch::Sender<u64>,
    keyframe_requests: watch::Sender<u64>,
}

impl Shared {
    fn new() -> Self {
        Self {
            state: Mutex::new(TrackState::default()),
            changed: watch::Sender::new(0),
            keyframe_requests: watch::Sender::new(0),
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.send_modify(|_| {});
    }
}

#[derive(Default)]
struct TrackState {
    /// Retained frames; the first has sequence number `first_seq`.
    frames: VecDeque<Frame>,
    first_seq: u64,
    next_seq: u64,
    /// Where the newest group starts, once a keyframe arrived.
    group_start: Option<u64>,
    closed: bool,
}

impl TrackState {
    fn push(&mut self, frame: Frame) {
        if frame.keyframe {
            // Keep the previous group too: a consumer a few frames behind
            // finishes it instead of skipping ahead.
            if let Some(previous) = self.group_start {
                self.drop_before(previous);
            }
            self.group_start = Some(self.next_seq);
        }
        self.frames.push_back(frame);
        self.next_seq += 1;
        if self.frames.len() > MAX_RETAINED_FRAMES {
            self.drop_before(self.first_seq + 1);
        }
    }

    fn drop_before(&mut self, seq: u64) {
        while self.first_seq < seq && self.frames.pop_front().is_some() {
            self.first_seq += 1;
        }
        if self.group_start.is_some_and(|start| start < self.first_seq) {
            self.group_start = None;
        }
    }

    fn frame_for(&self, position: &mut Option<u64>) -> Option<Frame> {
        let seq = match *position {
            Some(seq) if seq >= self.first_seq => seq,
            _ => self.group_start?,
        };
        let frame = self.frames.get((seq - self.first_seq) as usize)?.clone();
        *position = Some(seq + 1);
        Some(frame)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Codec, TrackConfig};
    use bytes::Bytes;

    fn frame(ts: i64, keyframe: bool) -> Frame {
        Frame {
            timestamp_us: ts,
            composition_offset_us: 0,
            keyframe,
            payload: Bytes::from(ts.to_be_bytes().to_vec()),
            config: Arc::new(TrackConfig {
                codec: Codec::H264,
                description: Bytes::new(),
                width: 1280,
                height: 720,
                sample_rate: 0,
                channels: 0,
            }),
        }
    }

    fn name() -> TrackName {
        TrackName::new("s", "a", "video").unwrap()
    }

    #[tokio::test]
    async fn late_subscriber_starts_at_keyframe() {
        let tracks = Tracks::new();
        let producer = tracks.publish(name());
        for (ts, key) in [(0, true), (1, false), (2, true), (3, false)] {
            producer.write(frame(ts, key)).unwrap();
        }
        let mut consumer = tracks.subscribe(&name()).unwrap();
        assert_eq!(consumer.next().await.unwrap().timestamp_us, 2);
        assert_eq!(consumer.next().await.unwrap().timestamp_us, 3);
        producer.write(frame(4, false)).unwrap();
        assert_eq!(consumer.next().await.unwrap().timestamp_us, 4);
        drop(producer);
        assert!(consumer.next().await.is_none());
        assert!(tracks.subscribe(&name()).is_none());
    }

    #[tokio::test]
    async fn subscriber_waits_for_first_keyframe() {
        let tracks = Tracks::new();
        let producer = tracks.publish(name());
        producer.write(frame(0, false)).unwrap();
        let mut consumer = tracks.subscribe(&name()).unwrap();
        let reader = tokio::spawn(async move { consumer.next().await.map(|f| f.timestamp_us) });
        tokio::task::yield_now().await;
        producer.write(frame(1, true)).unwrap();
        assert_eq!(reader.await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn new_publisher_supersedes_old() {
        let tracks = Tracks::new();
        let stale = tracks.publish(name());
        stale.write(frame(0, true)).unwrap();
        let mut consumer = tracks.subscribe(&name()).unwrap();
        let fresh = tracks.publish(name());
        assert_eq!(stale.write(frame(1, false)), Err(WriteError::Superseded));
        assert_eq!(consumer.next().await.unwrap().timestamp_us, 0);
        assert!(consumer.next().await.is_none());
        drop(stale);
        fresh.write(frame(10, true)).unwrap();
        let mut consumer = tracks.subscribe(&name()).unwrap();
        assert_eq!(consumer.next().await.unwrap().timestamp_us, 10);
    }

    #[tokio::test]
    async fn slow_consumer_skips_to_newest_group() {
        let tracks = Tracks::new();
        let producer = tracks.publish(name());
        producer.write(frame(0, true)).unwrap();
        let mut consumer = tracks.subscribe(&name()).unwrap();
        for ts in 1..5 {
            producer.write(frame(ts * 10, true)).unwrap();
        }
        // Groups 0 and 10 are gone; the consumer resumes at the newest group.
        assert_eq!(consumer.next().await.unwrap().timestamp_us, 40);
    }

    #[tokio::test]
    async fn retention_is_bounded_without_keyframes() {
        let tracks = Tracks::new();
        let producer = tracks.publish(name());
        producer.write(frame(0, true)).unwrap();
        for ts in 1..(MAX_RETAINED_FRAMES as i64 * 2) {
            producer.write(frame(ts, false)).unwrap();
        }
        let state = lock(&producer.shared.state);
        assert!(state.frames.len() <= MAX_RETAINED_FRAMES);
    }
}
