//! The encoded program and its fan-out to destinations.
//!
//! The encoder's output is turned into FLV tag bodies once; every
//! destination gets a cheap clone (reference-counted bytes) through its own
//! bounded queue. The fan-out never waits: a destination whose queue is full
//! loses packets until the next keyframe, and the loss is counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Packets a destination may have queued: about three seconds of 30 fps
/// video plus its audio. Enough to ride out a TCP hiccup, small enough that
/// a dead link does not hold much memory.
pub const QUEUE_PACKETS: usize = 256;

/// Whether a packet is audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    /// H.264 video.
    Video,
    /// AAC audio.
    Audio,
}

/// One encoded frame of the program, ready to be an RTMP message.
#[derive(Debug, Clone)]
pub struct ProgramPacket {
    /// Audio or video.
    pub media: Media,
    /// Decode time in pipeline running time, microseconds.
    pub dts_us: i64,
    /// Whether a decoder can start here (always true for audio).
    pub keyframe: bool,
    /// The FLV tag body (codec header and payload).
    pub body: Bytes,
    /// The FLV tag body of the sequence header this frame needs. A new
    /// allocation means a new configuration, so receivers compare pointers.
    pub sequence_header: Arc<Bytes>,
}

impl ProgramPacket {
    /// Whether a destination that lost packets can resume here.
    pub fn is_resume_point(&self) -> bool {
        self.media == Media::Video && self.keyframe
    }
}

/// Hands every program packet to each attached destination queue.
#[derive(Default, Clone)]
pub struct Fanout {
    outputs: Arc<Mutex<HashMap<String, Output>>>,
    progress: Arc<Progress>,
}

/// How far the encoder has got: what a stalled pipeline stops moving.
#[derive(Default)]
struct Progress {
    video_frames: AtomicU64,
    last_video: Mutex<Option<Instant>>,
}

/// What the program's output has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputProgress {
    /// Encoded video frames handed to the destinations.
    pub video_frames: u64,
    /// Time since the last one, if there was one.
    pub since_last_video: Option<Duration>,
}

struct Output {
    queue: mpsc::Sender<ProgramPacket>,
    flow: Flow,
    dropped: Arc<AtomicU64>,
}

/// Where a destination's queue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Newly attached: waiting for the first keyframe, nothing is lost yet.
    Starting,
    /// Packets go through.
    Flowing,
    /// After an overflow: packets are dropped, and counted, until a keyframe.
    Skipping,
}

/// The receiving end of one destination's queue.
pub struct Subscription {
    /// Packets in order; ends when the destination is detached.
    pub packets: mpsc::Receiver<ProgramPacket>,
    /// Packets dropped for this destination because its queue was full.
    pub dropped: Arc<AtomicU64>,
}

impl Fanout {
    /// An empty fan-out.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches a destination under `id`, replacing any previous one. The
    /// first packet it receives is a video keyframe.
    pub fn attach(&self, id: &str, capacity: usize) -> Subscription {
        let (queue, packets) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let output = Output {
            queue,
            flow: Flow::Starting,
            dropped: dropped.clone(),
        };
        lock(&self.outputs).insert(id.to_owned(), output);
        Subscription { packets, dropped }
    }

    /// Detaches a destination; its receiver sees the end of the queue.
    pub fn detach(&self, id: &str) {
        lock(&self.outputs).remove(id);
    }

    /// Number of attached destinations.
    pub fn len(&self) -> usize {
        lock(&self.outputs).len()
    }

    /// Whether no destination is attached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the encoder has delivered so far.
    pub fn progress(&self) -> OutputProgress {
        OutputProgress {
            video_frames: self.progress.video_frames.load(Ordering::Relaxed),
            since_last_video: lock(&self.progress.last_video).map(|at| at.elapsed()),
        }
    }

    /// Offers a packet to every destination without waiting on any.
    pub fn push(&self, packet: &ProgramPacket) {
        if packet.media == Media::Video {
            self.progress.video_frames.fetch_add(1, Ordering::Relaxed);
            *lock(&self.progress.last_video) = Some(Instant::now());
        }
        let mut outputs = lock(&self.outputs);
        outputs.retain(|id, output| {
            if output.flow != Flow::Flowing && !packet.is_resume_point() {
                if output.flow == Flow::Skipping {
                    output.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return true;
            }
            match output.queue.try_send(packet.clone()) {
                Ok(()) => {
                    output.flow = Flow::Flowing;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if output.flow == Flow::Flowing {
                        tracing::debug!(destination = %id, "queue full, skipping to next keyframe");
                    }
                    output.flow = Flow::Skipping;
                    output.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                // The sender task is gone; nobody will read this queue again.
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked mid-iteration.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(media: Media, keyframe: bool, dts_us: i64) -> ProgramPacket {
        ProgramPacket {
            media,
            dts_us,
            keyframe,
            body: Bytes::new(),
            sequence_header: Arc::new(Bytes::new()),
        }
    }

    #[test]
    fn a_new_destination_starts_at_a_keyframe() {
        let fanout = Fanout::new();
        let mut sub = fanout.attach("a", 8);
        fanout.push(&packet(Media::Audio, true, 0));
        fanout.push(&packet(Media::Video, false, 1));
        fanout.push(&packet(Media::Video, true, 2));
        fanout.push(&packet(Media::Audio, true, 3));
        assert_eq!(sub.packets.try_recv().unwrap().dts_us, 2);
        assert_eq!(sub.packets.try_recv().unwrap().dts_us, 3);
        assert!(sub.packets.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_skips_to_the_next_keyframe_without_touching_others() {
        let fanout = Fanout::new();
        let mut slow = fanout.attach("slow", 2);
        let mut fast = fanout.attach("fast", 64);
        fanout.push(&packet(Media::Video, true, 0));
        for dts in 1..6 {
            fanout.push(&packet(Media::Video, false, dts));
        }
        fanout.push(&packet(Media::Video, true, 6));
        fanout.push(&packet(Media::Video, false, 7));

        // "fast" saw everything.
        let mut seen = Vec::new();
        while let Ok(p) = fast.packets.try_recv() {
            seen.push(p.dts_us);
        }
        assert_eq!(seen, (0..8).collect::<Vec<_>>());

        // "slow" kept 0 and 1 and lost everything after: 2 overflowed, 3..5
        // were skipped, 6 would have resumed it but the queue was still
        // full, and 7 was skipped again.
        assert_eq!(slow.packets.try_recv().unwrap().dts_us, 0);
        assert_eq!(slow.packets.try_recv().unwrap().dts_us, 1);
        assert!(slow.packets.try_recv().is_err());
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 6);

        // Drained, it resumes at the next keyframe.
        fanout.push(&packet(Media::Video, false, 8));
        fanout.push(&packet(Media::Video, true, 9));
        assert_eq!(slow.packets.try_recv().unwrap().dts_us, 9);
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn closed_queues_are_forgotten() {
        let fanout = Fanout::new();
        let sub = fanout.attach("gone", 4);
        drop(sub);
        fanout.push(&packet(Media::Video, true, 0));
        assert!(fanout.is_empty());
    }
}
