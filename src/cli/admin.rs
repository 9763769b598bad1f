//! Admin commands: work directly on the control store (safe while servers run: SQLite WAL, or PostgreSQL).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::{StoreArgs, duration};
use crate::{
    domain::{
        Permission, Timestamp, TokenId, TokenScope, UserId, ZoneId, ZoneName, secret::Secret, secret::is_email_shaped,
    },
    storage::{ControlStore, NewZone, Page, StoreError, StoredToken, StoredUser, ZoneFilter},
    storage::{
        open::{ControlBackend, Stores, redact_password},
        sql,
    },
};

#[derive(Subcommand, Debug)]
pub enum ZoneCommand {
    /// Create a zone; prints only its id.
    Create {
        /// The zone's hostname, e.g. example.com.
        name: String,
        /// Origin the proxy forwards misses to, e.g. http://127.0.0.1:9000.
        #[arg(long, value_parser = parse_origin)]
        origin: Option<String>,
        /// A fixed zone id (32 lowercase hex digits, as Cloudflare's), e.g. to match ids that automation
        /// expects. A deleted zone's id may be used again. Default: a random one.
        #[arg(long, value_parser = parse_zone_id)]
        id: Option<ZoneId>,
        #[command(flatten)]
        data: AdminStoreArgs,
    },
    /// Delete a zone; prints its id. Its stored objects are gone at once (deleted in the background, as by
    /// a Clear), and running servers stop serving its hostname (421). Its name can be taken again.
    Delete {
        /// Zone id or name.
        zone: String,
        #[command(flatten)]
        data: AdminStoreArgs,
    },
    /// List zones: id, name, reserve setting, origin.
    List {
        #[command(flatten)]
        data: AdminStoreArgs,
    },
    /// Change a zone's origin.
    SetOrigin {
        /// Zone id or name.
        zone: String,
        /// New origin, e.g. http://127.0.0.1:9000.
        #[arg(value_parser = parse_origin)]
        origin: String,
        #[command(flatten)]
        data: AdminStoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token; prints only its secret (shown this once).
    Create {
        /// A name to recognise the token by.
        #[arg(long)]
        name: String,
        /// Permission group, e.g. "Zone Settings Write" or zone_settings_read; repeat for more.
        #[arg(long = "permission", required = true)]
        permissions: Vec<Permission>,
        /// Zone id or name the token may reach; repeat for more. None: every zone.
        #[arg(long = "zone")]
        zones: Vec<String>,
        /// Lifetime, e.g. 30d or 12h, at most 36500d (100 years). None: no expiry.
        #[arg(long, value_parser = token_lifetime)]
        expires_in: Option<Duration>,
        #[command(flatten)]
        data: AdminStoreArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        data: AdminStoreArgs,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke {
        /// The token's id (from `token list`).
        id: String,
        #[command(flatten)]
        data: AdminStoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; prints only their global API key (for X-Auth-Email / X-Auth-Key).
    Create {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        data: AdminStoreArgs,
    },
}

/// `cache-reserve migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    data: AdminStoreArgs,
}

impl MigrateArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.data.stores.config();
        match &config.control {
            ControlBackend::Postgres { url } => {
                let applied = sql::migrate_postgres(url, config.postgres_connect_timeout).await?;
                println!("applied {applied} migration(s); the schema is up to date");
            }
            ControlBackend::Sqlite => {
                self.data.open().await?.close().await;
                println!("the schema of {} is up to date", self.data.describe_control());
            }
        }
        Ok(())
    }
}

/// Where an admin command finds the stores: the flags `serve` takes, and `--create`.
#[derive(clap::Args, Debug)]
pub struct AdminStoreArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Create the data directory if there is none. Without it a missing one is refused, so that a command
    /// run from another directory cannot report success on a new, empty one the server never reads.
    #[arg(long)]
    create: bool,
}

impl AdminStoreArgs {
    /// Opens the stores the flags name; with the embedded control store, its data directory must exist
    /// (holding `control.db`) unless `--create` was given.
    async fn open(&self) -> anyhow::Result<Stores> {
        let config = self.stores.config();
        if config.control == ControlBackend::Sqlite && !self.create {
            let db = config.data_dir.join("control.db");
            if !db.exists() {
                let dir = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
                bail!(
                    "no data directory at {} (no control.db there): run this where `serve` runs, pass --data-dir \
                     (or set CACHE_RESERVE_DATA_DIR) to the server's, or add --create to start a new one",
                    dir.display()
                );
            }
        }
        Stores::open(&config).await
    }

    /// The control store, for a message: `/abs/data/control.db` or the PostgreSQL URL without its password.
    fn describe_control(&self) -> String {
        let config = self.stores.config();
        match &config.control {
            ControlBackend::Sqlite => {
                let dir = std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
                dir.join("control.db").display().to_string()
            }
            ControlBackend::Postgres { url } => redact_password(url),
        }
    }
}

/// `--expires-in`: a duration above zero, at most 100 years.
fn token_lifetime(s: &str) -> Result<Duration, String> {
    let d = duration::parse(s)?;
    if d.is_zero() || d > Duration::from_secs(36_500 * 86_400) {
        return Err(format!("{s:?} is out of range: 1ms to 36500d (100 years)"));
    }
    Ok(d)
}

/// `--origin`: see [`crate::domain::zone::parse_origin`].
fn parse_origin(s: &str) -> Result<String, String> {
    crate::domain::zone::parse_origin(s)
}

