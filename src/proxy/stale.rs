//! Serving stale copies (issue #12 A2; RFC 5861, RFC 9111 §4.2.4), in both tiers.
//!
//! - Within a copy's `stale-while-revalidate` window it is served at once (`cf-cache-status: UPDATING`)
//!   while one request revalidates it in the background: the first such request leads that revalidation
//!   (coalesced with any fill of the key), the others only serve the copy.
//! - When the origin fails, times out, or answers `500`, `502`, `503` or `504` to a validation, a copy
//!   within its `stale-if-error` window, or within `--use-stale-on-error`, is served instead of the error
//!   (`STALE`); so is one for the requests that were waiting on that validation.
//!
//! A purged copy is never found, so never served stale (SPEC §10); an invalidated one's windows count from
//! the invalidation. What a response forbids (`must-revalidate`, ...) is decided in
//! [`crate::http_cache::StaleUse`].

use std::time::SystemTime;

use http::{
    Method, Response, StatusCode,
    header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE},
};
use http_body_util::BodyExt;

use super::{
    Ctx,
    coalesce::{FillGuard, Filled, Joined},
    error::ProxyError,
    lookup::{Found, Tier},
    origin::OriginResponseBody,
    ranges::Filling,
    respond::Answer,
};
use crate::{
    http_cache::{StaleUse, StoredResponse},
    metrics::CacheStatus,
};

/// Most background revalidations under way at once, over all zones: each holds an origin connection and
/// may read a whole body, and none is held back by a client, so this is what bounds the origin load that
/// fast `UPDATING` answers can cause.
pub const BACKGROUND_REVALIDATIONS: usize = 64;

/// What asking the origin about a stale copy gave (see [`Ctx::revalidate`]).
pub enum Revalidated {
    /// A `304` refreshed the copy in every tier: serve it with this stored response.
    Refreshed(std::sync::Arc<StoredResponse>),
    /// The answer to send: the origin's new response (filling the tiers), or its failure.
    Answered(Answer),
    /// The origin failed, and the caller said it would serve the stale copy instead; if it finds it may not
    /// after all, it answers with this.
    OriginFailed(OriginFailure),
}

/// How the origin failed a validation.
pub enum OriginFailure {
    /// No response (refused, reset, timed out, ...).
    Error(ProxyError),
    /// `500`, `502`, `503` or `504`, with when it was asked.
    Status(Response<OriginResponseBody>, SystemTime),
}

/// Statuses that count as the origin failing (RFC 5861 §4: "an error is any situation that would result in
/// a 500, 502, 503, or 504 HTTP response status code being returned").
pub fn is_origin_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

impl Ctx {
    /// Whether `found` may answer this request stale at `now`, for `why`.
    pub(super) fn may_serve_stale(&self, found: &Found, why: StaleUse, now: SystemTime) -> bool {
        found.stored().may_serve_stale(&self.parts, why, now, found.invalidated_at, &self.proxy.rules)
    }

    /// Serving stale because the origin failed, as this server is configured to.
    pub(super) fn on_error(&self) -> StaleUse {
        StaleUse::OnError { operator: self.proxy.config.use_stale_on_error }
    }

    /// Serves a copy within its `stale-while-revalidate` window (`UPDATING`), first starting its
    /// revalidation in the background, unless a request for the key is already asking the origin, or
    /// [`BACKGROUND_REVALIDATIONS`] are already under way (a later request starts it then).
    pub(super) async fn serve_while_revalidating(&self, found: Found, now: SystemTime) -> Answer {
        let p = &*self.proxy;
        let permit = p.background.clone().try_acquire_owned();
        if permit.is_err() {
            self.counters.background_revalidations_skipped.increment(1);
        }
        if let Ok(permit) = permit
            && let Joined::Leader(guard) = p.coalescer.join(&self.zone.id, self.zone.generation, &self.key)
        {
            self.counters.background_revalidations.increment(1);
            let (detached, tier) = (self.detached(), found.tier.clone());
            tokio::spawn(async move {
                detached.revalidate_in_background(tier, guard).await;
                drop(permit);
            });
        }
        self.serve_found(found, None, CacheStatus::Updating, now).await
    }

    /// Revalidates a copy nobody waits for: a `304` refreshes it; a new response fills the tiers (its body
    /// read to the end here, bounded by the origin's read timeout); one that fills nothing removes the copy
    /// (see [`Ctx::revalidate`]). A failure, `500`, `502`, `503` and `504` included, changes nothing: the copy
    /// stays, served within its windows, and the requests waiting on this one are told to serve theirs.
    async fn revalidate_in_background(&self, tier: Tier, guard: FillGuard) {
        match self.revalidate(&tier, Some(guard), &|| true).await {
            Revalidated::Answered(answer) if answer.response.extensions().get::<Filling>().is_some() => {
                let mut body = answer.response.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        return;
                    }
                }
            }
            // Counted as an origin error, as one answered is when its error is sent.
            Revalidated::OriginFailed(_) => self.counters.origin_errors.increment(1),
            Revalidated::Answered(_) | Revalidated::Refreshed(_) => {}
        }
    }

    /// Logs an origin failure answered with a stale copy, and tells the requests waiting on this one to
    /// serve theirs too.
    pub(super) fn origin_failed(&self, guard: Option<FillGuard>, why: &str, failure: OriginFailure) -> Revalidated {
        tracing::warn!(zone = %self.zone.name, error = why, "origin failed; a stale copy answers instead");
        if let Some(g) = guard {
            g.complete(Filled::Failed);
        }
        Revalidated::OriginFailed(failure)
    }

    /// This request's context for work that outlives its response: the same zone, key, revision and
    /// invalidation count, asking as a plain `GET` — without the client's range or conditionals, and without
    /// the connection's extensions (a `103` the origin sends goes nowhere).
    fn detached(&self) -> Ctx {
        let mut ctx = self.clone();
        ctx.parts.method = Method::GET;
        for name in [RANGE, IF_RANGE, IF_NONE_MATCH, IF_MODIFIED_SINCE, IF_MATCH, IF_UNMODIFIED_SINCE] {
            ctx.parts.headers.remove(name);
        }
        ctx.parts.extensions = http::Extensions::new();
        ctx.upgrade = false;
        ctx
    }
}
