//! The first phase: which zone a request is for (by `Host`), the request normalised for the cache, its
//! cache key, and the per-request context the later phases share.

use std::{net::SocketAddr, sync::Arc};

use http::{HeaderValue, Method, header, request};

use super::{
    Proxy, cdn_loop,
    client_headers::{Forwarded, HTTPS_KEY_PART, keyed, prepare_for_origin},
    error::ProxyError,
    invalidations::{Epoch, Gate},
    origin::Origin,
    respond::{self, Answer, ReserveTag},
};
use crate::{
    domain::{Invalidation, Zone},
    http_cache::StoredResponse,
    metrics::{CacheStatus, ZoneCounters},
    purge::{Subject, Verdict},
};

/// One request for one zone: what every phase after the first needs.
#[derive(Clone)]
pub struct Ctx {
    pub(super) proxy: Arc<Proxy>,
    pub(super) zone: Arc<Zone>,
    pub(super) counters: Arc<ZoneCounters>,
    pub(super) forwarded: Forwarded,
    /// The zone's origin; `None` when it has none (or an unusable one).
    pub(super) origin: Option<Origin>,
    /// The request, normalised: `Host` is the zone-matching host, the URI in origin form.
    pub(super) parts: request::Parts,
    /// The cache key: host, path and query, the scheme when it is `https`, and the keyed fields (`Origin`).
    pub(super) key: String,
    /// The key's invalidation count before any look-up: what this request fills lands only if it holds.
    pub(super) seen: Epoch,
    /// The zone revision this node had applied when the request began: what it fills is stamped with it,
    /// and purges of newer revisions apply to that (SPEC §10).
    pub(super) fill_revision: i64,
    /// Whether this node's view of the zones (and their purges) is recent enough to serve stored copies
    /// by; when it is not, every request goes to the origin (see [`crate::directory`]).
    pub(super) view_fresh: bool,
    /// The client asked to switch protocols (`Upgrade`, a hop-by-hop field, removed from `parts`).
    pub(super) upgrade: bool,
    /// Whether this request may read and write the reserve: the zone's setting is `on`, this node's view
    /// of it is recent (see [`crate::directory`]), and the reserve's storage has not just failed.
    pub(super) use_reserve: bool,
}

impl Ctx {
    /// Resolves the zone and prepares the request. Fails (handing the request back, for the log) for a
    /// request without a valid `Host`, an unknown host, a zone table that cannot be read, or a request that
    /// has looped (`CDN-Loop`).
    pub(super) async fn resolve(
        proxy: &Arc<Proxy>,
        peer: SocketAddr,
        mut parts: request::Parts,
    ) -> Result<Ctx, (ProxyError, request::Parts)> {
        if let Some(what) = not_implemented(&parts) {
            return Err((ProxyError::NotImplemented(what), parts));
        }
        let host = match request_host(&parts) {
            Ok(host) => host,
            Err(e) => return Err((e, parts)),
        };
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
        // The connection's say, not the request's (an h2c request's `:scheme` is the client's claim).
        let secure = parts.extensions.get::<crate::net::Secure>().is_some();
        let forwarded = prepare_for_origin(&mut parts.headers, &parts.method, peer.ip(), &proxy.trusted, host, secure);
        if let Err(looped) = cdn_loop::enter(&mut parts.headers, &proxy.cdn_id) {
            let reason = looped.as_str();
            tracing::warn!(zone = %zone.name, reason, "refused a forwarding loop: does the zone's origin lead back here?");
            return Err((ProxyError::LoopDetected(looped), parts));
        }
        if parts.uri.scheme().is_some() {
            // An absolute-form target becomes origin form; an empty path is "/" (RFC 9112 §3.2.1), and the
            // query stays (`http://host?q` is `/?q`).
            let origin_form = match parts.uri.query() {
                Some(q) => format!("{}?{q}", parts.uri.path()),
                None => parts.uri.path().to_owned(),
            };
            parts.uri = origin_form.parse().unwrap_or_default();
        }
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let key = cache_key(&forwarded.host, pq, secure, &keyed(&parts.headers));
        let counters = proxy.metrics.zone(&zone);
        let origin = zone.origin.as_deref().and_then(Origin::parse);
        let seen = proxy.invalidations.epoch(&key).await;
        // Read before the look-up: every rule up to it is in the book by then.
        let fill_revision = proxy.directory.revision();
        let view_fresh = proxy.directory.reserve_usable();
        let use_reserve = zone.reserve_on && view_fresh && proxy.reserve.available();
        if zone.reserve_on && !use_reserve {
            counters.reserve_unavailable.increment(1);
        }
        Ok(Ctx {
            proxy: proxy.clone(),
            zone,
            counters,
            forwarded,
            origin,
            parts,
            key,
            seen,
            fill_revision,
            view_fresh,
            upgrade,
            use_reserve,
        })
    }

    /// What a fill by this request must still hold to land in the edge tier.
    pub(super) fn gate(&self) -> Gate {
        Gate {
            invalidations: self.proxy.invalidations.clone(),
            seen: self.seen,
            purges: self.proxy.directory.purges().clone(),
            zone: self.zone.id.clone(),
            fill_revision: self.fill_revision,
        }
    }

