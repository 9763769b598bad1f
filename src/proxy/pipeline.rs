//! How the phases follow one another for one request: route it (pass through, or through the cache); look
//! it up; serve a fresh copy, or a stale one within `stale-while-revalidate` (`stale`); otherwise ask the
//! origin (coalesced) to validate the copy (`validate`) or fetch the object; admit and fill; respond.
//! Nothing here calls back into an earlier phase: a request that waited for another's origin request looks
//! once more, then goes on by itself.

use std::{sync::Arc, time::SystemTime};

use axum::body::Body;
use http::{
    Method,
    header::{AUTHORIZATION, IF_MATCH, IF_UNMODIFIED_SINCE, RANGE},
};
use object_store::GetResult;

use super::{
    Ctx,
    coalesce::{FillGuard, Joined},
    edge::EdgeEntry,
    error::ProxyError,
    fill::HeldBody,
    follow::Followed,
    index_cache::Known,
    lookup::{Found, Tier},
    origin::{OriginBody, strip_hop_by_hop},
    ranges,
    respond::{self, Answer, ReserveTag},
};
use crate::{
    http_cache::{Reuse, StaleUse, StoredResponse, invalidation},
    metrics::CacheStatus,
};

impl Ctx {
    /// Serves the request.
    pub(super) async fn serve(&self, body: Body) -> Answer {
        let headers = &self.parts.headers;
        let method = &self.parts.method;
        if (*method != Method::GET && *method != Method::HEAD) || self.upgrade {
            return self.pass(OriginBody::Client(body), CacheStatus::Dynamic).await;
        }
        // Preconditions meant for the origin go to it, with any range as asked (RFC 9111 §4.3.2); so does a
        // range with credentials, whose answer is seldom shared (fetching the whole object for it would let
        // anyone make the origin send a whole object per byte asked).
        let credentialed_range = headers.contains_key(RANGE) && headers.contains_key(AUTHORIZATION);
        if credentialed_range || [IF_MATCH, IF_UNMODIFIED_SINCE].iter().any(|n| headers.contains_key(n)) {
            return self.pass(OriginBody::None, CacheStatus::Bypass).await;
        }
        let mut answer = self.cached().await;
        // A range is answered from what the cache serves (issue #12 A1; see `ranges`).
        answer.response = ranges::apply(&self.parts, answer.response);
        answer
    }

    /// Forwards a request the cache does not answer; an unsafe one that succeeds invalidates what it names.
    pub(super) async fn pass(&self, body: OriginBody, status: CacheStatus) -> Answer {
        let resp = match self.forward(body).await {
            Ok(r) => r,
            Err(e) => return self.fail(e, status),
        };
        let (mut head, body) = resp.into_parts();
        strip_hop_by_hop(&mut head.headers);
        if !invalidation::is_safe(&self.parts.method) {
            self.invalidate(&head).await;
        }
        Answer { status, tag: ReserveTag::Bypass, response: respond::from_origin(head, Body::new(body), &self.parts) }
    }

    /// A GET or HEAD through the cache.
    async fn cached(&self) -> Answer {
        let p = &*self.proxy;
        let now = SystemTime::now();
        let mut found = self.lookup(now).await;
        if let Some(fresh) = found.take_if(|f| f.reuse == Reuse::Fresh) {
            return self.serve_found(fresh, None, CacheStatus::Hit, now).await;
        }
        if StoredResponse::only_if_cached(&self.parts, &p.rules) {
            return self.fail(ProxyError::NotCached, CacheStatus::Miss);
        }
        // A request with credentials may get an answer meant for it alone: it never shares one.
        let shares = !self.parts.headers.contains_key(AUTHORIZATION);
        if shares && let Some(stale) = found.take_if(|f| self.may_serve_stale(f, StaleUse::WhileRevalidate, now)) {
            return self.serve_while_revalidating(stale, now).await;
        }
        let mut guard = None;
        if shares {
            match p.coalescer.join(&self.zone.id, self.zone.generation, &self.key) {
                Joined::Leader(g) => guard = Some(g),
                Joined::Follower(rx) => {
                    // Not held while waiting (a reserve copy holds an open file); the follower looks again.
                    drop(found.take());
                    match self.follow(rx).await {
                        Followed::Served(answer) => return answer,
                        Followed::Found(now_found) => found = now_found,
                    }
                }
            }
        }
        match found {
            Some(stale) => self.validate(stale, guard).await,
            None => self.fetch_and_fill(guard, CacheStatus::Miss).await,
        }
    }

