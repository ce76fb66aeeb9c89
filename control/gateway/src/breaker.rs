//! A circuit breaker for one upstream instance, as a state machine fed the
//! current time: no clock or I/O of its own, so it is tested by stepping
//! time.
//!
//! Closed, it lets every request through and counts failures in a row.
//! After [`BreakerPolicy::failures_to_open`] of them it opens: no request
//! is sent for [`BreakerPolicy::open_for`]. Then it is half-open: one probe
//! request at a time goes through; a success closes it, a failure opens it
//! again.

use std::time::{Duration, Instant};

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Consecutive failures (errors, timeouts, 5xx from the instance)
    /// that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before probing.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// The state a breaker is in, as shown in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the instant.
    Open,
    /// One probe at a time decides.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// One instance's breaker.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Permission to send one request; report how it went with
/// [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    probe: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: State::Closed { failures: 0 },
        }
    }

    /// The state at `now`.
    pub fn state(&mut self, now: Instant) -> BreakerState {
        self.advance(now);
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may be sent at `now`; a half-open breaker lets
    /// one probe out at a time.
    pub fn try_acquire(&mut self, now: Instant) -> Option<Permit> {
        self.advance(now);
        match &mut self.state {
            State::Closed { .. } => Some(Permit { probe: false }),
            State::Open { .. } => None,
            State::HalfOpen { probing } if !*probing => {
                *probing = true;
                Some(Permit { probe: true })
            }
            State::HalfOpen { .. } => None,
        }
    }

    /// Whether a request would be let through at `now`, without taking a
    /// permit (for choosing among instances).
    pub fn admits(&mut self, now: Instant) -> bool {
        self.advance(now);
        match self.state {
            State::Closed { .. } => true,
            State::Open { .. } => false,
            State::HalfOpen { probing } => !probing,
        }
    }

    /// How a permitted request went. Returns the state change, if any.
    pub fn record(&mut self, permit: Permit, success: bool, now: Instant) -> Option<BreakerState> {
        self.advance(now);
        let before = self.state;
        self.state = match (self.state, success) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.policy.failures_to_open {
                    self.open(now)
                } else {
                    State::Closed { failures }
                }
            }
            (State::HalfOpen { .. }, true) if permit.probe => State::Closed { failures: 0 },
            (State::HalfOpen { .. }, false) if permit.probe => self.open(now),
            // A request let out before the breaker opened, ending now: the
            // probe decides, not it.
            (state, _) => state,
        };
        let changed = std::mem::discriminant(&before) != std::mem::discriminant(&self.state);
        changed.then(|| self.state(now))
    }

    /// A probe that was never sent (the request was abandoned): the next
    /// caller may probe.
    pub fn release(&mut self, permit: Permit) {
        if let (true, State::HalfOpen { probing }) = (permit.probe, &mut self.state) {
            *probing = false;
        }
    }

    fn open(&self, now: Instant) -> State {
        State::Open {
            until: now + self.policy.open_for,
        }
    }

    fn advance(&mut self, now: Instant) {
        if let State::Open { until } = self.state {
            if now >= until {
                self.state = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (Breaker, Instant) {
        let policy = BreakerPolicy {
            failures_to_open: 3,
            open_for: Duration::from_secs(5),
        };
        (Breaker::new(policy), Instant::now())
    }

    fn fail(b: &mut Breaker, now: Instant) -> Option<BreakerState> {
        let permit = b.try_acquire(now).expect("permitted");
        b.record(permit, false, now)
    }

    #[test]
    fn consecutive_failures_open_it_and_a_success_in_between_resets_the_count() {
        let (mut b, t) = breaker();
        assert_eq!(fail(&mut b, t), None);
        assert_eq!(fail(&mut b, t), None);
        let permit = b.try_acquire(t).unwrap();
        b.record(permit, true, t);
        assert_eq!(fail(&mut b, t), None);
        assert_eq!(fail(&mut b, t), None);
        assert_eq!(fail(&mut b, t), Some(BreakerState::Open));
        assert_eq!(b.try_acquire(t + Duration::from_secs(1)), None);
        assert!(!b.admits(t + Duration::from_secs(4)));
    }

    #[test]
    fn after_the_open_time_one_probe_at_a_time_decides() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            fail(&mut b, t);
        }
        let later = t + Duration::from_secs(5);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        let probe = b.try_acquire(later).expect("a probe");
        assert_eq!(b.try_acquire(later), None, "only one probe at a time");

        // The probe fails: open again, for a full period from now.
        assert_eq!(b.record(probe, false, later), Some(BreakerState::Open));
        assert_eq!(b.try_acquire(later + Duration::from_secs(4)), None);

        // The next probe succeeds: closed.
        let again = later + Duration::from_secs(5);
        let probe = b.try_acquire(again).expect("a probe");
        assert_eq!(b.record(probe, true, again), Some(BreakerState::Closed));
        assert!(b.try_acquire(again).is_some());
    }

    #[test]
    fn a_late_answer_to_a_request_sent_while_closed_does_not_decide_the_probe() {
        let (mut b, t) = breaker();
        let early = b.try_acquire(t).unwrap();
        for _ in 0..3 {
            fail(&mut b, t);
        }
        let later = t + Duration::from_secs(6);
        assert_eq!(b.record(early, true, later), None);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            fail(&mut b, t);
        }
        let later = t + Duration::from_secs(5);
        let probe = b.try_acquire(later).unwrap();
        b.release(probe);
        assert!(b.try_acquire(later).is_some());
    }
}
