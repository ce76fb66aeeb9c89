//! Mapping a source's timestamps onto the pipeline's running time.
//!
//! Every publisher stamps frames with its own clock, starting wherever it
//! likes and restarting when it reconnects. The compositor needs running
//! time: the first frame of a source is placed at "now", later frames keep
//! their spacing from it, and a jump (restart, long stall, clock switch)
//! re-anchors at "now" again. The anchor is shared by a source's audio and
//! video so that they stay in sync with each other.

/// A jump of the source clock larger than this, either way, is treated as a
/// restart rather than as real elapsed time.
const MAX_GAP_US: i64 = 1_000_000;
/// A frame mapped this far behind "now" would be dropped as late by the
/// mixers; re-anchor instead.
const MAX_LATE_US: i64 = 1_000_000;
/// A fresh subscription mapped this far ahead of "now" belongs to a clock
/// the anchor does not describe (a different publisher took over).
const MAX_EARLY_US: i64 = 5_000_000;
/// A running track mapped this far ahead of "now" has a clock that runs
/// fast; the mixers would hold its frames (and the thread delivering them)
/// until their time came, so it is pulled back to "now".
const MAX_AHEAD_US: i64 = 2_000_000;
/// Presentation may follow decoding by at most this much. Real reordering
/// delays are a few frames; a larger offset would park a decoded frame in
/// the mixer for as long.
const MAX_COMPOSITION_OFFSET_US: i32 = 1_000_000;

/// Where a source's clock meets running time; one per source, shared by its
/// tracks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SourceClock {
    anchor: Option<Anchor>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    source_us: i64,
    running_us: i64,
}

impl Anchor {
    fn map(self, source_us: i64) -> i64 {
        self.running_us + (source_us - self.source_us)
    }
}

/// One track's view of its source's clock, reset for every subscription.
#[derive(Debug, Default)]
pub(crate) struct TrackTimeline {
    last_source_us: Option<i64>,
    last_running_us: Option<i64>,
}

/// The running times of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapped {
    /// Decode time in running time, microseconds.
    pub dts_us: i64,
    /// Presentation time in running time, microseconds (never negative).
    pub pts_us: i64,
    /// Whether the track was re-anchored at this frame.
    pub discont: bool,
}

