//! Filling the caches from an origin response while it streams to the client.
//!
//! [`TeeBody`] passes the origin's body through unchanged and, on the side, gathers it for the edge tier
//! (when small enough, and within its share of the edge-fill budget: past it, the body still streams whole
//! to the client, but the edge is not filled) and hands chunks to a reserve writer task. The client's
//! response never waits for either: chunks go to the writer through an unbounded channel whose backlog is
//! capped in bytes, and a writer that falls behind by more than the cap is abandoned (counted) rather than
//! slowing the client. When the body ends, the edge entry is installed and the writer told to finish, which
//! commits the object only if every announced byte arrived; a body cut short commits nothing.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::{
    Ctx,
    budget::{BudgetShare, BudgetedBuf, Refused},
    coalesce::{FillGuard, Filled},
    edge::{EdgeEntry, EdgeTier},
    index_cache::IndexCache,
    invalidations::{Epoch, Gate, Invalidations},
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

/// What a reserve write of `size` bytes takes from the write budget (`--write-buffer-bytes`): what the
/// upload holds, and a queue of chunks not yet written (for a large body). A write the budget cannot cover
/// is not started (counted as abandoned): when the disk is slower than the traffic, some objects skip the
/// reserve rather than memory growing without bound.
pub fn write_cost(size: u64) -> u64 {
    size.min(upload_memory_bound(size) + WRITER_BACKLOG as u64)
}

/// Gathering a body for the edge tier.
pub struct EdgeFill {
    pub tier: EdgeTier,
    pub key: String,
    pub key_hash: String,
    pub generation: i64,
    pub stored: StoredResponse,
    /// Lands only through this gate.
    pub gate: Gate,
    /// `Content-Length`, when announced.
    pub expected: Option<u64>,
    /// The body so far, within its share of the edge-fill budget (`--edge-fill-buffer-bytes`).
    pub buf: BudgetedBuf,
    /// Counts a fill given up for want of budget.
    pub counters: Arc<ZoneCounters>,
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
        if let Some(edge) = &mut self.edge
            && let Err(refused) = edge.buf.extend(data)
        {
            // Dropping the fill gives its share back; the client's body goes on all the same.
            if refused == Refused::OverBudget {
                edge.counters.edge_fills_skipped.increment(1);
            }
            self.edge = None;
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
            // From here the edge tier accounts for the bytes; the fill's share is given back.
            let entry = EdgeEntry::new(
                stored,
                edge.buf.freeze(),
                (edge.gate.zone.clone(), edge.generation, edge.gate.fill_revision),
                edge.key_hash,
            );
            let entry = Arc::new(if self.reserve.is_some() { entry.written_to_reserve() } else { entry });
            let landed = edge.gate.land_now(&edge.key, || edge.tier.insert(&edge.key, entry.clone()));
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

/// Slices a [`HeldBody`] is sent in.
const HELD_SLICE: usize = 64 * 1024;

/// A reserve body read whole (to be promoted to the edge tier), sent in slices so that it ends only once
/// the connection has taken the last of them; it holds its share of the edge-fill budget until then, or
/// until the client leaves (the body is dropped).
pub struct HeldBody {
    rest: Bytes,
    _share: BudgetShare,
}

impl HeldBody {
    pub fn new(body: Bytes, share: BudgetShare) -> Self {
        Self { rest: body, _share: share }
    }
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(HELD_SLICE);
        Poll::Ready(Some(Ok(Frame::data(self.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
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
