//! Answers from the tiers: a fresh copy in the edge tier or the reserve is served; a stale one is
//! revalidated with the origin (a conditional request), and a `304` refreshes the stored metadata.

use std::{borrow::Cow, sync::Arc, time::SystemTime};

use axum::body::Body;
use http::{
    HeaderMap, Method, StatusCode,
    header::{AUTHORIZATION, COOKIE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, PROXY_AUTHORIZATION},
    request, response,
};
use http_cache_semantics::{AfterResponse, BeforeRequest, CachePolicy};

use super::{
    Ctx,
    edge::EdgeEntry,
    forward::{Origin, origin_request},
    index_cache::Known,
    respond::{ReserveTag, from_cache},
    stored, unix_secs,
};
use crate::{metrics::CacheStatus, storage::IndexEntry};

/// The request as the cache policy should judge it: a `HEAD` is answered from a stored `GET`.
pub(super) fn as_get(parts: &request::Parts) -> Cow<'_, request::Parts> {
    if parts.method == Method::HEAD {
        let mut get = parts.clone();
        get.method = Method::GET;
        Cow::Owned(get)
    } else {
        Cow::Borrowed(parts)
    }
}

/// The request less its cookies and credentials, which are never stored beside an object.
fn without_credentials(parts: &request::Parts) -> request::Parts {
    let mut clean = parts.clone();
    for name in [COOKIE, AUTHORIZATION, PROXY_AUTHORIZATION] {
        clean.headers.remove(name);
    }
    clean
}

/// Copies the validators of a conditional request into a 304 that carries none.
fn carry_validators(asked: &HeaderMap, not_modified: &mut HeaderMap) {
    if not_modified.contains_key(ETAG) || not_modified.contains_key(LAST_MODIFIED) {
        return;
    }
    if let Some(etag) = asked.get(IF_NONE_MATCH).filter(|v| v.to_str().is_ok_and(|s| !s.contains(','))) {
        not_modified.insert(ETAG, etag.clone());
    }
    if let Some(since) = asked.get(IF_MODIFIED_SINCE) {
        not_modified.insert(LAST_MODIFIED, since.clone());
    }
}

/// A stale copy, and where it is.
enum Stale {
    Edge(Arc<EdgeEntry>),
    Reserve(Arc<Known>),
}

type Answer = (CacheStatus, axum::response::Response);