/// `--id`: a zone id.
fn parse_zone_id(s: &str) -> Result<ZoneId, String> {
    ZoneId::parse(s).map_err(|_| format!("{s:?} is not a zone id: expected 32 lowercase hex digits"))
}

/// Finds a zone by id or name.
async fn resolve_zone(store: &dyn ControlStore, id_or_name: &str) -> anyhow::Result<ZoneId> {
    if let Ok(id) = ZoneId::parse(id_or_name) {
        if store.zone(&id).await?.is_some() {
            return Ok(id);
        }
    }
    let name = ZoneName::parse(id_or_name).map_err(|_| anyhow::anyhow!("no zone {id_or_name:?}"))?;
    Ok(store.zone_by_name(&name).await?.with_context(|| format!("no zone {id_or_name:?}"))?.id)
}

impl ZoneCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            ZoneCommand::Create { name, origin, id, data } => {
                let name = ZoneName::parse(&name)?;
                let dir = data.open().await?;
                let new = NewZone { id: id.unwrap_or_else(ZoneId::generate), name, origin };
                let zone = dir.sql.create_zone(new).await.map_err(|e| match e {
                    StoreError::AlreadyExists(what) => anyhow::anyhow!("{what} already exists"),
                    other => other.into(),
                })?;
                println!("{}", zone.id);
            }
            ZoneCommand::List { data } => {
                let dir = data.open().await?;
                let (zones, _) =
                    dir.sql.list_zones(&ZoneFilter::default(), Page { page: 1, per_page: u32::MAX }).await?;
                if zones.is_empty() {
                    eprintln!("no zones in {}", data.describe_control());
                }
                for z in zones {
                    let reserve = if z.reserve_on { "on" } else { "off" };
                    println!("{}\t{}\treserve={reserve}\torigin={}", z.id, z.name, z.origin.as_deref().unwrap_or("-"));
                }
            }
            ZoneCommand::Delete { zone, data } => {
                let dir = data.open().await?;
                let id = resolve_zone(&dir.sql, &zone).await?;
                // Servers learn of it from the change feed within their sync interval, as of any change.
                let gone = dir.sql.delete_zone(&id).await.map_err(|e| match e {
                    StoreError::NotFound(_) => anyhow::anyhow!("no zone {zone:?}"),
                    other => other.into(),
                })?;
                println!("{}", gone.id);
            }
            ZoneCommand::SetOrigin { zone, origin, data } => {
                let dir = data.open().await?;
                let id = resolve_zone(&dir.sql, &zone).await?;
                dir.sql.set_origin(&id, Some(origin)).await?;
            }
        }
        Ok(())
    }
}

impl TokenCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            TokenCommand::Create { name, mut permissions, zones, expires_in, data } => {
                if name.trim().is_empty() {
                    bail!("--name must not be empty");
                }
                let dir = data.open().await?;
                let scope = if zones.is_empty() {
                    TokenScope::AllZones
                } else {
                    let mut ids = Vec::new();
                    for z in &zones {
                        ids.push(resolve_zone(&dir.sql, z).await?);
                    }
                    TokenScope::Zones(ids)
                };
                permissions.sort();
                permissions.dedup();
                let secret = Secret::new_token();
                let now = Timestamp::now();
                dir.sql
                    .create_token(StoredToken {
                        id: TokenId::generate(),
                        name,
                        hash: secret.hash(),
                        permissions,
                        scope,
                        created_on: now,
                        expires_on: expires_in.map(|d| now.plus(d)),
                        revoked_on: None,
                    })
                    .await?;
                println!("{}", secret.expose());
            }
            TokenCommand::List { data } => {
                let dir = data.open().await?;
                let now = Timestamp::now();
                let tokens = dir.sql.list_tokens().await?;
                if tokens.is_empty() {
                    eprintln!("no tokens in {}", data.describe_control());
                }
                for t in tokens {
                    let status = match (t.revoked_on, t.expires_on) {
                        (Some(_), _) => "revoked",
                        (None, Some(e)) if e <= now => "expired",
                        _ => "active",
                    };
                    let perms: Vec<_> = t.permissions.iter().map(|p| p.cloudflare_name()).collect();
                    let scope = match &t.scope {
                        TokenScope::AllZones => "all zones".to_owned(),
                        TokenScope::Zones(z) => z.iter().map(ZoneId::as_str).collect::<Vec<_>>().join(","),
                    };
                    println!("{}\t{}\t{status}\t{}\t{scope}", t.id, t.name, perms.join(", "));
                }
            }
            TokenCommand::Revoke { id, data } => {
                let id = TokenId::parse(&id).map_err(|_| anyhow::anyhow!("{id:?} is not a token id"))?;
                let dir = data.open().await?;
                dir.sql.revoke_token(&id, Timestamp::now()).await.map_err(|e| match e {
                    StoreError::NotFound(_) => anyhow::anyhow!("no token {id}"),
                    other => other.into(),
                })?;
            }
        }
        Ok(())
    }
}

impl UserCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            UserCommand::Create { email, data } => {
                let email = email.trim().to_ascii_lowercase();
                if !is_email_shaped(&email) {
                    bail!("{email:?} is not an e-mail address");
                }
                let dir = data.open().await?;
                let key = Secret::new_global_key();
                let user =
                    StoredUser { id: UserId::generate(), email, key_hash: key.hash(), created_on: Timestamp::now() };
                dir.sql.create_user(user).await.map_err(|e| match e {
                    StoreError::AlreadyExists(what) => anyhow::anyhow!("{what} already exists"),
                    other => other.into(),
                })?;
                println!("{}", key.expose());
            }
        }
        Ok(())
    }
}
