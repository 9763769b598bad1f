//! Going to the origin: pass-through for what is never cached, and fetches for misses, coalesced, with the
//! decision of what the response may fill (RFC 9111 storability, then the reserve's admission rules).

use std::{sync::Arc, time::SystemTime};

use axum::{body::Body, response::Response};
use bytes::BytesMut;
use http::{
    HeaderMap, Method, StatusCode,
    header::{CONTENT_LENGTH, SET_COOKIE, VARY},
    request, response,
};
use http_cache_semantics::{BeforeRequest, CachePolicy};
use hyper::body::Incoming;

use super::{
    CACHE_OPTIONS, Ctx,
    coalesce::{self, FillGuard, Filled, Joined},
    fill::{EdgeFill, ReserveWrite, TeeBody},
    forward::{Origin, OriginError, origin_request, strip_conditionals, strip_hop_by_hop},
    respond::{ReserveTag, from_cache, plain, tag},
    stored,
};
use crate::{metrics::CacheStatus, reserve::layout};

type Answer = (CacheStatus, Response);

impl Ctx<'_> {
    /// Forwards a request the cache does not handle, streaming both ways.
    pub(super) async fn pass(&self, origin: &Origin, parts: request::Parts, body: Body, status: CacheStatus) -> Answer {
        let req = match origin_request(origin, &parts, &self.forwarded, body) {
            Ok(r) => r,
            Err(_) => return self.bad_origin(status),
        };
        self.counters.origin_requests.increment(1);
        match self.proxy.origin.send(req).await {
            Ok(resp) => {
                let (mut head, body) = resp.into_parts();
                strip_hop_by_hop(&mut head.headers);
                let mut resp = Response::from_parts(head, Body::new(body));
                tag(&mut resp, status, ReserveTag::Bypass);
                (status, resp)
            }
            Err(e) => self.origin_failed(e, status),
        }
    }

    /// Fetches a miss from the origin. Concurrent misses for one key wait for the first one's fill.
    pub(super) async fn fetch(
        &self,
        origin: &Origin,
        parts: request::Parts,
        key: String,
        status: CacheStatus,
    ) -> Answer {
        let p = self.proxy;
        if parts.method == Method::HEAD {
            return self.pass(origin, parts, Body::empty(), status).await;
        }
        let guard = match p.coalescer.join(&self.zone.id, self.zone.generation, &key) {
            Joined::Leader(guard) => Some(guard),
            Joined::Follower(rx) => {
                if let Some(answer) = self.follow(origin, &parts, &key, rx).await {
                    return answer;
                }
                None
            }
        };
        let mut ask = parts.clone();
        strip_conditionals(&mut ask.headers);
        let req = match origin_request(origin, &ask, &self.forwarded, Body::empty()) {
            Ok(r) => r,
            Err(_) => return self.bad_origin(status),
        };
        self.counters.origin_requests.increment(1);
        match p.origin.send(req).await {
            Ok(resp) => {
                let (head, body) = resp.into_parts();
                self.admit(&parts, head, body, key, status, guard)
            }
            Err(e) => self.origin_failed(e, status),
        }
    }

    /// Waits for another request's fill and answers from it; `None` to fetch for ourselves.
    async fn follow(
        &self,
        origin: &Origin,
        parts: &request::Parts,
        key: &str,
        rx: tokio::sync::watch::Receiver<Option<Filled>>,
    ) -> Option<Answer> {
        let filled = tokio::time::timeout(self.proxy.config.origin_timeout, coalesce::wait(rx)).await.ok()?;
        match filled {
            Filled::Edge(entry) => match entry.policy.before_request(parts, SystemTime::now()) {
                BeforeRequest::Fresh(head) => {
                    self.counters.edge_hits.increment(1);
                    let body = Body::from(entry.body.clone());
                    Some((CacheStatus::Hit, from_cache(head, body, parts, CacheStatus::Hit, ReserveTag::Edge)))
                }
                BeforeRequest::Stale { .. } => None,
            },
            Filled::Reserve => self.answer_from_tiers(origin, parts, key).await,
            Filled::Nothing => None,
        }
    }

    /// Streams an origin response to the client, filling the edge tier and the reserve on the way when
    /// the response qualifies:
    /// - cacheable at all: storable for a shared cache (RFC 9111), no `Set-Cookie`, no `Vary: *`;
    /// - edge tier: a body no larger than its per-object limit;
    /// - reserve: the zone's setting `on`, freshness at least the configured minimum, `Content-Length`
    ///   present and within the size limit.
    pub(super) fn admit(
        &self,
        parts: &request::Parts,
        mut head: response::Parts,
        body: Incoming,
        key: String,
        status: CacheStatus,
        guard: Option<FillGuard>,
    ) -> Answer {
        let p = self.proxy;
        let now = SystemTime::now();
        let storable = parts.method == Method::GET
            && !head.headers.contains_key(SET_COOKIE)
            && !vary_star(&head.headers)
            && CachePolicy::new_options(parts, &head, now, CACHE_OPTIONS).is_storable();
        strip_hop_by_hop(&mut head.headers);
        if !storable {
            let mut resp = Response::from_parts(head, Body::new(body));
            tag(&mut resp, CacheStatus::Bypass, ReserveTag::Bypass);
            return (CacheStatus::Bypass, resp);
        }
        // What is stored keeps only the request headers the response varies on: never a client's
        // cookies or credentials.
        let policy = CachePolicy::new_options(&stored_request(parts, &head.headers), &head, now, CACHE_OPTIONS);
        let length = content_length(&head.headers);
        let zone = &self.zone;
        let key_hash = layout::key_hash(&key);
        let edge = length.is_none_or(|n| n <= p.edge.max_object).then(|| EdgeFill {
            tier: p.edge.clone(),
            key: key.clone(),
            key_hash,
            generation: zone.generation,
            policy: policy.clone(),
            expected: length,
            buf: BytesMut::with_capacity(usize::try_from(length.unwrap_or(0)).unwrap_or(0)),
        });
        let admitted = zone.reserve_on
            && policy.time_to_live(now) >= p.config.reserve_min_ttl
            && length.is_some_and(|n| n <= p.config.max_object_bytes);
        let budget = admitted.then(|| p.write_budget.take(length.unwrap_or(0))).flatten();
        if admitted && budget.is_none() {
            self.counters.writes_abandoned.increment(1);
        }
        let reserve = budget.map(|budget| {
            ReserveWrite {
                _budget: budget,
                reserve: p.reserve.clone(),
                index_cache: p.index_cache.clone(),
                directory: p.directory.clone(),
                zone: Arc::clone(zone),
                key,
                meta: stored::encode(&policy),
                size: length.unwrap_or(0),
                counters: self.counters.clone(),
            }
            .spawn()
        });
        let body = if edge.is_none() && reserve.is_none() {
            Body::new(body)
        } else {
            Body::new(TeeBody::new(body, edge, reserve, guard))
        };
        let mut resp = Response::from_parts(head, body);
        tag(&mut resp, status, ReserveTag::miss(zone.reserve_on));
        (status, resp)
    }

    /// A failed origin request: logged with its cause, answered 502 or 504 with a short body.
    pub(super) fn origin_failed(&self, e: OriginError, status: CacheStatus) -> Answer {
        self.counters.origin_errors.increment(1);
        let (code, msg) = (e.status(), e.client_message());
        tracing::warn!(
            zone = %self.zone.name,
            origin = self.zone.origin.as_deref().unwrap_or(""),
            status = code.as_u16(),
            error = format!("{:#}", anyhow::Error::new(e)),
            "origin request failed"
        );
        (status, plain(code, msg, status, ReserveTag::miss(self.zone.reserve_on)))
    }

    /// The zone's origin URL cannot make a request.
    pub(super) fn bad_origin(&self, status: CacheStatus) -> Answer {
        tracing::warn!(zone = %self.zone.name, "the zone's origin URL cannot be used");
        (status, plain(StatusCode::BAD_GATEWAY, "origin misconfigured\n", status, ReserveTag::Bypass))
    }
}

/// `Vary: *`: no request can ever match the stored response.
fn vary_star(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|v| v.trim() == "*")
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The request as stored beside the object: method, URI, host, and only the headers the response varies on.
fn stored_request(parts: &request::Parts, response: &HeaderMap) -> request::Parts {
    let (mut stored, ()) = http::Request::new(()).into_parts();
    stored.method = parts.method.clone();
    stored.uri = parts.uri.clone();
    if let Some(host) = parts.headers.get(http::header::HOST) {
        stored.headers.insert(http::header::HOST, host.clone());
    }
    for name in response.get_all(VARY).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let name = name.trim();
        // Never stored, even when varied on (such a response then never matches again: a miss).
        if ["cookie", "authorization", "proxy-authorization"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        for value in parts.headers.get_all(name) {
            if let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) {
                stored.headers.append(n, value.clone());
            }
        }
    }
    stored
}
