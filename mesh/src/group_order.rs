//! Puts a remote track's groups back in order. Pure: groups, the end of the
//! track and the current time go in; the next group to read comes out.
//!
//! Each MoQ group is its own QUIC stream, and moq-transport surfaces streams
//! in the order their headers are read, so group 2 can show up before group
//! 0. The serving side numbers a subscription's groups 0, 1, 2, ..., so the
//! reader takes them strictly by number. A group that never comes (its
//! stream was reset before its header got through) is given up
//! [`REORDER_WAIT`] after a later group is known to be waiting, or at once
//! when the track has ended.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// How long a later group waits for a missing earlier one. Groups are
/// streams opened in order on one connection, so on a healthy path the gap
/// closes within a round trip.
pub(crate) const REORDER_WAIT: Duration = Duration::from_millis(500);

/// What the reader should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<G> {
    /// Read this group to its end, then ask again.
    Group(G),
    /// Wait for another group, the end of the track, or the deadline.
    Wait(Option<Instant>),
    /// The track has ended and every group was handed out.
    Done,
}

/// Groups waiting to be read, keyed by group id.
#[derive(Debug)]
pub(crate) struct GroupOrder<G> {
    /// The group id expected next; lower ids are stale.
    next_id: u64,
    waiting: BTreeMap<u64, G>,
    /// When to stop waiting for `next_id`, set once a later group waits.
    give_up_at: Option<Instant>,
    ended: bool,
}

impl<G> GroupOrder<G> {
    pub(crate) fn new() -> Self {
        Self {
            next_id: 0,
            waiting: BTreeMap::new(),
            give_up_at: None,
            ended: false,
        }
    }

    /// Adds an arrived group. Returns `false`, dropping it, if the reader
    /// has already moved past its id.
    pub(crate) fn admit(&mut self, id: u64, group: G) -> bool {
        if id < self.next_id {
            return false;
        }
        self.waiting.insert(id, group);
        true
    }

    /// No more groups will arrive.
    pub(crate) fn end(&mut self) {
        self.ended = true;
    }

    /// Whether [`GroupOrder::end`] was called.
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next group to read, given the time is `now`.
    pub(crate) fn next(&mut self, now: Instant) -> Next<G> {
        let Some(&first) = self.waiting.keys().next() else {
            self.give_up_at = None;
            return if self.ended {
                Next::Done
            } else {
                Next::Wait(None)
            };
        };

        if first != self.next_id {
            let give_up_at = *self.give_up_at.get_or_insert(now + REORDER_WAIT);
            if !self.ended && now < give_up_at {
                return Next::Wait(Some(give_up_at));
            }
            tracing::debug!(
                missing = self.next_id,
                resume = first,
                "skipping missing groups"
            );
        }

        self.give_up_at = None;
        self.next_id = first + 1;
        match self.waiting.remove(&first) {
            Some(group) => Next::Group(group),
            // The key was just read from the map.
            None => Next::Wait(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_out_in_order_whatever_the_arrival() {
        let now = Instant::now();
        let mut order = GroupOrder::new();
        assert!(order.admit(2, "two"));
        assert!(order.admit(1, "one"));
        assert_eq!(order.next(now), Next::Wait(Some(now + REORDER_WAIT)));
        assert!(order.admit(0, "zero"));
        assert_eq!(order.next(now), Next::Group("zero"));
        assert_eq!(order.next(now), Next::Group("one"));
        assert_eq!(order.next(now), Next::Group("two"));
        assert_eq!(order.next(now), Next::Wait(None));
        order.end();
        assert_eq!(order.next(now), Next::Done);
    }

    #[test]
    fn stale_groups_are_refused() {
        let now = Instant::now();
        let mut order = GroupOrder::new();
        order.admit(0, 0);
        assert_eq!(order.next(now), Next::Group(0));
        assert!(!order.admit(0, 0));
        assert!(order.admit(1, 1));
    }

    #[test]
    fn a_missing_group_is_given_up_after_the_wait() {
        let start = Instant::now();
        let mut order = GroupOrder::new();
        order.admit(0, 0);
        assert_eq!(order.next(start), Next::Group(0));
        order.admit(2, 2);
        let deadline = start + REORDER_WAIT;
        assert_eq!(order.next(start), Next::Wait(Some(deadline)));
        // The deadline does not move when asked again.
        let later = start + REORDER_WAIT / 2;
        order.admit(3, 3);
        assert_eq!(order.next(later), Next::Wait(Some(deadline)));
        assert_eq!(order.next(deadline), Next::Group(2));
        assert_eq!(order.next(deadline), Next::Group(3));
        // Group 1 turning up now is too late.
        assert!(!order.admit(1, 1));
    }

    #[test]
    fn the_end_of_the_track_releases_waiting_groups_at_once() {
        let now = Instant::now();
        let mut order = GroupOrder::new();
        order.admit(5, 5);
        assert!(matches!(order.next(now), Next::Wait(Some(_))));
        order.end();
        assert!(order.is_ended());
        assert_eq!(order.next(now), Next::Group(5));
        assert_eq!(order.next(now), Next::Done);
    }

    #[test]
    fn a_fresh_gap_gets_a_fresh_deadline() {
        let start = Instant::now();
        let mut order = GroupOrder::new();
        order.admit(1, 1);
        let first_deadline = start + REORDER_WAIT;
        assert_eq!(order.next(start), Next::Wait(Some(first_deadline)));
        assert_eq!(order.next(first_deadline), Next::Group(1));
        assert_eq!(order.next(first_deadline), Next::Wait(None));
        order.admit(3, 3);
        let later = first_deadline + Duration::from_millis(1);
        assert_eq!(order.next(later), Next::Wait(Some(later + REORDER_WAIT)));
    }
}
