//! The object index is partitioned by (zone, generation): each generation's entries live in a table of
//! their own, created with the generation and dropped whole when a Clear (or `purge_everything`) that
//! retires it completes.
//!
//! Why: a Clear of a million objects would otherwise delete a million rows, each from the primary key and
//! from the retention index, and those deletes were 89–99 % of a Clear's time once bodies went by the
//! segment (BENCHMARKS.md, issue #11). Dropping a table frees its pages without visiting its rows one by one
//! (1,000,000 entries: about 0.6 s in SQLite on a tmpfs against about 8 s of batched deletes without the
//! retention index and 31 s with it), the index-side counterpart of dropping a generation's segment files.
//!
//! Rules every user of a partition follows:
//! - A zone's current generation always has its table (created in the transaction that creates the zone
//!   or moves it to a new generation, [`create`]); a retired generation's table exists until its Clear
//!   completes ([`drop_below`]), and a `generations` row names every table that exists.
//! - Writers lock the zone's row for share and act only on its current generation; an operation on a
//!   retired generation is moot (its entries are cleared) and does nothing.
//! - A reader that may hold a stale generation treats a missing table ([`is_missing_table`]) as "that
//!   generation is gone" and reads the zone's generation again.

use sqlx::{Any, AnyPool, Row, Transaction};

use super::{Dialect, backend, sql};
use crate::{domain::ZoneId, storage::StoreResult};

/// The quoted name of the table of `zone`'s `generation` (`"o_{zone id}_{generation}"`: 32 hex digits
/// and a decimal number, at most 54 characters, within PostgreSQL's 63).
pub fn objects_table(zone: &ZoneId, generation: i64) -> String {
    format!("\"o_{}_{}\"", zone.as_str(), generation)
}

/// The columns of a partition (zone and generation are in its name).
fn columns(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => {
            "key_hash TEXT NOT NULL PRIMARY KEY, cache_key TEXT NOT NULL, blob TEXT NOT NULL, size BIGINT NOT NULL,
             meta BLOB NOT NULL, stored_on BIGINT NOT NULL, last_access BIGINT NOT NULL,
             fill_revision BIGINT NOT NULL DEFAULT 0, invalidated_revision BIGINT, invalidated_at BIGINT"
        }
        Dialect::Postgres => {
            "key_hash TEXT COLLATE \"C\" NOT NULL PRIMARY KEY, cache_key TEXT NOT NULL, blob TEXT NOT NULL,
             size BIGINT NOT NULL, meta BYTEA NOT NULL, stored_on BIGINT NOT NULL, last_access BIGINT NOT NULL,
             fill_revision BIGINT NOT NULL DEFAULT 0, invalidated_revision BIGINT, invalidated_at BIGINT"
        }
    }
}

