//! The command line: `serve`, admin commands on the data directory, and client commands over the HTTP API.

mod admin;
mod client;
mod duration;
mod limits;
mod net;
mod purge;
mod size;
mod stats;
mod tls;
mod validate;
mod watch;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

pub use client::ClientError;

use crate::{
    directory::SyncConfig,
    jobs::{CompactConfig, ReclaimConfig},
    proxy::{ProxyConfig, request_log::LogTarget},
    server::{self, ProxyTransport, ServeConfig},
    storage::{
        bodies::s3::S3Location,
        open::{BodyBackend, ControlBackend, StoreConfig, redact_password},
    },
};

/// A self-hosted Cache Reserve with a Cloudflare v4-compatible control API.
#[derive(Parser, Debug)]
#[command(name = "cache-reserve", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: the control API, the caching proxy, the Clear reclaimer and the retention sweeper.
    Serve(Box<ServeArgs>),
    /// Create and list zones (works on the control store, also while servers run).
    #[command(subcommand)]
    Zone(admin::ZoneCommand),
    /// Create, list and revoke API tokens (works on the control store).
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Create users, whose global API key holds every permission (works on the control store).
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Bring the control store's schema up to date (`serve` and the admin commands also do it on start).
    Migrate(admin::MigrateArgs),
    /// Get or change a zone's Cache Reserve setting through the API.
    Reserve(client::ReserveArgs),
    /// Start a Cache Reserve Clear or show its status through the API.
    #[command(subcommand)]
    Clear(client::ClearCommand),
    /// Purge cached content through the API: removed from every tier on every node before it answers.
    Purge(purge::PurgeArgs),
    /// Invalidate cached content through the API: marked stale in every tier, revalidated on next request.
    Invalidate(purge::PurgeArgs),
    /// Show a zone's proxy counters (from the server's /metrics).
    Stats(stats::StatsArgs),
}

/// Where the control state and the bodies are: the embedded default in the data directory, or the shared
/// backends several nodes use at once.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Data directory of the embedded backends: control store (control.db) and object bodies (objects/).
    /// Created on first use. Unused when both --control-store and --object-store are shared.
    #[arg(long, env = "CACHE_RESERVE_DATA_DIR", default_value = "./cache-reserve-data")]
    pub data_dir: PathBuf,
    /// Control state and object index: `sqlite` (control.db in the data directory) or a PostgreSQL URL,
    /// `postgres://user:password@host:port/database`, shared by every node.
    #[arg(long, env = "CACHE_RESERVE_CONTROL_STORE", default_value = "sqlite", value_parser = parse_control_store)]
    pub control_store: ControlBackend,
    /// Object bodies: `local` (objects/ in the data directory) or `s3://bucket[/prefix]` on S3-compatible
    /// storage, shared by every node. Credentials and region come from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_REGION.
    #[arg(long, env = "CACHE_RESERVE_OBJECT_STORE", default_value = "local", value_parser = parse_object_store)]
    pub object_store: ObjectStoreArg,
    /// S3 endpoint for a service other than AWS, e.g. http://127.0.0.1:8333 (SeaweedFS), R2's or MinIO's
    /// URL. Default: AWS_ENDPOINT, else AWS S3 itself.
    #[arg(long, env = "CACHE_RESERVE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// PostgreSQL connections per process.
    #[arg(long, env = "CACHE_RESERVE_POSTGRES_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub postgres_connections: u32,
    /// With local bodies: the size at which a segment file is finished and the next begun (bodies up to
    /// 1 MiB are packed into segments). At least 1MiB.
    #[arg(long, env = "CACHE_RESERVE_SEGMENT_BYTES", default_value = "64MiB", value_parser = parse_segment_bytes)]
    pub segment_bytes: u64,
    /// With local bodies: serve reserve hits from a read-only mapping of the segment when its pages are in
    /// the page cache (one copy fewer than a read into memory); `false` reads with `preadv2`.
    #[arg(long, env = "CACHE_RESERVE_SEGMENT_MAPPED_READS", default_value_t = true, action = clap::ArgAction::Set)]
    pub segment_mapped_reads: bool,
}

fn parse_segment_bytes(s: &str) -> Result<u64, String> {
    let n = size::parse(s)?;
    if n < 1 << 20 {
        return Err(format!("{s:?} is below 1MiB"));
    }
    Ok(n)
}

/// `--object-store`, before `--s3-endpoint` is joined to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreArg {
    Local,
    S3(S3Location),
}

