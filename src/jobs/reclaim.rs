//! The reclaimer: deletes the bodies of cleared generations in bounded batches, then completes the Clear.
//!
//! Every node runs one; a Clear is worked by one node at a time, under a lease taken in the database
//! ([`ObjectIndex::claim_clear`]). Each batch deletes bodies first and then forgets their index entries
//! (a range, up to the batch's last entry) in one transaction that also extends the lease, so the index
//! itself is the persisted cursor: a crash replays at most one batch, and deleting an already-deleted body
//! is success. A node that stalls past its lease loses it to another node and cannot forget or complete
//! anything afterwards (the lease's fencing token is checked in those transactions). When no entry of a
//! cleared generation is left, a sweep of the zone's old generations removes bodies that were written but
//! never indexed (a put cut short by a crash), and only then is the Clear marked `Completed`.
//!
//! A body store that keeps a generation's bodies in files of their own ([`BodyStore::drops_generations`]:
//! local segments) needs no batches: one step's sweep removes every file of the cleared generations,
//! whatever their number of objects, and the next step (after the pause), finding no file left, completes
//! the Clear, which drops the generations' index partitions whole (see `storage::sql::partitions`). A crash
//! between the two replays the sweep, which finds nothing.
//!
//! A Clear whose batch fails (a body that cannot be deleted, say) is released with a backoff of its own and
//! the node moves on to other Clears, so one stuck Clear never holds up another zone's.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::storage::{ClearLease, ObjectIndex, StoreError, bodies::BodyStore};

/// Pacing of the reclaimer.
#[derive(Debug, Clone)]
pub struct ReclaimConfig {
    /// Entries per batch; `None` for the body store's preference
    /// ([`BodyStore::preferred_delete_batch`]).
    pub batch_size: Option<u32>,
    /// Pause between batches (0 for none): lets a shared disk breathe.
    pub pause: Duration,
    /// How often to look for work when not woken (another node may have started a Clear).
    pub poll_interval: Duration,
    /// How long a node holds a Clear without renewing it (each batch renews it). After a node dies,
    /// another takes its Clear over within this.
    pub lease: Duration,
}

impl Default for ReclaimConfig {
    fn default() -> Self {
        Self {
            batch_size: None,
            pause: Duration::ZERO,
            poll_interval: Duration::from_secs(2),
            lease: Duration::from_secs(30),
        }
    }
}

/// What one unit of work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Did something; there may be more.
    Busy(BatchTimings),
    /// A Clear's batch failed; it was released to back off, and other Clears may be due.
    Failed,
    /// Nothing to do.
    Idle,
}

/// Where one batch's time went: finding entries, deleting bodies, forgetting entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchTimings {
    pub objects: usize,
    pub find: Duration,
    pub delete_bodies: Duration,
    pub forget: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    #[error("object index failed")]
    Index(#[from] StoreError),
    #[error("body store failed")]
    Blob(#[from] object_store::Error),
}

/// Returns the current backoff and doubles it for next time, up to 30 s.
fn next_backoff(backoff: &mut Duration) -> Duration {
    let now = *backoff;
    *backoff = (now * 2).min(Duration::from_secs(30));
    now
}

/// How long a Clear waits after its `attempts`-th failure in a row: 1 s doubling to 5 minutes.
pub fn clear_backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(8)).min(Duration::from_secs(300))
}

/// Works every pending Clear to completion.
#[derive(Clone)]
pub struct Reclaimer {
    index: Arc<dyn ObjectIndex>,
    bodies: Arc<dyn BodyStore>,
    config: ReclaimConfig,
    /// Entries per batch.
    batch_size: u32,
    /// This node's name in leases.
    node: String,
    wake: Arc<Notify>,
}

impl Reclaimer {
    pub fn new(index: Arc<dyn ObjectIndex>, bodies: Arc<dyn BodyStore>, config: ReclaimConfig, node: String) -> Self {
        let batch_size = config.batch_size.unwrap_or_else(|| bodies.preferred_delete_batch());
        Self { index, bodies, config, batch_size, node, wake: Arc::new(Notify::new()) }
    }

