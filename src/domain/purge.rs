//! Purge and invalidate (SPEC §10, Cloudflare `purge_cache` and `invalidate_cache`): what a call targets,
//! each selector value parsed and normalised once, and the rules stored for them.
//!
//! Values are compared with the cache key (`host` + `path?query` + keyed fields, see
//! [`crate::proxy::client_headers::keyed`]): hosts are lower-cased and lose their port, paths and queries
//! are kept byte for byte, tags are lower-cased (Cloudflare's tags are case-insensitive).

use std::fmt;

use super::{Timestamp, ZoneId, ZoneName};

/// Longest tag a purge names, and longest tag kept from a `Cache-Tag` header, in bytes (Cloudflare: 1,024).
pub const MAX_TAG_BYTES: usize = 1024;

/// Longest URL or prefix a purge names, in bytes.
pub const MAX_TARGET_BYTES: usize = 8192;

/// Purge removes; invalidate marks stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurgeAction {
    /// Remove from every tier: the next request is a `MISS` (SPEC §10).
    Purge,
    /// Mark stale in every tier: the next request revalidates (SPEC §10).
    Invalidate,
}

impl PurgeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PurgeAction::Purge => "purge",
            PurgeAction::Invalidate => "invalidate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "purge" => Some(PurgeAction::Purge),
            "invalidate" => Some(PurgeAction::Invalidate),
            _ => None,
        }
    }
}

/// One thing a purge targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PurgeTarget {
    /// Every object of the zone.
    Everything,
    /// One URL: `host` + `path?query`; without headers every stored variant of it, with headers the
    /// variant they select (names lower-cased, in the order given).
    File { url: String, headers: Vec<(String, String)> },
    /// Objects whose `Cache-Tag` held this tag (lower-cased).
    Tag(String),
    /// Objects cached for this hostname (lower-cased).
    Host(String),
    /// Objects whose `host` + `path` starts with this string (host lower-cased).
    Prefix(String),
}

impl PurgeTarget {
    /// The stored kind: `everything`, `file`, `tag`, `host` or `prefix`.
    pub fn kind(&self) -> &'static str {
        match self {
            PurgeTarget::Everything => "everything",
            PurgeTarget::File { .. } => "file",
            PurgeTarget::Tag(_) => "tag",
            PurgeTarget::Host(_) => "host",
            PurgeTarget::Prefix(_) => "prefix",
        }
    }

    /// The stored value (empty for `everything`).
    pub fn value(&self) -> &str {
        match self {
            PurgeTarget::Everything => "",
            PurgeTarget::File { url, .. } => url,
            PurgeTarget::Tag(v) | PurgeTarget::Host(v) | PurgeTarget::Prefix(v) => v,
        }
    }

    /// A target read back from storage; `None` for a kind this version does not know.
    pub fn from_stored(kind: &str, value: String, headers: Vec<(String, String)>) -> Option<Self> {
        Some(match kind {
            "everything" => PurgeTarget::Everything,
            "file" => PurgeTarget::File { url: value, headers },
            "tag" => PurgeTarget::Tag(value),
            "host" => PurgeTarget::Host(value),
            "prefix" => PurgeTarget::Prefix(value),
            _ => return None,
        })
    }
}

/// A stored rule: one target of one call, at the zone revision the call committed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRule {
    /// The store-wide zone revision of the call: it applies to objects filled under an older one.
    pub revision: i64,
    pub zone_id: ZoneId,
    pub action: PurgeAction,
    pub target: PurgeTarget,
    /// When the call committed (database clock): an invalidated object is stale from then.
    pub created_on: Timestamp,
}

/// An invalidation as a copy carries it: the copy is stale from `at` if it was filled under a revision
/// older than `revision` (SPEC §10). The rule's background work writes it into each reserve object it
/// targets and each node into its edge copies, so the rule itself can be retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalidation {
    /// The revision of the (latest) invalidation rule that targeted the copy.
    pub revision: i64,
    /// When that rule committed (database clock).
    pub at: Timestamp,
}

