//! The background work of purges and invalidations (SPEC §10): the rules are logically instant (every node
//! judges copies against them); this job makes the reserve itself say what they said, then retires them.
//!
//! Each round takes the rules not yet worked, and for each zone makes one pass over its current
//! generation in key hash order, judging every entry against those rules as the proxy does
//! ([`crate::purge::PurgeBook`]): purged ones have their bodies deleted, then their entries forgotten, and
//! invalidated ones get the invalidation written into their entries — each only if still exactly as read —
//! and the counts drop by what was deleted. When the pass ends, the rules are marked worked. Every step is
//! idempotent: a crash replays the pass after restart, and two nodes working at once only repeat each
//! other. One pass serves every rule pending for the zone, so the work is one scan of the zone per round,
//! whatever the number of purges.
//!
//! **Retirement.** Once a rule is worked, each node sweeps its memory tiers for it
//! ([`crate::proxy::Sweeper`]); a rule worked and swept by every live node is deleted, and every node
//! forgets it. Rules therefore do not accumulate: the table and each node's book hold only the rules of the
//! last few rounds.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::reclaim::ReclaimError;
use crate::{
    domain::{Invalidation, ZoneId},
    http_cache::{CacheRules, codec},
    purge::{PurgeBook, Subject, Verdict},
    storage::{PendingPurge, PurgeIndex, bodies::BodyStore},
};

/// Rules taken per round.
const RULES_PER_ROUND: u32 = 10_000;

/// Entries read per page of a pass.
const PAGE: u32 = 1000;

/// Deletes purged objects from the reserve.
pub struct PurgeReclaimer {
    index: Arc<dyn PurgeIndex>,
    bodies: Arc<dyn BodyStore>,
    poll_interval: Duration,
    /// Nodes that synced within this long count as live: a rule is retired only once each has swept for it.
    liveness: Duration,
    wake: Arc<Notify>,
}

impl PurgeReclaimer {
    /// `liveness` must be at least the nodes' view lifetime: a node silent for longer no longer serves
    /// stored copies, and empties its memory tiers before it does again.
    pub fn new(
        index: Arc<dyn PurgeIndex>,
        bodies: Arc<dyn BodyStore>,
        poll_interval: Duration,
        liveness: Duration,
    ) -> Self {
        Self { index, bodies, poll_interval, liveness, wake: Arc::default() }
    }

    /// Notified when a purge is recorded, so the work starts at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// One round: every pending rule worked (or an error), then the rules every live node has swept for
    /// retired. Returns how many rules were finished and how many objects deleted or marked.
    pub async fn round(&self) -> Result<(usize, u64), ReclaimError> {
        let worked = self.work().await;
        // Rules worked in earlier rounds retire even when this round's work failed.
        let retired = self.index.retire_purges(self.liveness).await;
        let worked = worked?;
        retired?;
        Ok(worked)
    }

    /// Works every pending rule, zone by zone: a zone whose pass fails does not hold the others back (its
    /// rules stay pending; the first error is returned once the others are done).
    async fn work(&self) -> Result<(usize, u64), ReclaimError> {
        let pending = self.index.pending_purges(RULES_PER_ROUND).await?;
        let mut by_zone: BTreeMap<ZoneId, Vec<PendingPurge>> = BTreeMap::new();
        for p in pending {
            by_zone.entry(p.rule.zone_id.clone()).or_default().push(p);
        }
        let (mut rules, mut objects, mut failed) = (0, 0, None);
        for (zone, pending) in by_zone {
            let worked = async {
                let n = self.pass(&zone, &pending).await?;
                let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
                self.index.finish_purges(&ids).await?;
                Ok::<_, ReclaimError>((ids.len(), n))
            };
            match worked.await {
                Ok((r, n)) => (rules, objects) = (rules + r, objects + n),
                Err(e) => {
                    tracing::warn!(zone = %zone, error = %e, "working a zone's purge rules failed; will retry");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok((rules, objects)),
        }
    }

    /// One pass over the zone's objects, deleting those the rules purge and marking those they invalidate.
    /// Returns how many were deleted or marked.
    async fn pass(&self, zone: &ZoneId, pending: &[PendingPurge]) -> Result<u64, ReclaimError> {
        let book = PurgeBook::default();
        book.apply(&pending.iter().map(|p| p.rule.clone()).collect::<Vec<_>>());
        let rules = CacheRules::default();
        let mut after = String::new();
        let mut done = 0;
        loop {
            let page = self.index.objects_after(zone, &after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.key_hash.clone();
            let full = page.len() == PAGE as usize;
            let (mut purged, mut invalidated) = (Vec::new(), Vec::<(_, Invalidation)>::new());
            for e in page {
                // Metadata this version cannot read is never served (a miss, replaced by the next fill).
                let Some(stored) = codec::decode(&e.meta, &rules) else { continue };
                let subject = Subject { fill_revision: e.fill_revision, key: &e.key, stored: &stored };
                match book.judge(zone, &subject) {
                    Verdict::Purged => purged.push(e),
                    Verdict::Invalidated(inv) => invalidated.push((e, inv)),
                    Verdict::Keep => {}
                }
            }
            if !purged.is_empty() {
                // Bodies first: a crash in between leaves entries the rules still hide, and the replay
                // deletes them (deleting a deleted body is success).
                self.bodies.delete_many(purged.iter().map(|e| e.blob.clone()).collect()).await?;
                done += self.index.forget_purged(&purged).await?;
            }
            done += self.index.mark_invalidated(&invalidated).await?;
            if !full {
                break;
            }
        }
        Ok(done)
    }

    /// Works rounds until `stop`: when woken by a purge, and every poll interval (a purge on another node,
    /// or a node's sweep that lets rules retire).
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.round().await {
                Ok((0, _)) => backoff = Duration::from_secs(1),
                Ok((rules, objects)) => {
                    backoff = Duration::from_secs(1);
                    tracing::info!(rules, objects, "purge and invalidation rules worked in the reserve");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "deleting purged objects failed; will retry");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    continue;
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.poll_interval) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}
