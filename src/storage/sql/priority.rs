//! SQLite's write lock, taken ahead of the queue by the zone sync's record.
//!
//! SQLite has one writer at a time, and a connection that finds the lock taken waits in SQLite's busy
//! handler: it sleeps, then tries again. The fills' writer connection takes the lock again the moment it
//! lets go, so under a steady stream of fills the sleeping connection (the sync's record) almost never
//! finds it free: measured, it waited more than a second, past the view's lifetime, and the node bypassed
//! its reserve (BENCHMARKS.md, fill). Instead the record claims priority first; while a claim is held, the
//! writer connection is not handed to its next transaction ([`WriterPriority::yield_to_claims`] runs
//! before each acquire), so the record waits for at most the transaction already holding the lock.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Notify;

/// Claims on SQLite's write lock that go before the writer connection's queue.
#[derive(Debug, Default)]
pub(super) struct WriterPriority {
    /// Claims held now.
    claims: AtomicUsize,
    /// Signalled when the last claim is dropped.
    clear: Notify,
}

/// A claim of priority, held from before its transaction begins until after it ends.
#[derive(Debug)]
pub(super) struct PriorityClaim(Arc<WriterPriority>);

impl WriterPriority {
    /// Claims priority until the claim is dropped.
    pub(super) fn claim(self: &Arc<Self>) -> PriorityClaim {
        self.claims.fetch_add(1, Ordering::SeqCst);
        PriorityClaim(self.clone())
    }

    /// Returns when no claim is held (at once when none is).
    pub(super) async fn yield_to_claims(&self) {
        loop {
            let cleared = self.clear.notified();
            tokio::pin!(cleared);
            // Registered before the check, so a claim dropped between the two is not missed.
            cleared.as_mut().enable();
            if self.claims.load(Ordering::SeqCst) == 0 {
                return;
            }
            cleared.await;
        }
    }
}

impl Drop for PriorityClaim {
    fn drop(&mut self) {
        if self.0.claims.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.clear.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_writer_waits_while_a_claim_is_held_and_goes_when_it_is_dropped() {
        let priority = Arc::new(WriterPriority::default());
        priority.yield_to_claims().await;
        let first = priority.claim();
        let second = priority.claim();
        let waiter = tokio::spawn({
            let priority = priority.clone();
            async move { priority.yield_to_claims().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "went while a claim was still held");
        drop(second);
        tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("still waiting").unwrap();
    }
}
