//! The first phase: which zone a request is for (by `Host`), the request normalised for the cache, its
//! cache key, and the per-request context the later phases share.

use std::{net::SocketAddr, sync::Arc};

use http::{HeaderValue, Method, header, request};

use super::{
    Proxy,
    error::ProxyError,
    invalidations::Epoch,
    origin::{Forwarded, Origin, prepare_for_origin},
    respond::{self, Answer, ReserveTag},
};
use crate::{
    domain::Zone,
    metrics::{CacheStatus, ZoneCounters},
};

/// One request for one zone: what every phase after the first needs.
pub struct Ctx<'a> {
    pub(super) proxy: &'a Proxy,
    pub(super) zone: Arc<Zone>,
    pub(super) counters: Arc<ZoneCounters>,
    pub(super) forwarded: Forwarded,
    /// The zone's origin; `None` when it has none (or an unusable one).
    pub(super) origin: Option<Origin>,
    /// The request, normalised: `Host` is the zone-matching host, the URI in origin form.
    pub(super) parts: request::Parts,
    /// The cache key: host, path and query.
    pub(super) key: String,
    /// The key's invalidation count before any look-up: what this request fills lands only if it holds.
    pub(super) seen: Epoch,
    /// The client asked to switch protocols (`Upgrade`, a hop-by-hop field, removed from `parts`).
    pub(super) upgrade: bool,
}

impl<'a> Ctx<'a> {
    /// Resolves the zone and prepares the request. Fails (handing the request back, for the log) for a
    /// request without `Host`, an unknown host, or a zone table that cannot be read.
    pub(super) async fn resolve(
        proxy: &'a Proxy,
        peer: SocketAddr,
        mut parts: request::Parts,
    ) -> Result<Ctx<'a>, (ProxyError, request::Parts)> {
        let Some(host) = request_host(&parts) else { return Err((ProxyError::MissingHost, parts)) };
        let zone = match proxy.directory.resolve(&host).await {
            Ok(Some(zone)) => zone,
            Ok(None) => return Err((ProxyError::UnknownHost(host), parts)),
            Err(e) => return Err((ProxyError::ZoneLookup(e), parts)),
        };
        // The cache compares requests by URI and Host: compare the normalised ones. And it judges the header
        // section the origin will get (a `Vary` selects on what the origin saw).
        if let Ok(value) = HeaderValue::from_str(&host) {
            parts.headers.insert(header::HOST, value);
        }
        let upgrade = parts.headers.contains_key(header::UPGRADE);
        let forwarded = Forwarded { client_ip: peer.ip(), host };
        prepare_for_origin(&mut parts.headers, &forwarded);
        if parts.uri.scheme().is_some() {
            let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            parts.uri = pq.parse().unwrap_or_default();
        }
        let key = cache_key(&forwarded.host, parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
        let counters = proxy.metrics.zone(&zone);
        let origin = zone.origin.as_deref().and_then(Origin::parse);
        let seen = proxy.invalidations.epoch(&key).await;
        Ok(Ctx { proxy, zone, counters, forwarded, origin, parts, key, seen, upgrade })
    }

    /// The request as the cache asks the origin for it and judges what comes back: a `HEAD` becomes a
    /// `GET` (as at Cloudflare, the whole object is fetched and cached; the client gets the head).
    pub(super) fn as_get(&self) -> request::Parts {
        let mut get = self.parts.clone();
        get.method = Method::GET;
        get
    }

    /// A failure, logged once and answered from the error table.
    pub(super) fn fail(&self, e: ProxyError, status: CacheStatus) -> Answer {
        if e.answer().2 == super::error::Blame::Upstream {
            self.counters.origin_errors.increment(1);
        }
        if matches!(e, ProxyError::ClientBody(_)) {
            self.counters.client_body_errors.increment(1);
        }
        e.log(Some(self.zone.name.as_str()), Some(&self.parts));
        Answer { status, tag: ReserveTag::miss(self.zone.reserve_on), response: respond::failure(&e) }
    }
}

/// The request's host, lower-cased, without port or trailing dot.
fn request_host(parts: &request::Parts) -> Option<String> {
    let raw = match parts.uri.host() {
        Some(h) => h.to_owned(),
        None => {
            let h = parts.headers.get(header::HOST)?.to_str().ok()?;
            // Strip a port (hostnames carry no ':'; IPv6 literals are not zone names).
            h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned()
        }
    };
    let host = raw.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The cache key: host, then path with query.
pub(super) fn cache_key(host: &str, path_and_query: &str) -> String {
    format!("{host}{path_and_query}")
}
