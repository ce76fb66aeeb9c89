//! The instances of one upstream service and the choice among them.
//!
//! An instance takes requests while its last health check passed and its
//! breaker admits them. Among those, a request goes to the one with the
//! fewest requests outstanding; ties go round the instances in turn, so
//! that an idle pool still spreads its load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::breaker::{Breaker, BreakerPolicy, BreakerState, Permit};

/// One instance of a service.
#[derive(Debug)]
pub struct Instance {
    /// Base URL, `http://host:port`.
    pub url: String,
    outstanding: AtomicUsize,
    healthy: AtomicBool,
    breaker: Mutex<Breaker>,
}

impl Instance {
    fn new(url: String, policy: BreakerPolicy) -> Self {
        Self {
            url,
            outstanding: AtomicUsize::new(0),
            // Taken at its word until the first check says otherwise: a
            // pool that starts empty would refuse everything meanwhile.
            healthy: AtomicBool::new(true),
            breaker: Mutex::new(Breaker::new(policy)),
        }
    }

    /// Whether its last health check passed.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a health check; true when that changed its health.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Its breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().state(Instant::now())
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request under way to an instance. Dropped without
/// [`Lease::finish`] (the client went away), it gives its breaker permit
/// back without counting as a success or a failure.
#[derive(Debug)]
pub struct Lease {
    instance: Arc<Instance>,
    permit: Permit,
    finished: bool,
}

impl Lease {
    /// The instance the request goes to.
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// How the request went; the state the instance's breaker moved to,
    /// if it moved.
    pub fn finish(mut self, success: bool) -> Option<BreakerState> {
        self.finished = true;
        self.instance
            .lock_breaker()
            .record(self.permit, success, Instant::now())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.finished {
            self.instance.lock_breaker().release(self.permit);
        }
        self.instance.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The instances of one service.
#[derive(Debug)]
pub struct Pool {
    /// The service's name, for logs and metrics.
    pub service: String,
    policy: BreakerPolicy,
    instances: RwLock<Vec<Arc<Instance>>>,
    turn: AtomicUsize,
}

impl Pool {
    /// An empty pool for `service`.
    pub fn new(service: &str, policy: BreakerPolicy) -> Self {
        Self {
            service: service.to_owned(),
            policy,
            instances: RwLock::new(Vec::new()),
            turn: AtomicUsize::new(0),
        }
    }

    /// Every instance, healthy or not.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes the pool exactly `urls`, keeping the state (health, breaker,
    /// requests under way) of instances that stay. True if it changed.
    pub fn set_members(&self, urls: &[String]) -> bool {
        let mut instances = self.instances.write().unwrap_or_else(|p| p.into_inner());
        let same = instances.len() == urls.len() && instances.iter().all(|i| urls.contains(&i.url));
        if same {
            return false;
        }
        let mut next = Vec::with_capacity(urls.len());
        for url in urls {
            if next.iter().any(|i: &Arc<Instance>| &i.url == url) {
                continue;
            }
            let kept = instances.iter().find(|i| &i.url == url).cloned();
            next.push(kept.unwrap_or_else(|| Arc::new(Instance::new(url.clone(), self.policy))));
        }
        *instances = next;
        true
    }

    /// The instance the next request goes to, avoiding those in `tried`;
    /// `None` when no instance can take it.
    pub fn pick(&self, tried: &[Arc<Instance>]) -> Option<Lease> {
        let instances = self.instances();
        let count = instances.len();
        if count == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % count;
        let now = Instant::now();
        let mut candidates: Vec<&Arc<Instance>> = (0..count)
            .map(|i| &instances[(start + i) % count])
            .filter(|i| i.healthy() && !tried.iter().any(|t| Arc::ptr_eq(t, i)))
            .collect();
        // Least outstanding first; the sort is stable, so ties keep the
        // round-robin order.
        candidates.sort_by_key(|i| i.outstanding());
        candidates.into_iter().find_map(|instance| {
            let permit = instance.lock_breaker().try_acquire(now)?;
            instance.outstanding.fetch_add(1, Ordering::Relaxed);
            Some(Lease {
                instance: instance.clone(),
                permit,
                finished: false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(urls: &[&str]) -> Pool {
        let pool = Pool::new("test", BreakerPolicy::default());
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        pool.set_members(&urls);
        pool
    }

    #[test]
    fn idle_instances_take_turns() {
        let pool = pool(&["a", "b", "c"]);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let lease = pool.pick(&[]).unwrap();
            seen.push(lease.instance().url.clone());
            lease.finish(true);
        }
        seen.sort();
        assert_eq!(seen, ["a", "b", "c"]);
    }

    #[test]
    fn the_least_busy_instance_is_chosen() {
        let pool = pool(&["a", "b"]);
        let held = pool.pick(&[]).unwrap();
        for _ in 0..4 {
            let lease = pool.pick(&[]).unwrap();
            assert_ne!(
                lease.instance().url,
                held.instance().url,
                "the busy one is avoided"
            );
            lease.finish(true);
        }
    }

    #[test]
    fn unhealthy_tried_and_open_instances_are_skipped() {
        let pool = pool(&["a", "b"]);
        let instances = pool.instances();
        instances[0].set_healthy(false);
        for _ in 0..3 {
            let lease = pool.pick(&[]).unwrap();
            assert_eq!(lease.instance().url, "b");
            lease.finish(true);
        }
        assert!(pool.pick(&[instances[1].clone()]).is_none());

        instances[0].set_healthy(true);
        for _ in 0..5 {
            let lease = pool.pick(&[instances[1].clone()]).unwrap();
            lease.finish(false);
        }
        assert_eq!(instances[0].breaker_state(), BreakerState::Open);
        let lease = pool.pick(&[]).unwrap();
        assert_eq!(lease.instance().url, "b");
    }

    #[test]
    fn membership_changes_keep_the_state_of_instances_that_stay() {
        let pool = pool(&["a", "b"]);
        pool.instances()[1].set_healthy(false);
        assert!(pool.set_members(&["b".into(), "c".into()]));
        let instances = pool.instances();
        assert_eq!(instances.len(), 2);
        assert!(!instances[0].healthy(), "b kept its health");
        assert!(instances[1].healthy());
        assert!(!pool.set_members(&["c".into(), "b".into()]));
    }

    #[test]
    fn a_dropped_lease_gives_its_place_back() {
        let pool = pool(&["a"]);
        let lease = pool.pick(&[]).unwrap();
        let instance = lease.instance().clone();
        assert_eq!(instance.outstanding(), 1);
        drop(lease);
        assert_eq!(instance.outstanding(), 0);
    }
}
