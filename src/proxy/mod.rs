//! The data plane: a caching reverse proxy. A request whose `Host` names a zone is answered from the edge
//! tier (memory), else from the reserve (when the zone's setting is `on`), else from the zone's origin,
//! filling the tiers on the way back.
//!
//! A request moves forward through phases, one file each, sharing one per-request context ([`Ctx`]):
//! 1. `request`: resolve the zone from `Host`, normalise the request (`client_headers`: what of it reaches
//!    the origin), derive its cache key;
//! 2. `lookup`: find a stored response in the tiers and judge it ([`crate::http_cache`]: fresh, to
//!    validate, or unusable);
//! 3. `upstream`: ask the origin — pass the request through, fetch, or validate (`validate`) — with
//!    concurrent misses and validations for one key coalesced (`coalesce`; `follow`: what the others do
//!    meanwhile); a stale copy may answer at once or when the origin fails (`stale`);
//! 4. `admit`: what the origin's response may fill, a pure function of request, response and zone;
//! 5. `fill`: stream the body to the client while filling the tiers (`edge`, the reserve: `reserve_fill`),
//!    a coalesced fill's body shared with the clients that wait for it (`shared_body`);
//! 6. `respond`: build the response; every response's cache headers are set in one place.
//!
//! `cdn_loop` refuses requests that have come round; `pipeline` strings the phases together; `invalidate` applies RFC 9111 §4.4 after unsafe requests; `sweep` applies worked purge rules to the memory tiers so they can be retired;
//! failures are one [`error::ProxyError`] with one table.

mod admit;
mod budget;
mod cdn_loop;
pub mod client_headers;
mod coalesce;
pub mod edge;
mod error;
mod fill;
mod follow;
mod index_cache;
mod invalidate;
mod invalidations;
mod lookup;
pub mod origin;
mod pipeline;
mod promote;
mod ranges;
mod request;
pub mod request_log;
mod reserve_fill;
mod reserve_tag;
pub mod respond;
mod shared_body;
mod stale;
mod sweep;
mod upstream;
mod validate;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    response::Response,
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    directory::ZoneDirectory,
    domain::{Timestamp, Zone},
    http_cache::CacheRules,
    jobs::AccessLog,
    metrics::{self, CacheStatus, Metrics},
    reserve::Reserve,
};
use admit::Limits;
use budget::MemoryBudget;
pub use cdn_loop::CdnId;
use client_headers::TrustedProxies;
use coalesce::Coalescer;
use edge::EdgeTier;
use error::ProxyError;
pub use error::listener_error_body;
use index_cache::IndexCache;
use invalidations::Invalidations;
use origin::OriginClient;
pub(crate) use request::Ctx;
use request_log::{LogTarget, RequestLog};
use respond::{Answer, ReserveTag};
pub use sweep::{Sweeper, Swept};

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Memory for the edge tier, in bytes.
    pub edge_cache_bytes: u64,
    /// Largest object the reserve stores.
    pub max_object_bytes: u64,
    /// Memory reserve writes in flight may hold; beyond it, objects skip the reserve.
    pub write_buffer_bytes: u64,
    /// Memory bodies gathered for the edge tier may hold (misses filling it, reserve bodies read whole to
    /// be promoted to it); beyond it, objects are streamed without filling the edge tier.
    pub edge_fill_buffer_bytes: u64,
    /// Memory for reserve metadata (which objects the reserve holds), in bytes.
    pub index_cache_bytes: u64,
    /// Shortest freshness lifetime an object needs to be written to the reserve.
    pub reserve_min_ttl: Duration,
    /// How long an object may go unread before it is evicted.
    pub retention: Duration,
    pub connect_timeout: Duration,
    /// How long to wait for an origin's response head.
    pub origin_timeout: Duration,
    /// Longest wait for the next piece of an origin's response body.
    pub origin_read_timeout: Duration,
    /// Longest a request waits for another's fill of the same object when that fill's body is not shared
    /// as it arrives (nginx's `proxy_cache_lock_timeout`); then it looks again and, finding nothing, asks
    /// the origin itself.
    pub coalesce_timeout: Duration,
    /// Longest heuristic freshness lifetime (RFC 9111 §4.2.2); zero: none.
    pub heuristic_max: Duration,
    /// How long past freshness a stale copy may answer when the origin fails, beyond any `stale-if-error`
    /// (`--use-stale-on-error`); zero: only within `stale-if-error`.
    pub use_stale_on_error: Duration,
    /// Honour request cache directives (`no-cache`, `max-age`, ...); off by default, as at Cloudflare.
    pub honor_request_cache_control: bool,
    /// Peers whose `X-Forwarded-For`, `Forwarded` and `Via` are believed; none by default.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Most bytes of `Cache-Tag` a response may carry and be stored (Cloudflare: 16 KiB).
    pub max_cache_tag_bytes: usize,
    /// Where the access log goes (one JSON line per request); `None`: no access log.
    pub access_log: Option<LogTarget>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8788".parse().expect("a valid address"),
            edge_cache_bytes: 256 * 1024 * 1024,
            max_object_bytes: 1024 * 1024 * 1024,
            index_cache_bytes: 64 * 1024 * 1024,
            write_buffer_bytes: 64 * 1024 * 1024,
            edge_fill_buffer_bytes: 64 * 1024 * 1024,
            reserve_min_ttl: Duration::from_secs(10 * 3600),
            retention: Duration::from_secs(30 * 86_400),
            connect_timeout: Duration::from_secs(5),
            origin_timeout: Duration::from_secs(30),
            origin_read_timeout: Duration::from_secs(60),
            coalesce_timeout: Duration::from_secs(5),
            heuristic_max: Duration::from_secs(86_400),
            use_stale_on_error: Duration::ZERO,
            honor_request_cache_control: false,
            trusted_proxies: Vec::new(),
            max_cache_tag_bytes: crate::http_cache::cache_tag::DEFAULT_MAX_BYTES,
            access_log: None,
        }
    }
}

