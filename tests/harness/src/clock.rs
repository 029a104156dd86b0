//! The host's clock, under the test's control: what `proxy_get_current_time_nanoseconds` and WASI
//! `clock_time_get` return. It never moves by itself, so refill and expiry are deterministic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z: a fixed, recognisable start so tests never depend on the real date.
pub const DEFAULT_START_SECS: u64 = 1_767_225_600;

/// A shared, manually driven clock. Cloning gives another handle to the same time.
#[derive(Debug, Clone)]
pub struct Clock {
    nanos: Arc<AtomicU64>,
    /// How many times a module asked for the time (`proxy_get_current_time_nanoseconds`).
    host_reads: Arc<AtomicU64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(DEFAULT_START_SECS * 1_000_000_000)),
            host_reads: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Clock {
    /// Nanoseconds since the Unix epoch, as the ABI reports them.
    pub fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }

    /// The time as a module's host call reads it: counted in [`Clock::host_reads`].
    pub(crate) fn read_by_module(&self) -> u64 {
        self.host_reads.fetch_add(1, Ordering::SeqCst);
        self.now_nanos()
    }

    /// How many times the modules on this clock have read it through the proxy-wasm ABI.
    pub fn host_reads(&self) -> u64 {
        self.host_reads.load(Ordering::SeqCst)
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.now_nanos())
    }

    /// Seconds since the Unix epoch (handy for JWT `exp`/`iat`).
    pub fn unix_seconds(&self) -> u64 {
        self.now_nanos() / 1_000_000_000
    }

    /// Sets the time. Times before 1970 or after year 2554 are clamped.
    pub fn set(&self, time: SystemTime) {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.nanos.store(nanos, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update with saturating_add: never wraps back to 1970.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_and_is_shared_between_clones() {
        let clock = Clock::default();
        let other = clock.clone();
        assert_eq!(clock.unix_seconds(), DEFAULT_START_SECS);
        other.advance(Duration::from_millis(1500));
        assert_eq!(
            clock.now_nanos(),
            DEFAULT_START_SECS * 1_000_000_000 + 1_500_000_000
        );
        clock.set(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(other.unix_seconds(), 10);
    }
}
