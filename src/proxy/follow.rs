//! What a request does while another leads the origin request for its key (see `coalesce`): it waits for
//! the leader's response head; if the body is shared as it arrives it is answered from it at once (`HIT`),
//! as from an edge copy; if not, it waits for the outcome, at most `--coalesce-timeout`; then it is served
//! from what was filled, or looks the tiers up once more and goes on by itself (or, when the leader found
//! the origin failing, serves a stale copy that may be).

use std::time::SystemTime;

use axum::body::Body;
use tokio::sync::watch;

use super::{
    Ctx,
    coalesce::{self, Filled},
    lookup::{Found, Tier},
    respond::{self, Answer, ReserveTag},
};
use crate::{
    domain::Invalidation,
    http_cache::{Reuse, StoredResponse},
    metrics::CacheStatus,
    purge::Verdict,
};

/// What following another request's origin request gave.
pub(super) enum Followed {
    /// A fresh copy: answered.
    Served(Answer),
    /// Still nothing fresh; this is what the tiers hold now.
    Found(Option<Found>),
}

impl Ctx {
    /// Follows the request leading this key (`rx`): waits for its head at most the origin timeout, then,
    /// for a body not shared, for its outcome at most the coalesce timeout; then looks again.
    pub(super) async fn follow(&self, rx: watch::Receiver<Option<Filled>>) -> Followed {
        let p = &*self.proxy;
        let filled = coalesce::wait(rx, p.config.origin_timeout, p.config.coalesce_timeout).await;
        let now = SystemTime::now();
        let failed = matches!(filled, Filled::Failed);
        match filled {
            Filled::Edge(entry) if self.fresh_for(entry.fill_revision, entry.invalidation, &entry.stored, now) => {
                self.counters.edge_hits.increment(1);
                let tier = Tier::Edge(entry);
                let found = Found { reuse: Reuse::Fresh, tier, body: None, range: None, invalidated_at: None };
                return Followed::Served(self.serve_found(found, None, CacheStatus::Hit, now).await);
            }
            Filled::Streaming(filling)
                if self.fresh_for(filling.fill_revision, None, &filling.stored, now)
                    && p.invalidations.unchanged_since(&self.key, filling.seen) =>
            {
                // Answered as from the edge copy it is becoming; a range is cut from the stream by
                // `ranges::apply`, a client's own conditionals answered by `from_cache`.
                self.counters.edge_hits.increment(1);
                let body = Body::new(filling.body.reader());
                let response = respond::from_cache(&filling.stored, body, &self.parts, now);
                return Followed::Served(Answer { status: CacheStatus::Hit, tag: ReserveTag::Edge, response });
            }
            _ => {}
        }
        match self.lookup(now).await {
            Some(f) if f.reuse == Reuse::Fresh => {
                Followed::Served(self.serve_found(f, None, CacheStatus::Hit, now).await)
            }
            // The leader's validation just found the origin failing: do not ask it again for a copy that may
            // be served stale (see `stale`).
            Some(f) if failed && self.may_serve_stale(&f, self.on_error(), now) => {
                Followed::Served(self.serve_found(f, None, CacheStatus::Stale, now).await)
            }
            other => Followed::Found(other),
        }
    }

    /// Whether a copy the leader filled (or is filling) under `fill_revision` may answer this request as a
    /// fresh hit: no purge rule applies to it, and it is fresh for this request.
    fn fresh_for(
        &self,
        fill_revision: i64,
        carried: Option<Invalidation>,
        stored: &StoredResponse,
        now: SystemTime,
    ) -> bool {
        self.judge(fill_revision, carried, stored) == Verdict::Keep
            && stored.reuse(&self.parts, now, &self.proxy.rules) == Reuse::Fresh
    }
}
