//! Invalidations racing fills: a fill that looked a key up before the key was invalidated (RFC 9111 §4.4,
//! and purges) must never land after it — not in the edge tier, not in the reserve.
//!
//! Keys are spread over shards, each a count of invalidations under a read-write lock. A fill remembers its
//! key's count from before its lookup ([`Invalidations::epoch`]) and lands only under the read lock with the
//! count unchanged; an invalidation takes the write lock, so it waits for landings in progress, and counts
//! one more. Two keys sharing a shard only cost a skipped fill, never a wrong answer.

use std::{
    future::Future,
    hash::{BuildHasher, RandomState},
    sync::Arc,
};

use tokio::sync::{RwLock, RwLockReadGuard};

use crate::{domain::ZoneId, purge::PurgeBook};

const SHARDS: usize = 4096;

/// Held while a fill lands; invalidations of its key wait for it.
pub struct Landing<'a> {
    _guard: RwLockReadGuard<'a, u64>,
}

/// An invalidation count, as a fill saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

pub struct Invalidations {
    shards: Vec<RwLock<u64>>,
    hasher: RandomState,
}

impl Default for Invalidations {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| RwLock::new(0)).collect(), hasher: RandomState::new() }
    }
}

impl Invalidations {
    fn shard(&self, key: &str) -> &RwLock<u64> {
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// The key's count now (after any invalidation of its shard under way).
    pub async fn epoch(&self, key: &str) -> Epoch {
        Epoch(*self.shard(key).read().await)
    }

    /// Runs `land` (a synchronous tier insert) if the key was not invalidated since `seen`. Never waits: if
    /// an invalidation holds the shard, the fill does not land. Returns whether it landed.
    pub fn land_now(&self, key: &str, seen: Epoch, land: impl FnOnce()) -> bool {
        match self.shard(key).try_read() {
            Ok(n) if Epoch(*n) == seen => {
                land();
                true
            }
            _ => false,
        }
    }

    /// Whether the key was not invalidated since `seen` (`false` while an invalidation of its shard is under
    /// way). Never waits.
    pub fn unchanged_since(&self, key: &str, seen: Epoch) -> bool {
        self.shard(key).try_read().is_ok_and(|n| Epoch(*n) == seen)
    }

    /// Permission to land (an asynchronous commit) if the key was not invalidated since `seen`: while the
    /// guard lives, invalidations of the key wait. `None` if it was invalidated.
    pub async fn landing(&self, key: &str, seen: Epoch) -> Option<Landing<'_>> {
        let n = self.shard(key).read().await;
        (Epoch(*n) == seen).then_some(Landing { _guard: n })
    }

    /// Awaits `land` under [`Invalidations::landing`]; `None` if it did not run.
    pub async fn land<F: Future>(&self, key: &str, seen: Epoch, land: F) -> Option<F::Output> {
        let _landing = self.landing(key, seen).await?;
        Some(land.await)
    }

    /// Invalidates `key`: waits for its landings in progress, counts one more invalidation, and runs
    /// `remove` (dropping the in-memory copies) before any later fill can land.
    pub async fn invalidate(&self, key: &str, remove: impl FnOnce()) {
        let mut n = self.shard(key).write().await;
        *n += 1;
        remove();
    }
}

/// What a fill must still hold to land in the edge tier: its key not invalidated since `seen` (RFC 9111
/// §4.4), and no purge or invalidation of its zone newer than the revision it was filled under (SPEC §10).
#[derive(Clone)]
pub struct Gate {
    pub invalidations: Arc<Invalidations>,
    pub seen: Epoch,
    pub purges: Arc<PurgeBook>,
    pub zone: ZoneId,
    pub fill_revision: i64,
}

impl Gate {
    /// Runs `land` (a synchronous tier insert) if both still hold; never waits. Returns whether it ran.
    pub fn land_now(&self, key: &str, land: impl FnOnce()) -> bool {
        self.purges.land(&self.zone, self.fill_revision, || self.invalidations.land_now(key, self.seen, land))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn a_fill_from_before_an_invalidation_never_lands() {
        let inv = Invalidations::default();
        let seen = inv.epoch("k").await;
        assert!(inv.land_now("k", seen, || {}));
        inv.invalidate("k", || {}).await;
        assert!(!inv.land_now("k", seen, || panic!("landed after the invalidation")));
        assert_eq!(inv.land("k", seen, async { 1 }).await, None);
        let now = inv.epoch("k").await;
        assert_eq!(inv.land("k", now, async { 2 }).await, Some(2));
    }

    #[tokio::test]
    async fn an_invalidation_waits_for_a_landing_in_progress() {
        let inv = Arc::new(Invalidations::default());
        let committed = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let landing = {
            let (inv, committed) = (inv.clone(), committed.clone());
            let seen = inv.epoch("k").await;
            tokio::spawn(async move {
                inv.land("k", seen, async {
                    started_tx.send(()).unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    committed.store(true, Ordering::SeqCst);
                })
                .await
            })
        };
        started_rx.await.unwrap();
        inv.invalidate("k", || assert!(committed.load(Ordering::SeqCst), "ran before the landing finished")).await;
        assert_eq!(landing.await.unwrap(), Some(()));
    }
}
