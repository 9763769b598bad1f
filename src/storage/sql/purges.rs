//! [`PurgeIndex`] in SQL: the rules still to be worked, and the deletion of what they target.

use async_trait::async_trait;
use sqlx::Row;

use super::{SqlStore, backend, index::CountChanges, retrying, rows, sql};
use crate::{
    domain::ZoneId,
    storage::{IndexEntry, PendingPurge, PurgeIndex, StoreResult},
};

#[async_trait]
impl PurgeIndex for SqlStore {
    async fn pending_purges(&self, limit: u32) -> StoreResult<Vec<PendingPurge>> {
        let rows = sqlx::query(
            "SELECT id, revision, zone_id, action, kind, value, headers, created_on FROM purge_rules
             WHERE done_on IS NULL AND action = 'purge' ORDER BY revision, id LIMIT $1",
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
        let mut sorted: Vec<&IndexEntry> = entries.iter().collect();
        sorted.sort_by(|a, b| {
            (a.zone_id.as_str(), a.generation, &a.key_hash).cmp(&(b.zone_id.as_str(), b.generation, &b.key_hash))
        });
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
}
