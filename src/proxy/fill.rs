//! The fill phase: an admitted origin response fills the tiers while it streams to its clients.
//!
//! [`TeeBody`] reads the origin's body and, on the side, gathers it for the edge tier (when small enough,
//! and within its share of the edge-fill budget: past it, the body still streams whole, but the edge is not
//! filled) and hands chunks to a reserve writer task (`reserve_fill`). Nothing waits for either. When the
//! body ends, the edge entry is installed and the writer told to finish, which commits the object only if
//! every announced byte arrived; a body cut short installs and commits nothing.
//!
//! Who reads the [`TeeBody`]: when the leader of a coalesced fill gathers a body of announced length for
//! the edge tier, a pump task ([`drain`]) reads it at the origin's pace into a [`SharedBody`], which the
//! leader's client and every follower read at their own (issue #12 A3); the followers are told at once,
//! with the head. Otherwise the leader's client reads it (and followers wait for the outcome).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::SystemTime,
};

use axum::body::Body as AxumBody;
use bytes::Bytes;
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{
    Ctx, admit,
    budget::{BudgetShare, BudgetedBuf, Refused},
    coalesce::{FillGuard, Filled, Streaming},
    edge::{EdgeEntry, EdgeTier},
    invalidations::Gate,
    origin::{OriginResponseBody, strip_hop_by_hop},
    ranges,
    reserve_fill::{self, ReserveFill},
    respond::{self, Answer, ReserveTag},
    shared_body::{SharedBody, SharedWriter},
};
use crate::{
    http_cache::{StoredResponse, codec},
    metrics::{CacheStatus, NotStored, ZoneCounters},
    net::idle_body::BodyError,
    reserve::key_hash,
};

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
    pub buf: EdgeBuf,
    /// Counts a fill given up for want of budget.
    pub counters: Arc<ZoneCounters>,
}

/// Where a body gathered for the edge tier is kept while it arrives.
pub enum EdgeBuf {
    /// In the filling request's own buffer.
    Own(BudgetedBuf),
    /// In a body its clients read as it arrives; dropping this fails them.
    Shared(SharedWriter),
}

impl EdgeBuf {
    fn len(&self) -> usize {
        match self {
            Self::Own(buf) => buf.len(),
            Self::Shared(writer) => writer.len(),
        }
    }

    fn extend(&mut self, data: &[u8]) -> Result<(), Refused> {
        match self {
            Self::Own(buf) => buf.extend(data),
            Self::Shared(writer) => writer.extend(data),
        }
    }

    /// The whole body, its share of the budget given back.
    fn freeze(self) -> Bytes {
        match self {
            Self::Own(buf) => buf.freeze(),
            Self::Shared(writer) => writer.finish(),
        }
    }
}

/// The origin body on its way to its reader, filling the tiers on the side.
pub struct TeeBody {
    /// First, so that a body dropped unfinished releases the key before its shared body (if any) fails:
    /// a request that then arrives leads a new fill rather than joining the failed one.
    guard: Option<FillGuard>,
    inner: OriginResponseBody,
    edge: Option<EdgeFill>,
    reserve: Option<ReserveFill>,
}

