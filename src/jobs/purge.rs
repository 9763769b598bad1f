//! Deleting purged objects from the reserve (SPEC §10): the purge itself is logically instant (every node
//! judges copies against its rules); this job frees the reserve's bytes afterwards.
//!
//! Each round takes the purge rules not yet worked, and for each zone makes one pass over its current
//! generation in key hash order, judging every entry against those rules as the proxy does
//! ([`crate::purge::PurgeBook`]): targeted ones have their bodies deleted, then their entries forgotten
//! (only if still exactly as read), and the counts drop by what was deleted. When the pass ends, the rules
//! are marked worked. Every step is idempotent: a crash replays the pass after restart, and two nodes
//! working at once only repeat each other. One pass serves every rule pending for the zone, so the work is
//! one scan of the zone per round, whatever the number of purges.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::reclaim::ReclaimError;
use crate::{
    domain::ZoneId,
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
    wake: Arc<Notify>,
}

impl PurgeReclaimer {
    pub fn new(index: Arc<dyn PurgeIndex>, bodies: Arc<dyn BodyStore>, poll_interval: Duration) -> Self {
        Self { index, bodies, poll_interval, wake: Arc::default() }
    }

    /// Notified when a purge is recorded, so the work starts at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// One round: every pending rule worked (or an error). Returns how many rules were finished and how
    /// many objects deleted.
    pub async fn round(&self) -> Result<(usize, u64), ReclaimError> {
        let pending = self.index.pending_purges(RULES_PER_ROUND).await?;
        let mut by_zone: BTreeMap<ZoneId, Vec<PendingPurge>> = BTreeMap::new();
        for p in pending {
            by_zone.entry(p.rule.zone_id.clone()).or_default().push(p);
        }
        let (mut rules, mut objects) = (0, 0);
        for (zone, pending) in by_zone {
            objects += self.pass(&zone, &pending).await?;
            let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
            self.index.finish_purges(&ids).await?;
            rules += ids.len();
        }
        Ok((rules, objects))
    }

    /// One pass over the zone's objects, deleting those the rules target. Returns how many were deleted.
    async fn pass(&self, zone: &ZoneId, pending: &[PendingPurge]) -> Result<u64, ReclaimError> {
        let book = PurgeBook::default();
        book.apply(&pending.iter().map(|p| p.rule.clone()).collect::<Vec<_>>());
        let rules = CacheRules::default();
        let mut after = String::new();
        let mut deleted = 0;
        loop {
            let page = self.index.objects_after(zone, &after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.key_hash.clone();
            let full = page.len() == PAGE as usize;
            let targeted: Vec<_> = page
                .into_iter()
                .filter(|e| {
                    // Metadata this version cannot read is never served; only its key can target it.
                    let stored = codec::decode(&e.meta, &rules);
                    stored.is_some_and(|stored| {
                        let subject = Subject { fill_revision: e.fill_revision, key: &e.key, stored: &stored };
                        book.judge(zone, &subject) == Verdict::Purged
                    })
                })
                .collect();
            if !targeted.is_empty() {
                // Bodies first: a crash in between leaves entries the rules still hide, and the replay
                // deletes them (deleting a deleted body is success).
                self.bodies.delete_many(targeted.iter().map(|e| e.blob.clone()).collect()).await?;
                deleted += self.index.forget_purged(&targeted).await?;
            }
            if !full {
                break;
            }
        }
        Ok(deleted)
    }

    /// Works rounds until `stop`: when woken by a purge, and every poll interval (a purge on another node).
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.round().await {
                Ok((0, _)) => backoff = Duration::from_secs(1),
                Ok((rules, objects)) => {
                    backoff = Duration::from_secs(1);
                    tracing::info!(rules, objects, "purged objects deleted from the reserve");
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