    /// A handle that makes the reclaimer look for work at once (notify it after a Clear starts).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` is cancelled. A failing or panicking step is logged and retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let this = self.clone();
            let outcome = tokio::spawn(async move { this.step().await }).await;
            let wait = match outcome {
                Ok(Ok(Step::Busy(t))) => {
                    tracing::debug!(objects = t.objects, find = ?t.find, delete = ?t.delete_bodies, forget = ?t.forget, "reclaim batch");
                    backoff = Duration::from_millis(100);
                    if self.config.pause.is_zero() {
                        if shutdown.is_cancelled() {
                            return;
                        }
                        continue;
                    }
                    self.config.pause
                }
                Ok(Ok(Step::Failed)) => Duration::ZERO,
                Ok(Ok(Step::Idle)) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.wake.notified() => continue,
                        _ = tokio::time::sleep(self.config.poll_interval) => continue,
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = ?e, "reclaim step failed; retrying in {backoff:?}");
                    next_backoff(&mut backoff)
                }
                Err(join) => {
                    tracing::error!(error = %join, "reclaim step panicked; retrying in {backoff:?}");
                    next_backoff(&mut backoff)
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One bounded unit of work on the Clear this node should work next. Errors of the claim itself (the
    /// database unreachable) are returned; a failure while working a claimed Clear releases it to back
    /// off ([`Step::Failed`]).
    pub async fn step(&self) -> Result<Step, ReclaimError> {
        let Some(lease) = self.index.claim_clear(&self.node, self.config.lease).await? else {
            return Ok(Step::Idle);
        };
        match self.work(&lease).await {
            Ok(timings) => Ok(Step::Busy(timings)),
            Err(ReclaimError::Index(StoreError::LeaseLost)) => {
                tracing::warn!(zone = %lease.clear.zone_id, clear = lease.clear.clear_id, "lost the lease on a clear to another node");
                Ok(Step::Failed)
            }
            Err(e) => {
                let wait = clear_backoff(lease.attempts);
                tracing::warn!(
                    zone = %lease.clear.zone_id, clear = lease.clear.clear_id, error = ?e,
                    "a reclaim batch failed; retrying this clear in {wait:?}, others go first"
                );
                self.index.release_clear(&lease, wait, &format!("{e:?}")).await?;
                Ok(Step::Failed)
            }
        }
    }

    async fn work(&self, lease: &ClearLease) -> Result<BatchTimings, ReclaimError> {
        let clear = &lease.clear;
        let started = Instant::now();
        if self.bodies.drops_generations() {
            // Every body of the cleared generations goes at once, by the file (one step), and then every
            // index entry, by the table (the next step, which finds no file left): the cost follows the
            // number of segments and generations, not of objects.
            let removed = self.bodies.sweep_below(&clear.zone_id, clear.target_generation).await?;
            let delete_bodies = started.elapsed();
            if removed > 0 {
                tracing::info!(zone = %clear.zone_id, files = removed, elapsed = ?delete_bodies, "removed the cleared generations' files");
                return Ok(BatchTimings { delete_bodies, ..Default::default() });
            }
            let objects = usize::try_from(self.index.complete_clear(lease).await?).unwrap_or(usize::MAX);
            let forget = started.elapsed() - delete_bodies;
            tracing::info!(
                zone = %clear.zone_id, clear = clear.clear_id, objects, index = ?forget,
                "cache reserve clear completed"
            );
            return Ok(BatchTimings { objects, find: Duration::ZERO, delete_bodies, forget });
        }
        let batch = self.index.bodies_below(&clear.zone_id, clear.target_generation, self.batch_size).await?;
        let find = started.elapsed();
        let Some(last) = batch.last() else {
            let swept = self.bodies.sweep_below(&clear.zone_id, clear.target_generation).await?;
            if swept > 0 {
                tracing::info!(zone = %clear.zone_id, count = swept, "deleted unindexed bodies");
            }
            self.index.complete_clear(lease).await?;
            tracing::info!(zone = %clear.zone_id, clear = clear.clear_id, "cache reserve clear completed");
            return Ok(BatchTimings { find, ..Default::default() });
        };
        self.bodies.delete_many(batch.iter().map(|b| b.blob.clone()).collect()).await?;
        let delete_bodies = started.elapsed() - find;
        self.index.forget_through(lease, last, self.config.lease).await?;
        let forget = started.elapsed() - find - delete_bodies;
        Ok(BatchTimings { objects: batch.len(), find, delete_bodies, forget })
    }
}
