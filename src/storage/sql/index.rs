//! [`ObjectIndex`] in SQL: entries keyed by (zone, generation, key hash), per-generation counts, and the
//! leases under which nodes reclaim Clears.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use sqlx::{Any, Row, Transaction};

use super::{Dialect, SqlStore, backend, retrying, rows, sql};
use crate::{
    domain::{
        Timestamp, ZoneId,
        rules::{RecordDecision, RecordTarget, decide_record},
    },
    storage::{Access, BodyRef, ClearLease, IndexEntry, ObjectIndex, RecordOutcome, StoreError, StoreResult, Usage},
};

/// Objects and bytes to add to per-generation counts, keyed (and so applied, and locked) in order.
pub(super) type CountChanges = BTreeMap<(String, i64), (i64, i64)>;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Applies count changes in key order (the fixed lock order for `generations` rows).
pub(super) async fn apply_counts(tx: &mut Transaction<'static, Any>, changes: &CountChanges) -> StoreResult<()> {
    for ((zone, generation), (objects, bytes)) in changes {
        if *objects == 0 && *bytes == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (zone_id, generation)
             DO UPDATE SET objects = generations.objects + excluded.objects, bytes = generations.bytes + excluded.bytes",
        )
        .bind(zone)
        .bind(*generation)
        .bind(*objects)
        .bind(*bytes)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// Subtracts deleted entries (rows of `generation`, `size`, and `zone_id`) from the counts.
pub(super) fn subtract_deleted(changes: &mut CountChanges, zone: &str, generation: i64, size: i64) {
    let c = changes.entry((zone.to_owned(), generation)).or_default();
    c.0 -= 1;
    c.1 -= size;
}

/// Checks, with the Clear's row locked until commit, that `lease` is still the live one (same token and
/// owner, not expired on the database's clock).
async fn fence(tx: &mut Transaction<'static, Any>, d: Dialect, lease: &ClearLease) -> StoreResult<()> {
    let live: Option<i64> = sqlx::query_scalar(sql(format!(
        "SELECT id FROM clears WHERE id = $1 AND lease_token = $2 AND lease_owner = $3 AND lease_until >= {}{}",
        d.now(),
        d.for_update()
    )))
    .bind(lease.clear.clear_id)
    .bind(lease.token)
    .bind(&lease.node)
    .fetch_optional(&mut **tx)
    .await
    .map_err(backend)?;
    live.map(|_| ()).ok_or(StoreError::LeaseLost)
}

/// Inserts or replaces an entry. Returns whether it was new, and the blob and size it replaced. Correct when
/// another node writes the same key at once: the insert that loses waits for the winner's commit, then
/// replaces the winner's row under a lock, so the counts see one object.
async fn upsert(
    tx: &mut Transaction<'static, Any>,
    d: Dialect,
    e: &IndexEntry,
) -> StoreResult<(bool, Option<(String, i64)>)> {
    loop {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO objects
                 (zone_id, generation, key_hash, cache_key, blob, size, meta, stored_on, last_access, fill_revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
             ON CONFLICT (zone_id, generation, key_hash) DO NOTHING RETURNING size",
        )
        .bind(e.zone_id.as_str())
        .bind(e.generation)
        .bind(&e.key_hash)
        .bind(&e.key)
        .bind(&e.blob)
        .bind(rows::sql_count(e.size))
        .bind(&e.meta)
        .bind(e.stored_on.as_micros())
        .bind(e.fill_revision)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
        if inserted.is_some() {
            return Ok((true, None));
        }
        let old = sqlx::query(sql(format!(
            "SELECT blob, size FROM objects WHERE zone_id = $1 AND generation = $2 AND key_hash = $3{}",
            d.for_update()
        )))
        .bind(e.zone_id.as_str())
        .bind(e.generation)
        .bind(&e.key_hash)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .map(|r| (r.get::<String, _>("blob"), r.get::<i64, _>("size")));
        let Some(old) = old else {
            // Deleted (evicted, removed) between the two statements: insert again.
            continue;
        };
        sqlx::query(
            "UPDATE objects SET cache_key = $4, blob = $5, size = $6, meta = $7, stored_on = $8, last_access = $8,
                                fill_revision = $9, invalidated_revision = NULL, invalidated_at = NULL
             WHERE zone_id = $1 AND generation = $2 AND key_hash = $3",
        )
        .bind(e.zone_id.as_str())
        .bind(e.generation)
        .bind(&e.key_hash)
        .bind(&e.key)
        .bind(&e.blob)
        .bind(rows::sql_count(e.size))
        .bind(&e.meta)
        .bind(e.stored_on.as_micros())
        .bind(e.fill_revision)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        return Ok((false, Some(old)));
    }
}

impl SqlStore {
    /// Drops every Clear's lease. Only for a store no other node uses (the embedded one, whose data
    /// directory `serve` holds locked): a restarted server then resumes a Clear at once instead of waiting
    /// for the lease of the process it replaces to run out.
    pub async fn release_all_leases(&self) -> StoreResult<()> {
        sqlx::query("UPDATE clears SET lease_owner = NULL, lease_until = NULL WHERE end_ts IS NULL")
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn record_batch_once(&self, entries: &[IndexEntry]) -> StoreResult<Vec<RecordOutcome>> {
        let d = self.dialect;
        let mut tx = self.begin_write().await?;
        // Lock every zone of the batch, in id order, against a Clear or `off` until commit.
        let mut zone_ids: Vec<&str> = entries.iter().map(|e| e.zone_id.as_str()).collect();
        zone_ids.sort_unstable();
        zone_ids.dedup();
        let mut zones = BTreeMap::new();
        for id in zone_ids {
            let row = sqlx::query(sql(format!(
                "SELECT generation, reserve_on, purge_revision FROM zones WHERE id = $1{}",
                d.for_share()
            )))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if let Some(r) = row {
                zones.insert(
                    id,
                    RecordTarget {
                        generation: r.get("generation"),
                        reserve_on: r.get::<i64, _>("reserve_on") != 0,
                        purge_revision: r.get("purge_revision"),
                    },
                );
            }
        }
        // Objects in key order, then counts in key order.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&entries[a], &entries[b]);
            (a.zone_id.as_str(), a.generation, &a.key_hash).cmp(&(b.zone_id.as_str(), b.generation, &b.key_hash))
        });
        let mut outcomes = vec![RecordOutcome::NoZone; entries.len()];
        let mut counts = CountChanges::new();
        for i in order {
            let e = &entries[i];
            let Some(&zone) = zones.get(e.zone_id.as_str()) else { continue };
            outcomes[i] = match decide_record(zone, e.generation, e.fill_revision) {
                RecordDecision::Superseded => RecordOutcome::Superseded,
                RecordDecision::ReserveOff => RecordOutcome::ReserveOff,
                RecordDecision::Purged => RecordOutcome::Purged,
                RecordDecision::Record => {
                    let (added, old) = upsert(&mut tx, d, e).await?;
                    let c = counts.entry((e.zone_id.as_str().to_owned(), e.generation)).or_default();
                    c.0 += i64::from(added);
                    c.1 += rows::sql_count(e.size) - old.as_ref().map_or(0, |(_, size)| *size);
                    RecordOutcome::Recorded { replaced_blob: old.map(|(blob, _)| blob).filter(|b| *b != e.blob) }
                }
            };
        }
        apply_counts(&mut tx, &counts).await?;
        tx.commit().await.map_err(backend)?;
        Ok(outcomes)
    }
}

