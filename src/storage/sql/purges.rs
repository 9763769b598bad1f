//! [`PurgeIndex`] in SQL: the rules still to be worked, the deletion or marking of what they target, and
//! their retirement.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use sqlx::{Any, Row, Transaction};

use super::{
    SqlStore, backend,
    partitions::{is_missing_table, objects_table},
    retrying, rows, sql,
    writes::{CountChanges, lock_current},
};
use crate::{
    domain::{Invalidation, ZoneId},
    storage::{IndexEntry, ObjectIndex, PendingPurge, PurgeIndex, StoreError, StoreResult},
};

/// Rows per statement (and per transaction) of [`exactly`]: a few milliseconds of the embedded store's
/// single writer, so an API call waiting for it is not held up long; three parameters each, well under
/// both databases' limits.
const EXACT_ROWS: usize = 100;

/// An entry as read: (key hash, blob, fill revision).
type ExactRow = (String, String, i64);

/// Entries grouped by (zone, generation, `extra`) in lock order, each group in key order and cut into
/// statements of at most [`EXACT_ROWS`] rows.
type ExactGroups<X> = Vec<((ZoneId, i64, X), Vec<ExactRow>)>;

fn exact_groups<'a, X: Ord + Copy>(entries: impl Iterator<Item = (&'a IndexEntry, X)>) -> ExactGroups<X> {
    let mut by: BTreeMap<(ZoneId, i64, X), Vec<ExactRow>> = BTreeMap::new();
    for (e, x) in entries {
        by.entry((e.zone_id.clone(), e.generation, x)).or_default().push((
            e.key_hash.clone(),
            e.blob.clone(),
            e.fill_revision,
        ));
    }
    let mut groups = Vec::new();
    for (group, mut rows) in by {
        rows.sort();
        for chunk in rows.chunks(EXACT_ROWS) {
            groups.push((group.clone(), chunk.to_vec()));
        }
    }
    groups
}

/// A condition matching `n` entries of one partition exactly as read (same body, same fill revision),
/// found by primary key; its parameters start after the first `skip`, and are bound by [`bind_exact`].
fn exactly(n: usize, skip: usize) -> String {
    let p = |i: usize| format!("${}", skip + i);
    let keys: Vec<String> = (0..n).map(|i| p(1 + i)).collect();
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let at = 1 + n + 3 * i;
            format!("({}, {}, {})", p(at), p(at + 1), p(at + 2))
        })
        .collect();
    format!("key_hash IN ({}) AND (key_hash, blob, fill_revision) IN (VALUES {})", keys.join(", "), rows.join(", "))
}

/// Binds [`exactly`]'s parameters.
fn bind_exact<'q, Q: BindExact<'q>>(mut q: Q, rows: &'q [ExactRow]) -> Q {
    for (key_hash, _, _) in rows {
        q = q.bind_str(key_hash);
    }
    for (key_hash, blob, fill_revision) in rows {
        q = q.bind_str(key_hash).bind_str(blob).bind_i64(*fill_revision);
    }
    q
}

/// The two query kinds [`bind_exact`] binds.
trait BindExact<'q> {
    fn bind_str(self, v: &'q str) -> Self;
    fn bind_i64(self, v: i64) -> Self;
}

impl<'q> BindExact<'q> for sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    fn bind_str(self, v: &'q str) -> Self {
        self.bind(v)
    }
    fn bind_i64(self, v: i64) -> Self {
        self.bind(v)
    }
}

impl<'q, O> BindExact<'q> for sqlx::query::QueryScalar<'q, Any, O, sqlx::any::AnyArguments> {
    fn bind_str(self, v: &'q str) -> Self {
        self.bind(v)
    }
    fn bind_i64(self, v: i64) -> Self {
        self.bind(v)
    }
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
        // The zone's generation, then its partition. A Clear between the two reads hands the rule the
        // retired generation's entries: harmless, and nothing is missed, as the new generation's entries are
        // all filled after the Clear and so after every rule being worked (see `decide_record`).
        for _ in 0..4 {
            let Some(generation) = self.current_generation(zone).await? else { return Ok(Vec::new()) };
            let rows = sqlx::query(sql(format!(
                "SELECT * FROM {} WHERE key_hash > $1 ORDER BY key_hash LIMIT $2",
                objects_table(zone, generation)
            )))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await;
            match rows {
                Err(e) if is_missing_table(&e) => continue,
                other => return other.map_err(backend)?.iter().map(|r| rows::entry(zone, generation, r)).collect(),
            }
        }
        Ok(Vec::new())
    }

    async fn forget_purged(&self, entries: &[IndexEntry]) -> StoreResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let d = self.dialect;
        let mut deleted = 0;
        // One short transaction per group, in key order (as every writer locks objects); each is whole,
        // counts included, so stopping between them leaves nothing to repair.
        for ((zone, generation, ()), rows) in &exact_groups(entries.iter().map(|e| (e, ()))) {
            deleted += retrying!(async {
                let mut tx = self.begin_write().await?;
                if lock_current(&mut tx, d, zone, *generation).await?.is_none() {
                    // A retired generation: its Clear deletes these.
                    tx.rollback().await.map_err(backend)?;
                    return Ok(0);
                }
                let text = format!(
                    "DELETE FROM {} WHERE {} RETURNING size",
                    objects_table(zone, *generation),
                    exactly(rows.len(), 0)
                );
                let sizes: Vec<i64> =
                    bind_exact(sqlx::query_scalar(sql(text)), rows).fetch_all(&mut *tx).await.map_err(backend)?;
                let mut counts = CountChanges::new();
                for size in &sizes {
                    super::writes::subtract_deleted(&mut counts, zone.as_str(), *generation, *size);
                }
                super::writes::apply_counts(&mut tx, &counts).await?;
                tx.commit().await.map_err(backend)?;
                Ok::<_, StoreError>(sizes.len() as u64)
            })?;
        }
        Ok(deleted)
    }

    async fn mark_invalidated(&self, marks: &[(IndexEntry, Invalidation)]) -> StoreResult<u64> {
        if marks.is_empty() {
            return Ok(0);
        }
        let d = self.dialect;
        let mut marked = 0;
        // One statement per group, each its own short transaction (see `forget_purged`).
        for ((zone, generation, (revision, at)), rows) in
            &exact_groups(marks.iter().map(|(e, inv)| (e, (inv.revision, inv.at.as_micros()))))
        {
            let text = format!(
                "UPDATE {} SET invalidated_revision = $1, invalidated_at = $2
                 WHERE (invalidated_revision IS NULL OR invalidated_revision < $1) AND {}",
                objects_table(zone, *generation),
                exactly(rows.len(), 2)
            );
            marked += retrying!(async {
                let mut tx = self.begin_write().await?;
                if lock_current(&mut tx, d, zone, *generation).await?.is_none() {
                    tx.rollback().await.map_err(backend)?;
                    return Ok(0);
                }
                let query = sqlx::query(sql(text.clone())).bind(*revision).bind(*at);
                let done = bind_exact(query, rows).execute(&mut *tx).await.map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                Ok::<_, StoreError>(done.rows_affected())
            })?;
        }
        Ok(marked)
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
