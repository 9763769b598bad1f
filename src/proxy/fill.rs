//! Filling the caches from an origin response while it streams to the client.
//!
//! [`TeeBody`] passes the origin's body through unchanged and, on the side, gathers it for the edge tier
//! (when small enough) and hands chunks to a reserve writer task. The client's response never waits for
//! either: chunks go to the writer through an unbounded channel whose backlog is capped in bytes, and a
//! writer that falls behind by more than the cap is abandoned (counted) rather than slowing the client.
//! When the body ends, the edge entry is installed and the writer told to finish, which commits the object
//! only if every announced byte arrived; a body cut short commits nothing.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::{
    coalesce::{FillGuard, Filled},
    edge::{EdgeEntry, EdgeTier},
    index_cache::IndexCache,
    invalidations::{Epoch, Invalidations},
    origin::OriginResponseBody,
};
use crate::net::idle_body::BodyError;
use crate::{
    domain::Zone,
    http_cache::StoredResponse,
    metrics::ZoneCounters,
    reserve::{PutOutcome, Reserve, upload_memory_bound},
};

/// Bytes a reserve writer may lag behind the client before it is abandoned.
const WRITER_BACKLOG: usize = 16 * 1024 * 1024;

/// Memory all reserve writes in flight may hold: bodies gathered for one put, parts being uploaded,
/// chunks queued. A write that would exceed it is not started (counted as abandoned): when the disk is
/// slower than the traffic, some objects skip the reserve rather than memory growing without bound.
pub struct WriteBudget {
    limit: u64,
    used: AtomicU64,
}

impl WriteBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self { limit, used: AtomicU64::new(0) })
    }

    /// Reserves room for a write of `size` bytes, if there is room.
    pub fn take(self: &Arc<Self>, size: u64) -> Option<BudgetGuard> {
        // What the upload holds, and a queue of chunks not yet written (for a large body).
        let cost = size.min(upload_memory_bound(size) + WRITER_BACKLOG as u64);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + cost > self.limit {
                return None;
            }
            match self.used.compare_exchange_weak(used, used + cost, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(BudgetGuard { budget: self.clone(), cost }),
                Err(now) => used = now,
            }
        }
    }
}

/// Room held by one write, given back when the write ends.
pub struct BudgetGuard {
    budget: Arc<WriteBudget>,
    cost: u64,
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.cost, Ordering::AcqRel);
    }
}

/// Gathering a body for the edge tier.
pub struct EdgeFill {
    pub tier: EdgeTier,
    pub key: String,
    pub key_hash: String,
    pub generation: i64,
    pub stored: StoredResponse,
    /// Lands only if the key was not invalidated since `seen`.
    pub invalidations: Arc<Invalidations>,
    pub seen: Epoch,
    /// `Content-Length`, when announced.
    pub expected: Option<u64>,
    pub buf: BytesMut,
}

enum WriterMsg {
    Chunk(Bytes),
    /// The body ended; the guard (if the edge could not take the object) is released once committed.
    Finish(Option<FillGuard>),
}

/// The client side of a reserve writer task.
pub struct ReserveFill {
    tx: mpsc::UnboundedSender<WriterMsg>,
    backlog: Arc<AtomicUsize>,
    counters: Arc<ZoneCounters>,
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
    /// The write's share of the [`WriteBudget`], held until it ends.
    pub _budget: BudgetGuard,
}

impl ReserveWrite {
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
        let mut upload =
            match self.reserve.begin_upload(&zone.id, zone.generation, &self.key, self.meta.clone(), self.size).await {
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

/// The origin body on its way to the client, filling the tiers on the side.
pub struct TeeBody {
    inner: OriginResponseBody,
    edge: Option<EdgeFill>,
    reserve: Option<ReserveFill>,
    guard: Option<FillGuard>,
}

impl TeeBody {
    pub fn new(
        inner: OriginResponseBody,
        edge: Option<EdgeFill>,
        reserve: Option<ReserveFill>,
        guard: Option<FillGuard>,
    ) -> Self {
        let mut body = Self { inner, edge, reserve, guard };
        // An empty body may never be polled.
        if body.inner.is_end_stream() {
            body.complete();
        }
        body
    }

    fn observe(&mut self, data: &Bytes) {
        if let Some(edge) = &mut self.edge {
            if (edge.buf.len() + data.len()) as u64 > edge.tier.max_object {
                self.edge = None;
            } else {
                edge.buf.extend_from_slice(data);
            }
        }
        if let Some(w) = &self.reserve {
            if w.backlog.load(Ordering::Relaxed) + data.len() > WRITER_BACKLOG {
                // Dropping the sender abandons the write.
                w.counters.writes_abandoned.increment(1);
                self.reserve = None;
            } else {
                w.backlog.fetch_add(data.len(), Ordering::Relaxed);
                let _ = w.tx.send(WriterMsg::Chunk(data.clone()));
            }
        }
    }

    /// The body ended cleanly (called once; later calls find nothing left to do): install the edge entry, let the writer commit, release the followers.
    fn complete(&mut self) {
        let mut guard = self.guard.take();
        if let Some(edge) = self.edge.take()
            && edge.expected.is_none_or(|n| n == edge.buf.len() as u64)
        {
            // A body that came without a length gets one, so a HEAD answered from this copy can say it.
            let stored = Arc::new(edge.stored.with_content_length(edge.buf.len() as u64));
            let entry = Arc::new(EdgeEntry::new(stored, edge.buf.freeze(), edge.generation, edge.key_hash));
            let landed =
                edge.invalidations.land_now(&edge.key, edge.seen, || edge.tier.insert(&edge.key, entry.clone()));
            if landed && let Some(g) = guard.take() {
                g.complete(Filled::Edge(entry));
            }
        }
        if let Some(w) = self.reserve.take() {
            let _ = w.tx.send(WriterMsg::Finish(guard.take()));
        }
        // Any guard left is dropped: followers fetch for themselves.
    }

    fn abandon(&mut self) {
        self.edge = None;
        self.reserve = None;
        self.guard = None;
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.observe(data);
                }
                // hyper stops polling once the body says it has ended, so the last frame completes it.
                if this.inner.is_end_stream() {
                    this.complete();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.abandon();
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.complete();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a body to its end with nobody waiting for it: the fill of a `HEAD` request's `GET`, whose client
/// gets the head only.
pub fn drain(body: TeeBody) {
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return;
            }
        }
    });
}
