//! [`CompactionIndex`] in SQL: the live bodies of a zone generation, page by page, and conditional
//! relocation of entries to their bodies' copies.

use async_trait::async_trait;
use sqlx::Row;

use super::{
    SqlStore, backend,
    partitions::{is_missing_table, objects_table},
    retrying, sql,
    writes::lock_zone_for_share,
};
use crate::{
    domain::ZoneId,
    storage::{CompactionIndex, ObjectIndex, Relocation, StoreResult, StoredBody},
};

#[async_trait]
impl CompactionIndex for SqlStore {
    async fn bodies_after(
        &self,
        zone: &ZoneId,
        generation: i64,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredBody>> {
        let rows = sqlx::query(sql(format!(
            "SELECT key_hash, blob, size FROM {} WHERE key_hash > $1 ORDER BY key_hash LIMIT $2",
            objects_table(zone, generation)
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await;
        let rows = match rows {
            // A generation whose Clear completed: nothing of it is live. (Only then: compaction takes "no
            // entries" to mean every record is dead, so a missing current table must be an error.)
            Err(e) if is_missing_table(&e) && self.current_generation(zone).await? != Some(generation) => {
                return Ok(Vec::new());
            }
            other => other.map_err(backend)?,
        };
        Ok(rows
            .iter()
            .map(|r| StoredBody {
                key_hash: r.get("key_hash"),
                blob: r.get("blob"),
                size: u64::try_from(r.get::<i64, _>("size")).unwrap_or(0),
            })
            .collect())
    }

    async fn relocate(&self, zone: &ZoneId, generation: i64, moves: &[Relocation]) -> StoreResult<Option<Vec<bool>>> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            // The zone first, as every writer locks it: a purge commits either before this looks for its
            // rules (and this is refused) or after this commits (and its work reads the new locations).
            let zone_exists = lock_zone_for_share(&mut tx, d, zone).await?;
            let retired = zone_exists.is_some_and(|z| z.generation != generation);
            let pending: Option<i64> =
                sqlx::query_scalar("SELECT id FROM purge_rules WHERE zone_id = $1 AND done_on IS NULL LIMIT 1")
                    .bind(zone.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            if zone_exists.is_none() || pending.is_some() {
                tx.rollback().await.map_err(backend)?;
                return Ok(None);
            }
            if retired {
                // Cleared: its segments go whole with the Clear, nothing to point anywhere.
                tx.rollback().await.map_err(backend)?;
                return Ok(Some(vec![false; moves.len()]));
            }
            let mut made = Vec::with_capacity(moves.len());
            for m in moves {
                let done = sqlx::query(sql(format!(
                    "UPDATE {} SET blob = $3 WHERE key_hash = $1 AND blob = $2",
                    objects_table(zone, generation)
                )))
                .bind(&m.key_hash)
                .bind(&m.from)
                .bind(&m.to)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                made.push(done.rows_affected() == 1);
            }
            tx.commit().await.map_err(backend)?;
            Ok(Some(made))
        })
    }
}
