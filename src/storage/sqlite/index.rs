//! [`ObjectIndex`] on SQLite: entries keyed by (zone, generation, key hash), with per-generation counts.

use async_trait::async_trait;
use sqlx::{Row, Sqlite, Transaction};

use super::{SqliteStore, backend, rows};
use crate::{
    domain::{Timestamp, ZoneId},
    storage::{Access, BodyRef, IndexEntry, ObjectIndex, PendingClear, RecordOutcome, StoreResult, Usage},
};

/// Adds `objects` and `bytes` (either may be negative) to a generation's counts.
async fn add_to_generation(
    tx: &mut Transaction<'static, Sqlite>,
    zone: &ZoneId,
    generation: i64,
    objects: i64,
    bytes: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (zone_id, generation)
         DO UPDATE SET objects = generations.objects + excluded.objects, bytes = generations.bytes + excluded.bytes",
    )
    .bind(zone.as_str())
    .bind(generation)
    .bind(objects)
    .bind(bytes)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Records one entry inside a write transaction (see [`ObjectIndex::record_batch`]).
async fn record_in(tx: &mut Transaction<'static, Sqlite>, e: &IndexEntry) -> StoreResult<RecordOutcome> {
    let current = sqlx::query("SELECT generation, reserve_on FROM zones WHERE id = $1")
        .bind(e.zone_id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .map(|r| (r.get::<i64, _>("generation"), r.get::<i64, _>("reserve_on") != 0));
    match current {
        None => return Ok(RecordOutcome::NoZone),
        Some((g, _)) if g != e.generation => return Ok(RecordOutcome::Superseded),
        Some((_, false)) => return Ok(RecordOutcome::ReserveOff),
        Some(_) => {}
    }
    let old = sqlx::query("SELECT blob, size FROM objects WHERE zone_id = $1 AND generation = $2 AND key_hash = $3")
        .bind(e.zone_id.as_str())
        .bind(e.generation)
        .bind(&e.key_hash)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .map(|r| (r.get::<String, _>("blob"), r.get::<i64, _>("size")));
    sqlx::query(
        "INSERT INTO objects (zone_id, generation, key_hash, cache_key, blob, size, meta, stored_on, last_access)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (zone_id, generation, key_hash) DO UPDATE SET
             cache_key = excluded.cache_key, blob = excluded.blob, size = excluded.size,
             meta = excluded.meta, stored_on = excluded.stored_on, last_access = excluded.last_access",
    )
    .bind(e.zone_id.as_str())
    .bind(e.generation)
    .bind(&e.key_hash)
    .bind(&e.key)
    .bind(&e.blob)
    .bind(rows::sql_count(e.size))
    .bind(&e.meta)
    .bind(e.stored_on.as_micros())
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    let (objects, old_size) = match &old {
        Some((_, size)) => (0, *size),
        None => (1, 0),
    };
    add_to_generation(tx, &e.zone_id, e.generation, objects, rows::sql_count(e.size) - old_size).await?;
    Ok(RecordOutcome::Recorded { replaced_blob: old.map(|(blob, _)| blob).filter(|b| *b != e.blob) })
}

#[async_trait]
impl ObjectIndex for SqliteStore {
    async fn current_generation(&self, zone: &ZoneId) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT generation FROM zones WHERE id = $1")
            .bind(zone.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)
    }

    async fn record_batch(&self, entries: &[IndexEntry]) -> StoreResult<Vec<RecordOutcome>> {
        let mut tx = self.begin_write().await?;
        let mut outcomes = Vec::with_capacity(entries.len());
        for e in entries {
            outcomes.push(record_in(&mut tx, e).await?);
        }
        tx.commit().await.map_err(backend)?;
        Ok(outcomes)
    }

    async fn lookup(&self, zone: &ZoneId, key_hash: &str) -> StoreResult<Option<IndexEntry>> {
        // One statement: the generation read and the entry read see the same snapshot.
        let row = sqlx::query(
            "SELECT o.* FROM objects o JOIN zones z ON z.id = o.zone_id AND z.generation = o.generation
             WHERE o.zone_id = $1 AND o.key_hash = $2",
        )
        .bind(zone.as_str())
        .bind(key_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.as_ref().map(rows::entry).transpose()
    }

    async fn remove(&self, zone: &ZoneId, key_hash: &str) -> StoreResult<Option<IndexEntry>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "DELETE FROM objects WHERE zone_id = $1 AND key_hash = $2
               AND generation = (SELECT generation FROM zones WHERE id = $1)
             RETURNING *",
        )
        .bind(zone.as_str())
        .bind(key_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let removed = row.as_ref().map(rows::entry).transpose()?;
        if let Some(e) = &removed {
            add_to_generation(&mut tx, zone, e.generation, -1, -rows::sql_count(e.size)).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(removed)
    }

    async fn remove_if_blob(&self, zone: &ZoneId, generation: i64, key_hash: &str, blob: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let size: Option<i64> = sqlx::query_scalar(
            "DELETE FROM objects WHERE zone_id = $1 AND generation = $2 AND key_hash = $3 AND blob = $4 RETURNING size",
        )
        .bind(zone.as_str())
        .bind(generation)
        .bind(key_hash)
        .bind(blob)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(size) = size {
            add_to_generation(&mut tx, zone, generation, -1, -size).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(size.is_some())
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
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE objects SET meta = $5 WHERE zone_id = $1 AND generation = $2 AND key_hash = $3 AND blob = $4",
        )
        .bind(zone.as_str())
        .bind(generation)
        .bind(key_hash)
        .bind(blob)
        .bind(meta)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_access(&self, accesses: &[Access]) -> StoreResult<()> {
        if accesses.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for a in accesses {
            sqlx::query(
                "UPDATE objects SET last_access = $4
                 WHERE zone_id = $1 AND generation = $2 AND key_hash = $3 AND last_access < $4",
            )
            .bind(a.zone_id.as_str())
            .bind(a.generation)
            .bind(&a.key_hash)
            .bind(a.at.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn evict_idle(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<IndexEntry>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "DELETE FROM objects WHERE (zone_id, generation, key_hash) IN (
                 SELECT o.zone_id, o.generation, o.key_hash FROM objects o
                 JOIN zones z ON z.id = o.zone_id AND z.generation = o.generation
                 WHERE o.last_access < $1 ORDER BY o.last_access LIMIT $2)
             RETURNING *",
        )
        .bind(before.as_micros())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let evicted = rows.iter().map(rows::entry).collect::<StoreResult<Vec<_>>>()?;
        for e in &evicted {
            add_to_generation(&mut tx, &e.zone_id, e.generation, -1, -rows::sql_count(e.size)).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(evicted)
    }

    async fn pending_clears(&self) -> StoreResult<Vec<PendingClear>> {
        let rows = sqlx::query("SELECT id, zone_id, target_generation FROM clears WHERE end_ts IS NULL ORDER BY id")
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(PendingClear {
                    clear_id: r.get("id"),
                    zone_id: ZoneId::parse(r.get("zone_id"))
                        .map_err(|_| crate::storage::StoreError::Backend("stored zone id does not parse".into()))?,
                    target_generation: r.get("target_generation"),
                })
            })
            .collect()
    }

    async fn bodies_below(&self, zone: &ZoneId, below: i64, limit: u32) -> StoreResult<Vec<BodyRef>> {
        let rows = sqlx::query(
            "SELECT generation, key_hash, blob FROM objects WHERE zone_id = $1 AND generation < $2
             ORDER BY generation, key_hash LIMIT $3",
        )
        .bind(zone.as_str())
        .bind(below)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| BodyRef { generation: r.get("generation"), key_hash: r.get("key_hash"), blob: r.get("blob") })
            .collect())
    }

    async fn forget_through(&self, zone: &ZoneId, below: i64, last: &BodyRef) -> StoreResult<()> {
        // Two index range scans: whole generations before the last one's, then the last one's prefix.
        // (A row-value comparison over both columns would not narrow the scan in SQLite.)
        debug_assert!(last.generation < below);
        let mut tx = self.begin_write().await?;
        let counts = sqlx::query(
            "SELECT generation, COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM objects
             WHERE zone_id = $1 AND generation < $2 GROUP BY generation
             UNION ALL
             SELECT generation, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM objects
             WHERE zone_id = $1 AND generation = $2 AND key_hash <= $3 GROUP BY generation",
        )
        .bind(zone.as_str())
        .bind(last.generation)
        .bind(&last.key_hash)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM objects WHERE zone_id = $1 AND generation < $2")
            .bind(zone.as_str())
            .bind(last.generation)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM objects WHERE zone_id = $1 AND generation = $2 AND key_hash <= $3")
            .bind(zone.as_str())
            .bind(last.generation)
            .bind(&last.key_hash)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for r in counts {
            let (generation, n, bytes): (i64, i64, i64) = (r.get("generation"), r.get("n"), r.get("bytes"));
            add_to_generation(&mut tx, zone, generation, -n, -bytes).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn complete_clear(&self, c: &PendingClear, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM generations WHERE zone_id = $1 AND generation < $2")
            .bind(c.zone_id.as_str())
            .bind(c.target_generation)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("UPDATE clears SET end_ts = $2, modified_on = $2 WHERE id = $1 AND end_ts IS NULL")
            .bind(c.clear_id)
            .bind(now.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }
}
