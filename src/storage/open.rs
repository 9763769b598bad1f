//! Choosing and opening the backends: the embedded default (SQLite and bodies on disk, both in the data
//! directory) or the shared ones (PostgreSQL and S3-compatible storage) that several nodes use at once.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;

use super::{
    CompactionIndex, ControlStore, ObjectIndex, PurgeIndex,
    bodies::{BodyStore, s3, segment},
    sql::SqlStore,
};

/// Where the control state and object index live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlBackend {
    /// `control.db` in the data directory.
    Sqlite,
    /// A PostgreSQL database, `postgres://user:password@host:port/database`.
    Postgres { url: String },
}

/// Where the bodies live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyBackend {
    /// `objects/` in the data directory.
    Local,
    /// A bucket (and prefix) of S3-compatible storage; `endpoint` overrides `AWS_ENDPOINT`.
    S3 { location: s3::S3Location, endpoint: Option<String> },
}

/// The backends to open.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// For the embedded backends (and the `serve.lock` that keeps a second server off them).
    pub data_dir: PathBuf,
    pub control: ControlBackend,
    pub bodies: BodyBackend,
    /// PostgreSQL connections per process.
    pub postgres_connections: u32,
    /// How long to wait for a PostgreSQL connection before an operation fails as unavailable.
    pub postgres_connect_timeout: Duration,
    /// Local bodies: when a segment file is finished, in bytes.
    pub segment_bytes: u64,
    /// Local bodies: whether hits read through a mapping of the segment (else `preadv2`).
    pub segment_mapped_reads: bool,
}

impl StoreConfig {
    /// The embedded backends in `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            control: ControlBackend::Sqlite,
            bodies: BodyBackend::Local,
            postgres_connections: 16,
            postgres_connect_timeout: Duration::from_secs(5),
            segment_bytes: segment::DEFAULT_SEGMENT_BYTES,
            segment_mapped_reads: true,
        }
    }

    /// Whether anything lives in the data directory.
    pub fn uses_data_dir(&self) -> bool {
        self.control == ControlBackend::Sqlite || self.bodies == BodyBackend::Local
    }

    /// Whether several nodes may share these backends (both are shared services).
    pub fn is_shared(&self) -> bool {
        self.control != ControlBackend::Sqlite && self.bodies != BodyBackend::Local
    }

    /// For logs: where the control state and the bodies are (no password).
    pub fn describe(&self) -> String {
        let control = match &self.control {
            ControlBackend::Sqlite => format!("{}/control.db", self.data_dir.display()),
            ControlBackend::Postgres { url } => redact_password(url),
        };
        let bodies = match &self.bodies {
            BodyBackend::Local => format!("{}/objects", self.data_dir.display()),
            BodyBackend::S3 { location, endpoint: Some(e) } => format!("{location} at {e}"),
            BodyBackend::S3 { location, endpoint: None } => location.to_string(),
        };
        format!("control store {control}, bodies {bodies}")
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The opened backends; cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub sql: SqlStore,
    pub bodies: Arc<dyn BodyStore>,
    /// The same store as `bodies` when it is the local segment store (for its compaction).
    pub segments: Option<Arc<segment::SegmentBodies>>,
}

impl Stores {
    /// Opens the backends, creating the data directory's parts where they are used, and bringing the
    /// schema up to date (concurrent starts are safe: PostgreSQL migrations run under an advisory lock).
    pub async fn open(config: &StoreConfig) -> anyhow::Result<Self> {
        let dir = &config.data_dir;
        let sql = match &config.control {
            ControlBackend::Sqlite => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create data directory {}", dir.display()))?;
                SqlStore::open_sqlite(&dir.join("control.db"))
                    .await
                    .with_context(|| format!("cannot open the control store in {}", dir.display()))?
            }
            ControlBackend::Postgres { url } => {
                SqlStore::open_postgres(url, config.postgres_connections, config.postgres_connect_timeout, true)
                    .await
                    .with_context(|| format!("cannot open the control store at {}", redact_password(url)))?
            }
        };
        let mut segments = None;
        let bodies: Arc<dyn BodyStore> = match &config.bodies {
            BodyBackend::Local => {
                let objects = dir.join("objects");
                std::fs::create_dir_all(&objects)
                    .with_context(|| format!("cannot create the object directory {}", objects.display()))?;
                let append = segment::AppendConfig {
                    segment_bytes: config.segment_bytes,
                    fsync: true,
                    mapped_reads: config.segment_mapped_reads,
                };
                let store = Arc::new(
                    segment::SegmentBodies::open(&objects, append)
                        .with_context(|| format!("cannot open the object directory {}", objects.display()))?,
                );
                segments = Some(store.clone());
                store
            }
            BodyBackend::S3 { location, endpoint } => {
                Arc::new(s3::open(location, endpoint.as_deref()).with_context(|| format!("cannot open {location}"))?)
            }
        };
        Ok(Self { sql, bodies, segments })
    }

    pub fn control(&self) -> Arc<dyn ControlStore> {
        Arc::new(self.sql.clone())
    }

    pub fn index(&self) -> Arc<dyn ObjectIndex> {
        Arc::new(self.sql.clone())
    }

    pub fn purge_index(&self) -> Arc<dyn PurgeIndex> {
        Arc::new(self.sql.clone())
    }

    pub fn compaction_index(&self) -> Arc<dyn CompactionIndex> {
        Arc::new(self.sql.clone())
    }

    /// Closes the database pools.
    pub async fn close(&self) {
        self.sql.close().await;
    }
}