/// Creates the table of `zone`'s `generation` (with its retention index on `last_access`) and its
/// `generations` row, if missing. O(1) in stored objects.
pub(super) async fn create(
    tx: &mut Transaction<'static, Any>,
    d: Dialect,
    zone: &ZoneId,
    generation: i64,
) -> StoreResult<()> {
    let table = objects_table(zone, generation);
    let without_rowid = if d == Dialect::Sqlite { " WITHOUT ROWID" } else { "" };
    sqlx::query(sql(format!("CREATE TABLE IF NOT EXISTS {table} ({}){without_rowid}", columns(d))))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    let idle = format!("\"o_{}_{}_idle\"", zone.as_str(), generation);
    sqlx::query(sql(format!("CREATE INDEX IF NOT EXISTS {idle} ON {table} (last_access)")))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    sqlx::query(
        "INSERT INTO generations (zone_id, generation, objects, bytes) VALUES ($1, $2, 0, 0)
         ON CONFLICT (zone_id, generation) DO NOTHING",
    )
    .bind(zone.as_str())
    .bind(generation)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Drops the tables of `zone`'s generations below `below` and their `generations` rows. Returns the
/// number of entries they held. Its cost is that of freeing the tables' pages, not of deleting their rows.
pub(super) async fn drop_below(tx: &mut Transaction<'static, Any>, zone: &ZoneId, below: i64) -> StoreResult<u64> {
    let generations = sqlx::query(
        "SELECT generation, objects FROM generations WHERE zone_id = $1 AND generation < $2 ORDER BY generation",
    )
    .bind(zone.as_str())
    .bind(below)
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    let mut entries = 0u64;
    for r in &generations {
        let g: i64 = r.get("generation");
        entries += u64::try_from(r.get::<i64, _>("objects")).unwrap_or(0);
        sqlx::query(sql(format!("DROP TABLE IF EXISTS {}", objects_table(zone, g))))
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    sqlx::query("DELETE FROM generations WHERE zone_id = $1 AND generation < $2")
        .bind(zone.as_str())
        .bind(below)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(entries)
}

/// The generations of `zone` below `below` that still have a table, oldest first.
pub(super) async fn generations_below(pool: &AnyPool, zone: &ZoneId, below: i64) -> StoreResult<Vec<i64>> {
    sqlx::query_scalar("SELECT generation FROM generations WHERE zone_id = $1 AND generation < $2 ORDER BY generation")
        .bind(zone.as_str())
        .bind(below)
        .fetch_all(pool)
        .await
        .map_err(backend)
}

/// Whether `e` says a table does not exist (SQLite's "no such table", PostgreSQL's 42P01): the partition
/// of a generation whose Clear completed.
pub(super) fn is_missing_table(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.code().is_some_and(|c| c == "42P01") || db.message().starts_with("no such table"))
}

/// Whether the single `objects` table of earlier versions is there.
async fn exists_in(conn: &mut sqlx::AnyConnection, d: Dialect) -> StoreResult<bool> {
    let q = match d {
        Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'objects'",
        Dialect::Postgres => "SELECT CAST(to_regclass('objects') AS TEXT)",
    };
    let name: Option<Option<String>> = sqlx::query_scalar(q).fetch_optional(&mut *conn).await.map_err(backend)?;
    Ok(name.flatten().is_some())
}

/// Moves a database from the single `objects` table of earlier versions into partitions, in one
/// transaction, and drops that table. Does nothing when it is gone (converted, or another node converted
/// it first). Run at every open, after the migrations. Nodes of the earlier version must be stopped first:
/// once it is converted, they find no `objects` table (and a generation they create has no table).
/// PostgreSQL holds a few locks per table created until the commit: a database of more than about 1,000
/// zones needs `max_locks_per_transaction` raised for the conversion.
pub(super) async fn convert_legacy(pool: &AnyPool, d: Dialect) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    if !exists_in(&mut conn, d).await? {
        return Ok(());
    }
    drop(conn);
    let mut tx = match d {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?,
        Dialect::Postgres => pool.begin().await.map_err(backend)?,
    };
    if d == Dialect::Postgres {
        // Nodes starting together: the first converts, the others wait here and then find nothing to do.
        sqlx::query("SELECT pg_advisory_xact_lock(7270637573)").execute(&mut *tx).await.map_err(backend)?;
    }
    // Again under the lock (SQLite: the write lock; a `serve` and an admin command may open it together).
    if !exists_in(&mut tx, d).await? {
        return tx.commit().await.map_err(backend);
    }
    if d == Dialect::Postgres {
        // Nothing writes entries (say, a node of the earlier version still running) while they are copied.
        sqlx::query("LOCK TABLE objects IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.map_err(backend)?;
    }
    // A table for every generation with entries, every zone's current one, and every one a `generations`
    // row names (a retired generation whose entries are all gone still has its row until its Clear ends).
    let parts = sqlx::query(
        "SELECT zone_id, generation FROM objects GROUP BY zone_id, generation
         UNION SELECT id AS zone_id, generation FROM zones
         UNION SELECT zone_id, generation FROM generations",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(backend)?;
    for r in &parts {
        let (zone, generation): (String, i64) = (r.get("zone_id"), r.get("generation"));
        let zone_id = super::rows::zone_id(&zone)?;
        create(&mut tx, d, &zone_id, generation).await?;
        sqlx::query(sql(format!(
            "INSERT INTO {} (key_hash, cache_key, blob, size, meta, stored_on, last_access, fill_revision,
                             invalidated_revision, invalidated_at)
             SELECT key_hash, cache_key, blob, size, meta, stored_on, last_access, fill_revision,
                    invalidated_revision, invalidated_at
             FROM objects WHERE zone_id = $1 AND generation = $2",
            objects_table(&zone_id, generation)
        )))
        .bind(&zone)
        .bind(generation)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    sqlx::query("DROP TABLE objects").execute(&mut *tx).await.map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    if !parts.is_empty() {
        tracing::info!(partitions = parts.len(), "moved the object index into one table per zone generation");
    }
    Ok(())
}