impl Ctx<'_> {
    /// Answers from the edge tier or the reserve when either has a copy for this request; `None` for a
    /// miss in both.
    pub(super) async fn answer_from_tiers(&self, origin: &Origin, parts: &request::Parts, key: &str) -> Option<Answer> {
        let p = self.proxy;
        let now = SystemTime::now();
        let judged = as_get(parts);
        if let Some(entry) = p.edge.get(&self.zone, key) {
            match entry.policy.before_request(judged.as_ref(), now) {
                BeforeRequest::Fresh(head) => {
                    self.counters.edge_hits.increment(1);
                    if entry.should_note(unix_secs(now), p.note_every_secs) {
                        p.note_read(&self.zone, entry.generation, &entry.key_hash);
                    }
                    let body = Body::from(entry.body.clone());
                    return Some((CacheStatus::Hit, from_cache(head, body, parts, CacheStatus::Hit, ReserveTag::Edge)));
                }
                BeforeRequest::Stale { request, matches: true } => {
                    self.counters.edge_misses.increment(1);
                    return self.revalidate(origin, parts, key, Stale::Edge(entry), request).await;
                }
                // Another variant (Vary): a miss.
                BeforeRequest::Stale { matches: false, .. } => {}
            }
        }
        self.counters.edge_misses.increment(1);
        if !self.zone.reserve_on {
            return None;
        }
        let Some(known) = self.reserve_lookup(key).await else {
            self.counters.reserve_misses.increment(1);
            return None;
        };
        match known.policy.before_request(judged.as_ref(), now) {
            BeforeRequest::Fresh(head) => {
                let answer = self.serve_reserve(&known.entry, &known.policy, head, parts, CacheStatus::Hit).await;
                if answer.is_none() {
                    self.counters.reserve_misses.increment(1);
                }
                answer
            }
            BeforeRequest::Stale { request, matches: true } => {
                self.counters.reserve_misses.increment(1);
                self.revalidate(origin, parts, key, Stale::Reserve(known), request).await
            }
            BeforeRequest::Stale { matches: false, .. } => {
                self.counters.reserve_misses.increment(1);
                None
            }
        }
    }

    /// What the reserve holds for `key`: from memory when known, else from the index (then remembered).
    async fn reserve_lookup(&self, key: &str) -> Option<Arc<Known>> {
        let p = self.proxy;
        if let Some(known) = p.index_cache.get(&self.zone, key) {
            return Some(known);
        }
        let entry = match p.reserve.find(&self.zone.id, key).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(zone = %self.zone.name, error = %e, "reserve lookup failed; treating as a miss");
                return None;
            }
        };
        let policy = stored::decode(&entry.meta)?;
        Some(p.index_cache.insert(key, Known::new(entry, policy)))
    }

    /// Serves a reserve object, refilling the edge tier when it fits. `None` if the body is gone (replaced
    /// or cleared since it was found).
    async fn serve_reserve(
        &self,
        entry: &IndexEntry,
        policy: &CachePolicy,
        head: response::Parts,
        parts: &request::Parts,
        status: CacheStatus,
    ) -> Option<Answer> {
        let p = self.proxy;
        p.note_read(&self.zone, entry.generation, &entry.key_hash);
        if parts.method == Method::HEAD {
            self.counters.reserve_hits.increment(1);
            return Some((status, from_cache(head, Body::empty(), parts, status, ReserveTag::Hit)));
        }
        let opened = match p.reserve.open(entry).await {
            Ok(Some(got)) => got,
            Ok(None) => {
                p.index_cache.forget(&entry.key);
                return None;
            }
            Err(e) => {
                tracing::warn!(zone = %self.zone.name, error = %e, "reserve read failed; treating as a miss");
                return None;
            }
        };
        self.counters.class_b.increment(1);
        let size = entry.size;
        let body = if size <= p.edge.max_object {
            let bytes = match opened.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(zone = %self.zone.name, error = %e, "reserve read failed; treating as a miss");
                    return None;
                }
            };
            let edge = EdgeEntry::from_reserve(policy.clone(), bytes.clone(), entry.clone());
            p.edge.insert(&entry.key, Arc::new(edge));
            Body::from(bytes)
        } else {
            Body::from_stream(opened.into_stream())
        };
        self.counters.reserve_hits.increment(1);
        self.counters.reserve_bytes_served.increment(size);
        Some((status, from_cache(head, body, parts, status, ReserveTag::Hit)))
    }

    /// Asks the origin whether a stale copy is still good. `None` when the copy vanished meanwhile (the
    /// caller then fetches it as a miss).
    async fn revalidate(
        &self,
        origin: &Origin,
        parts: &request::Parts,
        key: &str,
        stale: Stale,
        conditional: request::Parts,
    ) -> Option<Answer> {
        let p = self.proxy;
        if parts.method == Method::HEAD {
            return Some(self.pass(origin, parts.clone(), Body::empty(), CacheStatus::Expired).await);
        }
        let mut ask = parts.clone();
        ask.headers = conditional.headers;
        let req = match origin_request(origin, &ask, &self.forwarded, Body::empty()) {
            Ok(r) => r,
            Err(_) => return Some(self.bad_origin(CacheStatus::Expired)),
        };
        self.counters.origin_requests.increment(1);
        let resp = match p.origin.send(req).await {
            Ok(r) => r,
            Err(e) => return Some(self.origin_failed(e, CacheStatus::Expired)),
        };
        let (mut rparts, rbody) = resp.into_parts();
        if rparts.status == StatusCode::NOT_MODIFIED {
            // A 304 answers the validators we sent. Some origins leave the validator out of it, which RFC
            // 9111 §4.3.4 would not match to the stored response; put back the ones we asked with.
            carry_validators(&ask.headers, &mut rparts.headers);
        }
        let policy = match &stale {
            Stale::Edge(e) => &e.policy,
            Stale::Reserve(known) => &known.policy,
        };
        // The refreshed policy is stored: judge it against the request without its credentials.
        match policy.after_response(&without_credentials(parts), &rparts, SystemTime::now()) {
            AfterResponse::NotModified(fresh, head) => {
                drop(rbody);
                let status = CacheStatus::Revalidated;
                match stale {
                    Stale::Edge(old) => {
                        if let Some(reserved) = old.from_reserve.clone() {
                            self.refresh_reserve_meta(reserved, &fresh);
                        }
                        let mut entry = EdgeEntry::new(fresh, old.body.clone(), old.generation, old.key_hash.clone());
                        entry.from_reserve = old.from_reserve.clone();
                        p.edge.insert(key, Arc::new(entry));
                        let body = Body::from(old.body.clone());
                        Some((status, from_cache(head, body, parts, status, ReserveTag::Edge)))
                    }
                    Stale::Reserve(known) => {
                        self.refresh_reserve_meta(known.entry.clone(), &fresh);
                        self.serve_reserve(&known.entry, &fresh, head, parts, status).await
                    }
                }
            }
            // Still a 304 that matches nothing: never pass it to a client that did not ask conditionally;
            // the caller fetches the object whole.
            AfterResponse::Modified(..) if rparts.status == StatusCode::NOT_MODIFIED => None,
            AfterResponse::Modified(..) => {
                Some(self.admit(parts, rparts, rbody, key.to_owned(), CacheStatus::Expired, None))
            }
        }
    }

    /// Writes a refreshed policy to the reserve copy, off the response path.
    fn refresh_reserve_meta(&self, entry: IndexEntry, fresh: &CachePolicy) {
        if !self.zone.reserve_on {
            return;
        }
        let reserve = self.proxy.reserve.clone();
        let index_cache = self.proxy.index_cache.clone();
        let counters = self.counters.clone();
        let meta = stored::encode(fresh);
        // Until the write lands, a remembered copy would carry the stale policy.
        index_cache.forget(&entry.key);
        tokio::spawn(async move {
            match reserve.update_meta(&entry, &meta).await {
                Ok(true) => {
                    counters.class_a.increment(1);
                    index_cache.forget(&entry.key);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not refresh a reserve object's metadata"),
            }
        });
    }
}
