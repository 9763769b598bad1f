//! What of a client's request header section reaches the origin, and what the cache keys on.
//!
//! A field that reaches the origin but is not in the cache key is an unkeyed input: one request carrying it
//! can make the origin answer differently (a reflected value, a redirect to another host, a CORS grant), and
//! the cache serves that answer to everyone as a hit. Each such field is either part of the key
//! ([`KEYED`]), or removed ([`ROUTING_OVERRIDES`], [`METHOD_OVERRIDES`], [`CLIENT_ADDRESS`], and
//! [`PROXY_TRAIL`] unless the peer is a trusted proxy), or set by this proxy (`X-Forwarded-For`,
//! `CF-Connecting-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`). The README's request header table says the
//! same.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::origin::{remove_fields, strip_hop_by_hop};

/// Fields a front end sets for the application behind it, naming another path, host, port or scheme than
/// the request's own (path rewrites of IIS, Symfony, Laravel and Zend; host, port and scheme overrides that
/// frameworks build absolute URLs and redirects from). No client sends them legitimately, and this proxy
/// is the front end: removed from every request, whatever its method — on an unsafe one they would also
/// make the origin act on another URI than the one RFC 9111 §4.4 invalidates. Cloudflare keys on some of
/// them instead (`x-original-url`, `x-rewrite-url`, `x-host`, `x-forwarded-scheme`; "Cache Keys",
/// developers.cloudflare.com/cache/how-to/cache-keys/); removing them closes the same hole without letting
/// them reach the origin at all.
pub const ROUTING_OVERRIDES: [&str; 16] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-host",
    "x-original-host",
    "x-forwarded-server",
    "x-http-host-override",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-protocol",
    "x-url-scheme",
    "front-end-https",
];

/// Fields that make an application treat a request as another method (Rails, Express, Symfony, ASP.NET,
/// Google APIs). Removed from GET and HEAD, whose answers the cache stores: a GET the origin handled as a
/// DELETE or a PUT must not be filed as the GET's answer. Passed on other methods, whose answers are never
/// stored, for clients that tunnel methods through POST. (Cloudflare keys on them instead.)
pub const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// Fields that claim the client's address, other than those this proxy sets from the connection
/// (`CF-Connecting-IP`, `X-Forwarded-For`): removed, so an origin reading any of them cannot be lied to.
pub const CLIENT_ADDRESS: [&str; 6] =
    ["true-client-ip", "x-real-ip", "x-client-ip", "x-cluster-client-ip", "forwarded-for", "x-forwarded"];

/// The proxies a request went through (RFC 7239 `Forwarded`, RFC 9110 §7.6.3 `Via`): believed, and passed
/// on, only from a trusted proxy; from anyone else, removed.
pub const PROXY_TRAIL: [HeaderName; 2] = [header::FORWARDED, header::VIA];

/// Fields in the cache key beside host, path and query, as in Cloudflare's default cache key: the `Origin`
/// header "sent by client (for CORS support)" ("Cache Keys", developers.cloudflare.com/cache/how-to/
/// cache-keys/). An origin that answers `Access-Control-Allow-Origin` per `Origin` without `Vary: Origin` then
/// cannot hand one site's grant to another, nor a granted answer to a request without `Origin`.
pub const KEYED: [HeaderName; 1] = [header::ORIGIN];

/// What a request over TLS adds to its cache key, right after the path and query, before any keyed field.
/// The origin is told the scheme (`X-Forwarded-Proto`) and may answer by it (an `http` request redirected
/// to `https`), so the two schemes are stored apart, as in Cloudflare's default cache key; a plain
/// request's key is unchanged, and a keyed field's part starts with ` origin`, so the two cannot meet.
pub const HTTPS_KEY_PART: &str = " https";

/// Longest keyed value kept as it is in a cache key; a longer one is kept as its SHA-256.
const KEYED_VALUE_MAX: usize = 512;