impl Invalidation {
    /// Whether it applies to a copy filled (or last revalidated) under `fill_revision`.
    pub fn applies_to(self, fill_revision: i64) -> bool {
        self.revision > fill_revision
    }

    /// The later of two invalidations of one copy.
    pub fn max(self, other: Self) -> Self {
        Self { revision: self.revision.max(other.revision), at: self.at.max(other.at) }
    }
}

/// Why a selector value was refused; the message names the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTarget(pub String);

impl fmt::Display for InvalidTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value quoted for an error message: at most 200 characters, control characters escaped.
fn quoted(s: &str) -> String {
    let short: String = s.chars().take(200).collect();
    format!("{short:?}")
}

/// Whether `host` is the zone's name or one of its subdomains (SPEC §10: a zone serves both).
pub fn in_zone(host: &str, zone: &ZoneName) -> bool {
    let z = zone.as_str();
    host == z || host.strip_suffix(z).is_some_and(|rest| rest.ends_with('.'))
}

/// A request host as the proxy takes it (a URI reg-name, RFC 3986 §3.2.2: the proxy caches under any such
/// name, so a purge must be able to name it), lower-cased, without one trailing dot; `None` otherwise.
pub fn normalize_host(raw: &str) -> Option<String> {
    let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
    let host = raw.strip_suffix('.').unwrap_or(raw);
    (!host.is_empty() && host.len() <= 253 && !host.ends_with('.') && host.bytes().all(reg_name))
        .then(|| host.to_ascii_lowercase())
}

/// A hostname of the zone, lower-cased, without a trailing dot.
fn zone_host(raw: &str, zone: &ZoneName, what: &str, original: &str) -> Result<String, InvalidTarget> {
    let host = normalize_host(raw)
        .ok_or_else(|| InvalidTarget(format!("{what} {} does not name a valid hostname", quoted(original))))?;
    if !in_zone(&host, zone) {
        return Err(InvalidTarget(format!(
            "{what} {} is not in zone {zone} (its hostname must be {zone} or a subdomain of it)",
            quoted(original)
        )));
    }
    Ok(host)
}

