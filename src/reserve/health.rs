//! A circuit breaker over the reserve's backends: after an operation fails because PostgreSQL or the body
//! store could not be reached, the reserve is skipped for [`COOL_DOWN`], then tried again by the next
//! request. During an outage the proxy so answers from the edge tier and the origin without each request
//! first waiting out connection timeouts and retries.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// How long the reserve is skipped after an outage error.
pub const COOL_DOWN: Duration = Duration::from_secs(2);

/// Open (skipping the reserve) until a moment, kept as milliseconds since `epoch`.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    skip_until_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self { epoch: Instant::now(), skip_until_ms: AtomicU64::new(0) }
    }
}

impl Health {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether to use the reserve now.
    pub fn available(&self) -> bool {
        self.now_ms() >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    /// A backend could not be reached: skip the reserve for [`COOL_DOWN`].
    pub fn failed(&self) {
        let until = self.now_ms() + u64::try_from(COOL_DOWN.as_millis()).unwrap_or(u64::MAX);
        if self.skip_until_ms.fetch_max(until, Ordering::Relaxed) < self.now_ms() {
            tracing::warn!(
                "the reserve's storage could not be reached; serving from the edge tier and the origin for {COOL_DOWN:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_closes_the_reserve_for_the_cool_down_only() {
        let h = Health::default();
        assert!(h.available());
        h.failed();
        assert!(!h.available());
        h.skip_until_ms.store(h.now_ms(), Ordering::Relaxed);
        assert!(h.available());
    }
}
