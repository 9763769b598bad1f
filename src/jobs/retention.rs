//! Retention: reads of reserve objects are noted in memory and written to the index in batches (one
//! transaction per flush, not a write per hit); a sweeper evicts objects not read for the retention period.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{
    directory::ZoneDirectory,
    domain::{Timestamp, ZoneId},
    metrics::Metrics,
    reserve::Reserve,
    storage::Access,
};

/// Objects evicted per index transaction.
const EVICT_BATCH: u32 = 1000;

/// Reads noted since the last flush: (zone, generation, key hash) → last read. Bounded by the number of
/// distinct objects read between two successful flushes.
#[derive(Default)]
pub struct AccessLog {
    pending: Mutex<HashMap<(ZoneId, i64, String), Timestamp>>,
}

impl AccessLog {
    pub fn note(&self, zone: &ZoneId, generation: i64, key_hash: &str, at: Timestamp) {
        let mut pending = self.pending.lock().expect("access log lock");
        pending.insert((zone.clone(), generation, key_hash.to_owned()), at);
    }

    /// Puts back reads whose write failed (the store unreachable), unless a later read of the same object
    /// was noted meanwhile: they are written with the next flush instead of being lost.
    fn put_back(&self, accesses: Vec<Access>) {
        let mut pending = self.pending.lock().expect("access log lock");
        for a in accesses {
            let slot = pending.entry((a.zone_id, a.generation, a.key_hash)).or_insert(a.at);
            *slot = (*slot).max(a.at);
        }
    }

    fn take(&self) -> Vec<Access> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("access log lock"));
        pending
            .into_iter()
            .map(|((zone_id, generation, key_hash), at)| Access { zone_id, generation, key_hash, at })
            .collect()
    }
}

/// Retention settings.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Objects not read for this long are evicted.
    pub retention: Duration,
    /// How often noted reads are written.
    pub flush_interval: Duration,
    /// How often the sweeper looks for idle objects.
    pub sweep_interval: Duration,
}

impl RetentionConfig {
    /// Flushes and sweeps at an eighth of the retention period, between 100 ms and a minute (flush) or an
    /// hour (sweep): an object is evicted within about 1⅛ retention periods of its last read.
    pub fn for_retention(retention: Duration) -> Self {
        let eighth = retention / 8;
        Self {
            retention,
            flush_interval: eighth.clamp(Duration::from_millis(100), Duration::from_secs(60)),
            sweep_interval: eighth.clamp(Duration::from_millis(100), Duration::from_secs(3600)),
        }
    }
}

/// The flusher and the sweeper.
pub struct Retention {
    pub log: Arc<AccessLog>,
    reserve: Reserve,
    directory: ZoneDirectory,
    metrics: Arc<Metrics>,
    config: RetentionConfig,
}

impl Retention {
    pub fn new(reserve: Reserve, directory: ZoneDirectory, metrics: Arc<Metrics>, config: RetentionConfig) -> Self {
        Self { log: Arc::default(), reserve, directory, metrics, config }
    }

    /// Writes the reads noted so far; if that fails, they are kept for the next flush.
    pub async fn flush(&self) {
        let accesses = self.log.take();
        if let Err(e) = self.reserve.record_access(&accesses).await {
            tracing::warn!(error = %e, objects = accesses.len(), "could not record reads for retention; retrying later");
            self.log.put_back(accesses);
        }
    }

    /// Evicts every object idle for longer than the retention period. Returns how many.
    pub async fn sweep(&self) -> usize {
        self.flush().await;
        let before = Timestamp::now().minus(self.config.retention);
        let mut total = 0;
        loop {
            let evicted = match self.reserve.evict_idle(before, EVICT_BATCH).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed");
                    return total;
                }
            };
            total += evicted.len();
            let zones = self.directory.zones();
            for e in &evicted {
                if let Some(z) = zones.iter().find(|z| z.id == e.zone_id) {
                    self.metrics.zone(z).evicted.increment(1);
                }
            }
            if evicted.len() < EVICT_BATCH as usize {
                if total > 0 {
                    tracing::info!(objects = total, "evicted objects idle past the retention period");
                }
                return total;
            }
        }
    }

    /// Flushes and sweeps on their intervals until `stop`, then flushes once more.
    pub async fn run(self, stop: CancellationToken) {
        let mut flush = tokio::time::interval(self.config.flush_interval);
        let mut sweep = tokio::time::interval(self.config.sweep_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = flush.tick() => self.flush().await,
                _ = sweep.tick() => { self.sweep().await; }
            }
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_put_back_after_a_failed_flush_keep_the_latest_time() {
        let log = AccessLog::default();
        let z = ZoneId::generate();
        log.note(&z, 1, "k", Timestamp::from_micros(10));
        let failed = log.take();
        log.note(&z, 1, "k", Timestamp::from_micros(20));
        log.put_back(failed);
        log.put_back(vec![Access {
            zone_id: z.clone(),
            generation: 1,
            key_hash: "j".into(),
            at: Timestamp::from_micros(5),
        }]);
        let mut again = log.take();
        again.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
        let times: Vec<_> = again.iter().map(|a| (a.key_hash.as_str(), a.at.as_micros())).collect();
        assert_eq!(times, vec![("j", 5), ("k", 20)]);
    }
}