/// The proxy's shared state.
pub struct Proxy {
    directory: ZoneDirectory,
    reserve: Reserve,
    edge: EdgeTier,
    index_cache: IndexCache,
    origin: OriginClient,
    coalescer: Arc<Coalescer>,
    /// Permits for background revalidations (`stale::BACKGROUND_REVALIDATIONS`).
    background: Arc<tokio::sync::Semaphore>,
    invalidations: Arc<Invalidations>,
    /// Reserve writes in flight (`write_buffer_bytes`).
    write_budget: Arc<MemoryBudget>,
    /// Bodies gathered for the edge tier (`edge_fill_buffer_bytes`).
    fill_budget: Arc<MemoryBudget>,
    metrics: Arc<Metrics>,
    access: Arc<AccessLog>,
    /// The access log, when `--access-log` asks for one.
    request_log: Option<Arc<RequestLog>>,
    rules: CacheRules,
    limits: Limits,
    trusted: TrustedProxies,
    /// This installation's `CDN-Loop` id.
    cdn_id: CdnId,
    /// An edge hit is noted for retention at most this often per object, in seconds.
    note_every_secs: i64,
    config: ProxyConfig,
}

impl Proxy {
    pub fn new(
        config: ProxyConfig,
        directory: ZoneDirectory,
        reserve: Reserve,
        metrics: Arc<Metrics>,
        access: Arc<AccessLog>,
        cdn_id: CdnId,
    ) -> anyhow::Result<Self> {
        // One object may take at most a sixteenth of the edge tier.
        let edge_max = (config.edge_cache_bytes / 16).min(config.max_object_bytes);
        let limits = Limits { edge_max, reserve_min_ttl: config.reserve_min_ttl, reserve_max: config.max_object_bytes };
        let rules = CacheRules {
            heuristic_max: config.heuristic_max,
            honor_request_directives: config.honor_request_cache_control,
            max_cache_tag_bytes: config.max_cache_tag_bytes,
        };
        let request_log = match &config.access_log {
            Some(target) => Some(RequestLog::start(target, metrics.counter(metrics::ACCESS_LOG_DROPPED))?),
            None => None,
        };
        Ok(Self {
            request_log,
            directory,
            reserve,
            edge: EdgeTier::new(config.edge_cache_bytes, edge_max, config.retention),
            index_cache: IndexCache::new(config.index_cache_bytes),
            origin: OriginClient::new(config.connect_timeout, config.origin_timeout, config.origin_read_timeout)?,
            coalescer: Arc::default(),
            background: Arc::new(tokio::sync::Semaphore::new(stale::BACKGROUND_REVALIDATIONS)),
            invalidations: Arc::default(),
            write_budget: MemoryBudget::new(config.write_buffer_bytes, Some(metrics.gauge(metrics::WRITE_BUFFER))),
            fill_budget: MemoryBudget::new(
                config.edge_fill_buffer_bytes,
                Some(metrics.gauge(metrics::EDGE_FILL_BUFFER)),
            ),
            metrics,
            access,
            rules,
            limits,
            trusted: TrustedProxies::new(config.trusted_proxies.clone()),
            cdn_id,
            note_every_secs: i64::try_from((config.retention / 64).as_secs()).unwrap_or(i64::MAX).max(1),
            config,
        })
    }

    /// Notes a read of a reserve object, for retention.
    fn note_read(&self, zone: &Zone, generation: i64, key_hash: &str) {
        self.access.note(&zone.id, generation, key_hash, Timestamp::now());
    }
}

/// The proxy's HTTP application.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new().fallback(handle).with_state(proxy).layer(CatchPanicLayer::custom(|_panic| {
        let e = ProxyError::Panic;
        e.log(None, None);
        respond::finish(Answer {
            status: CacheStatus::Dynamic,
            tag: ReserveTag::Bypass,
            response: respond::failure(&e),
        })
    }))
}

/// One request, from the zone lookup to the counted (and, with `--access-log`, logged) response.
async fn handle(State(proxy): State<Arc<Proxy>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let logging = RequestLog::begin(proxy.request_log.as_ref(), &req);
    let (parts, body) = req.into_parts();
    let (response, client, zone) = match Ctx::resolve(&proxy, peer, parts).await {
        Ok(ctx) => {
            let answer = ctx.serve(body).await;
            ctx.counters.response(answer.status);
            (respond::finish(answer), ctx.forwarded.client_ip, Some(ctx.zone.clone()))
        }
        Err((e, parts)) => {
            e.log(None, Some(&parts));
            let response = respond::failure(&e);
            let answer = Answer { status: CacheStatus::Dynamic, tag: ReserveTag::Bypass, response };
            (respond::finish(answer), peer.ip(), None)
        }
    };
    match logging {
        Some(pending) => pending.finish(Some(client), zone.as_ref().map(|z| z.name.as_str()), response),
        None => response,
    }
}

/// Unix seconds of a system time.
fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
