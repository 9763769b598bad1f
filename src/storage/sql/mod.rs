//! The SQL backends, one implementation over sqlx's `Any` driver with a [`Dialect`] for what differs:
//!
//! - **SQLite** (embedded): one file in WAL mode, one writer connection (`BEGIN IMMEDIATE`), a few
//!   readers. The single writer serializes every change, so no row lock is needed.
//! - **PostgreSQL** (scale-out): `READ COMMITTED` transactions that lock the rows they decide on
//!   (`FOR UPDATE` / `FOR SHARE`) in one fixed order — zones by id, then Clears, then objects by key, then
//!   per-generation counts — and are retried (a bounded number of times) on serialization failures and
//!   deadlocks. Changes to zones and node syncs are announced with `NOTIFY`, so other nodes learn of them
//!   in milliseconds rather than at their next poll.
//!
//! Times are BIGINT unix microseconds; those that nodes compare come from the database's clock
//! ([`Dialect::now`]).

mod compaction;
mod control;
mod feed;
mod index;
mod partitions;
mod priority;
mod purges;
mod reclaim;
mod rows;
mod writes;
mod zones;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use sqlx::{
    Any, AnyPool, ConnectOptions, Transaction,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::Migrator,
};

pub use partitions::objects_table;

use super::{ObjectIndex, StoreError, StoreResult};
use crate::domain::ZoneId;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Serialization failures and deadlocks retried per transaction before the error is returned.
const MAX_RETRIES: u32 = 8;

/// Runs `$work` (an expression making the future of one whole transaction) again when PostgreSQL aborted
/// it as a serialization failure or deadlock, a bounded number of times with a short jittered pause.
macro_rules! retrying {
    ($work:expr) => {{
        let mut attempt = 0;
        loop {
            match $work.await {
                Err(e) if attempt < $crate::storage::sql::MAX_RETRIES && $crate::storage::sql::is_conflict(&e) => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "transaction conflicted; retrying");
                    tokio::time::sleep($crate::storage::sql::conflict_pause(attempt)).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retrying;

/// The pause before retry `attempt` of a conflicted transaction: a few milliseconds, jittered.
fn conflict_pause(attempt: u32) -> Duration {
    let mut jitter = [0u8; 1];
    getrandom::fill(&mut jitter).expect("the operating system's random source failed");
    Duration::from_millis(u64::from(attempt) * 2 + u64::from(jitter[0] % 8))
}

/// A statement whose text is assembled from [`Dialect`] fragments and partition names (a validated zone id
/// and a number, [`objects_table`]), never from input: safe to run.
fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// What differs between the two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The database's clock, in unix microseconds.
    fn now(self) -> &'static str {
        match self {
            // julianday('now') is fixed for the statement, to the millisecond.
            Dialect::Sqlite => "(CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT) * 1000)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        }
    }

    /// The database's clock when the statement began, before it took its snapshot (PostgreSQL's
    /// `statement_timestamp()`): a row the snapshot shows is never judged old by a time after a newer
    /// version of it, which the snapshot hides, committed. SQLite: [`Dialect::now`] (one serving node per
    /// file: no other node's rows to judge).
    fn statement_now(self) -> &'static str {
        match self {
            Dialect::Sqlite => self.now(),
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000 AS BIGINT)",
        }
    }

    /// Locks the selected rows against change until commit (nothing in SQLite: its one writer is the lock).
    fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Locks the selected rows against change, not against other readers that lock them the same way.
    fn for_share(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        }
    }

    /// Locks the selected rows, skipping rows another transaction holds.
    fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The larger of two values.
    fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }
}