/// Proxies whose forwarded addresses are believed (`--trusted-proxy`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer`: `peer` itself unless it is trusted; else, as nginx's
    /// `real_ip_recursive on`, the rightmost `X-Forwarded-For` address that is not trusted (the leftmost when
    /// all are; the last trusted one before an unparsable member).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let chain = combined(headers, &HeaderName::from_static("x-forwarded-for")).unwrap_or_default();
        for member in chain.rsplit(|&b| b == b',') {
            let Some(ip) = parse_address(member) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` member: an IP address, perhaps with a port (`192.0.2.1:5000`, `[2001:db8::1]:80`).
fn parse_address(member: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(member).ok()?.trim();
    let ip = s.parse::<IpAddr>().or_else(|_| s.parse::<SocketAddr>().map(|a| a.ip())).ok()?;
    Some(ip.to_canonical())
}

/// Who asked, as the forwarding headers tell the origin.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The connection's peer.
    pub peer: IpAddr,
    /// The client: the peer, or the address a trusted peer forwarded ([`TrustedProxies::client_ip`]).
    pub client_ip: IpAddr,
    /// The `Host` the client asked for.
    pub host: String,
    /// Whether the client's connection is TLS (`X-Forwarded-Proto: https`, and a cache key of its own).
    pub secure: bool,
}

/// Makes a client's request header section the one the origin gets, as the cache judges it too (a `Vary`
/// selects on what the origin saw): hop-by-hop fields removed (RFC 9110 §7.6.1), the fields of this module's
/// lists removed, `X-Forwarded-For` appended to (every line, combined, then the peer's address, as
/// Cloudflare does), `CF-Connecting-IP` set to the client's address, `X-Forwarded-Proto` (`https` when the
/// client's connection is TLS, `secure`, else `http`) and `-Host` set.
pub fn prepare_for_origin(
    headers: &mut HeaderMap,
    method: &Method,
    peer: IpAddr,
    trusted: &TrustedProxies,
    host: String,
    secure: bool,
) -> Forwarded {
    strip_hop_by_hop(headers);
    let peer = peer.to_canonical();
    let forwarded = Forwarded { peer, client_ip: trusted.client_ip(peer, headers), host, secure };
    let cacheable_method = *method == Method::GET || *method == Method::HEAD;
    let trusted_peer = trusted.contains(peer);
    remove_fields(headers, |name| {
        let s = name.as_str();
        ROUTING_OVERRIDES.contains(&s)
            || CLIENT_ADDRESS.contains(&s)
            || (cacheable_method && METHOD_OVERRIDES.contains(&s))
            || (!trusted_peer && PROXY_TRAIL.contains(name))
    });
    // The four fields set below, without the map growing in between.
    headers.reserve(4);
    let xff = HeaderName::from_static("x-forwarded-for");
    let mut chain = combined(headers, &xff).unwrap_or_default();
    if !chain.trim_ascii().is_empty() {
        chain.extend_from_slice(b", ");
    } else {
        chain.clear();
    }
    chain.extend_from_slice(peer.to_string().as_bytes());
    headers.insert(xff, HeaderValue::from_bytes(&chain).unwrap_or_else(|_| ip_value(peer)));
    headers.insert("cf-connecting-ip", ip_value(forwarded.client_ip));
    headers.insert("x-forwarded-proto", HeaderValue::from_static(if secure { "https" } else { "http" }));
    if let Ok(host) = HeaderValue::from_str(&forwarded.host) {
        headers.insert("x-forwarded-host", host);
    }
    forwarded
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an address is a valid field value")
}

/// What the [`KEYED`] fields of a prepared request add to its cache key: nothing when it has none, else
/// ` name=value` for each (lines combined; a value past [`KEYED_VALUE_MAX`] bytes as `name#sha256`). The
/// space cannot occur in a request target, so a keyed key never equals another request's plain one.
pub fn keyed(headers: &HeaderMap) -> String {
    let mut out = String::new();
    for name in &KEYED {
        let Some(value) = combined(headers, name) else { continue };
        if value.len() <= KEYED_VALUE_MAX {
            out.push_str(&format!(" {name}={}", String::from_utf8_lossy(&value)));
        } else {
            out.push_str(&format!(" {name}#{}", hex::encode(Sha256::digest(&value))));
        }
    }
    out
}

/// A field's lines combined into one value (RFC 9110 §5.3), `None` when absent.
fn combined(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut lines = headers.get_all(name).iter();
    let mut value = lines.next()?.as_bytes().to_vec();
    for line in lines {
        value.extend_from_slice(b", ");
        value.extend_from_slice(line.as_bytes());
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn the_client_address_is_the_peer_unless_a_trusted_peer_forwarded_one() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = headers(&[("x-forwarded-for", "198.51.100.9, 203.0.113.5"), ("x-forwarded-for", "10.0.0.2:4000")]);
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.0.0.1"), &xff), ip("10.0.0.1"));
        let inner = trusted(&["10.0.0.0/8"]);
        assert_eq!(inner.client_ip(ip("10.0.0.1"), &xff), ip("203.0.113.5"), "rightmost untrusted");
        assert_eq!(inner.client_ip(ip("192.0.2.1"), &xff), ip("192.0.2.1"), "an untrusted peer is the client");
        assert_eq!(inner.client_ip(ip("::ffff:10.0.0.1"), &xff), ip("203.0.113.5"), "v4-mapped peer");
        let all = trusted(&["0.0.0.0/0"]);
        assert_eq!(all.client_ip(ip("10.0.0.1"), &xff), ip("198.51.100.9"), "all trusted: the leftmost");
        let junk = headers(&[("x-forwarded-for", "203.0.113.5, junk, 10.0.0.3")]);
        assert_eq!(inner.client_ip(ip("10.0.0.1"), &junk), ip("10.0.0.3"), "stops at what it cannot read");
        assert_eq!(inner.client_ip(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }

    #[test]
    fn overrides_and_spoofed_addresses_are_removed_and_forwarding_headers_set() {
        let mut all: Vec<(&str, &str)> = ROUTING_OVERRIDES.iter().chain(&METHOD_OVERRIDES).map(|n| (*n, "x")).collect();
        all.extend(CLIENT_ADDRESS.iter().map(|n| (*n, "192.0.2.66")));
        all.extend([("forwarded", "for=192.0.2.66"), ("via", "1.1 evil"), ("cf-connecting-ip", "192.0.2.66")]);
        all.extend([("x-forwarded-for", "192.0.2.66"), ("x-forwarded-for", "192.0.2.67"), ("origin", "https://a")]);
        let peer: IpAddr = "127.0.0.1".parse().unwrap();

        let mut get = headers(&all);
        let fwd =
            prepare_for_origin(&mut get, &Method::GET, peer, &TrustedProxies::default(), "a.example".into(), false);
        assert_eq!(fwd.client_ip, peer);
        let mut left: Vec<&str> = get.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["cf-connecting-ip", "origin", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]);
        assert_eq!(get["x-forwarded-for"], "192.0.2.66, 192.0.2.67, 127.0.0.1");
        assert_eq!(get["cf-connecting-ip"], "127.0.0.1");
        assert_eq!(get["x-forwarded-proto"], "http");

        let mut post = headers(&all);
        prepare_for_origin(&mut post, &Method::POST, peer, &trusted(&["127.0.0.0/8"]), "a.example".into(), true);
        for kept in METHOD_OVERRIDES.iter().chain(&["forwarded", "via"]) {
            assert!(post.contains_key(*kept), "{kept}");
        }
        assert!(ROUTING_OVERRIDES.iter().all(|n| !post.contains_key(*n)));
        assert_eq!(post["cf-connecting-ip"], "192.0.2.67");
        assert_eq!(post["x-forwarded-proto"], "https", "the client's connection was TLS");
    }

    #[test]
    fn the_origin_header_keys_the_cache() {
        assert_eq!(keyed(&HeaderMap::new()), "");
        assert_eq!(keyed(&headers(&[("origin", "https://a.example")])), " origin=https://a.example");
        assert_eq!(
            keyed(&headers(&[("origin", "https://a"), ("origin", "https://b")])),
            " origin=https://a, https://b"
        );
        let long = "x".repeat(KEYED_VALUE_MAX + 1);
        assert!(keyed(&headers(&[("origin", &long)])).starts_with(" origin#"));
    }
}