/// Locks the zone's row as every writer of its objects does (shared: writers of different objects do not
/// wait for each other, a purge taking it exclusively waits for them all) and returns its purge revision;
/// `None` when there is no such zone.
pub(super) async fn lock_zone_for_share(
    tx: &mut Transaction<'static, Any>,
    d: Dialect,
    zone: &ZoneId,
) -> StoreResult<Option<i64>> {
    sqlx::query_scalar(sql(format!("SELECT purge_revision FROM zones WHERE id = $1{}", d.for_share())))
        .bind(zone.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)
}

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
        retrying!(async {
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
                let mut counts = CountChanges::new();
                subtract_deleted(&mut counts, zone.as_str(), e.generation, rows::sql_count(e.size));
                apply_counts(&mut tx, &counts).await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(removed)
        })
    }

    async fn remove_if_blob(&self, zone: &ZoneId, generation: i64, key_hash: &str, blob: &str) -> StoreResult<bool> {
        retrying!(async {
            let mut tx = self.begin_write().await?;
            let size: Option<i64> = sqlx::query_scalar(
                "DELETE FROM objects WHERE zone_id = $1 AND generation = $2 AND key_hash = $3 AND blob = $4
                 RETURNING size",
            )
            .bind(zone.as_str())
            .bind(generation)
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
            let Some(purge_revision) = lock_zone_for_share(&mut tx, d, zone).await? else {
                tx.rollback().await.map_err(backend)?;
                return Ok(None);
            };
            let raise_to = if fill_revision >= purge_revision { fill_revision } else { 0 };
            let after: Option<i64> = sqlx::query_scalar(sql(format!(
                "UPDATE objects SET meta = $5, fill_revision = {}(fill_revision, $6)
                 WHERE zone_id = $1 AND generation = $2 AND key_hash = $3 AND blob = $4
                 RETURNING fill_revision",
                d.greatest()
            )))
            .bind(zone.as_str())
            .bind(generation)
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
                for a in chunk {
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
            })?;
        }
        Ok(())
    }

    async fn evict_idle(&self, before: Timestamp, limit: u32) -> StoreResult<Vec<IndexEntry>> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            let rows = sqlx::query(sql(format!(
                "DELETE FROM objects WHERE (zone_id, generation, key_hash) IN (
                     SELECT o.zone_id, o.generation, o.key_hash FROM objects o
                     JOIN zones z ON z.id = o.zone_id AND z.generation = o.generation
                     WHERE o.last_access < $1 ORDER BY o.last_access LIMIT $2{})
                 RETURNING *",
                match d {
                    Dialect::Sqlite => "",
                    Dialect::Postgres => " FOR UPDATE OF o SKIP LOCKED",
                }
            )))
            .bind(before.as_micros())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let evicted = rows.iter().map(rows::entry).collect::<StoreResult<Vec<_>>>()?;
            let mut counts = CountChanges::new();
            for e in &evicted {
                subtract_deleted(&mut counts, e.zone_id.as_str(), e.generation, rows::sql_count(e.size));
            }
            apply_counts(&mut tx, &counts).await?;
            tx.commit().await.map_err(backend)?;
            Ok(evicted)
        })
    }

    async fn claim_clear(&self, node: &str, lease: Duration) -> StoreResult<Option<ClearLease>> {
        let d = self.dialect;
        let row = sqlx::query(sql(format!(
            "UPDATE clears SET lease_owner = $1, lease_until = {now} + $2, lease_token = lease_token + 1
             WHERE id = (SELECT id FROM clears
                         WHERE end_ts IS NULL AND next_attempt <= {now}
                           AND (lease_until IS NULL OR lease_until < {now} OR lease_owner = $1)
                         ORDER BY next_attempt, id LIMIT 1{lock})
             RETURNING id, zone_id, target_generation, lease_token, attempts",
            now = d.now(),
            lock = d.skip_locked(),
        )))
        .bind(node)
        .bind(micros(lease))
        .fetch_optional(&self.write)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(ClearLease {
                clear: rows::pending_clear(&r)?,
                node: node.to_owned(),
                token: r.get("lease_token"),
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
            })
        })
        .transpose()
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

    async fn forget_through(&self, lease: &ClearLease, last: &BodyRef, extend: Duration) -> StoreResult<()> {
        let d = self.dialect;
        let zone = lease.clear.zone_id.as_str();
        debug_assert!(last.generation < lease.clear.target_generation);
        retrying!(async {
            let mut tx = self.begin_write().await?;
            fence(&mut tx, d, lease).await?;
            // Two index range scans: whole generations before the last one's, then the last one's prefix.
            // (A row-value comparison over both columns would not narrow the scan in SQLite.) The counts
            // subtracted are those of the rows this transaction deleted, whoever else is deleting.
            let mut deleted =
                sqlx::query("DELETE FROM objects WHERE zone_id = $1 AND generation < $2 RETURNING generation, size")
                    .bind(zone)
                    .bind(last.generation)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(backend)?;
            deleted.extend(
                sqlx::query(
                    "DELETE FROM objects WHERE zone_id = $1 AND generation = $2 AND key_hash <= $3
                     RETURNING generation, size",
                )
                .bind(zone)
                .bind(last.generation)
                .bind(&last.key_hash)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?,
            );
            let mut counts = CountChanges::new();
            for r in &deleted {
                subtract_deleted(&mut counts, zone, r.get("generation"), r.get("size"));
            }
            apply_counts(&mut tx, &counts).await?;
            sqlx::query(sql(format!(
                "UPDATE clears SET lease_until = {} + $2, attempts = 0, last_error = NULL WHERE id = $1",
                d.now()
            )))
            .bind(lease.clear.clear_id)
            .bind(micros(extend))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)
        })
    }

    async fn complete_clear(&self, lease: &ClearLease) -> StoreResult<()> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            match fence(&mut tx, d, lease).await {
                Err(StoreError::LeaseLost) => {
                    // Completing twice is harmless: a Clear already completed (by us, before a lost reply)
                    // has no lease to hold.
                    let done: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM clears WHERE id = $1 AND end_ts IS NOT NULL")
                            .bind(lease.clear.clear_id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(backend)?;
                    return if done.is_some() { Ok(()) } else { Err(StoreError::LeaseLost) };
                }
                other => other?,
            }
            sqlx::query("DELETE FROM generations WHERE zone_id = $1 AND generation < $2")
                .bind(lease.clear.zone_id.as_str())
                .bind(lease.clear.target_generation)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query(sql(format!(
                "UPDATE clears SET end_ts = {max}({now}, start_ts), modified_on = {max}({now}, start_ts),
                                   lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND end_ts IS NULL",
                max = d.greatest(),
                now = d.now()
            )))
            .bind(lease.clear.clear_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)
        })
    }

    async fn release_clear(&self, lease: &ClearLease, retry_after: Duration, error: &str) -> StoreResult<()> {
        sqlx::query(sql(format!(
            "UPDATE clears SET lease_owner = NULL, lease_until = NULL, attempts = attempts + 1,
                               next_attempt = {} + $3, last_error = $4
             WHERE id = $1 AND lease_token = $2 AND end_ts IS NULL",
            self.dialect.now()
        )))
        .bind(lease.clear.clear_id)
        .bind(lease.token)
        .bind(micros(retry_after))
        .bind(error.chars().take(1000).collect::<String>())
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
