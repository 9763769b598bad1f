//! Validation (RFC 9111 §4.3): asking the origin about a stale copy with its stored validators, and what
//! the answer does to the tiers — a `304` refreshes the copy where it is (the reserve's metadata written
//! before the answer goes back), anything else replaces it; an origin failure may be answered with the
//! stale copy (see `stale`).

use std::{sync::Arc, time::SystemTime};

use http::StatusCode;

use super::{
    Ctx,
    coalesce::{FillGuard, Filled},
    index_cache::Known,
    lookup::{Found, Tier},
    origin::strip_hop_by_hop,
    ranges::Filling,
    respond::Answer,
    stale::{OriginFailure, Revalidated, is_origin_error},
};
use crate::{
    http_cache::{Reuse, StoredResponse, codec},
    metrics::CacheStatus,
    storage::IndexEntry,
};

impl Ctx {
    /// Validates a stale copy and answers: refreshed (`REVALIDATED`), replaced (`EXPIRED`), or, when the
    /// origin fails and the copy may be served stale on error, the stale copy (`STALE`).
    pub(super) async fn validate(&self, found: Found, guard: Option<FillGuard>) -> Answer {
        // The window as it stands when the failure arrives (the origin may have taken its timeout); whether the
        // copy is still there (not purged meanwhile) is looked up again below.
        let (stored, invalidated_at) = (found.stored().clone(), found.invalidated_at);
        let fallback = || {
            stored.may_serve_stale(&self.parts, self.on_error(), SystemTime::now(), invalidated_at, &self.proxy.rules)
        };
        match self.revalidate(&found.tier, guard, &fallback).await {
            Revalidated::Refreshed(fresh) => {
                self.serve_found(found, Some(fresh), CacheStatus::Revalidated, SystemTime::now()).await
            }
            Revalidated::Answered(answer) => answer,
            Revalidated::OriginFailed(failure) => {
                // Looked up again, as the requests that waited on this one do: a purge answered while the
                // origin was asked has removed the copy (SPEC §10), and a refill may have replaced it.
                drop(found);
                let now = SystemTime::now();
                match self.lookup(now).await {
                    // Refilled meanwhile (by a request that did not wait on this one).
                    Some(f) if f.reuse == Reuse::Fresh => self.serve_found(f, None, CacheStatus::Hit, now).await,
                    Some(f) if self.may_serve_stale(&f, self.on_error(), now) => {
                        // Counted as an origin error, as one answered is when its error is sent.
                        self.counters.origin_errors.increment(1);
                        self.serve_found(f, None, CacheStatus::Stale, now).await
                    }
                    _ => match failure {
                        OriginFailure::Error(e) => self.fail(e, CacheStatus::Expired),
                        OriginFailure::Status(resp, sent) => {
                            self.fill_or_pass(resp, sent, None, CacheStatus::Expired).await
                        }
                    },
                }
            }
        }
    }

