//! The embedded backend: one SQLite file in WAL mode, one writer connection, a few readers.

mod control;
mod index;
mod rows;

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    Sqlite, SqlitePool, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{StoreError, StoreResult};

/// SQLite-backed [`ControlStore`](super::ControlStore) and [`ObjectIndex`](super::ObjectIndex).
#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    /// A single connection: writers queue here instead of spinning in SQLite's busy handler.
    write: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(backend)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed Clear survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.map_err(backend)?;
        sqlx::migrate!("./migrations").run(&write).await.map_err(backend)?;
        let read =
            SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await.map_err(backend)?;
        let store = Self { read, write };
        store.ensure_account().await?;
        Ok(store)
    }

    /// A write transaction that takes SQLite's write lock at once (no deferred lock upgrade to fail).
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(backend)
    }

    async fn ensure_account(&self) -> StoreResult<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ('account_id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(crate::domain::ZoneId::generate().as_str())
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Wraps a backend error; its text goes to the log, never to a client.
fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Maps a unique-constraint violation to `AlreadyExists(what)`, anything else to `Backend`.
fn unique_or_backend(e: sqlx::Error, what: impl Into<String>) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists(what.into()),
        _ => backend(e),
    }
}

#[cfg(test)]
mod tests;
