//! The look-up phase: a stored response for the request's key, from the edge tier, else from the reserve
//! (when the zone's setting is `on`), judged by [`StoredResponse::reuse`]. A reserve copy is found only with
//! its body open and of the recorded size, so what is found can be served.

use std::{
    ops::Range,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Method, StatusCode};

use object_store::GetResult;

use super::{Ctx, edge::EdgeEntry, index_cache::Known, unix_secs};
use crate::{
    http_cache::{
        Reuse, StoredResponse, codec,
        range::{self, Decision},
    },
    purge::Verdict,
    storage::bodies::in_memory_result,
};

/// How an invalidated copy may be reused: never fresh; it is validated first (SPEC §10).
fn invalidated(reuse: Reuse) -> Reuse {
    if reuse == Reuse::Fresh { Reuse::Validate } else { reuse }
}

/// When the invalidation a verdict names committed: a copy's stale windows count from it (SPEC §10).
fn invalidated_at(verdict: Verdict) -> Option<SystemTime> {
    match verdict {
        Verdict::Invalidated(inv) => {
            Some(UNIX_EPOCH + Duration::from_micros(u64::try_from(inv.at.as_micros()).unwrap_or(0)))
        }
        Verdict::Keep | Verdict::Purged => None,
    }
}

/// A look-up found the body remembered in memory gone.
struct StaleMemory;

/// A stored response that may answer the request, fresh or after validation.
pub struct Found {
    /// [`Reuse::Fresh`] or [`Reuse::Validate`].
    pub reuse: Reuse,
    pub tier: Tier,
    /// A reserve copy's body, open.
    pub body: Option<GetResult>,
    /// The bytes of the body `body` holds, when a range request read only those (see `ranges`).
    pub range: Option<Range<u64>>,
    /// When an invalidation made it stale (see `stale`).
    pub invalidated_at: Option<SystemTime>,
}

/// Where the found copy is.
#[derive(Clone)]
pub enum Tier {
    Edge(Arc<EdgeEntry>),
    Reserve(Arc<Known>),
}

impl Found {
    /// The stored response found.
    pub fn stored(&self) -> &Arc<StoredResponse> {
        self.tier.stored()
    }
}

impl Tier {
    /// The stored response of the copy.
    pub fn stored(&self) -> &Arc<StoredResponse> {
        match self {
            Tier::Edge(entry) => &entry.stored,
            Tier::Reserve(known) => &known.stored,
        }
    }
}

impl Ctx {
    /// Looks the request up in the tiers.
    pub(super) async fn lookup(&self, now: SystemTime) -> Option<Found> {
        let p = &*self.proxy;
        if !self.view_fresh {
            // This node may not know of a purge that has been answered: nothing stored is served.
            self.counters.edge_misses.increment(1);
            return None;
        }
        if let Some(entry) = p.edge.get(&self.zone, &self.key) {
            let verdict = self.judge(entry.fill_revision, entry.invalidation, &entry.stored);
            let reuse = match verdict {
                Verdict::Purged => {
                    p.edge.remove(&self.key);
                    Reuse::Unusable
                }
                Verdict::Invalidated { .. } => invalidated(entry.stored.reuse(&self.parts, now, &p.rules)),
                Verdict::Keep => entry.stored.reuse(&self.parts, now, &p.rules),
            };
            if reuse == Reuse::Fresh {
                self.counters.edge_hits.increment(1);
                if entry.should_note(unix_secs(now), p.note_every_secs) {
                    p.note_read(&self.zone, entry.generation, &entry.key_hash);
                }
            }
            if reuse != Reuse::Unusable {
                let invalidated_at = invalidated_at(verdict);
                return Some(Found { reuse, tier: Tier::Edge(entry), body: None, range: None, invalidated_at });
            }
        }
        self.counters.edge_misses.increment(1);
        if !self.use_reserve {
            return None;
        }
        let found = self.reserve_lookup(now).await;
        match &found {
            Some(f) if f.reuse == Reuse::Fresh => self.counters.reserve_hits.increment(1),
            _ => self.counters.reserve_misses.increment(1),
        }
        found
    }

