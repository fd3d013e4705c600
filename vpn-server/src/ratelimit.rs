//! In-memory sliding-window counters (failed logins per username and per
//! client IP, registrations per IP). Lost on restart, which only resets the
//! windows.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before old windows are swept.
const SWEEP_AT: usize = 10_000;

/// Counts events per key over a window.
#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Counters over `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, VecDeque<Instant>>) -> T) -> T {
        let mut g = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// Events of `key` within the window at `now`.
    pub fn count(&self, key: &str, now: Instant) -> usize {
        let window = self.window;
        self.with(|m| {
            let Some(q) = m.get_mut(key) else { return 0 };
            while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                q.pop_front();
            }
            q.len()
        })
    }

    /// Whether `key` is below `max` events in the window.
    pub fn allows(&self, key: &str, max: u32, now: Instant) -> bool {
        self.count(key, now) < max as usize
    }

    /// Records an event of `key`.
    pub fn record(&self, key: &str, now: Instant) {
        let window = self.window;
        self.with(|m| {
            if m.len() >= SWEEP_AT {
                m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            }
            m.entry(key.to_owned()).or_default().push_back(now);
        });
    }

    /// Forgets `key` (a successful login clears its failures).
    pub fn clear(&self, key: &str) {
        self.with(|m| m.remove(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let l = RateLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.record("u:alice", t0);
        }
        assert!(!l.allows("u:alice", 3, t0));
        assert!(l.allows("u:alice", 4, t0));
        assert!(l.allows("u:bob", 1, t0));
        assert!(l.allows("u:alice", 3, t0 + Duration::from_secs(10)));
        l.record("u:bob", t0);
        l.clear("u:bob");
        assert_eq!(l.count("u:bob", t0), 0);
    }
}
