//! Fresh, isolated backends for tests and benchmarks: an embedded data directory, or a new PostgreSQL
//! database and a new S3 key prefix on the servers that `scripts/services.sh start` runs and describes in
//! the environment:
//!
//! - `CACHE_RESERVE_TEST_POSTGRES`: an administrator URL (`postgres://postgres@127.0.0.1:55432/postgres`);
//!   each fresh backend gets a database of its own there;
//! - `CACHE_RESERVE_TEST_S3_ENDPOINT`, `CACHE_RESERVE_TEST_S3_BUCKET`: an endpoint and an existing bucket
//!   (credentials from `AWS_*`); each fresh backend gets a prefix of its own there;
//! - `CACHE_RESERVE_TEST_BACKEND`: `embedded` (the default) or `shared`, the backend of the integration
//!   suite.

use std::path::Path;

use anyhow::Context;
use sqlx::{Connection, Executor, postgres::PgConnection};

use super::{
    bodies::s3::S3Location,
    open::{BodyBackend, ControlBackend, StoreConfig},
};

/// Which backends a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and local disk in a data directory.
    Embedded,
    /// PostgreSQL and S3 from the `CACHE_RESERVE_TEST_*` variables.
    Shared,
}

impl Backend {
    /// `CACHE_RESERVE_TEST_BACKEND`: `embedded` unless it says `shared`.
    pub fn from_env() -> Self {
        match std::env::var("CACHE_RESERVE_TEST_BACKEND").as_deref() {
            Ok("shared") => Backend::Shared,
            _ => Backend::Embedded,
        }
    }

    /// A fresh, empty store configuration of this kind; `dir` is its data directory (used by the embedded
    /// backends only).
    pub async fn fresh(self, dir: &Path) -> anyhow::Result<StoreConfig> {
        let mut config = StoreConfig::embedded(dir);
        if self == Backend::Shared {
            let env = SharedEnv::from_env()
                .context("CACHE_RESERVE_TEST_POSTGRES and CACHE_RESERVE_TEST_S3_* are not set: run `bash scripts/services.sh start` and source /tmp/cache-reserve-services/env")?;
            let name = format!("t_{}", random_hex());
            config.control = ControlBackend::Postgres { url: env.fresh_database(&name).await? };
            config.bodies = BodyBackend::S3 {
                location: S3Location { bucket: env.s3_bucket.clone(), prefix: name },
                endpoint: Some(env.s3_endpoint.clone()),
            };
        }
        Ok(config)
    }
}

/// The shared test servers named by the environment.
#[derive(Debug, Clone)]
pub struct SharedEnv {
    pub postgres: String,
    pub s3_endpoint: String,
    pub s3_bucket: String,
}

impl SharedEnv {
    /// `None` when the variables are not set.
    pub fn from_env() -> Option<Self> {
        Some(Self {
            postgres: std::env::var("CACHE_RESERVE_TEST_POSTGRES").ok()?,
            s3_endpoint: std::env::var("CACHE_RESERVE_TEST_S3_ENDPOINT").ok()?,
            s3_bucket: std::env::var("CACHE_RESERVE_TEST_S3_BUCKET").ok()?,
        })
    }

    /// Creates the database `name` and returns its URL.
    pub async fn fresh_database(&self, name: &str) -> anyhow::Result<String> {
        let mut admin = PgConnection::connect(&self.postgres)
            .await
            .with_context(|| format!("cannot reach the test PostgreSQL at {}", self.postgres))?;
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await?;
        admin.close().await?;
        let mut url = url::Url::parse(&self.postgres)?;
        url.set_path(name);
        Ok(url.to_string())
    }
}

/// 8 random bytes, hex.
fn random_hex() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    hex::encode(b)
}

/// Whether tests on the shared backends must run (CI): a missing server is then a failure, not a skip.
pub fn shared_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Damages a stored body in place, as a failing disk or a stray write outside our control would: the bytes
/// at the start of the body are overwritten with `bytes` (a segment record; its checksum no longer holds),
/// or the body becomes `bytes` (a one-file body, an S3 object).
pub async fn damage_body(config: &StoreConfig, location: &str, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    match &config.bodies {
        BodyBackend::Local => {
            let root = config.data_dir.join("objects");
            match super::bodies::segment::body_region(&root, location) {
                Some((file, offset, _)) => {
                    std::fs::File::options().write(true).open(file)?.write_all_at(bytes, offset)?;
                }
                None => std::fs::write(root.join(location), bytes)?,
            }
        }
        BodyBackend::S3 { location: bucket, endpoint } => {
            let store = super::bodies::s3::open(bucket, endpoint.as_deref())?.object_store();
            let path = object_store::path::Path::from(location);
            object_store::ObjectStoreExt::put(&*store, &path, bytes.to_vec().into()).await?;
        }
    }
    Ok(())
}