    /// What the zone's purges and invalidations say of a stored copy filled under `fill_revision` and
    /// carrying `carried` (SPEC §10).
    pub(super) fn judge(&self, fill_revision: i64, carried: Option<Invalidation>, stored: &StoredResponse) -> Verdict {
        let subject = Subject { fill_revision, key: &self.key, stored };
        self.proxy.directory.purges().judge(&self.zone.id, &subject).carried(carried, fill_revision)
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
        Answer { status, tag: ReserveTag::miss(self.zone.reserve_on, self.use_reserve), response: respond::failure(&e) }
    }
}

/// The request's host, lower-cased, without port or trailing dot: the target URI's when it is in absolute
/// form, else `Host`'s (RFC 9112 §3.2.2). A request with more than one `Host` line, or a `Host` that is not
/// `uri-host [":" port]`, is refused (RFC 9112 §3.2: 400) — whichever line another hop would pick, this
/// proxy would pick a zone for it, and the two could differ.
fn request_host(parts: &request::Parts) -> Result<String, ProxyError> {
    let mut lines = parts.headers.get_all(header::HOST).iter();
    let line = lines.next();
    if lines.next().is_some() {
        return Err(ProxyError::BadHost("more than one Host line"));
    }
    let from_header = match line {
        Some(v) => Some(host_of(v.as_bytes()).ok_or(ProxyError::BadHost("not uri-host [\":\" port]"))?),
        None => None,
    };
    let raw = match (parts.uri.host(), from_header) {
        (Some(h), _) => h,
        (None, Some(h)) => h,
        (None, None) => return Err(ProxyError::MissingHost),
    };
    // One trailing dot is the fully qualified form of the same name; more are not a name.
    let host = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if host.ends_with('.') {
        return Err(ProxyError::BadHost("not uri-host [\":\" port]"));
    }
    if host.is_empty() { Err(ProxyError::MissingHost) } else { Ok(host) }
}

/// What of the request this reverse proxy does not do, if anything: `CONNECT` (it is not a forward proxy),
/// and transfer codings other than `chunked`, which it cannot undo or pass on (RFC 9112 §6.1: 501).
fn not_implemented(parts: &request::Parts) -> Option<&'static str> {
    if parts.method == http::Method::CONNECT {
        return Some("CONNECT (this is a reverse proxy)");
    }
    let other_coding = parts
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .any(|coding| !coding.trim().eq_ignore_ascii_case("chunked"));
    other_coding.then_some("a transfer coding other than chunked")
}

/// The host of a `Host` value, `uri-host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name or IPv4
/// address, or a bracketed IP literal, then an optional all-digit port. `None` when it is anything else
/// (user info, a path, spaces, ...).
fn host_of(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            let literal = &rest[..end];
            if literal.is_empty() || !literal.bytes().all(|b| b.is_ascii_hexdigit() || b":.".contains(&b)) {
                return None;
            }
            let after = &rest[end + 1..];
            let port = if after.is_empty() { None } else { Some(after.strip_prefix(':')?) };
            (&value[..end + 2], port)
        }
        None => {
            let (host, port) = value.split_once(':').map_or((value, None), |(h, p)| (h, Some(p)));
            let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            if !host.bytes().all(reg_name) {
                return None;
            }
            (host, port)
        }
    };
    port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit())).then_some(host)
}

/// The cache key: host, then path with query, then [`HTTPS_KEY_PART`] when `secure`, then what the keyed
/// request fields add ([`super::client_headers::keyed`]).
pub(super) fn cache_key(host: &str, path_and_query: &str, secure: bool, keyed: &str) -> String {
    let scheme = if secure { HTTPS_KEY_PART } else { "" };
    format!("{host}{path_and_query}{scheme}{keyed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_are_uri_host_and_an_optional_port() {
        for (value, host) in [
            ("a.example", "a.example"),
            ("A.Example.:8080", "A.Example."),
            ("a.example:", "a.example"),
            ("[::1]:80", "[::1]"),
            ("192.0.2.1", "192.0.2.1"),
            ("", ""),
        ] {
            assert_eq!(host_of(value.as_bytes()), Some(host), "{value:?}");
        }
        for bad in ["a.example:http", "user@a.example", "a.example/x", "a example", "a:1:2", "[::1", "[]", "[::1]x"] {
            assert_eq!(host_of(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(host_of(b"a\xff.example"), None);
    }

    #[test]
    fn an_http2_request_names_its_host_in_the_authority() {
        let h2 = |uri: &str, host: Option<&str>| {
            let mut req = http::Request::builder().version(http::Version::HTTP_2).uri(uri);
            if let Some(h) = host {
                req = req.header(header::HOST, h);
            }
            request_host(&req.body(()).unwrap().into_parts().0)
        };
        assert_eq!(h2("https://A.Example.:8443/x?y", None).unwrap(), "a.example");
        // `:authority` wins over a `Host` that disagrees (RFC 9113 §8.3.1), as an absolute target does.
        assert_eq!(h2("https://a.example/x", Some("b.example")).unwrap(), "a.example");
        assert_eq!(h2("/x", Some("b.example")).unwrap(), "b.example");
        assert!(matches!(h2("/x", None), Err(ProxyError::MissingHost)));
    }
}
