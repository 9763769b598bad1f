//! Compaction of the local segment store: a segment that is mostly dead (its records replaced, evicted,
//! purged or never indexed) has its live records copied to the active segment, the index pointed at the
//! copies, and is then removed.
//!
//! The index is the cursor, so every crash point is safe: copies written but not yet named by the index
//! are dead records in a newer segment; entries already pointed at their copies read from there; the old
//! segment is removed only after every live entry has moved, and until then still serves the rest. A
//! segment is only touched once its lock is free: no process is writing it or holds a body placed in it
//! that the index has not yet recorded.
//!
//! Space: a pass compacts every finished segment whose live bytes are at most [`CompactConfig::live_ratio`]
//! of its size. Afterwards each finished segment is at least that full, so a generation's files hold at most
//! `live / live_ratio` bytes plus its active segment (1.43× with the default 0.7). Old generations are
//! not compacted: their Clear removes them whole.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    domain::ZoneId,
    metrics::Metrics,
    storage::{
        CompactionIndex, ObjectIndex, Relocation, StoreError,
        bodies::{BodyStore, segment::SegmentBodies},
    },
};

/// Pacing and thresholds of compaction.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// How often to look for segments to compact.
    pub interval: Duration,
    /// A finished segment whose live bytes are at most this share of its size is compacted.
    pub live_ratio: f64,
    /// Look at every generation at least this often, even without deletions seen by this process (other
    /// processes' deletions, records a crash left unindexed).
    pub full_pass: Duration,
}

impl Default for CompactConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(30), live_ratio: 0.7, full_pass: Duration::from_secs(3600) }
    }
}

