//! The data plane: a caching reverse proxy. A request whose `Host` names a zone is answered from the edge
//! tier (memory), else from the reserve (when the zone's setting is `on`), else from the zone's origin,
//! filling the tiers on the way back.
//!
//! Module map: [`forward`] talks to origins; [`edge`] is the memory tier; `index_cache` remembers what the
//! reserve holds; `fill` tees origin bodies into the tiers; `coalesce` makes concurrent misses share one
//! origin request; `cached` answers from the tiers (and revalidates); `miss` fetches and decides what may
//! be stored; [`respond`] builds responses.

mod cached;
mod coalesce;
pub mod edge;
mod fill;
pub mod forward;
mod index_cache;
mod miss;
pub mod respond;
mod stored;

#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    response::Response,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header, request};
use http_cache_semantics::CacheOptions;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    directory::ZoneDirectory,
    domain::{Timestamp, Zone},
    jobs::AccessLog,
    metrics::{CacheStatus, Metrics, ZoneCounters},
    reserve::Reserve,
};
use coalesce::Coalescer;
use edge::EdgeTier;
use fill::WriteBudget;
use forward::{Forwarded, Origin, OriginClient};
use index_cache::IndexCache;
use respond::{ReserveTag, plain};

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
    /// Memory for reserve metadata (which objects the reserve holds), in bytes.
    pub index_cache_bytes: u64,
    /// Shortest freshness lifetime an object needs to be written to the reserve.
    pub reserve_min_ttl: Duration,
    /// How long an object may go unread before it is evicted.
    pub retention: Duration,
    pub connect_timeout: Duration,
    /// How long to wait for an origin's response head.
    pub origin_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8788".parse().expect("a valid address"),
            edge_cache_bytes: 256 * 1024 * 1024,
            max_object_bytes: 1024 * 1024 * 1024,
            index_cache_bytes: 64 * 1024 * 1024,
            write_buffer_bytes: 64 * 1024 * 1024,
            reserve_min_ttl: Duration::from_secs(10 * 3600),
            retention: Duration::from_secs(30 * 86_400),
            connect_timeout: Duration::from_secs(5),
            origin_timeout: Duration::from_secs(30),
        }
    }
}

/// How responses are judged: a shared cache, and no heuristic freshness (an object without explicit
/// freshness is stored but revalidated on every use, and never qualifies for the reserve).
const CACHE_OPTIONS: CacheOptions = CacheOptions {
    shared: true,
    cache_heuristic: 0.0,
    immutable_min_time_to_live: Duration::from_secs(24 * 3600),
    ignore_cargo_cult: false,
};

/// The proxy's shared state.
pub struct Proxy {
    directory: ZoneDirectory,
    reserve: Reserve,
    edge: EdgeTier,
    index_cache: IndexCache,
    origin: OriginClient,
    coalescer: Arc<Coalescer>,
    write_budget: Arc<WriteBudget>,
    metrics: Arc<Metrics>,
    access: Arc<AccessLog>,
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
    ) -> anyhow::Result<Self> {
        // One object may take at most a sixteenth of the edge tier.
        let edge_max = (config.edge_cache_bytes / 16).min(config.max_object_bytes);
        Ok(Self {
            directory,
            reserve,
            edge: EdgeTier::new(config.edge_cache_bytes, edge_max, config.retention),
            index_cache: IndexCache::new(config.index_cache_bytes),
            origin: OriginClient::new(config.connect_timeout, config.origin_timeout)?,
            coalescer: Arc::default(),
            write_budget: WriteBudget::new(config.write_buffer_bytes),
            metrics,
            access,
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
        tracing::error!("a proxy request panicked");
        plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n", CacheStatus::Dynamic, ReserveTag::Bypass)
    }))
}

/// One request, from the zone lookup to the counted response.
async fn handle(State(proxy): State<Arc<Proxy>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let Some(host) = request_host(&req) else {
        return plain(StatusCode::BAD_REQUEST, "missing Host header\n", CacheStatus::Dynamic, ReserveTag::Bypass);
    };
    let zone = match proxy.directory.resolve(&host).await {
        Ok(Some(zone)) => zone,
        Ok(None) => {
            let msg = format!("no zone is named {host:?} on this cache\n");
            return plain(StatusCode::MISDIRECTED_REQUEST, msg, CacheStatus::Dynamic, ReserveTag::Bypass);
        }
        Err(e) => {
            tracing::error!(error = %e, "zone lookup failed");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "zone lookup failed\n",
                CacheStatus::Dynamic,
                ReserveTag::Bypass,
            );
        }
    };
    let counters = proxy.metrics.zone(&zone);
    let forwarded = Forwarded { client_ip: peer.ip(), host };
    let (status, resp) = Ctx { proxy: &proxy, zone, counters: counters.clone(), forwarded }.serve(req).await;
    counters.response(status);
    resp
}

/// The request's host, lower-cased, without port or trailing dot.
fn request_host(req: &Request) -> Option<String> {
    let raw = match req.uri().host() {
        Some(h) => h.to_owned(),
        None => {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            // Strip a port (hostnames carry no ':'; IPv6 literals are not zone names).
            h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned()
        }
    };
    let host = raw.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// One request for one zone.
struct Ctx<'a> {
    proxy: &'a Proxy,
    zone: Arc<Zone>,
    counters: Arc<ZoneCounters>,
    forwarded: Forwarded,
}

impl Ctx<'_> {
    async fn serve(&self, req: Request) -> (CacheStatus, Response) {
        let Some(origin) = self.zone.origin.as_deref().and_then(Origin::parse) else {
            let msg = format!("zone {} has no origin configured\n", self.zone.name);
            return (
                CacheStatus::Dynamic,
                plain(StatusCode::BAD_GATEWAY, msg, CacheStatus::Dynamic, ReserveTag::Bypass),
            );
        };
        let (mut parts, body) = req.into_parts();
        // The cache compares requests by URI and Host: compare the normalised ones.
        if let Ok(host) = HeaderValue::from_str(&self.forwarded.host) {
            parts.headers.insert(header::HOST, host);
        }
        if parts.uri.scheme().is_some() {
            let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            parts.uri = pq.parse().unwrap_or_default();
        }
        let cacheable_method = parts.method == Method::GET || parts.method == Method::HEAD;
        if !cacheable_method || is_upgrade(&parts.headers) {
            return self.pass(&origin, parts, body, CacheStatus::Dynamic).await;
        }
        if parts.headers.contains_key(header::RANGE) {
            // Ranges go to the origin as asked; the reserve never fetches for their sake.
            return self.pass(&origin, parts, Body::empty(), CacheStatus::Bypass).await;
        }
        let key = cache_key(&self.forwarded.host, &parts);
        if let Some(answer) = self.answer_from_tiers(&origin, &parts, &key).await {
            return answer;
        }
        self.fetch(&origin, parts, key, CacheStatus::Miss).await
    }
}

/// The cache key: host and path with query.
fn cache_key(host: &str, parts: &request::Parts) -> String {
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{host}{pq}")
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
}

/// Unix seconds of a system time.
fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
