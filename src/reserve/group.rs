//! Group commit of streamed writes into the index: concurrent writers share one transaction (and one
//! fsync), at most [`GROUP_MAX`] entries at a time.

use tokio::sync::oneshot;

use super::{PutOutcome, Reserve, ReserveError};
use crate::storage::{IndexEntry, bodies::Written};

/// A write waiting to be recorded, its body store's hold, and where its outcome goes.
pub(super) struct Waiting {
    pub(super) entry: IndexEntry,
    pub(super) hold: Written,
    pub(super) tx: oneshot::Sender<Result<PutOutcome, ReserveError>>,
}

/// Entries recorded per group-commit transaction at most: SQLite has one writer, and everything else that
/// writes (the zone sync's record of what it applied, above all) waits for the transaction holding it,
/// which must stay short under a stream of fills (BENCHMARKS.md, fill). A few hundred entries still share
/// one fsync.
pub(super) const GROUP_MAX: usize = 256;

/// Writes waiting to be recorded together.
#[derive(Default)]
pub(super) struct GroupCommit {
    pub(super) pending: std::sync::Mutex<Vec<Waiting>>,
    pub(super) commit: tokio::sync::Mutex<()>,
}

impl Reserve {
    /// Records one entry, sharing a transaction with whatever other entries are waiting (group commit):
    /// the first writer to get the commit lock commits the oldest [`GROUP_MAX`] queued, so many concurrent
    /// writes cost one fsync instead of one each; a writer whose entry was not among them takes another
    /// turn.
    ///
    /// `hold` (the body store's, [`Written::hold`]) goes with the entry and is dropped once it is recorded,
    /// even if this writer is dropped before.
    pub(super) async fn record_grouped(&self, entry: IndexEntry, hold: Written) -> Result<PutOutcome, ReserveError> {
        let (tx, mut rx) = oneshot::channel();
        self.group.pending.lock().expect("group commit lock").push(Waiting { entry, hold, tx });
        loop {
            let _turn = self.group.commit.lock().await;
            match rx.try_recv() {
                Ok(outcome) => return outcome,
                // The writer that took this entry stopped without an answer (it was dropped mid-commit):
                // whether the entry landed is unknown, as when a commit's connection fails.
                Err(oneshot::error::TryRecvError::Closed) => return Err(ReserveError::BatchFailed),
                Err(oneshot::error::TryRecvError::Empty) => self.commit_group().await,
            }
        }
    }

    /// Commits the oldest [`GROUP_MAX`] entries waiting in the group commit, and tells their writers.
    pub(super) async fn commit_group(&self) {
        let batch: Vec<Waiting> = {
            let mut pending = self.group.pending.lock().expect("group commit lock");
            let n = pending.len().min(GROUP_MAX);
            pending.drain(..n).collect()
        };
        // The holds are dropped when this returns, after the commit.
        let (entries, (_holds, waiters)): (Vec<_>, (Vec<_>, Vec<_>)) =
            batch.into_iter().map(|w| (w.entry, (w.hold, w.tx))).unzip();
        match self.record_each(&entries).await {
            Ok(outcomes) => {
                for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                    let _ = waiter.send(match outcome {
                        PutOutcome::NoZone => Err(ReserveError::NoZone),
                        other => Ok(other),
                    });
                }
            }
            Err(e) => {
                if e.is_outage() {
                    self.health.failed();
                }
                tracing::warn!(error = %e, objects = entries.len(), "recording a batch of reserve writes failed");
                for waiter in waiters {
                    let _ = waiter.send(Err(ReserveError::BatchFailed));
                }
            }
        }
    }
}