/// What went wrong in a compaction pass.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("object index failed")]
    Index(#[from] StoreError),
    #[error("segment store failed")]
    Io(#[from] std::io::Error),
    #[error("body store failed")]
    Body(#[from] object_store::Error),
}

/// Index entries read per page, and relocated per transaction.
const PAGE: u32 = 1000;
const RELOCATE_BATCH: usize = 100;
/// Segment bytes compacted per zone generation and pass at most.
const BATCH_BYTES: u64 = 512 << 20;
/// Bytes of a record header.
const HEADER_LEN: u64 = crate::storage::bodies::segment::format::HEADER_LEN as u64;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub segments_removed: u64,
    pub records_moved: u64,
    pub bytes_moved: u64,
    /// Zone generations skipped because a purge or invalidation rule of the zone was still being worked.
    pub deferred: u64,
}

/// Compacts the segments of a [`SegmentBodies`].
pub struct Compactor {
    index: Arc<dyn ObjectIndex>,
    compaction: Arc<dyn CompactionIndex>,
    store: Arc<SegmentBodies>,
    config: CompactConfig,
    /// What [`Compactor::run`] reports: segments removed, bytes moved, generations deferred.
    counters: Option<[metrics::Counter; 3]>,
}

impl Compactor {
    pub fn new(
        index: Arc<dyn ObjectIndex>,
        compaction: Arc<dyn CompactionIndex>,
        store: Arc<SegmentBodies>,
        config: CompactConfig,
    ) -> Self {
        Self { index, compaction, store, config, counters: None }
    }

    /// Counts what each pass does in `metrics` ([`crate::metrics::COMPACTED_SEGMENTS`] and its siblings).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.counters = Some([
            metrics.counter(crate::metrics::COMPACTED_SEGMENTS),
            metrics.counter(crate::metrics::COMPACTION_MOVED_BYTES),
            metrics.counter(crate::metrics::COMPACTION_DEFERRED),
        ]);
        self
    }

    /// Runs until `shutdown`: a pass every interval; a full pass at start and every `full_pass`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut since_full = self.config.full_pass;
        loop {
            let full = since_full >= self.config.full_pass;
            let outcome = self.pass(full).await;
            if let (Ok(done), Some([removed, moved, deferred])) = (&outcome, &self.counters) {
                removed.increment(done.segments_removed);
                moved.increment(done.bytes_moved);
                deferred.increment(done.deferred);
            }
            match outcome {
                Ok(done) if done.segments_removed > 0 => {
                    tracing::info!(
                        removed = done.segments_removed,
                        moved = done.records_moved,
                        bytes = done.bytes_moved,
                        "compacted segments"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "a compaction pass failed; trying again later"),
            }
            since_full = if full { Duration::ZERO } else { since_full + self.config.interval };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// One pass over every zone generation stored here: each current one that this process saw enough
    /// deletions in (or all, when `full`) is examined and its mostly dead segments compacted.
    pub async fn pass(&self, full: bool) -> Result<Compacted, CompactError> {
        let mut done = Compacted::default();
        for (zone, generation) in self.store.generations()? {
            if self.index.current_generation(&zone).await? != Some(generation) {
                continue; // A cleared (or deleted) zone's generation: its Clear removes it whole.
            }
            let segments = self.store.segments_of(&zone, generation)?;
            let bytes: u64 = segments.iter().map(|(_, len)| len).sum();
            let dead = self.store.dead_bytes(&zone, generation);
            if !full && (dead as f64) < (1.0 - self.config.live_ratio) * bytes as f64 / 2.0 {
                continue;
            }
            self.store.reset_dead_bytes(&zone, generation);
            self.compact_generation(&zone, generation, segments, &mut done).await?;
        }
        Ok(done)
    }

    async fn compact_generation(
        &self,
        zone: &ZoneId,
        generation: i64,
        segments: Vec<(u64, u64)>,
        done: &mut Compacted,
    ) -> Result<(), CompactError> {
        // Live bytes per segment, from the index.
        let mut live: HashMap<u64, u64> = HashMap::new();
        self.each_body(zone, generation, |segment, _, _, size| {
            *live.entry(segment).or_default() += size + HEADER_LEN;
        })
        .await?;
        let mut candidates: Vec<(f64, u64, u64)> = segments
            .iter()
            .filter(|(_, len)| *len > 0)
            .map(|(id, len)| (live.get(id).copied().unwrap_or(0) as f64 / *len as f64, *id, *len))
            .filter(|(ratio, _, _)| *ratio <= self.config.live_ratio)
            .collect();
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Locked first (skipping any still held: being written, or holding a body not yet recorded), so no
        // entry can come to name them; then their live records, read again, are complete. A bounded batch
        // per pass keeps the records held in memory bounded.
        let mut locked = HashMap::new();
        let mut batch_bytes = 0;
        for (_, segment, len) in candidates {
            if batch_bytes >= BATCH_BYTES {
                break;
            }
            if let Some(lock) = self.store.lock_for_compaction(zone, generation, segment)? {
                locked.insert(segment, (lock, Vec::new()));
                batch_bytes += len;
            }
        }
        if locked.is_empty() {
            return Ok(());
        }
        self.each_body(zone, generation, |segment, key_hash, blob, _| {
            if let Some((_, records)) = locked.get_mut(&segment) {
                records.push((key_hash.to_owned(), blob.to_owned()));
            }
        })
        .await?;
        for (segment, (_lock, records)) in locked {
            if !self.move_records(zone, generation, &records, done).await? {
                done.deferred += 1;
                return Ok(());
            }
            self.store.remove_segment(zone, generation, segment)?;
            done.segments_removed += 1;
        }
        Ok(())
    }

    /// Calls `f(segment, key_hash, blob, size)` for every segment-stored body of the zone generation.
    async fn each_body(
        &self,
        zone: &ZoneId,
        generation: i64,
        mut f: impl FnMut(u64, &str, &str, u64),
    ) -> Result<(), CompactError> {
        let mut after = String::new();
        loop {
            let page = self.compaction.bodies_after(zone, generation, &after, PAGE).await?;
            let Some(last) = page.last() else { return Ok(()) };
            after = last.key_hash.clone();
            for b in &page {
                if let Some((segment, _)) = SegmentBodies::segment_of(&b.blob) {
                    f(segment, &b.key_hash, &b.blob, b.size);
                }
            }
        }
    }

    /// Copies the records and relocates their entries. `false` when refused for a rule being worked.
    async fn move_records(
        &self,
        zone: &ZoneId,
        generation: i64,
        records: &[(String, String)],
        done: &mut Compacted,
    ) -> Result<bool, CompactError> {
        for chunk in records.chunks(RELOCATE_BATCH) {
            let mut moves = Vec::with_capacity(chunk.len());
            let mut holds = Vec::with_capacity(chunk.len());
            for (key_hash, blob) in chunk {
                // Gone or damaged: nothing to copy; the entry heals when read (the segment is removed anyway).
                let Some(body) = self.store.open(blob).await? else { continue };
                let body = body.bytes().await?;
                let size = body.len() as u64;
                let copy = self.store.put(zone, generation, key_hash, body).await?;
                moves.push(Relocation { key_hash: key_hash.clone(), from: blob.clone(), to: copy.location.clone() });
                holds.push((copy, size));
            }
            let Some(made) = self.compaction.relocate(zone, generation, &moves).await? else {
                self.store.delete_many(moves.into_iter().map(|m| m.to).collect()).await?;
                return Ok(false);
            };
            let mut unused = Vec::new();
            for ((m, made), (_, size)) in moves.into_iter().zip(made).zip(&holds) {
                if made {
                    done.records_moved += 1;
                    done.bytes_moved += size;
                } else {
                    unused.push(m.to); // The entry changed meanwhile: the copy is dead.
                }
            }
            self.store.delete_many(unused).await?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
