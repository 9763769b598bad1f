//! [`ObjectIndex`] in SQL: entries keyed by (zone, generation, key hash), per-generation counts, and the
//! leases under which nodes reclaim Clears.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use sqlx::{Any, Row, Transaction};

use super::{
    Dialect, SqlStore, backend,
    partitions::{self, is_missing_table, objects_table},
    retrying, rows, sql,
};
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
    let table = objects_table(&e.zone_id, e.generation);
    loop {
        let inserted: Option<i64> = sqlx::query_scalar(sql(format!(
            "INSERT INTO {table} (key_hash, cache_key, blob, size, meta, stored_on, last_access, fill_revision)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
             ON CONFLICT (key_hash) DO NOTHING RETURNING size"
        )))
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
        let old = sqlx::query(sql(format!("SELECT blob, size FROM {table} WHERE key_hash = $1{}", d.for_update())))
            .bind(&e.key_hash)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)?
            .map(|r| (r.get::<String, _>("blob"), r.get::<i64, _>("size")));
        let Some(old) = old else {
            // Deleted (evicted, removed) between the two statements: insert again.
            continue;
        };
        sqlx::query(sql(format!(
            "UPDATE {table} SET cache_key = $2, blob = $3, size = $4, meta = $5, stored_on = $6, last_access = $6,
                                fill_revision = $7, invalidated_revision = NULL, invalidated_at = NULL
             WHERE key_hash = $1"
        )))
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

/// A zone as its writers see it with its row locked.
#[derive(Debug, Clone, Copy)]
pub(super) struct LockedZone {
    /// The current generation: the only one whose entries a writer changes (its table exists until the
    /// row is unlocked).
    pub generation: i64,
    pub purge_revision: i64,
}

/// Locks the zone's row as every writer of its objects does (shared: writers of different objects do not
/// wait for each other, a purge or Clear taking it exclusively waits for them all) and reads it; `None`
/// when there is no such zone.
pub(super) async fn lock_zone_for_share(
    tx: &mut Transaction<'static, Any>,
    d: Dialect,
    zone: &ZoneId,
) -> StoreResult<Option<LockedZone>> {
    let row = sqlx::query(sql(format!("SELECT generation, purge_revision FROM zones WHERE id = $1{}", d.for_share())))
        .bind(zone.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(row.map(|r| LockedZone { generation: r.get("generation"), purge_revision: r.get("purge_revision") }))
}

/// Locks `zone` for share and returns its current generation if that is `generation`: `None` when the zone
/// is gone or `generation` is retired (its entries are cleared, so a change to one is moot).
pub(super) async fn lock_current(
    tx: &mut Transaction<'static, Any>,
    d: Dialect,
    zone: &ZoneId,
    generation: i64,
) -> StoreResult<Option<LockedZone>> {
    Ok(lock_zone_for_share(tx, d, zone).await?.filter(|z| z.generation == generation))
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
        let mut found = Vec::new();
        for generation in partitions::generations_below(&self.read, zone, below).await? {
            let Some(left) = (limit as usize).checked_sub(found.len()).filter(|&n| n > 0) else { break };
            let rows = sqlx::query(sql(format!(
                "SELECT key_hash, blob FROM {} ORDER BY key_hash LIMIT $1",
                objects_table(zone, generation)
            )))
            .bind(i64::try_from(left).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
            .await;
            let rows = match rows {
                // Completed meanwhile by the node that held the Clear before us.
                Err(e) if is_missing_table(&e) => continue,
                other => other.map_err(backend)?,
            };
            found.extend(rows.iter().map(|r| BodyRef { generation, key_hash: r.get("key_hash"), blob: r.get("blob") }));
        }
        Ok(found)
    }

    async fn forget_through(&self, lease: &ClearLease, last: &BodyRef, extend: Duration) -> StoreResult<()> {
        let d = self.dialect;
        let zone = &lease.clear.zone_id;
        debug_assert!(last.generation < lease.clear.target_generation);
        retrying!(async {
            let mut tx = self.begin_write().await?;
            fence(&mut tx, d, lease).await?;
            // Every entry of the generations before the last one's (the batch held them all), then the last
            // one's prefix. The counts subtracted are those of the rows this transaction deleted, whoever
            // else is deleting. (Tables stay until the Clear completes, under the same lease.)
            let older: Vec<i64> = sqlx::query_scalar(
                "SELECT generation FROM generations WHERE zone_id = $1 AND generation < $2 ORDER BY generation",
            )
            .bind(zone.as_str())
            .bind(last.generation)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let mut counts = CountChanges::new();
            for generation in older {
                let sizes: Vec<i64> =
                    sqlx::query_scalar(sql(format!("DELETE FROM {} RETURNING size", objects_table(zone, generation))))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(backend)?;
                for size in sizes {
                    subtract_deleted(&mut counts, zone.as_str(), generation, size);
                }
            }
            let sizes: Vec<i64> = sqlx::query_scalar(sql(format!(
                "DELETE FROM {} WHERE key_hash <= $1 RETURNING size",
                objects_table(zone, last.generation)
            )))
            .bind(&last.key_hash)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            for size in sizes {
                subtract_deleted(&mut counts, zone.as_str(), last.generation, size);
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

    async fn complete_clear(&self, lease: &ClearLease) -> StoreResult<u64> {
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
                    return if done.is_some() { Ok(0) } else { Err(StoreError::LeaseLost) };
                }
                other => other?,
            }
            // Whatever entries of the cleared generations are left go with their tables.
            let forgot = partitions::drop_below(&mut tx, &lease.clear.zone_id, lease.clear.target_generation).await?;
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
            tx.commit().await.map_err(backend)?;
            Ok(forgot)
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