/// The store over SQLite or PostgreSQL: [`ControlStore`](super::ControlStore) and
/// [`ObjectIndex`].
#[derive(Clone)]
pub struct SqlStore {
    read: AnyPool,
    /// The zone directory's sync reads, on a connection of their own: a flood of index look-ups (queued on
    /// `read`) must not delay a sync past the view's lifetime, which would make the node bypass its tiers.
    sync_read: AnyPool,
    /// SQLite: a single connection, so writers queue here instead of spinning in SQLite's busy handler.
    /// PostgreSQL: the same pool as `read`.
    write: AnyPool,
    /// The zone directory's sync record (SQLite: a second writer connection, which waits only for the
    /// transaction holding SQLite's write lock, not behind every queued writer: under a flood of fills the
    /// queue is seconds long, past the view's lifetime. PostgreSQL: `write`).
    sync_write: AnyPool,
    /// SQLite: the sync record's claim on the write lock, ahead of `write`'s next transaction.
    priority: Arc<priority::WriterPriority>,
    dialect: Dialect,
    /// PostgreSQL: where to `LISTEN` for other nodes' changes.
    listen_url: Option<String>,
    /// Each zone's generation as last seen: picks the partition a look-up reads (which checks it in the
    /// same statement, see `ObjectIndex::lookup`), saving a round trip per look-up.
    generations: Arc<RwLock<HashMap<ZoneId, i64>>>,
}

impl SqlStore {
    /// Opens (creating if missing) the SQLite file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let url = sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true);
        let url = url.to_url_lossy();
        let options = AnyConnectOptions::from_url(&url).map_err(backend)?;
        let pool = |max: u32, read_only: bool| {
            AnyPoolOptions::new().max_connections(max).after_connect(move |conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    // FULL: a committed Clear survives power loss, not only a process crash.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; \
                         PRAGMA foreign_keys = ON",
                    )
                    .await?;
                    if read_only {
                        conn.execute("PRAGMA query_only = ON").await?;
                    }
                    Ok(())
                })
            })
        };
        let priority = Arc::new(priority::WriterPriority::default());
        let write = pool(1, false)
            .before_acquire({
                let priority = priority.clone();
                move |_, _| {
                    let priority = priority.clone();
                    Box::pin(async move {
                        priority.yield_to_claims().await;
                        Ok(true)
                    })
                }
            })
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        SQLITE_MIGRATIONS.run(&write).await.map_err(backend)?;
        partitions::convert_legacy(&write, Dialect::Sqlite).await?;
        let read = pool(4, true).connect_with(options.clone()).await.map_err(backend)?;
        let sync_read = pool(1, true).connect_with(options.clone()).await.map_err(backend)?;
        let sync_write = pool(1, false).connect_with(options).await.map_err(backend)?;
        let store = Self {
            read,
            sync_read,
            write,
            sync_write,
            priority,
            dialect: Dialect::Sqlite,
            listen_url: None,
            generations: Arc::default(),
        };
        store.ensure_account().await?;
        Ok(store)
    }

    /// Connects to PostgreSQL at `url` (`postgres://user:password@host:port/database`) with up to
    /// `connections` connections, applying migrations when `migrate` (else refusing a schema that is not
    /// up to date). Fails with [`StoreError::Unavailable`] if it cannot be reached within `connect_timeout`.
    pub async fn open_postgres(
        url: &str,
        connections: u32,
        connect_timeout: Duration,
        migrate: bool,
    ) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url.parse().map_err(backend)?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(connect_timeout)
            .connect_with(options)
            .await
            .map_err(backend)?;
        if migrate {
            POSTGRES_MIGRATIONS.run(&pool).await.map_err(backend)?;
            partitions::convert_legacy(&pool, Dialect::Postgres).await?;
        } else {
            check_migrated(&pool).await?;
        }
        let sync_read = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(connect_timeout)
            .connect_lazy_with(url.parse().map_err(backend)?);
        let store = Self {
            read: pool.clone(),
            sync_read,
            sync_write: pool.clone(),
            write: pool,
            priority: Arc::default(),
            dialect: Dialect::Postgres,
            listen_url: Some(url.into()),
            generations: Arc::default(),
        };
        store.ensure_account().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A write transaction: in SQLite one that takes the write lock at once (no deferred upgrade to fail).
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Any>> {
        Self::begin_on(&self.write, self.dialect).await
    }

    /// [`SqlStore::begin_write`] on the sync's own connection, ahead of `write`'s queue: the claim returned
    /// must be held until the transaction ends.
    async fn begin_sync_write(&self) -> StoreResult<(priority::PriorityClaim, Transaction<'static, Any>)> {
        let claim = self.priority.claim();
        Ok((claim, Self::begin_on(&self.sync_write, self.dialect).await?))
    }

    async fn begin_on(pool: &AnyPool, dialect: Dialect) -> StoreResult<Transaction<'static, Any>> {
        match dialect {
            Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend),
            Dialect::Postgres => pool.begin().await.map_err(backend),
        }
    }

    async fn ensure_account(&self) -> StoreResult<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ('account_id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(crate::domain::ZoneId::generate().as_str())
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// The generation of `zone` as last seen, else read (and remembered); `None` when there is no such zone.
    async fn known_generation(&self, zone: &ZoneId) -> StoreResult<Option<i64>> {
        if let Some(&g) = self.generations.read().expect("generations lock").get(zone) {
            return Ok(Some(g));
        }
        let g = self.current_generation(zone).await?;
        if let Some(g) = g {
            self.remember_generation(zone, g);
        }
        Ok(g)
    }

    fn remember_generation(&self, zone: &ZoneId, generation: i64) {
        self.generations.write().expect("generations lock").insert(zone.clone(), generation);
    }

    fn forget_generation(&self, zone: &ZoneId) {
        self.generations.write().expect("generations lock").remove(zone);
    }

    /// Closes the pools (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.read.close().await;
        self.sync_read.close().await;
        self.sync_write.close().await;
        self.write.close().await;
    }
}