    /// Answers from a found copy (with its refreshed stored response, after a validation).
    pub(super) async fn serve_found(
        &self,
        found: Found,
        fresh: Option<Arc<StoredResponse>>,
        status: CacheStatus,
        now: SystemTime,
    ) -> Answer {
        // Only a plain fresh hit is promoted: a copy refreshed by a validation is served from its refreshed
        // entry, not this one, and a stale one is not worth the write.
        let promotes = fresh.is_none() && status == CacheStatus::Hit;
        let stored = fresh.unwrap_or_else(|| found.stored().clone());
        let (body, tag) = match (found.tier, found.body) {
            (Tier::Edge(entry), _) => {
                if self.use_reserve && promotes && entry.take_promotion() {
                    self.promote(&entry, now);
                }
                (Body::from(entry.body.clone()), ReserveTag::Edge)
            }
            (Tier::Reserve(_), _) if self.parts.method == Method::HEAD => (Body::empty(), ReserveTag::Hit),
            (Tier::Reserve(_), None) => return self.fetch_and_fill(None, CacheStatus::Miss).await,
            (Tier::Reserve(_), Some(body)) if let Some(part) = found.range => {
                // Only the bytes a range asked for were read: never promoted to the edge tier.
                self.counters.reserve_bytes_served.increment(part.end - part.start);
                let mut response =
                    respond::from_cache(&stored, Body::from_stream(body.into_stream()), &self.parts, now);
                response.extensions_mut().insert(ranges::PreRead(part));
                return Answer { status, tag: ReserveTag::Hit, response };
            }
            // A stale copy streams from disk: kept in the edge tier, it could land over what its revalidation
            // put there.
            (Tier::Reserve(known), Some(body)) if matches!(status, CacheStatus::Updating | CacheStatus::Stale) => {
                self.counters.reserve_bytes_served.increment(known.entry.size);
                (Body::from_stream(body.into_stream()), ReserveTag::Hit)
            }
            (Tier::Reserve(known), Some(body)) => {
                let size = known.entry.size;
                self.counters.reserve_bytes_served.increment(size);
                match self.reserve_body(&known, &stored, body).await {
                    Some(body) => (body, ReserveTag::Hit),
                    None => return self.fetch_and_fill(None, CacheStatus::Miss).await,
                }
            }
        };
        Answer { status, tag, response: respond::from_cache(&stored, body, &self.parts, now) }
    }

    /// A reserve hit's body. One small enough for the edge tier is read whole and kept there too, if the
    /// edge-fill budget has room for it (the share held until the client has the body); else it streams
    /// from disk. `None` when the read failed.
    async fn reserve_body(&self, known: &Known, stored: &Arc<StoredResponse>, body: GetResult) -> Option<Body> {
        let p = &*self.proxy;
        let size = known.entry.size;
        if size > p.edge.max_object {
            return Some(Body::from_stream(body.into_stream()));
        }
        let Some(share) = p.fill_budget.take(size) else {
            self.counters.edge_fills_skipped.increment(1);
            return Some(Body::from_stream(body.into_stream()));
        };
        match body.bytes().await {
            Ok(bytes) => {
                let entry = Arc::new(EdgeEntry::from_reserve(stored.clone(), bytes.clone(), known.entry.clone()));
                self.gate().land_now(&self.key, || p.edge.insert(&self.key, entry));
                Some(Body::new(HeldBody::new(bytes, share)))
            }
            Err(e) => {
                tracing::warn!(zone = %self.zone.name, error = %e, "reserve read failed; asking the origin");
                None
            }
        }
    }

    /// Fetches the object whole and fills the tiers from it.
    pub(super) async fn fetch_and_fill(&self, guard: Option<FillGuard>, status: CacheStatus) -> Answer {
        match self.fetch(&[]).await {
            Ok((resp, sent)) => self.fill_or_pass(resp, sent, guard, status).await,
            Err(e) => self.fail(e, status),
        }
    }
}