impl TeeBody {
    pub fn new(
        inner: OriginResponseBody,
        edge: Option<EdgeFill>,
        reserve: Option<ReserveFill>,
        guard: Option<FillGuard>,
    ) -> Self {
        let mut body = Self { guard, inner, edge, reserve };
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
            // Dropping the fill gives its share back; the body goes on all the same.
            if refused == Refused::OverBudget {
                edge.counters.edge_fills_skipped.increment(1);
            }
            self.edge = None;
        }
        if let Some(w) = &self.reserve
            && !w.send(data)
        {
            // Dropping the sender abandons the write.
            self.reserve = None;
        }
    }

    /// The body ended cleanly (called once; later calls find nothing left to do): install the edge entry,
    /// let the writer commit, release the followers.
    fn complete(&mut self) {
        let mut guard = self.guard.take();
        if let Some(edge) = self.edge.take()
            && edge.expected.is_none_or(|n| n == edge.buf.len() as u64)
        {
            let length = edge.buf.len() as u64;
            // A body that came without a length gets one, so a HEAD answered from this copy can say it.
            let stored = Arc::new(edge.stored.with_content_length(length));
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
            w.finish(guard.take());
        }
        // Any guard left is dropped: followers fetch for themselves.
    }

    fn abandon(&mut self) {
        self.guard = None;
        self.edge = None;
        self.reserve = None;
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

/// Reads a body to its end in a task of its own, at the origin's pace: the fill of a `HEAD` request's
/// `GET` (whose client gets the head only), and the pump of a shared body (whose clients read the
/// [`SharedBody`]). It ends with the body, which the origin read timeout bounds, even if every client has
/// left.
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

impl Ctx {
    /// Admits an origin response and streams it to the client, filling what admission allows. For a `HEAD`,
    /// the body is read in the background to fill the tiers and the client gets the head.
    ///
    /// The leader of a coalesced fill (`guard`) tells its followers at once what the head allows: when the
    /// body has an announced length and is gathered for the edge tier, it is shared as it arrives
    /// ([`Filled::Streaming`]: a pump reads the origin, every client reads the [`SharedBody`]); otherwise
    /// they wait for the outcome ([`Filled::Gathering`]).
    pub(super) fn fill(
        &self,
        resp: Response<OriginResponseBody>,
        sent: SystemTime,
        guard: Option<FillGuard>,
        status: CacheStatus,
    ) -> Answer {
        let p = &*self.proxy;
        let (mut head, body) = resp.into_parts();
        strip_hop_by_hop(&mut head.headers);
        let admission =
            admit::admit(&self.as_get(), &head, self.use_reserve, &p.limits, &p.rules, sent, SystemTime::now());
        let Ok(stored) = admission.stored else {
            self.counters.not_stored(NotStored::NotStorable);
            let response = respond::from_origin(head, AxumBody::new(body), &self.parts);
            return Answer { status: CacheStatus::Bypass, tag: ReserveTag::Bypass, response };
        };
        let length = admission.length;
        // The buffer's share of the fill budget is taken before it allocates: for an announced length (at
        // most the edge tier's object limit, or admission said no), all of it now; else as the body grows.
        let buf = admission.edge.then(|| BudgetedBuf::new(&p.fill_budget, length, p.edge.max_object)).flatten();
        if admission.edge && buf.is_none() {
            self.counters.edge_fills_skipped.increment(1);
        }
        // A body of announced length (its share covers it whole: it can never be refused midway) is shared.
        let mut shared = None;
        let buf = buf.map(|buf| match length {
            Some(n) if guard.is_some() => {
                let (body, writer) = SharedBody::new(buf, n);
                shared = Some(body);
                EdgeBuf::Shared(writer)
            }
            _ => EdgeBuf::Own(buf),
        });
        let edge = buf.map(|buf| EdgeFill {
            tier: p.edge.clone(),
            key: self.key.clone(),
            key_hash: key_hash(&self.key),
            generation: self.zone.generation,
            stored: stored.clone(),
            gate: self.gate(),
            expected: length,
            buf,
            counters: self.counters.clone(),
        });
        let reserve = match admission.reserve {
            Ok(size) => match p.write_budget.take(reserve_fill::write_cost(size)) {
                Some(budget) => {
                    Some(self.reserve_write(budget, codec::encode(&stored), size, self.fill_revision).spawn())
                }
                None => {
                    self.counters.writes_abandoned.increment(1);
                    None
                }
            },
            Err(_) => None,
        };
        let tag = self.reserve_tag(admission.reserve, reserve.is_some());
        if edge.is_none() && reserve.is_none() {
            return Answer { status, tag, response: respond::from_origin(head, AxumBody::new(body), &self.parts) };
        }
        if let Some(g) = &guard {
            g.publish(match &shared {
                Some(body) => Filled::Streaming(Arc::new(Streaming {
                    stored: Arc::new(stored),
                    body: body.clone(),
                    fill_revision: self.fill_revision,
                    seen: self.seen,
                })),
                None => Filled::Gathering,
            });
        }
        let tee = TeeBody::new(body, edge, reserve, guard);
        let head_only = self.parts.method == Method::HEAD;
        let body = match shared {
            // The pump: the origin is read at its own pace, whoever reads the shared body.
            Some(shared) => {
                drain(tee);
                if head_only { AxumBody::empty() } else { AxumBody::new(shared.reader()) }
            }
            None if head_only => {
                drain(tee);
                AxumBody::empty()
            }
            None => AxumBody::new(tee),
        };
        let mut response = respond::from_origin(head, body, &self.parts);
        response.extensions_mut().insert(ranges::Filling);
        Answer { status, tag, response }
    }
}