/// A `files` URL, `http(s)://host[:port]/path?query`, as `host/path?query` (a fragment is dropped: it never
/// reaches a server).
pub fn parse_file_url(raw: &str, zone: &ZoneName) -> Result<String, InvalidTarget> {
    let bad = || {
        InvalidTarget(format!(
            "files: {} is not a full URL; expected http:// or https://, a hostname and a path, e.g. https://{zone}/index.html",
            quoted(raw)
        ))
    };
    if raw.len() > MAX_TARGET_BYTES {
        return Err(InvalidTarget(format!("files: a URL is longer than {MAX_TARGET_BYTES} bytes")));
    }
    let without_fragment = raw.split('#').next().unwrap_or_default();
    // Clients send non-ASCII as percent-encoded UTF-8, and the cache key holds what they send.
    let mut encoded = String::with_capacity(without_fragment.len());
    for b in without_fragment.bytes() {
        if b.is_ascii() {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let uri: http::Uri = encoded.parse().map_err(|_| bad())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    let port_ok = match authority.as_str().rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port.is_empty() || port.parse::<u16>().is_ok(),
        _ => true,
    };
    if authority.as_str().contains('@') || !port_ok {
        return Err(bad());
    }
    let host = zone_host(authority.host(), zone, "files: URL", raw)?;
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let pq = if pq.is_empty() { "/" } else { pq };
    if !pq.starts_with('/') {
        return Err(bad());
    }
    Ok(format!("{host}{pq}"))
}

/// A `hosts` value: a hostname of the zone.
pub fn parse_host(raw: &str, zone: &ZoneName) -> Result<String, InvalidTarget> {
    if raw.contains(['/', ':', '?', '#', '@']) || raw.trim() != raw {
        return Err(InvalidTarget(format!("hosts: {} is not a bare hostname, e.g. static.{zone}", quoted(raw))));
    }
    zone_host(raw, zone, "hosts:", raw)
}

/// A `prefixes` value: `host/path` with no scheme, query or fragment; a bare `host` means `host/`.
pub fn parse_prefix(raw: &str, zone: &ZoneName) -> Result<String, InvalidTarget> {
    let bad = |why: &str| InvalidTarget(format!("prefixes: {} {why}, e.g. {zone}/assets/", quoted(raw)));
    if raw.len() > MAX_TARGET_BYTES {
        return Err(InvalidTarget(format!("prefixes: a prefix is longer than {MAX_TARGET_BYTES} bytes")));
    }
    if raw.contains("://") {
        return Err(bad("has a scheme; a prefix is host/path without one"));
    }
    if raw.contains(['?', '#']) {
        return Err(bad("has a query or fragment; a prefix is host/path without them"));
    }
    if raw.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b >= 0x80) {
        return Err(bad("has spaces, control or non-ASCII characters (percent-encode them as the URL does)"));
    }
    let (host, path) = raw.split_once('/').map_or((raw, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let host = zone_host(host, zone, "prefixes:", raw)?;
    Ok(format!("{host}{path}"))
}

/// A `tags` value, or one tag of a `Cache-Tag` header: trimmed, lower-cased, not empty, no comma, at most
/// [`MAX_TAG_BYTES`].
pub fn parse_tag(raw: &str) -> Result<String, InvalidTarget> {
    let tag = raw.trim();
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES || tag.contains(',') || tag.bytes().any(|b| b.is_ascii_control()) {
        return Err(InvalidTarget(format!(
            "tags: {} is not a tag (1 to {MAX_TAG_BYTES} bytes, no commas or control characters)",
            quoted(raw)
        )));
    }
    Ok(tag.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneName {
        ZoneName::parse("example.com").unwrap()
    }

    #[test]
    fn file_urls_become_host_and_path_with_query() {
        let z = zone();
        assert_eq!(parse_file_url("https://Example.COM/a/b?x=1", &z).unwrap(), "example.com/a/b?x=1");
        assert_eq!(parse_file_url("http://static.example.com:8080", &z).unwrap(), "static.example.com/");
        assert_eq!(parse_file_url("https://example.com/p#frag", &z).unwrap(), "example.com/p");
        for bad in
            ["/index.html", "example.com/x", "ftp://example.com/x", "https://other.com/x", "https://u@example.com/"]
        {
            assert!(parse_file_url(bad, &z).is_err(), "{bad}");
        }
        assert!(parse_file_url("https://notexample.com/", &z).is_err(), "a suffix that is not a subdomain");
        assert_eq!(parse_file_url("http://example.com/café?q=é", &z).unwrap(), "example.com/caf%C3%A9?q=%C3%A9");
        assert_eq!(parse_file_url("http://foo_bar.example.com/", &z).unwrap(), "foo_bar.example.com/");
        for bad in ["http://example.com:99999/", "http://example.com../x", "http://example.com/a b"] {
            assert!(parse_file_url(bad, &z).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_and_prefixes_stay_in_the_zone() {
        let z = zone();
        assert_eq!(parse_host("Static.Example.com", &z).unwrap(), "static.example.com");
        assert!(parse_host("https://example.com", &z).is_err());
        assert!(parse_host("other.org", &z).is_err());
        assert_eq!(parse_prefix("Example.com/Foo", &z).unwrap(), "example.com/Foo");
        assert_eq!(parse_prefix("example.com", &z).unwrap(), "example.com/");
        for bad in ["https://example.com/a", "example.com/a?b", "example.com/a b", "evil.org/a"] {
            assert!(parse_prefix(bad, &z).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_trimmed_and_case_insensitive() {
        assert_eq!(parse_tag("  Product-42 ").unwrap(), "product-42");
        for bad in ["", "  ", "a,b", &"x".repeat(MAX_TAG_BYTES + 1)] {
            assert!(parse_tag(bad).is_err(), "{bad:?}");
        }
    }
}
