//! Sweeping this node's memory tiers for worked purge and invalidation rules, so that the rules can be
//! retired (SPEC §10; [`crate::jobs::PurgeReclaimer`] does the reserve's part).
//!
//! A rule is judged at every look-up while it exists. To forget it, every copy it targets must say by
//! itself what the rule said: the reserve's are deleted or carry the invalidation once the rule is worked;
//! this node's edge entries are dropped or made to carry it, and its in-memory reserve metadata (which may
//! predate the reserve work) is dropped. A sweep runs once the store says every rule through some revision
//! is worked; the node then reports that revision at its next sync, and rules through the lowest revision
//! every live node reports are retired.
//!
//! Copies that arrive during or after a sweep need no sweep: a fill from before a rule never lands, a
//! look-up that read the index before the sweep began keeps nothing, and whatever is read later was read
//! after the reserve work.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{Proxy, edge::EdgeTier, index_cache::IndexCache};
use crate::{
    directory::ZoneDirectory,
    purge::{PurgeBook, Subject, Verdict},
    storage::{PurgeIndex, StoreError, StoreResult},
};

/// Sweeps one node's memory tiers.
pub struct Sweeper {
    edge: EdgeTier,
    index_cache: IndexCache,
    directory: ZoneDirectory,
    index: Arc<dyn PurgeIndex>,
    interval: Duration,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// The revision swept through.
    pub through: i64,
    pub edge_dropped: u64,
    pub edge_marked: u64,
    pub metadata_dropped: u64,
}

impl Proxy {
    /// A sweeper of this proxy's memory tiers, checking every `interval` whether rules were worked. It
    /// also registers with the zone directory how to empty them (see [`ZoneDirectory::on_flush`]).
    pub fn sweeper(&self, index: Arc<dyn PurgeIndex>, interval: Duration) -> Sweeper {
        let (edge, index_cache) = (self.edge.clone(), self.index_cache.clone());
        self.directory.on_flush(move || {
            edge.clear();
            index_cache.clear();
        });
        Sweeper {
            edge: self.edge.clone(),
            index_cache: self.index_cache.clone(),
            directory: self.directory.clone(),
            index,
            interval,
        }
    }
}

/// Applies the book to both tiers (CPU only; run off the runtime's workers).
fn sweep(book: &PurgeBook, edge: &EdgeTier, index_cache: &IndexCache) -> (u64, u64, u64) {
    let (edge_dropped, edge_marked) = edge
        .sweep(|key, e| book.judge(&e.zone_id, &Subject { fill_revision: e.fill_revision, key, stored: &e.stored }));
    let metadata_dropped = index_cache.sweep(|key, k| {
        let subject = Subject { fill_revision: k.entry.fill_revision, key, stored: &k.stored };
        match book.judge(&k.entry.zone_id, &subject) {
            Verdict::Keep => false,
            Verdict::Purged => true,
            Verdict::Invalidated(inv) => k.entry.invalidation.is_none_or(|c| c.revision < inv.revision),
        }
    });
    (edge_dropped, edge_marked, metadata_dropped)
}

impl Sweeper {
    /// Sweeps if rules were worked since the last sweep. Returns what was done, if anything.
    pub async fn round(&self) -> StoreResult<Option<Swept>> {
        let done = self.index.purges_done_through().await?;
        // Only rules this node holds: its book has every rule through its revision.
        let through = done.min(self.directory.revision());
        let swept = self.directory.swept();
        if through <= swept {
            return Ok(None);
        }
        // Only the rules since the last sweep: copies older rules targeted were swept then, and none has
        // arrived since (see the module docs).
        let rules = self.directory.unswept(through);
        if rules.is_empty() {
            // Zone changes only: nothing to look at.
            self.directory.note_swept(through);
            return Ok(Some(Swept { through, ..Swept::default() }));
        }
        let book = PurgeBook::default();
        book.apply(&rules);
        let (edge, index_cache) = (self.edge.clone(), self.index_cache.clone());
        let (edge_dropped, edge_marked, metadata_dropped) =
            tokio::task::spawn_blocking(move || sweep(&book, &edge, &index_cache))
                .await
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
        self.directory.note_swept(through);
        Ok(Some(Swept { through, edge_dropped, edge_marked, metadata_dropped }))
    }

    /// Sweeps every `interval` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            match self.round().await {
                Ok(Some(s)) => tracing::debug!(?s, "memory tiers swept for worked purge rules"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot sweep the memory tiers for purge rules; will retry"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