impl TrackTimeline {
    /// Maps a frame's decode timestamp and composition offset, given the
    /// running time `now_us` at which it arrived.
    pub fn map(
        &mut self,
        clock: &mut SourceClock,
        dts_us: i64,
        composition_offset_us: i32,
        now_us: i64,
    ) -> Mapped {
        let mut discont = false;
        let gap = self.last_source_us.map(|last| dts_us - last);
        let jumped = gap.is_some_and(|gap| !(-MAX_GAP_US..=MAX_GAP_US).contains(&gap));

        let anchor = match clock.anchor {
            Some(anchor) if !jumped => {
                let mapped = anchor.map(dts_us);
                let late = mapped < now_us - MAX_LATE_US;
                let early = self.last_running_us.is_none() && mapped > now_us + MAX_EARLY_US;
                let ahead = mapped > now_us + MAX_AHEAD_US;
                if ahead {
                    // Stepping back is the lesser evil here; the frame is
                    // marked as a discontinuity for the decoder.
                    self.last_running_us = None;
                }
                (!late && !early && !ahead).then_some(anchor)
            }
            _ => None,
        };
        let anchor = anchor.unwrap_or_else(|| {
            discont = true;
            // Never step back behind what this track already sent: decoders
            // want decode times that only grow.
            let running_us = self
                .last_running_us
                .map_or(now_us, |last| now_us.max(last + 1));
            let anchor = Anchor {
                source_us: dts_us,
                running_us,
            };
            clock.anchor = Some(anchor);
            anchor
        });

        let mut mapped = anchor.map(dts_us);
        if let Some(last) = self.last_running_us {
            // Equal or slightly backwards decode times (jitter, duplicated
            // timestamps) are nudged forward rather than re-anchored.
            mapped = mapped.max(last + 1);
        }
        self.last_source_us = Some(dts_us);
        self.last_running_us = Some(mapped);
        let offset =
            composition_offset_us.clamp(-MAX_COMPOSITION_OFFSET_US, MAX_COMPOSITION_OFFSET_US);
        Mapped {
            dts_us: mapped,
            pts_us: mapped.saturating_add(i64::from(offset)).max(0),
            discont,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_lands_now_and_spacing_is_kept() {
        let mut clock = SourceClock::default();
        let mut video = TrackTimeline::default();
        let first = video.map(&mut clock, 90_000_000, 0, 5_000_000);
        assert_eq!(first.dts_us, 5_000_000);
        assert!(first.discont);
        // B-frame style offsets survive: PTS = DTS + offset.
        let next = video.map(&mut clock, 90_033_333, 66_666, 5_040_000);
        assert_eq!(next.dts_us, 5_033_333);
        assert_eq!(next.pts_us, 5_099_999);
        assert!(!next.discont);
    }

    #[test]
    fn audio_and_video_share_the_anchor() {
        let mut clock = SourceClock::default();
        let mut video = TrackTimeline::default();
        let mut audio = TrackTimeline::default();
        video.map(&mut clock, 10_000_000, 0, 1_000_000);
        // Audio arrives a bit later but is stamped 500 ms after the video
        // keyframe by the same publisher: it keeps that distance.
        let a = audio.map(&mut clock, 10_500_000, 0, 1_020_000);
        assert_eq!(a.dts_us, 1_500_000);
        assert!(!a.discont);
    }

    #[test]
    fn restart_of_the_publisher_reanchors_forward() {
        let mut clock = SourceClock::default();
        let mut video = TrackTimeline::default();
        video.map(&mut clock, 50_000_000, 0, 1_000_000);
        video.map(&mut clock, 50_033_000, 0, 1_033_000);
        // The publisher restarts its clock at zero three seconds later.
        let m = video.map(&mut clock, 0, 0, 4_000_000);
        assert!(m.discont);
        assert_eq!(m.dts_us, 4_000_000);
        let m = video.map(&mut clock, 33_000, 0, 4_040_000);
        assert_eq!(m.dts_us, 4_033_000);
    }

    #[test]
    fn a_returning_track_far_behind_is_reanchored() {
        let mut clock = SourceClock::default();
        let mut first = TrackTimeline::default();
        first.map(&mut clock, 0, 0, 1_000_000);
        // A new subscription (fresh timeline) whose clock restarted: mapping
        // with the old anchor would put it 9 s in the past.
        let mut second = TrackTimeline::default();
        let m = second.map(&mut clock, 0, 0, 10_000_000);
        assert_eq!(m.dts_us, 10_000_000);
        assert!(m.discont);
    }

    #[test]
    fn a_new_publisher_far_ahead_is_reanchored() {
        let mut clock = SourceClock::default();
        TrackTimeline::default().map(&mut clock, 0, 0, 1_000_000);
        let m = TrackTimeline::default().map(&mut clock, 60_000_000, 0, 2_000_000);
        assert_eq!(m.dts_us, 2_000_000);
    }

    #[test]
    fn a_clock_running_fast_is_pulled_back_to_now() {
        let mut clock = SourceClock::default();
        let mut video = TrackTimeline::default();
        video.map(&mut clock, 0, 0, 1_000_000);
        // Four times too fast: 400 ms of stamps for every 100 ms of arrival.
        let mut last = None;
        for step in 1..=40 {
            let m = video.map(&mut clock, step * 400_000, 0, 1_000_000 + step * 100_000);
            assert!(
                m.dts_us <= 1_000_000 + step * 100_000 + MAX_AHEAD_US,
                "{m:?}"
            );
            last = Some(m);
        }
        assert!(last.is_some());
    }

    #[test]
    fn composition_offsets_are_bounded() {
        let mut clock = SourceClock::default();
        let mut video = TrackTimeline::default();
        let m = video.map(&mut clock, 0, i32::MAX, 5_000_000);
        assert_eq!(m.pts_us, 5_000_000 + i64::from(MAX_COMPOSITION_OFFSET_US));
        let m = video.map(&mut clock, 33_000, i32::MIN, 5_033_000);
        assert_eq!(m.pts_us, 5_033_000 - i64::from(MAX_COMPOSITION_OFFSET_US));
    }

    #[test]
    fn decode_times_only_grow() {
        let mut clock = SourceClock::default();
        let mut video = TrackTimeline::default();
        let a = video.map(&mut clock, 1_000, 0, 1_000_000);
        let b = video.map(&mut clock, 1_000, 0, 1_000_100);
        let c = video.map(&mut clock, 900, 0, 1_000_200);
        assert!(a.dts_us < b.dts_us && b.dts_us < c.dts_us);
        // Negative composition offsets never yield a negative PTS.
        let mut clock = SourceClock::default();
        let m = TrackTimeline::default().map(&mut clock, 0, -50_000, 10_000);
        assert_eq!(m.pts_us, 0);
    }
}
