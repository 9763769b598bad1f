//! What background work needs of the object index: the purge and invalidation rules' reserve work, and
//! the compaction of a local segment store. Re-exported from [`crate::storage`].

use std::time::Duration;

use async_trait::async_trait;

use super::{IndexEntry, StoreResult};
use crate::domain::{Invalidation, PurgeRule, ZoneId};

/// A purge or invalidation rule whose reserve work is still to be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPurge {
    pub id: i64,
    pub rule: PurgeRule,
}

/// A body stored in a zone generation: its entry's key, where the body is, and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBody {
    pub key_hash: String,
    pub blob: String,
    pub size: u64,
}

/// A body copied elsewhere by compaction: the entry of `key_hash` is to name `to` instead of `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    pub key_hash: String,
    pub from: String,
    pub to: String,
}

/// What the compaction of a local segment store needs of the index: which bodies are live, and the
/// relocation of entries to their bodies' copies, only where nothing changed them meanwhile.
#[async_trait]
pub trait CompactionIndex: Send + Sync + 'static {
    /// Up to `limit` bodies of the zone's `generation` with a key hash above `after`, in key hash order.
    async fn bodies_after(
        &self,
        zone: &ZoneId,
        generation: i64,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredBody>>;
    /// In one transaction: points each entry at its body's copy if it still names the original. Refused
    /// (`None`, nothing changed) while a purge or invalidation rule of the zone is not yet worked: that
    /// work deletes or marks entries only as it read them, body location included. Else, per relocation,
    /// whether it was made (not when the entry was replaced, evicted or purged meanwhile).
    async fn relocate(&self, zone: &ZoneId, generation: i64, moves: &[Relocation]) -> StoreResult<Option<Vec<bool>>>;
}

/// What the background work of purge and invalidation rules needs (SPEC §10): the rules not yet worked,
/// the zone's objects in pages, deletion (purges) and marking (invalidations) that touch only entries still
/// exactly as read, and the retirement of worked rules. Every step is idempotent, so two nodes working the
/// same rule, or a node replaying one after a crash, do no harm.
#[async_trait]
pub trait PurgeIndex: Send + Sync + 'static {
    /// Up to `limit` rules (purges and invalidations) whose reserve work is not done, oldest first.
    async fn pending_purges(&self, limit: u32) -> StoreResult<Vec<PendingPurge>>;
    /// Up to `limit` entries of the zone's current generation with a key hash above `after`, in key hash
    /// order (a page of a pass over the zone).
    async fn objects_after(&self, zone: &ZoneId, after: &str, limit: u32) -> StoreResult<Vec<IndexEntry>>;
    /// Forgets each entry if it is still exactly as read (same body, same fill revision), subtracting
    /// from the counts what was deleted; returns how many were.
    async fn forget_purged(&self, entries: &[IndexEntry]) -> StoreResult<u64>;
    /// Writes each invalidation into its entry if the entry is still exactly as read and does not carry
    /// a later one; returns how many were written.
    async fn mark_invalidated(&self, marks: &[(IndexEntry, Invalidation)]) -> StoreResult<u64>;
    /// Marks rules as worked: every reserve object they targeted is gone (purge) or carries the
    /// invalidation (invalidate).
    async fn finish_purges(&self, ids: &[i64]) -> StoreResult<()>;
    /// The highest revision through which every rule is worked (the store's current revision when none
    /// is pending): what a node sweeps its memory tiers for.
    async fn purges_done_through(&self) -> StoreResult<i64>;
    /// Retires (deletes) every worked rule of a revision through which every node that synced within
    /// `window` has swept, and raises the store's retired-through revision to it. Returns that revision.
    async fn retire_purges(&self, window: Duration) -> StoreResult<i64>;
}
