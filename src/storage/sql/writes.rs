//! The write path of the SQL index: recording entries (with per-generation counts) and the zone locks every
//! writer of a zone's entries takes first.

use std::collections::BTreeMap;

use sqlx::{Any, Row, Transaction, any::AnyArguments, query::Query};

use super::{Dialect, SqlStore, backend, partitions::objects_table, rows, sql};
use crate::{
    domain::{
        ZoneId,
        rules::{RecordDecision, RecordTarget, decide_record},
    },
    storage::{IndexEntry, RecordOutcome, StoreResult},
};

/// Objects and bytes to add to per-generation counts, keyed (and so applied, and locked) in order.
pub(super) type CountChanges = BTreeMap<(String, i64), (i64, i64)>;

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
        let inserted = bind_entry(
            sqlx::query(sql(format!(
                "INSERT INTO {table} (key_hash, cache_key, blob, size, meta, stored_on, last_access, fill_revision)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
                 ON CONFLICT (key_hash) DO NOTHING RETURNING size"
            ))),
            e,
        )
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
        bind_entry(
            sqlx::query(sql(format!(
                "UPDATE {table} SET cache_key = $2, blob = $3, size = $4, meta = $5, stored_on = $6, last_access = $6,
                                    fill_revision = $7, invalidated_revision = NULL, invalidated_at = NULL
                 WHERE key_hash = $1"
            ))),
            e,
        )
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        return Ok((false, Some(old)));
    }
}

/// Binds an entry as both statements of [`upsert`] number its fields: `$1` key hash, `$2` cache key, `$3`
/// blob, `$4` size, `$5` metadata, `$6` stored on, `$7` fill revision.
fn bind_entry<'q>(q: Query<'q, Any, AnyArguments>, e: &'q IndexEntry) -> Query<'q, Any, AnyArguments> {
    q.bind(&e.key_hash)
        .bind(&e.key)
        .bind(&e.blob)
        .bind(rows::sql_count(e.size))
        .bind(&e.meta)
        .bind(e.stored_on.as_micros())
        .bind(e.fill_revision)
}

impl SqlStore {
    /// [`ObjectIndex::record_batch`](crate::storage::ObjectIndex::record_batch), once (the caller retries).
    pub(super) async fn record_batch_once(&self, entries: &[IndexEntry]) -> StoreResult<Vec<RecordOutcome>> {
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
