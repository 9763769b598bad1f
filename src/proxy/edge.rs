//! The edge tier: the hottest objects in memory, bounded by bytes (moka's TinyLFU admission and LRU
//! eviction, weighed by body size). Entries idle for the retention period are dropped too.
//!
//! Every entry carries the zone generation it was filled under; a lookup under a newer generation (a Clear
//! started since) treats it as absent, so a Clear makes edge copies misses too, at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use moka::{
    ops::compute::{CompResult, Op},
    sync::Cache,
};

use crate::{
    domain::{Invalidation, Zone, ZoneId},
    http_cache::StoredResponse,
    purge::Verdict,
    storage::IndexEntry,
};

/// Bytes charged per entry beyond its body: key, headers, bookkeeping (an estimate).
const ENTRY_OVERHEAD: usize = 1024;

/// The tier settles its evictions at least every this many inserted bytes (see [`EdgeTier::insert`]).
const SETTLE_BYTES: u64 = 4 * 1024 * 1024;

/// One object in memory.
pub struct EdgeEntry {
    pub stored: Arc<StoredResponse>,
    pub body: Bytes,
    /// The zone it was filled for: when a zone is created for a subdomain, that host's requests move to it,
    /// and the parent zone's copies are not its own.
    pub zone_id: ZoneId,
    /// The zone generation the entry was filled under.
    pub generation: i64,
    /// The zone revision the filling request began under (or the revalidating one's): purge rules of
    /// newer revisions apply to it (SPEC §10).
    pub fill_revision: i64,
    /// An invalidation it carries (from the reserve copy it was read from, or written by a sweep of this
    /// tier once the rule's reserve work was done): it applies while `fill_revision` is below its revision.
    pub invalidation: Option<Invalidation>,
    /// Its reserve key hash, for recording reads of the reserve copy.
    pub key_hash: String,
    /// The reserve object it was read from, if it was (a revalidation then refreshes that one too).
    pub from_reserve: Option<IndexEntry>,
    /// When a read of it was last noted for retention (unix seconds).
    last_noted: AtomicI64,
    /// The reserve holds this copy, or a write of it was started: an edge hit then does not write it to
    /// the reserve again (see [`EdgeEntry::take_promotion`]).
    in_reserve: AtomicBool,
}

impl EdgeEntry {
    /// An entry filled for a zone under `(zone, generation, fill_revision)`.
    pub fn new(
        stored: Arc<StoredResponse>,
        body: Bytes,
        (zone_id, generation, fill_revision): (ZoneId, i64, i64),
        key_hash: String,
    ) -> Self {
        let last_noted = AtomicI64::new(0);
        Self {
            stored,
            body,
            zone_id,
            generation,
            fill_revision,
            invalidation: None,
            key_hash,
            from_reserve: None,
            last_noted,
            in_reserve: AtomicBool::new(false),
        }
    }

    /// Whether the reserve may hold this copy: it was read from there, or a write of it was started.
    pub fn maybe_in_reserve(&self) -> bool {
        self.from_reserve.is_some() || self.in_reserve.load(Ordering::Relaxed)
    }

    /// An entry for a body read from the reserve (it keeps the reserve copy's fill revision).
    pub fn from_reserve(stored: Arc<StoredResponse>, body: Bytes, entry: IndexEntry) -> Self {
        let filled = (entry.zone_id.clone(), entry.generation, entry.fill_revision);
        let mut e = Self::new(stored, body, filled, entry.key_hash.clone());
        e.invalidation = entry.invalidation;
        e.from_reserve = Some(entry);
        e.in_reserve = AtomicBool::new(true);
        e
    }

    /// The same object carrying `inv` (and any later invalidation it already carried).
    pub fn marked(&self, inv: Invalidation) -> Self {
        let mut e = self.refreshed(self.stored.clone(), self.fill_revision);
        e.invalidation = Some(self.invalidation.map_or(inv, |c| c.max(inv)));
        e
    }

    /// The same object with a stored response refreshed (after a `304`) by a request that began under
    /// `fill_revision`.
    pub fn refreshed(&self, stored: Arc<StoredResponse>, fill_revision: i64) -> Self {
        let revision = self.fill_revision.max(fill_revision);
        let filled = (self.zone_id.clone(), self.generation, revision);
        let mut e = Self::new(stored, self.body.clone(), filled, self.key_hash.clone());
        e.invalidation = self.invalidation;
        e.from_reserve = self.from_reserve.clone();
        e.in_reserve = AtomicBool::new(self.in_reserve.load(Ordering::Relaxed));
        e
    }