    async fn reserve_lookup(&self, now: SystemTime) -> Option<Found> {
        match self.reserve_lookup_once(now).await {
            Ok(found) => found,
            // The body remembered in memory is gone: moved by compaction, or replaced, since it was
            // remembered. Forgotten now, so the index is read afresh, and may name another copy.
            Err(StaleMemory) => self.reserve_lookup_once(now).await.ok().flatten(),
        }
    }

    /// One look-up in the reserve; `Err(StaleMemory)` when the entry remembered in memory named a body that
    /// is gone (the entry is forgotten).
    async fn reserve_lookup_once(&self, now: SystemTime) -> Result<Option<Found>, StaleMemory> {
        let p = &*self.proxy;
        let Some((known, remembered)) = self.known(&self.key).await else { return Ok(None) };
        let verdict = self.judge(known.entry.fill_revision, known.entry.invalidation, &known.stored);
        let reuse = match verdict {
            // Its index entry and body go in the background; until then the rule keeps it unseen.
            Verdict::Purged => return Ok(None),
            Verdict::Invalidated { .. } => invalidated(known.stored.reuse(&self.parts, now, &p.rules)),
            Verdict::Keep => known.stored.reuse(&self.parts, now, &p.rules),
        };
        if reuse == Reuse::Unusable {
            return Ok(None);
        }
        // A stale copy served (stale, or after a `304`) is served from this body too: read what a range asks.
        let part = self.range_to_read(&known);
        let opened = match &part {
            // A range past the end (a `416`) reads nothing.
            Some(r) if r.is_empty() => Ok(Some(in_memory_result(bytes::Bytes::new(), 0..0, known.entry.size))),
            _ => p.reserve.open_part(&known.entry, part.clone()).await,
        };
        let body = match opened {
            Ok(Some(body)) => body,
            Ok(None) => {
                // Gone or damaged: the index no longer names it; forget it here too.
                p.index_cache.forget(&self.key);
                return if remembered { Err(StaleMemory) } else { Ok(None) };
            }
            Err(e) => {
                tracing::warn!(zone = %self.zone.name, error = %e, "reserve read failed; treating as a miss");
                return Ok(None);
            }
        };
        self.counters.class_b.increment(1);
        p.note_read(&self.zone, known.entry.generation, &known.entry.key_hash);
        let invalidated_at = invalidated_at(verdict);
        Ok(Some(Found { reuse, tier: Tier::Reserve(known), body: Some(body), range: part, invalidated_at }))
    }

    /// The bytes of a fresh reserve copy a range request asks for, if it gets a `206` (RFC 9110 §14): then
    /// only those are read; an empty range for a `416`.
    fn range_to_read(&self, known: &Known) -> Option<Range<u64>> {
        if self.parts.method != Method::GET || known.stored.status() != StatusCode::OK {
            return None;
        }
        let asked = range::asked(&self.parts.headers)?;
        if !range::if_range_holds(&self.parts.headers, known.stored.headers()) {
            return None;
        }
        match range::decide(asked, known.entry.size) {
            Decision::Partial(part) => Some(part),
            Decision::Unsatisfiable => Some(0..0),
            Decision::Whole => None,
        }
    }

    /// What the reserve holds for `key`, and whether it came from memory: from memory when known, else from
    /// the index (then remembered).
    async fn known(&self, key: &str) -> Option<(Arc<Known>, bool)> {
        let p = &*self.proxy;
        if let Some(known) = p.index_cache.get(&self.zone, key) {
            return Some((known, true));
        }
        // A sweep that began during the read may have been followed by the retirement of a rule whose
        // reserve work the read predates: read again then, and if that happens twice, call it a miss.
        for _ in 0..2 {
            let epoch = p.index_cache.epoch();
            let entry = match p.reserve.find(&self.zone.id, key).await {
                Ok(found) => found?,
                Err(e) => {
                    tracing::warn!(zone = %self.zone.name, error = %e, "reserve lookup failed; treating as a miss");
                    return None;
                }
            };
            if p.index_cache.epoch() != epoch {
                continue;
            }
            // Metadata this version cannot read (an older format) is a miss; a new fill replaces it.
            let stored = codec::decode(&entry.meta, &p.rules)?;
            return Some((p.index_cache.insert_since(epoch, key, Known::new(entry, Arc::new(stored))), false));
        }
        None
    }
}