fn parse_control_store(s: &str) -> Result<ControlBackend, String> {
    if s == "sqlite" {
        return Ok(ControlBackend::Sqlite);
    }
    let url = url::Url::parse(s)
        .map_err(|_| format!("{s:?}: expected `sqlite` or postgres://user:password@host/database"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{}: expected `sqlite` or postgres://user:password@host/database", redact_password(s)));
    }
    Ok(ControlBackend::Postgres { url: s.to_owned() })
}

fn parse_object_store(s: &str) -> Result<ObjectStoreArg, String> {
    if s == "local" {
        return Ok(ObjectStoreArg::Local);
    }
    s.parse().map(ObjectStoreArg::S3).map_err(|e| format!("{e}; expected `local` or s3://bucket[/prefix]"))
}

impl StoreArgs {
    /// The backends these flags name.
    pub fn config(&self) -> StoreConfig {
        let mut config = StoreConfig::embedded(&self.data_dir);
        config.control = self.control_store.clone();
        config.postgres_connections = self.postgres_connections;
        config.segment_bytes = self.segment_bytes;
        config.segment_mapped_reads = self.segment_mapped_reads;
        config.bodies = match &self.object_store {
            ObjectStoreArg::Local => BodyBackend::Local,
            ObjectStoreArg::S3(location) => {
                BodyBackend::S3 { location: location.clone(), endpoint: self.s3_endpoint.clone() }
            }
        };
        config
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Address of the control API (port 0 picks a free port; the log line says which).
    #[arg(long, env = "CACHE_RESERVE_API_LISTEN", default_value = "127.0.0.1:8787")]
    pub api_listen: SocketAddr,
    /// Objects whose bodies the reclaimer deletes per batch on S3. Default 20,000 (20 DeleteObjects requests
    /// of 1,000 keys in flight). Unused on local disk, where a Clear drops segment files and index tables whole.
    #[arg(long, env = "CACHE_RESERVE_RECLAIM_BATCH", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub reclaim_batch: Option<u32>,
    /// Pause between reclaim batches, e.g. `0s`, `50ms`, to spare a shared disk.
    #[arg(long, env = "CACHE_RESERVE_RECLAIM_PAUSE", default_value = "0s", value_parser = duration::parse)]
    pub reclaim_pause: Duration,
    /// With local bodies: how often to look for mostly dead segments to compact (copying their live
    /// records out, then removing them). Each generation is examined in full at start and hourly, and in
    /// between once this process has deleted enough in it.
    #[arg(long, env = "CACHE_RESERVE_COMPACTION_INTERVAL", default_value = "30s", value_parser = duration::parse)]
    pub compaction_interval: Duration,
    /// Address of the caching proxy.
    #[arg(long, env = "CACHE_RESERVE_PROXY_LISTEN", default_value = "127.0.0.1:8788")]
    pub proxy_listen: SocketAddr,
    /// Memory for the edge tier (hottest objects), e.g. 256MiB. One object may take a sixteenth of it.
    #[arg(long, env = "CACHE_RESERVE_EDGE_CACHE_BYTES", default_value = "256MiB", value_parser = size::parse)]
    pub edge_cache_bytes: u64,
    /// Memory for reserve metadata, so reserve hits skip the index read, e.g. 64MiB (about 40,000 objects).
    #[arg(long, env = "CACHE_RESERVE_INDEX_CACHE_BYTES", default_value = "64MiB", value_parser = size::parse)]
    pub index_cache_bytes: u64,
    /// Memory reserve writes in flight may hold; when the disk falls behind, objects beyond it skip the
    /// reserve instead of memory growing.
    #[arg(long, env = "CACHE_RESERVE_WRITE_BUFFER_BYTES", default_value = "64MiB", value_parser = size::parse)]
    pub write_buffer_bytes: u64,
    /// Memory bodies being gathered for the edge tier may hold: misses filling it, and reserve hits read
    /// whole to be promoted to it. Beyond it, objects stream to the client without filling the edge tier.
    /// Default: a quarter of --edge-cache-bytes (four objects of the largest size the tier takes).
    #[arg(long, env = "CACHE_RESERVE_EDGE_FILL_BUFFER_BYTES", value_parser = size::parse)]
    pub edge_fill_buffer_bytes: Option<u64>,
    /// Largest object written to the reserve, e.g. 1GiB.
    #[arg(long, env = "CACHE_RESERVE_MAX_OBJECT_BYTES", default_value = "1GiB", value_parser = size::parse)]
    pub max_object_bytes: u64,
    /// Shortest freshness lifetime for an object to be written to the reserve.
    #[arg(long, env = "CACHE_RESERVE_MIN_TTL", default_value = "10h", value_parser = duration::parse)]
    pub reserve_min_ttl: Duration,
    /// Objects not read for this long are evicted from the reserve.
    #[arg(long, env = "CACHE_RESERVE_RETENTION", default_value = "30d", value_parser = duration::parse)]
    pub retention: Duration,
    /// Time allowed to connect to an origin (then 504).
    #[arg(long, env = "CACHE_RESERVE_ORIGIN_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration::parse)]
    pub origin_connect_timeout: Duration,
    /// Time allowed for an origin's response head (then 504).
    #[arg(long, env = "CACHE_RESERVE_ORIGIN_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    pub origin_timeout: Duration,
    /// Longest wait for the next piece of an origin's response body (nginx `proxy_read_timeout`); then
    /// the response is cut short and nothing is stored.
    #[arg(long, env = "CACHE_RESERVE_ORIGIN_READ_TIMEOUT", default_value = "60s", value_parser = duration::parse)]
    pub origin_read_timeout: Duration,
    /// Longest a request waits for another request's fill of the same object when that fill's body is not
    /// shared as it arrives (nginx `proxy_cache_lock_timeout`): one with no `Content-Length`, larger than
    /// the edge tier takes, beyond `--edge-fill-buffer-bytes`, or that only the reserve takes. Then it looks
    /// again and, finding nothing, asks the origin itself. A body of announced length gathered for the edge
    /// tier is not waited for: it streams to every waiting request as it arrives. `0s`: never wait.
    #[arg(long, env = "CACHE_RESERVE_COALESCE_TIMEOUT", default_value = "5s", value_parser = duration::parse)]
    pub coalesce_timeout: Duration,
    /// Longest heuristic freshness (RFC 9111 §4.2.2) given to a response with `Last-Modified` and no explicit
    /// lifetime: a tenth of its age, at most this; `0s` turns heuristics off. Never qualifies for the reserve.
    #[arg(long, env = "CACHE_RESERVE_HEURISTIC_MAX", default_value = "1d", value_parser = duration::parse)]
    pub heuristic_max: Duration,
    /// When the origin fails, times out or answers 500, 502, 503 or 504, serve a stale copy that has been
    /// stale for up to this long even without `stale-if-error` (nginx's `proxy_cache_use_stale error
    /// timeout http_5xx`; Cloudflare's Always Online), marked `cf-cache-status: STALE`. `0s` (the default):
    /// only within the origin's own `stale-if-error`. Never a purged copy, nor one whose response says
    /// `must-revalidate`, `proxy-revalidate`, `no-cache` or `s-maxage`.
    #[arg(long, env = "CACHE_RESERVE_USE_STALE_ON_ERROR", default_value = "0s", value_parser = duration::parse)]
    pub use_stale_on_error: Duration,
    /// Honour the client's cache directives (`Cache-Control: no-cache`, `max-age`, `min-fresh`, `no-store`,
    /// `only-if-cached`, `Pragma: no-cache`). Off by default, as at Cloudflare and in nginx.
    #[arg(long, env = "CACHE_RESERVE_HONOR_REQUEST_CACHE_CONTROL")]
    pub honor_request_cache_control: bool,
    /// A proxy in front of this one (an address or a CIDR block, e.g. `10.0.0.0/8`; repeat the flag, or
    /// separate with commas in the environment variable) whose `X-Forwarded-For`, `Forwarded` and `Via` are
    /// believed: the client's address is then the rightmost `X-Forwarded-For` address that is not trusted.
    /// From any other peer those fields are not believed, and the peer's address is the client's.
    #[arg(long = "trusted-proxy", value_name = "CIDR", env = "CACHE_RESERVE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = net::parse)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Most items (URLs, tags, hosts or prefixes) one purge_cache or invalidate_cache request may name.
    #[arg(long, env = "CACHE_RESERVE_PURGE_MAX_ITEMS", default_value_t = crate::server::DEFAULT_PURGE_MAX_ITEMS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub purge_max_items: usize,
    /// Most bytes of `Cache-Tag` a response may carry and still be stored (Cloudflare's limit: 16KiB); a
    /// response over it is served but not stored, so a purge by tag never misses a stored copy.
    #[arg(long, env = "CACHE_RESERVE_CACHE_TAG_MAX_BYTES", default_value = "16KiB", value_parser = size::parse)]
    pub cache_tag_max_bytes: u64,
    /// How often to read the zone change feed (changes by admin commands or other nodes) when not told
    /// at once: PostgreSQL announces changes, so this is the fallback there.
    #[arg(long, alias = "zone-refresh", env = "CACHE_RESERVE_ZONE_SYNC_INTERVAL", default_value = "250ms", value_parser = duration::parse)]
    pub zone_sync_interval: Duration,
    /// How long this node may decide reserve reads and writes by its view of the zones after the view's
    /// last successful sync; past it (the control store unreachable) the proxy bypasses the reserve. Also
    /// the longest a setting change or Clear waits for another node to acknowledge it.
    #[arg(long, env = "CACHE_RESERVE_ZONE_VIEW_TTL", default_value = "1s", value_parser = duration::parse)]
    pub zone_view_ttl: Duration,
    /// How long a node holds a Clear it is reclaiming without renewing it; another node takes the Clear over
    /// this long after its holder dies.
    #[arg(long, env = "CACHE_RESERVE_RECLAIM_LEASE", default_value = "30s", value_parser = duration::parse)]
    pub reclaim_lease: Duration,
    /// Write an access log: one JSON line per proxied request (time, client, method, host, uri, zone, status,
    /// cache status, reserve status, bytes sent, duration), to this file (appended to) or `-` for standard
    /// output. None by default.
    #[arg(long, value_name = "PATH", env = "CACHE_RESERVE_ACCESS_LOG")]
    pub access_log: Option<String>,
    #[command(flatten)]
    pub limits: limits::LimitArgs,
    #[command(flatten)]
    pub tls: tls::ProxyTlsArgs,
}

impl Cli {
    /// Runs the command; the error's exit code and message are the caller's to show.
    pub async fn run(self) -> Result<(), CliError> {
        match self.command {
            Command::Serve(args) => serve(*args).await.map_err(CliError::Other),
            Command::Zone(c) => c.run().await.map_err(CliError::Other),
            Command::Token(c) => c.run().await.map_err(CliError::Other),
            Command::User(c) => c.run().await.map_err(CliError::Other),
            Command::Migrate(c) => c.run().await.map_err(CliError::Other),
            Command::Reserve(c) => c.run().await.map_err(CliError::Client),
            Command::Clear(c) => c.run().await.map_err(CliError::Client),
            Command::Purge(c) => c.run("purge_cache").await.map_err(CliError::Client),
            Command::Invalidate(c) => c.run("invalidate_cache").await.map_err(CliError::Client),
            Command::Stats(c) => c.run().await.map_err(CliError::Client),
        }
    }
}

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(ClientError),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl CliError {
    /// 1 for an API error, 3 when the API could not be reached, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(ClientError::Transport { .. }) => 3,
            CliError::Client(_) | CliError::Other(_) => 1,
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    validate::check(&args)?;
    let stores = args.stores.config();
    let config = ServeConfig {
        stores: stores.clone(),
        api_listen: args.api_listen,
        reclaim: ReclaimConfig {
            batch_size: args.reclaim_batch,
            pause: args.reclaim_pause,
            lease: args.reclaim_lease,
            ..Default::default()
        },
        compact: CompactConfig { interval: args.compaction_interval, ..Default::default() },
        proxy: ProxyConfig {
            listen: args.proxy_listen,
            edge_cache_bytes: args.edge_cache_bytes,
            max_object_bytes: args.max_object_bytes,
            index_cache_bytes: args.index_cache_bytes,
            write_buffer_bytes: args.write_buffer_bytes,
            edge_fill_buffer_bytes: args.edge_fill_buffer_bytes.unwrap_or(args.edge_cache_bytes / 4),
            reserve_min_ttl: args.reserve_min_ttl,
            retention: args.retention,
            connect_timeout: args.origin_connect_timeout,
            origin_timeout: args.origin_timeout,
            origin_read_timeout: args.origin_read_timeout,
            coalesce_timeout: args.coalesce_timeout,
            heuristic_max: args.heuristic_max,
            use_stale_on_error: args.use_stale_on_error,
            honor_request_cache_control: args.honor_request_cache_control,
            trusted_proxies: args.trusted_proxies,
            max_cache_tag_bytes: usize::try_from(args.cache_tag_max_bytes).unwrap_or(usize::MAX),
            access_log: args.access_log.as_deref().map(LogTarget::parse),
        },
        sync: SyncConfig { interval: args.zone_sync_interval, view_ttl: args.zone_view_ttl },
        proxy_conns: args.limits.limits(args.limits.max_connections as usize),
        proxy_transport: args.tls.transport(),
        api_conns: args.limits.limits(args.limits.api_max_connections as usize),
        purge_max_items: args.purge_max_items,
    };
    let proxy_scheme = if matches!(config.proxy_transport, ProxyTransport::Tls(_)) { "https" } else { "http" };
    let stop = server::shutdown_signal()?;
    let running = server::start(config).await?;
    tracing::info!(
        "cache-reserve listening on http://{} (API at /client/v4, metrics at /metrics), proxy on {}://{}, {}; node {}",
        running.api_addr,
        proxy_scheme,
        running.proxy_addr,
        stores.describe(),
        running.node
    );
    stop.await;
    tracing::info!("shutting down");
    running.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
