//! Zone rows in SQL: what every zone change uses (the row lock, the next revision, a new generation, the
//! announcement to other nodes), and creating and deleting zones. A deleted zone stays as a tombstone row (`deleted_on` set): the change
//! feed carries its deletion to every node, the reclaimer finishes the Clear that deleted its objects, and a
//! zone created again with its id reuses the row, so its generation counter keeps increasing and nothing
//! stored under the old zone is ever in a generation the new one reads.

use sqlx::{Any, Transaction};

use super::{Dialect, SqlStore, backend, control::CHANNEL, retrying, rows, sql, unique_or_backend};
use crate::{
    domain::{Zone, ZoneId},
    storage::{NewZone, StoreError, StoreResult},
};

/// The live zone, locked against change until commit (PostgreSQL; SQLite's write lock already is); a
/// deleted one is `NotFound`.
pub(super) async fn lock_zone(tx: &mut Transaction<'static, Any>, d: Dialect, id: &ZoneId) -> StoreResult<Zone> {
    let row = sqlx::query(sql(format!("SELECT * FROM zones WHERE id = $1 AND deleted_on IS NULL{}", d.for_update())))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    row.as_ref().map(rows::zone).transpose()?.ok_or_else(|| StoreError::NotFound(format!("zone {id}")))
}

/// The zone as this transaction sees it, tombstone or not.
pub(super) async fn zone_in(tx: &mut Transaction<'static, Any>, id: &ZoneId) -> StoreResult<Zone> {
    let row = sqlx::query("SELECT * FROM zones WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    row.as_ref().map(rows::zone).transpose()?.ok_or_else(|| StoreError::NotFound(format!("zone {id}")))
}

/// The next store-wide zone revision. The counter row stays locked until commit, so revisions become
/// visible in the order they are handed out (see [`ControlStore`]).
pub(super) async fn next_revision(tx: &mut Transaction<'static, Any>) -> StoreResult<i64> {
    sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = 'zone_revision' RETURNING value")
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)
}

/// Moves the zone to a new generation at `revision` and records the reclaim of the old ones (a row of
/// `clears` of `kind` `clear`, `purge` or `delete`), with the counts it must delete.
pub(super) async fn new_generation(
    tx: &mut Transaction<'static, Any>,
    d: Dialect,
    id: &ZoneId,
    revision: i64,
    kind: &str,
) -> StoreResult<()> {
    let target: i64 = sqlx::query_scalar(
        "UPDATE zones SET generation = generation + 1, revision = $2 WHERE id = $1 RETURNING generation",
    )
    .bind(id.as_str())
    .bind(revision)
    .fetch_one(&mut **tx)
    .await
    .map_err(backend)?;
    sqlx::query(sql(format!(
        "INSERT INTO clears (zone_id, target_generation, start_ts, modified_on, objects_total, bytes_total, kind)
         SELECT $1, $2, {now}, {now},
                CAST(COALESCE(SUM(objects), 0) AS BIGINT), CAST(COALESCE(SUM(bytes), 0) AS BIGINT), $3
         FROM generations WHERE zone_id = $1 AND generation < $2",
        now = d.now()
    )))
    .bind(id.as_str())
    .bind(target)
    .bind(kind)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    super::partitions::create(tx, d, id, target).await
}

/// Announces a change to listening nodes when the transaction commits (PostgreSQL `NOTIFY`).
pub(super) async fn announce(tx: &mut Transaction<'static, Any>, d: Dialect, what: &str) -> StoreResult<()> {
    if d == Dialect::Postgres {
        sqlx::query("SELECT CAST(pg_notify($1, $2) AS TEXT)")
            .bind(CHANNEL)
            .bind(what)
            .fetch_one(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

impl SqlStore {
    /// See [`crate::storage::ControlStore::create_zone`].
    pub(super) async fn create_zone_row(&self, zone: &NewZone) -> StoreResult<Zone> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            // Taken first: every zone change waits for it, so the check below cannot race a delete.
            let revision = next_revision(&mut tx).await?;
            let existing: Option<Option<i64>> =
                sqlx::query_scalar(sql(format!("SELECT deleted_on FROM zones WHERE id = $1{}", d.for_update())))
                    .bind(zone.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            let taken = |e| unique_or_backend(e, format!("zone {}", zone.name));
            let statement = match existing {
                Some(None) => return Err(StoreError::AlreadyExists(format!("zone id {}", zone.id))),
                // A tombstone: the zone lives again in the same row, at its current generation (empty: its
                // reserve was off from the deletion on, so nothing was recorded in it).
                Some(Some(_)) => format!(
                    "UPDATE zones SET name = $2, origin = $3, reserve_on = 0, reserve_modified_on = NULL,
                            deleted_on = NULL, revision = $4, created_on = {now}, modified_on = {now}
                     WHERE id = $1",
                    now = d.now()
                ),
                None => format!(
                    "INSERT INTO zones (id, name, origin, reserve_on, generation, revision, created_on, modified_on)
                     VALUES ($1, $2, $3, 0, 1, $4, {now}, {now})",
                    now = d.now()
                ),
            };
            sqlx::query(sql(statement))
                .bind(zone.id.as_str())
                .bind(zone.name.as_str())
                .bind(&zone.origin)
                .bind(revision)
                .execute(&mut *tx)
                .await
                .map_err(taken)?;
            if existing.is_some() {
                // The deleted zone's Clears are not the new zone's (its Clear status starts empty, 1142); any
                // still running is reclaimed all the same.
                sqlx::query("UPDATE clears SET kind = 'delete' WHERE zone_id = $1 AND kind = 'clear'")
                    .bind(zone.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            announce(&mut tx, d, "zones").await?;
            let created = zone_in(&mut tx, &zone.id).await?;
            super::partitions::create(&mut tx, d, &zone.id, created.generation).await?;
            tx.commit().await.map_err(backend)?;
            Ok(created)
        })
    }

    /// See [`crate::storage::ControlStore::delete_zone`].
    pub(super) async fn delete_zone_row(&self, id: &ZoneId) -> StoreResult<Zone> {
        let d = self.dialect;
        retrying!(async {
            let mut tx = self.begin_write().await?;
            // Writes racing this one hold the zone shared until they commit or are refused: once the lock is
            // ours, every object of the zone is in a generation the reclaim below counts.
            let zone = lock_zone(&mut tx, d, id).await?;
            let revision = next_revision(&mut tx).await?;
            let reserve_modified = if zone.reserve_on { d.now() } else { "reserve_modified_on" };
            sqlx::query(sql(format!(
                "UPDATE zones SET reserve_on = 0, reserve_modified_on = {reserve_modified},
                        deleted_on = {now}, modified_on = {now}
                 WHERE id = $1",
                now = d.now()
            )))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            // As a Clear: a new (empty) generation, and the reclaim of every older one, which the reclaimer
            // works like any Clear. Kind `delete`: not shown as the zone's Clear if the id is used again.
            new_generation(&mut tx, d, id, revision, "delete").await?;
            announce(&mut tx, d, "zones").await?;
            let tombstone = zone_in(&mut tx, id).await?;
            tx.commit().await.map_err(backend)?;
            Ok(tombstone)
        })
    }
}
