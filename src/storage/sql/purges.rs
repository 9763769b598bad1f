//! [`PurgeIndex`] in SQL: the rules still to be worked, the deletion or marking of what they target, and
//! their retirement.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Any, Row, Transaction};

use super::{SqlStore, backend, index::CountChanges, retrying, rows, sql};
use crate::{
    domain::{Invalidation, ZoneId},
    storage::{IndexEntry, PendingPurge, PurgeIndex, StoreResult},
};

/// Entries in lock order (zone, generation, key hash), as every writer of objects locks them.
fn in_key_order<T>(items: &[T], entry: impl Fn(&T) -> &IndexEntry) -> Vec<&T> {
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort_by(|a, b| {
        let (a, b) = (entry(a), entry(b));
        (a.zone_id.as_str(), a.generation, &a.key_hash).cmp(&(b.zone_id.as_str(), b.generation, &b.key_hash))
    });
    sorted
}

/// The highest revision through which every rule is worked, read in `tx` (or the pool).
async fn done_through<'c, E: sqlx::Executor<'c, Database = Any>>(e: E) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT MIN(revision) - 1 FROM purge_rules WHERE done_on IS NULL),
                         (SELECT value FROM counters WHERE name = 'zone_revision'))",
    )
    .fetch_one(e)
    .await
    .map_err(backend)
}

/// Locks the retired-through counter and reads it.
async fn lock_retired(tx: &mut Transaction<'static, Any>) -> StoreResult<i64> {
    sqlx::query_scalar("UPDATE counters SET value = value WHERE name = 'purge_retired_through' RETURNING value")
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)
}

#[async_trait]
impl PurgeIndex for SqlStore {
    async fn pending_purges(&self, limit: u32) -> StoreResult<Vec<PendingPurge>> {
        let rows = sqlx::query(
            "SELECT id, revision, zone_id, action, kind, value, headers, created_on FROM purge_rules
             WHERE done_on IS NULL ORDER BY revision, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(|r| Ok(PendingPurge { id: r.get("id"), rule: rows::purge_rule(r)? })).collect()
    }

    async fn objects_after(&self, zone: &ZoneId, after: &str, limit: u32) -> StoreResult<Vec<IndexEntry>> {
        let rows = sqlx::query(
            "SELECT o.* FROM objects o JOIN zones z ON z.id = o.zone_id AND z.generation = o.generation
             WHERE o.zone_id = $1 AND o.key_hash > $2 ORDER BY o.key_hash LIMIT $3",
        )
        .bind(zone.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(rows::entry).collect()
    }

    async fn forget_purged(&self, entries: &[IndexEntry]) -> StoreResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let sorted = in_key_order(entries, |e| e);
        retrying!(async {
            let mut tx = self.begin_write().await?;
            let mut counts = CountChanges::new();
            let mut deleted = 0;
            // In key order, as every writer locks objects.
            for e in &sorted {
                let size: Option<i64> = sqlx::query_scalar(
                    "DELETE FROM objects
                     WHERE zone_id = $1 AND generation = $2 AND key_hash = $3 AND blob = $4 AND fill_revision = $5
                     RETURNING size",
                )
                .bind(e.zone_id.as_str())
                .bind(e.generation)
                .bind(&e.key_hash)
                .bind(&e.blob)
                .bind(e.fill_revision)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                if let Some(size) = size {
                    super::index::subtract_deleted(&mut counts, e.zone_id.as_str(), e.generation, size);
                    deleted += 1;
                }
            }
            super::index::apply_counts(&mut tx, &counts).await?;
            tx.commit().await.map_err(backend)?;
            Ok(deleted)
        })
    }

    async fn mark_invalidated(&self, marks: &[(IndexEntry, Invalidation)]) -> StoreResult<u64> {
        if marks.is_empty() {
            return Ok(0);
        }
        let sorted = in_key_order(marks, |(e, _)| e);
        retrying!(async {
            let mut tx = self.begin_write().await?;
            let mut marked = 0;
            for (e, inv) in &sorted {
                let done = sqlx::query(
                    "UPDATE objects SET invalidated_revision = $6, invalidated_at = $7
                     WHERE zone_id = $1 AND generation = $2 AND key_hash = $3 AND blob = $4 AND fill_revision = $5
                       AND (invalidated_revision IS NULL OR invalidated_revision < $6)",
                )
                .bind(e.zone_id.as_str())
                .bind(e.generation)
                .bind(&e.key_hash)
                .bind(&e.blob)
                .bind(e.fill_revision)
                .bind(inv.revision)
                .bind(inv.at.as_micros())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                marked += done.rows_affected();
            }
            tx.commit().await.map_err(backend)?;
            Ok(marked)
        })
    }

    async fn finish_purges(&self, ids: &[i64]) -> StoreResult<()> {
        for chunk in ids.chunks(500) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            sqlx::query(sql(format!(
                "UPDATE purge_rules SET done_on = {} WHERE id IN ({list}) AND done_on IS NULL",
                self.dialect.now()
            )))
            .execute(&self.write)
            .await
            .map_err(backend)?;
        }
        Ok(())
    }

    async fn purges_done_through(&self) -> StoreResult<i64> {
        done_through(&self.read).await
    }

    async fn retire_purges(&self, window: Duration) -> StoreResult<i64> {
        let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        // What may be retired, read without a lock first: most rounds retire nothing and take no write lock.
        let retirable = format!("SELECT MIN(swept_revision) FROM nodes WHERE synced_on > {} - $1", self.dialect.now());
        let through = |done: i64, swept: Option<i64>| swept.map_or(done, |s| s.min(done));
        let retired: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'purge_retired_through'")
            .fetch_one(&self.read)
            .await
            .map_err(backend)?;
        let swept =
            sqlx::query_scalar(sql(retirable.clone())).bind(window).fetch_one(&self.read).await.map_err(backend)?;
        if through(done_through(&self.read).await?, swept) <= retired {
            return Ok(retired);
        }
        retrying!(async {
            let mut tx = self.begin_write().await?;
            // Serializes retirements. A node's sync does not wait on it: one that misses this retirement
            // still holds the rules, and one that read the rules after it reads the new value.
            let retired = lock_retired(&mut tx).await?;
            let done = done_through(&mut *tx).await?;
            let swept =
                sqlx::query_scalar(sql(retirable.clone())).bind(window).fetch_one(&mut *tx).await.map_err(backend)?;
            let through = through(done, swept);
            if through <= retired {
                tx.rollback().await.map_err(backend)?;
                return Ok(retired);
            }
            sqlx::query("DELETE FROM purge_rules WHERE revision <= $1 AND done_on IS NOT NULL")
                .bind(through)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query("UPDATE counters SET value = $1 WHERE name = 'purge_retired_through'")
                .bind(through)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(through)
        })
    }
}