    /// Asks the origin about a stale copy with its stored validators (RFC 9111 §4.3; without any, the
    /// object is fetched whole): a `304` that selects it refreshes it in every tier before this returns;
    /// anything else replaces it: a full response the tiers do not take removes the copy it supersedes
    /// (RFC 9111 §4.3.3: no stored response nominated is suitable), so it is not served again, not even
    /// stale. When the origin fails, times out or answers `500`, `502`, `503` or `504`, `fallback` is asked
    /// (then, not before): `true` gives [`Revalidated::OriginFailed`], the origin's response dropped.
    pub(super) async fn revalidate(
        &self,
        tier: &Tier,
        guard: Option<FillGuard>,
        fallback: &(dyn Fn() -> bool + Sync),
    ) -> Revalidated {
        let p = &*self.proxy;
        let stored = tier.stored();
        let validators = stored.validators();
        let (resp, sent) = match self.fetch(&validators).await {
            Ok((resp, sent)) if is_origin_error(resp.status()) && fallback() => {
                let why = format!("origin answered {}", resp.status());
                return self.origin_failed(guard, &why, OriginFailure::Status(resp, sent));
            }
            Ok(r) => r,
            Err(e) if fallback() => {
                let why = e.to_string();
                return self.origin_failed(guard, &why, OriginFailure::Error(e));
            }
            Err(e) => return Revalidated::Answered(self.fail(e, CacheStatus::Expired)),
        };
        if validators.is_empty() || resp.status() != StatusCode::NOT_MODIFIED {
            let answer = self.fill_or_pass(resp, sent, guard, CacheStatus::Expired).await;
            let status = answer.response.status();
            if answer.response.extensions().get::<Filling>().is_none() && !is_origin_error(status) {
                self.drop_copies(tier).await;
            }
            return Revalidated::Answered(answer);
        }
        let (mut head, _) = resp.into_parts();
        strip_hop_by_hop(&mut head.headers);
        if !stored.validated_by(&head.headers) {
            // A 304 for a representation we do not hold: fetch it whole.
            return Revalidated::Answered(self.fetch_and_fill(guard, CacheStatus::Expired).await);
        }
        match stored.freshen(&head.headers, &self.as_get(), sent, SystemTime::now(), &p.rules) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                let filled = self.keep(tier, fresh.clone()).await;
                if let Some(g) = guard {
                    g.complete(filled);
                }
                Revalidated::Refreshed(fresh)
            }
            Err(why) => {
                // The update forbids keeping it (e.g. the 304 says no-store): drop it, fetch it whole.
                tracing::debug!(zone = %self.zone.name, reason = why.as_str(), "a 304 made a stored response unstorable");
                self.drop_copies(tier).await;
                Revalidated::Answered(self.fetch_and_fill(guard, CacheStatus::Expired).await)
            }
        }
    }

    /// Keeps a refreshed copy where the stale one was, the reserve's metadata written before the answer goes
    /// back (so every later request sees the refresh). Returns what followers are told.
    async fn keep(&self, tier: &Tier, fresh: Arc<StoredResponse>) -> Filled {
        let p = &*self.proxy;
        match tier {
            Tier::Edge(entry) => {
                let refreshed = Arc::new(entry.refreshed(fresh.clone(), self.fill_revision));
                let landed = self.gate().land_now(&self.key, || p.edge.insert(&self.key, refreshed.clone()));
                if let Some(reserved) = &entry.from_reserve {
                    self.refresh_reserve(reserved, &fresh).await;
                }
                if landed { Filled::Edge(refreshed) } else { Filled::Nothing }
            }
            Tier::Reserve(known) => {
                self.refresh_reserve(&known.entry, &fresh).await;
                Filled::Stored
            }
        }
    }

    /// Writes a refreshed stored response over a reserve object's metadata, if it is still that object.
    async fn refresh_reserve(&self, entry: &IndexEntry, fresh: &Arc<StoredResponse>) {
        let p = &*self.proxy;
        if !self.use_reserve {
            p.index_cache.forget(&self.key);
            return;
        }
        let meta = codec::encode(fresh);
        // Taken before the write: a sweep that begins meanwhile may not see what this keeps in memory.
        let epoch = p.index_cache.epoch();
        let update = p.reserve.update_meta(entry, &meta, self.fill_revision);
        let Some(updated) = p.invalidations.land(&self.key, self.seen, update).await else {
            // Invalidated meanwhile: the object is gone or going.
            return;
        };
        match updated {
            Ok(Some(fill_revision)) => {
                self.counters.class_a.increment(1);
                let mut entry = entry.clone();
                entry.meta = meta;
                entry.fill_revision = fill_revision;
                p.index_cache.forget(&self.key);
                p.index_cache.insert_since(epoch, &self.key, Known::new(entry, fresh.clone()));
            }
            Ok(None) => p.index_cache.forget(&self.key),
            Err(e) => {
                tracing::warn!(zone = %self.zone.name, error = %e, "could not refresh a reserve object's metadata");
                p.index_cache.forget(&self.key);
            }
        }
    }

    /// Removes a copy that may no longer be kept, from every tier.
    async fn drop_copies(&self, tier: &Tier) {
        let p = &*self.proxy;
        p.edge.remove(&self.key);
        p.index_cache.forget(&self.key);
        let in_reserve = match tier {
            Tier::Edge(entry) => entry.maybe_in_reserve(),
            Tier::Reserve(_) => true,
        };
        if in_reserve && let Err(e) = p.reserve.delete(&self.zone.id, &self.key).await {
            tracing::warn!(zone = %self.zone.name, error = %e, "could not remove a reserve object");
        }
    }
}
