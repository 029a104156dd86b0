//! Throttling of failed client authentication, per client id and per caller address: after
//! `limit` failures inside the sliding `window`, further attempts are refused until the oldest
//! failure leaves the window. Kept in memory: a restart forgets it, which is acceptable for a
//! brake on guessing (secrets have 256 bits of entropy anyway).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Beyond this many tracked keys, stale entries are dropped so an attacker rotating addresses
/// can't grow memory without bound.
const MAX_TRACKED: usize = 100_000;

pub struct Throttle {
    limit: usize,
    window: i64,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Throttle {
    pub fn new(limit: u32, window_secs: i64) -> Self {
        Throttle {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window: window_secs,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `key` may try again, or `None` if it may try now.
    pub fn retry_after(&self, key: &str, now: i64) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let q = map.get_mut(key)?;
        while q.front().is_some_and(|&t| t <= now - self.window) {
            q.pop_front();
        }
        if q.len() < self.limit {
            return None;
        }
        let oldest = q.front().copied().unwrap_or(now);
        Some(
            u64::try_from(oldest + self.window - now)
                .unwrap_or(1)
                .max(1),
        )
    }

    pub fn record_failure(&self, key: &str, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(key) {
            let horizon = now - self.window;
            map.retain(|_, q| q.back().is_some_and(|&t| t > horizon));
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let q = map.entry(key.to_string()).or_default();
        q.push_back(now);
        // Only the last `limit` failures matter.
        while q.len() > self.limit {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_and_releases_after_window() {
        let t = Throttle::new(3, 60);
        for s in 0..3 {
            assert_eq!(t.retry_after("c", 10 + s), None);
            t.record_failure("c", 10 + s);
        }
        assert_eq!(t.retry_after("c", 20), Some(50));
        assert_eq!(t.retry_after("other", 20), None);
        // The first failure (at 10) leaves the window at 70.
        assert_eq!(t.retry_after("c", 70), None);
    }
}
