//! [`ObjectIndex`] in SQL: look-ups, removals, access times and retention over the (zone, generation)
//! partitions; the write path is in `writes.rs`, the Clear's leases and reclaim in `reclaim.rs`.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use sqlx::Row;

use super::{
    SqlStore, backend,
    partitions::{is_missing_table, objects_table},
    retrying, rows, sql,
    writes::{CountChanges, apply_counts, lock_current, lock_zone_for_share, subtract_deleted},
};
use crate::{
    domain::{Timestamp, ZoneId},
    storage::{Access, BodyRef, ClearLease, IndexEntry, ObjectIndex, RecordOutcome, StoreResult, Usage},
};

/// Reads recorded per transaction by [`ObjectIndex::record_access`] (a few milliseconds of the writer).
const ACCESS_ROWS: usize = 250;

#[async_trait]
impl ObjectIndex for SqlStore {
    async fn current_generation(&self, zone: &ZoneId) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT generation FROM zones WHERE id = $1")
            .bind(zone.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)
    }

    async fn record_batch(&self, entries: &[IndexEntry]) -> StoreResult<Vec<RecordOutcome>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        retrying!(self.record_batch_once(entries))
    }

    async fn lookup(&self, zone: &ZoneId, key_hash: &str) -> StoreResult<Option<IndexEntry>> {
        let Some(mut generation) = self.known_generation(zone).await? else { return Ok(None) };
        // The partition is chosen by the generation remembered; one statement reads the zone's generation
        // and the entry in the same snapshot, so a generation moved on (a Clear, here or on another node)
        // is seen and the read repeated, never answered from the retired one.
        for _ in 0..4 {
            let read = sqlx::query(sql(format!(
                "SELECT z.generation AS current_generation, o.* FROM zones z
                 LEFT JOIN {} o ON o.key_hash = $2 WHERE z.id = $1",
                objects_table(zone, generation)
            )))
            .bind(zone.as_str())
            .bind(key_hash)
            .fetch_optional(&self.read)
            .await;
            let current = match read {
                Ok(None) => {
                    self.forget_generation(zone);
                    return Ok(None);
                }
                Ok(Some(r)) => {
                    let current: i64 = r.get("current_generation");
                    if current == generation {
                        if r.get::<Option<String>, _>("key_hash").is_none() {
                            return Ok(None);
                        }
                        return rows::entry(zone, generation, &r).map(Some);
                    }
                    current
                }
                Err(e) if is_missing_table(&e) => match self.current_generation(zone).await? {
                    Some(g) => g,
                    None => return Ok(None),
                },
                Err(e) => return Err(backend(e)),
            };
            self.remember_generation(zone, current);
            generation = current;
        }
        // The generation moved on four times during one look-up: a miss is always a safe answer.
        Ok(None)
    }

    async fn remove(&self, zone: &ZoneId, key_hash: &str) -> StoreResult<Option<IndexEntry>> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            let Some(locked) = lock_zone_for_share(&mut tx, d, zone).await? else {
                tx.rollback().await.map_err(backend)?;
                return Ok(None);
            };
            let generation = locked.generation;
            let row = sqlx::query(sql(format!(
                "DELETE FROM {} WHERE key_hash = $1 RETURNING *",
                objects_table(zone, generation)
            )))
            .bind(key_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            let removed = row.as_ref().map(|r| rows::entry(zone, generation, r)).transpose()?;
            if let Some(e) = &removed {
                let mut counts = CountChanges::new();
                subtract_deleted(&mut counts, zone.as_str(), e.generation, rows::sql_count(e.size));
                apply_counts(&mut tx, &counts).await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(removed)
        })
    }

    async fn remove_if_blob(&self, zone: &ZoneId, generation: i64, key_hash: &str, blob: &str) -> StoreResult<bool> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            if lock_current(&mut tx, d, zone, generation).await?.is_none() {
                tx.rollback().await.map_err(backend)?;
                return Ok(false);
            }
            let size: Option<i64> = sqlx::query_scalar(sql(format!(
                "DELETE FROM {} WHERE key_hash = $1 AND blob = $2 RETURNING size",
                objects_table(zone, generation)
            )))
            .bind(key_hash)
            .bind(blob)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if let Some(size) = size {
                let mut counts = CountChanges::new();
                subtract_deleted(&mut counts, zone.as_str(), generation, size);
                apply_counts(&mut tx, &counts).await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(size.is_some())
        })
    }

    async fn usage(&self, zone: &ZoneId) -> StoreResult<Usage> {
        let row = sqlx::query(
            "SELECT g.objects, g.bytes FROM generations g JOIN zones z ON z.id = g.zone_id AND z.generation = g.generation
             WHERE g.zone_id = $1",
        )
        .bind(zone.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        Ok(row
            .map(|r| Usage {
                objects: u64::try_from(r.get::<i64, _>("objects")).unwrap_or(0),
                bytes: u64::try_from(r.get::<i64, _>("bytes")).unwrap_or(0),
            })
            .unwrap_or_default())
    }

    async fn update_meta(
        &self,
        zone: &ZoneId,
        generation: i64,
        key_hash: &str,
        blob: &str,
        meta: &[u8],
        fill_revision: i64,
    ) -> StoreResult<Option<i64>> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            // The zone first, as every writer locks it: a purge commits either before this reads its
            // revision (and the fill revision stays below the rule's) or after this commits (and its
            // background work reads the entry as written here).
            let Some(locked) = lock_current(&mut tx, d, zone, generation).await? else {
                tx.rollback().await.map_err(backend)?;
                return Ok(None);
            };
            let raise_to = if fill_revision >= locked.purge_revision { fill_revision } else { 0 };
            let after: Option<i64> = sqlx::query_scalar(sql(format!(
                "UPDATE {} SET meta = $3, fill_revision = {}(fill_revision, $4)
                 WHERE key_hash = $1 AND blob = $2
                 RETURNING fill_revision",
                objects_table(zone, generation),
                d.greatest()
            )))
            .bind(key_hash)
            .bind(blob)
            .bind(meta)
            .bind(raise_to)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(after)
        })
    }

    async fn record_access(&self, accesses: &[Access]) -> StoreResult<()> {
        if accesses.is_empty() {
            return Ok(());
        }
        let d = self.dialect;
        // Key order: two nodes flushing overlapping reads lock rows in the same order.
        let mut sorted: Vec<&Access> = accesses.iter().collect();
        sorted.sort_by(|a, b| {
            (a.zone_id.as_str(), a.generation, &a.key_hash).cmp(&(b.zone_id.as_str(), b.generation, &b.key_hash))
        });
        // In transactions of ACCESS_ROWS: a flush of tens of thousands of reads in one would hold SQLite's
        // single write lock for seconds on a busy machine, and the zone sync's record waits for it.
        for chunk in sorted.chunks(ACCESS_ROWS) {
            retrying!(async {
                let mut tx = self.begin_write().await?;
                // Each zone locked once, in id order; reads of a retired generation are dropped.
                let mut current: BTreeMap<&str, Option<i64>> = BTreeMap::new();
                for a in chunk {
                    if !current.contains_key(a.zone_id.as_str()) {
                        let locked = lock_zone_for_share(&mut tx, d, &a.zone_id).await?;
                        current.insert(a.zone_id.as_str(), locked.map(|z| z.generation));
                    }
                    if current[a.zone_id.as_str()] != Some(a.generation) {
                        continue;
                    }
                    sqlx::query(sql(format!(
                        "UPDATE {} SET last_access = $2 WHERE key_hash = $1 AND last_access < $2",
                        objects_table(&a.zone_id, a.generation)
                    )))
                    .bind(&a.key_hash)
                    .bind(a.at.as_micros())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                }
                tx.commit().await.map_err(backend)
            })?;
        }
        Ok(())
    }

    async fn evict_idle(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<IndexEntry>> {
        let d = self.dialect;
        // Zone by zone, each its own transaction: retention is a threshold, so the order across zones does
        // not matter, and within a zone the least recently read go first.
        let zones =
            sqlx::query("SELECT id, generation FROM zones ORDER BY id").fetch_all(&self.read).await.map_err(backend)?;
        let mut evicted = Vec::new();
        for z in &zones {
            let Some(left) = (limit as usize).checked_sub(evicted.len()).filter(|&n| n > 0) else { break };
            let zone = rows::zone_id(z.get("id"))?;
            let generation: i64 = z.get("generation");
            let table = objects_table(&zone, generation);
            // A read first: most zones have nothing idle, and the writer is not taken for them.
            let idle = sqlx::query(sql(format!("SELECT 1 FROM {table} WHERE last_access < $1 LIMIT 1")))
                .bind(before.as_micros())
                .fetch_optional(&self.read)
                .await;
            match idle {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) if is_missing_table(&e) => continue,
                Err(e) => return Err(backend(e)),
            }
            let batch = retrying!(async {
                let mut tx = self.begin_write().await?;
                if lock_current(&mut tx, d, &zone, generation).await?.is_none() {
                    // Cleared since the list was read: its Clear deletes the rest.
                    tx.rollback().await.map_err(backend)?;
                    return Ok(Vec::new());
                }
                let deleted = sqlx::query(sql(format!(
                    "DELETE FROM {table} WHERE key_hash IN (
                         SELECT key_hash FROM {table} WHERE last_access < $1 ORDER BY last_access LIMIT $2{})
                     RETURNING *",
                    d.skip_locked()
                )))
                .bind(before.as_micros())
                .bind(i64::try_from(left).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await;
                let deleted = match deleted {
                    // The zone moved on and its Clear completed since the list was read.
                    Err(e) if is_missing_table(&e) => return Ok(Vec::new()),
                    other => other.map_err(backend)?,
                };
                let batch =
                    deleted.iter().map(|r| rows::entry(&zone, generation, r)).collect::<StoreResult<Vec<_>>>()?;
                let mut counts = CountChanges::new();
                for e in &batch {
                    subtract_deleted(&mut counts, zone.as_str(), generation, rows::sql_count(e.size));
                }
                apply_counts(&mut tx, &counts).await?;
                tx.commit().await.map_err(backend)?;
                Ok(batch)
            })?;
            evicted.extend(batch);
        }
        Ok(evicted)
    }

    async fn claim_clear(&self, node: &str, lease: Duration) -> StoreResult<Option<ClearLease>> {
        self.claim_clear_lease(node, lease).await
    }

    async fn bodies_below(&self, zone: &ZoneId, below: i64, limit: u32) -> StoreResult<Vec<BodyRef>> {
        self.bodies_of_generations_below(zone, below, limit).await
    }

    async fn forget_through(&self, lease: &ClearLease, last: &BodyRef, extend: Duration) -> StoreResult<()> {
        self.forget_entries_through(lease, last, extend).await
    }

    async fn complete_clear(&self, lease: &ClearLease) -> StoreResult<u64> {
        self.complete_clear_dropping(lease).await
    }

    async fn release_clear(&self, lease: &ClearLease, retry_after: Duration, error: &str) -> StoreResult<()> {
        self.release_clear_lease(lease, retry_after, error).await
    }
}
