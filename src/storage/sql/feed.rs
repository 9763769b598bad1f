//! PostgreSQL's push for the change feed: a `LISTEN` connection that wakes this node's zone sync when
//! another node changes a zone, and wakes waiters for acknowledgements when a node records a sync.
//! Notifications only shorten waits; correctness rests on the polled feed, so a lost one (while the
//! connection is down) costs at most a poll interval.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::{SqlStore, control::CHANNEL};
use crate::storage::ChangeSignals;

impl SqlStore {
    /// Relays notifications into `signals` until `stop`; returns at once for SQLite (one node: nothing to
    /// hear). Reconnects after a failure, every second at most.
    pub async fn relay_notifications(&self, signals: Arc<ChangeSignals>, stop: CancellationToken) {
        let Some(url) = self.listen_url.clone() else { return };
        loop {
            let listened = listen(&url, &signals);
            tokio::select! {
                () = stop.cancelled() => return,
                r = listened => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "the change-notification connection failed; reconnecting");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Listens until the connection fails.
async fn listen(url: &str, signals: &ChangeSignals) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    // Changes made while we were not listening: look now.
    signals.zones.notify_one();
    loop {
        let n = listener.recv().await?;
        match n.payload() {
            "zones" => signals.zones.notify_one(),
            _ => signals.syncs.notify_waiters(),
        }
    }
}
