//! Reserve metadata in memory: which objects the reserve holds and their decoded cache policies, so a
//! reserve hit reads only the body, not the index. Bounded by bytes (an estimate per entry).
//!
//! Entries are hints that can only fail towards a miss: one from an older generation is ignored (a Clear
//! started since), and one whose body is gone (replaced, evicted) is dropped when the read finds nothing.
//! This process's own writes and metadata refreshes drop the key, so the next read takes the index's word.

use std::sync::{Arc, RwLock};

use moka::{
    ops::compute::{CompResult, Op},
    sync::Cache,
};

use crate::{domain::Zone, http_cache::StoredResponse, storage::IndexEntry};

/// Bytes charged per entry beyond its key and stored metadata (decoded headers, bookkeeping).
const ENTRY_OVERHEAD: usize = 512;

/// A reserve object known to exist.
pub struct Known {
    /// Its index entry, without the encoded metadata (the decoded response is beside it).
    pub entry: IndexEntry,
    pub stored: Arc<StoredResponse>,
    /// Size of the encoded metadata, for the weight.
    pub meta_len: usize,
}

impl Known {
    /// From an index entry and its decoded stored response.
    pub fn new(mut entry: IndexEntry, stored: Arc<StoredResponse>) -> Self {
        let meta_len = entry.meta.len();
        entry.meta = Vec::new();
        Self { entry, stored, meta_len }
    }
}

#[derive(Clone)]
pub struct IndexCache {
    cache: Cache<String, Arc<Known>>,
    /// Sweeps begun. A look-up that read the index before a sweep began does not keep what it read: the
    /// sweep might not see it, and it may predate a rule's reserve work (see [`IndexCache::sweep`]).
    sweeps: Arc<RwLock<u64>>,
}

/// The sweep count a look-up saw before reading the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepEpoch(u64);

impl IndexCache {
    pub fn new(capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &String, k: &Arc<Known>| {
                // The decoded response takes about twice its encoded size.
                u32::try_from(2 * key.len() + k.entry.blob.len() + 2 * k.meta_len + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .build();
        Self { cache, sweeps: Arc::default() }
    }

    /// What the reserve is known to hold for `key` in the zone's current generation.
    pub fn get(&self, zone: &Zone, key: &str) -> Option<Arc<Known>> {
        self.cache.get(key).filter(|k| k.entry.generation == zone.generation && k.entry.zone_id == zone.id)
    }

    /// The sweep count now: take it before reading the index, and keep what was read with
    /// [`IndexCache::insert_since`].
    pub fn epoch(&self) -> SweepEpoch {
        SweepEpoch(*self.sweeps.read().expect("sweep count lock"))
    }

    /// Keeps what a look-up read from the index, unless a sweep began since `epoch`. Returns it either way.
    pub fn insert_since(&self, epoch: SweepEpoch, key: &str, known: Known) -> Arc<Known> {
        let known = Arc::new(known);
        let sweeps = self.sweeps.read().expect("sweep count lock");
        if SweepEpoch(*sweeps) == epoch {
            self.cache.insert(key.to_owned(), known.clone());
        }
        known
    }

    /// Drops every entry `stale` says may no longer be trusted (a worked purge or invalidation rule targets
    /// it and it does not carry the rule's effect). Look-ups that read the index before this began do not
    /// keep what they read, so afterwards every entry here either was judged or was read after the rules'
    /// reserve work was done. Returns how many were dropped.
    pub fn sweep(&self, stale: impl Fn(&str, &Known) -> bool) -> u64 {
        *self.sweeps.write().expect("sweep count lock") += 1;
        let mut dropped = 0;
        for (key, known) in &self.cache {
            if !stale(&key, &known) {
                continue;
            }
            let done = self.cache.entry_by_ref(&*key).and_compute_with(|current| match current {
                Some(c) if Arc::ptr_eq(c.value(), &known) => Op::Remove,
                _ => Op::Nop,
            });
            if matches!(done, CompResult::Removed(_)) {
                dropped += 1;
            }
        }
        dropped
    }

    /// Drops every entry.
    pub fn clear(&self) {
        *self.sweeps.write().expect("sweep count lock") += 1;
        self.cache.invalidate_all();
    }

    pub fn forget(&self, key: &str) {
        self.cache.invalidate(key);
    }
}
