//! Writing an origin body to the reserve while it streams: a writer task per object, fed chunks through an
//! unbounded channel whose backlog is capped in bytes ([`WRITER_BACKLOG`]). A writer that falls behind by
//! more than the cap is abandoned (counted) rather than slowing the body's reader; the object is committed
//! only if every announced byte arrived, so a body cut short commits nothing.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{
    Ctx,
    budget::BudgetShare,
    coalesce::{FillGuard, Filled},
    index_cache::IndexCache,
    invalidations::{Epoch, Invalidations},
};
use crate::{
    domain::Zone,
    metrics::ZoneCounters,
    reserve::{PutOutcome, Reserve, upload_memory_bound},
};

/// Bytes a reserve writer may lag behind the body's reader before it is abandoned.
pub const WRITER_BACKLOG: usize = 16 * 1024 * 1024;

/// What a reserve write of `size` bytes takes from the write budget (`--write-buffer-bytes`): what the
/// upload holds, and a queue of chunks not yet written (for a large body). A write the budget cannot cover
/// is not started (counted as abandoned): when the disk is slower than the traffic, some objects skip the
/// reserve rather than memory growing without bound.
pub fn write_cost(size: u64) -> u64 {
    size.min(upload_memory_bound(size) + WRITER_BACKLOG as u64)
}

enum WriterMsg {
    Chunk(Bytes),
    /// The body ended; the guard (if the edge could not take the object) is released once committed.
    Finish(Option<FillGuard>),
}

/// The body's side of a reserve writer task. Dropped before [`ReserveFill::finish`], it abandons the write.
pub struct ReserveFill {
    tx: mpsc::UnboundedSender<WriterMsg>,
    backlog: Arc<AtomicUsize>,
    counters: Arc<ZoneCounters>,
}

impl ReserveFill {
    /// Hands a chunk to the writer; false (counted as abandoned) when the writer is more than
    /// [`WRITER_BACKLOG`] behind: the caller then drops this, which abandons the write.
    pub fn send(&self, data: &Bytes) -> bool {
        if self.backlog.load(Ordering::Relaxed) + data.len() > WRITER_BACKLOG {
            self.counters.writes_abandoned.increment(1);
            return false;
        }
        self.backlog.fetch_add(data.len(), Ordering::Relaxed);
        let _ = self.tx.send(WriterMsg::Chunk(data.clone()));
        true
    }

    /// The body ended cleanly: the writer commits, then completes `guard` (if any) with
    /// [`Filled::Stored`].
    pub fn finish(self, guard: Option<FillGuard>) {
        let _ = self.tx.send(WriterMsg::Finish(guard));
    }
}

/// What the writer task needs.
pub struct ReserveWrite {
    pub reserve: Reserve,
    /// Told when the object is stored, so no older copy is remembered.
    pub index_cache: IndexCache,
    pub zone: Arc<Zone>,
    pub key: String,
    pub meta: Vec<u8>,
    pub size: u64,
    pub counters: Arc<ZoneCounters>,
    /// Lands only if the key was not invalidated since `seen`.
    pub invalidations: Arc<Invalidations>,
    pub seen: Epoch,
    /// The zone revision the request began under (the index refuses the write if a purge is newer).
    pub fill_revision: i64,
    /// The write's share of the write budget (see [`write_cost`]), held until it ends.
    pub _budget: BudgetShare,
}

impl Ctx {
    /// A reserve write of this request's key, holding `budget` (its share of `--write-buffer-bytes`): `meta`
    /// and `size` of the object, stamped with `fill_revision`, landing only if the key is not invalidated
    /// since this request's look-up.
    pub(super) fn reserve_write(
        &self,
        budget: BudgetShare,
        meta: Vec<u8>,
        size: u64,
        fill_revision: i64,
    ) -> ReserveWrite {
        let p = &*self.proxy;
        ReserveWrite {
            _budget: budget,
            reserve: p.reserve.clone(),
            index_cache: p.index_cache.clone(),
            zone: self.zone.clone(),
            key: self.key.clone(),
            meta,
            size,
            counters: self.counters.clone(),
            invalidations: p.invalidations.clone(),
            seen: self.seen,
            fill_revision,
        }
    }
}

impl ReserveWrite {
    /// Writes a body already whole in memory (an edge-tier copy promoted to the reserve).
    pub fn write_whole(self, body: Bytes) {
        let fill = self.spawn();
        fill.backlog.fetch_add(body.len(), Ordering::Relaxed);
        let _ = fill.tx.send(WriterMsg::Chunk(body));
        let _ = fill.tx.send(WriterMsg::Finish(None));
    }

    /// Starts the writer task.
    pub fn spawn(self) -> ReserveFill {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let fill = ReserveFill { tx, backlog: backlog.clone(), counters: self.counters.clone() };
        tokio::spawn(self.run(rx, backlog));
        fill
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<WriterMsg>, backlog: Arc<AtomicUsize>) {
        let zone = &self.zone;
        let mut upload = match self
            .reserve
            .begin_upload(&zone.id, zone.generation, self.fill_revision, &self.key, self.meta.clone(), self.size)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(zone = %zone.name, error = %e, "could not start a reserve write");
                return;
            }
        };
        while let Some(msg) = rx.recv().await {
            match msg {
                WriterMsg::Chunk(chunk) => {
                    backlog.fetch_sub(chunk.len(), Ordering::Relaxed);
                    if let Err(e) = upload.write(chunk).await {
                        tracing::warn!(zone = %zone.name, error = %e, "reserve write failed");
                        upload.abort().await;
                        return;
                    }
                }
                WriterMsg::Finish(guard) => {
                    // Not if the key was invalidated since the fill began; and while this commits, an
                    // invalidation of the key waits (it then finds the object and removes it).
                    let Some(_landing) = self.invalidations.landing(&self.key, self.seen).await else {
                        upload.abort().await;
                        return;
                    };
                    // The store records it only if the zone's reserve is still on and no Clear started.
                    match upload.finish().await {
                        Ok(PutOutcome::Stored) => {
                            self.counters.class_a.increment(1);
                            self.index_cache.forget(&self.key);
                            if let Some(g) = guard {
                                g.complete(Filled::Stored);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.counters.writes_abandoned.increment(1);
                            tracing::warn!(zone = %zone.name, error = %e, "reserve write not committed");
                        }
                    }
                    return;
                }
            }
        }
        // The sender went away before the body ended: the client left or the origin failed.
        self.counters.writes_abandoned.increment(1);
        upload.abort().await;
    }
}
