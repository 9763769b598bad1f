//! The reclaimer: deletes the bodies of cleared generations in bounded batches, then completes the Clear.
//!
//! Each batch deletes bodies first and then forgets their index entries (a range, up to the batch's last
//! entry) in one transaction, so the index itself is the persisted cursor: a crash replays at most one batch, and deleting an already-deleted body
//! is success. When no entry of a cleared generation is left, a sweep of the zone's old `g{n}` prefixes
//! removes bodies that were written but never indexed (a put cut short by a crash), and only then is the
//! Clear marked `Completed`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt, stream};
use object_store::{ObjectStore, path::Path};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::Timestamp,
    reserve::layout,
    storage::{ObjectIndex, PendingClear, StoreError},
};

/// Pacing of the reclaimer.
#[derive(Debug, Clone)]
pub struct ReclaimConfig {
    /// Entries per batch.
    pub batch_size: u32,
    /// Pause between batches (0 for none): lets a shared disk breathe.
    pub pause: Duration,
    /// How often to look for work when not woken (another process may have started a Clear).
    pub poll_interval: Duration,
}

impl Default for ReclaimConfig {
    fn default() -> Self {
        Self { batch_size: 1000, pause: Duration::ZERO, poll_interval: Duration::from_secs(2) }
    }
}

/// What one unit of work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Did something; there may be more.
    Busy(BatchTimings),
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
    #[error("object store failed")]
    Blob(#[from] object_store::Error),
}

/// Returns the current backoff and doubles it for next time, up to 30 s.
fn next_backoff(backoff: &mut Duration) -> Duration {
    let now = *backoff;
    *backoff = (now * 2).min(Duration::from_secs(30));
    now
}

/// Works every pending Clear to completion.
#[derive(Clone)]
pub struct Reclaimer {
    index: Arc<dyn ObjectIndex>,
    blobs: Arc<dyn ObjectStore>,
    config: ReclaimConfig,
    wake: Arc<Notify>,
}

impl Reclaimer {
    pub fn new(index: Arc<dyn ObjectIndex>, blobs: Arc<dyn ObjectStore>, config: ReclaimConfig) -> Self {
        Self { index, blobs, config, wake: Arc::new(Notify::new()) }
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

    /// One bounded unit of work on the oldest pending Clear.
    pub async fn step(&self) -> Result<Step, ReclaimError> {
        let Some(clear) = self.index.pending_clears().await?.into_iter().next() else {
            return Ok(Step::Idle);
        };
        let started = Instant::now();
        let batch = self.index.bodies_below(&clear.zone_id, clear.target_generation, self.config.batch_size).await?;
        let find = started.elapsed();
        if batch.is_empty() {
            self.sweep_unindexed(&clear).await?;
            self.index.complete_clear(&clear, Timestamp::now()).await?;
            tracing::info!(zone = %clear.zone_id, clear = clear.clear_id, "cache reserve clear completed");
            return Ok(Step::Busy(BatchTimings { find, ..Default::default() }));
        }
        let paths: Vec<Path> = batch.iter().map(|b| Path::from(b.blob.as_str())).collect();
        self.delete_all(paths).await?;
        let delete_bodies = started.elapsed() - find;
        let last = batch.last().expect("batch is not empty");
        self.index.forget_through(&clear.zone_id, clear.target_generation, last).await?;
        let forget = started.elapsed() - find - delete_bodies;
        Ok(Step::Busy(BatchTimings { objects: batch.len(), find, delete_bodies, forget }))
    }

    /// Deletes bodies left in the zone's cleared generations that no index entry pointed to.
    async fn sweep_unindexed(&self, clear: &PendingClear) -> Result<(), ReclaimError> {
        let listing = self.blobs.list_with_delimiter(Some(&layout::zone_prefix(&clear.zone_id))).await?;
        for generation_dir in listing.common_prefixes {
            let cleared = generation_dir
                .filename()
                .and_then(layout::parse_generation_segment)
                .is_some_and(|g| g < clear.target_generation);
            if !cleared {
                continue;
            }
            let leftovers: Vec<Path> =
                self.blobs.list(Some(&generation_dir)).map_ok(|m| m.location).try_collect().await?;
            if !leftovers.is_empty() {
                tracing::info!(zone = %clear.zone_id, count = leftovers.len(), "deleting unindexed bodies");
            }
            self.delete_all(leftovers).await?;
        }
        Ok(())
    }

    /// Deletes bodies concurrently; one already gone counts as deleted.
    async fn delete_all(&self, paths: Vec<Path>) -> Result<(), ReclaimError> {
        if paths.is_empty() {
            return Ok(());
        }
        let mut results = self.blobs.delete_stream(stream::iter(paths.into_iter().map(Ok)).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