/// Applies the PostgreSQL migrations at `url` (`cache-reserve migrate`). Returns how many were applied.
pub async fn migrate_postgres(url: &str, connect_timeout: Duration) -> StoreResult<usize> {
    sqlx::any::install_default_drivers();
    let options: AnyConnectOptions = url.parse().map_err(backend)?;
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(connect_timeout)
        .connect_with(options)
        .await
        .map_err(backend)?;
    let before = applied_versions(&pool).await?.len();
    POSTGRES_MIGRATIONS.run(&pool).await.map_err(backend)?;
    partitions::convert_legacy(&pool, Dialect::Postgres).await?;
    let after = applied_versions(&pool).await?.len();
    pool.close().await;
    Ok(after - before)
}

/// Versions of the migrations applied so far (none when the table does not exist yet).
async fn applied_versions(pool: &AnyPool) -> StoreResult<Vec<i64>> {
    let exists: Option<String> = sqlx::query_scalar("SELECT CAST(to_regclass('_sqlx_migrations') AS TEXT)")
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .map_err(backend)
}

/// Refuses a PostgreSQL schema that lacks a migration this build knows.
async fn check_migrated(pool: &AnyPool) -> StoreResult<()> {
    let applied = applied_versions(pool).await?;
    let missing: Vec<i64> = POSTGRES_MIGRATIONS.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect();
    let legacy: Option<String> =
        sqlx::query_scalar("SELECT CAST(to_regclass('objects') AS TEXT)").fetch_one(pool).await.map_err(backend)?;
    if missing.is_empty() && legacy.is_none() {
        return Ok(());
    }
    Err(StoreError::Backend(
        format!(
            "the PostgreSQL schema is not up to date (missing migrations {missing:?}{}): run `cache-reserve migrate`",
            if legacy.is_some() { ", object index not yet partitioned" } else { "" }
        )
        .into(),
    ))
}

/// A serialization failure or deadlock: the transaction was rolled back and may simply be run again.
fn is_conflict(e: &StoreError) -> bool {
    let StoreError::Backend(source) = e else { return false };
    source
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40001" || code == "40P01")
}

/// Wraps a database error: one that says the database cannot be reached (or is going away) is
/// [`StoreError::Unavailable`]; anything else is [`StoreError::Backend`]. Its text goes to the log, never
/// to a client.
fn backend(e: impl Into<sqlx::Error>) -> StoreError {
    let e = e.into();
    let unavailable = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions; 57P0x: shutting down / cannot connect now; 53300: too many
            // connections; SQLite 5/6: busy / locked past the busy timeout.
            code.starts_with("08") || code.starts_with("57P0") || code == "53300" || code == "5" || code == "6"
        }),
        _ => false,
    };
    if unavailable { StoreError::Unavailable(Box::new(e)) } else { StoreError::Backend(Box::new(e)) }
}

/// Maps a unique-constraint violation to `AlreadyExists(what)`, anything else as [`backend`] does.
fn unique_or_backend(e: sqlx::Error, what: impl Into<String>) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists(what.into()),
        _ => backend(e),
    }
}

#[cfg(test)]
mod tests;