    /// Notes that a reserve write of this copy was started along with its fill.
    pub fn written_to_reserve(self) -> Self {
        self.in_reserve.store(true, Ordering::Relaxed);
        self
    }

    /// Whether this hit should write the copy to the reserve (issue #12 A5: an object filled while the
    /// reserve was off, or whose write was skipped, is promoted from memory on a later hit): true once per
    /// entry, for the first caller; [`EdgeEntry::promotion_failed`] gives the turn back.
    pub fn take_promotion(&self) -> bool {
        !self.in_reserve.load(Ordering::Relaxed) && !self.in_reserve.swap(true, Ordering::Relaxed)
    }

    /// A promotion could not start (the write budget was spent): a later hit may try again.
    pub fn promotion_failed(&self) {
        self.in_reserve.store(false, Ordering::Relaxed);
    }

    /// Whether a read at `now_secs` should be noted: at most once per `every_secs` per entry.
    pub fn should_note(&self, now_secs: i64, every_secs: i64) -> bool {
        let last = self.last_noted.load(Ordering::Relaxed);
        now_secs - last >= every_secs
            && self.last_noted.compare_exchange(last, now_secs, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// The in-memory tier.
#[derive(Clone)]
pub struct EdgeTier {
    /// Keyed by cache key alone (it starts with the host); an entry also names its zone.
    cache: Cache<String, Arc<EdgeEntry>>,
    /// Largest body kept in memory.
    pub max_object: u64,
    /// Bytes inserted since evictions were last settled, and how many may be.
    unsettled: Arc<AtomicU64>,
    settle_every: u64,
}

impl EdgeTier {
    /// A tier holding at most `capacity` bytes, none of its objects larger than `max_object`.
    pub fn new(capacity: u64, max_object: u64, idle: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &String, e: &Arc<EdgeEntry>| {
                u32::try_from(key.len() + e.body.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_idle(idle)
            .build();
        Self { cache, max_object, unsettled: Arc::default(), settle_every: (capacity / 16).max(SETTLE_BYTES) }
    }

    /// The zone's entry for `key`, if filled for this zone under its current generation.
    pub fn get(&self, zone: &Zone, key: &str) -> Option<Arc<EdgeEntry>> {
        let entry = self.cache.get(key)?;
        if entry.generation == zone.generation && entry.zone_id == zone.id {
            Some(entry)
        } else {
            self.cache.invalidate(key);
            None
        }
    }

    /// Drops whatever is kept for `key` (an invalidation).
    pub fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Applies the rules' verdicts (`judge`: what the purge rules alone say of an entry) to every entry:
    /// purged ones are dropped, invalidated ones made to carry the invalidation, each only if the key still
    /// holds the entry judged. Returns how many were dropped and marked.
    pub fn sweep(&self, judge: impl Fn(&str, &EdgeEntry) -> Verdict) -> (u64, u64) {
        let (mut dropped, mut marked) = (0, 0);
        for (key, entry) in &self.cache {
            let op = match judge(&key, &entry) {
                Verdict::Keep => continue,
                Verdict::Invalidated(inv) if entry.invalidation.is_some_and(|c| c.revision >= inv.revision) => continue,
                Verdict::Purged => Op::Remove,
                Verdict::Invalidated(inv) => Op::Put(Arc::new(entry.marked(inv))),
            };
            let done = self.cache.entry_by_ref(&*key).and_compute_with(|current| match current {
                Some(c) if Arc::ptr_eq(c.value(), &entry) => op,
                _ => Op::Nop,
            });
            match done {
                CompResult::Removed(_) => dropped += 1,
                CompResult::ReplacedWith(_) => marked += 1,
                _ => {}
            }
        }
        (dropped, marked)
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Keeps an entry, if its body is within the per-object limit (none is, with a zero-sized tier).
    pub fn insert(&self, key: &str, entry: Arc<EdgeEntry>) {
        if self.max_object > 0 && entry.body.len() as u64 <= self.max_object {
            let size = entry.body.len() as u64;
            self.cache.insert(key.to_owned(), entry);
            // moka evicts in batches, after hundreds of writes: with large bodies that would overshoot the
            // budget by hundreds of them. Settle whenever enough has been inserted since the last time.
            let since = self.unsettled.fetch_add(size, Ordering::Relaxed) + size;
            if since >= self.settle_every {
                self.unsettled.store(0, Ordering::Relaxed);
                self.cache.run_pending_tasks();
            }
        }
    }
}
