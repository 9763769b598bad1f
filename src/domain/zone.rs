//! Zones: a hostname whose traffic the proxy caches, with an origin and the Cache Reserve setting.

use std::fmt;

use super::{Timestamp, ZoneId};

/// A zone's name: a DNS hostname, stored lowercase without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZoneName(String);

/// Why a zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid zone name {0:?}: expected a hostname such as example.com (labels of letters, digits and hyphens, at most 253 characters)"
)]
pub struct InvalidZoneName(pub String);

impl ZoneName {
    /// Parses a hostname, lowercasing it and dropping one trailing dot.
    pub fn parse(s: &str) -> Result<Self, InvalidZoneName> {
        let lowered = s.trim_end_matches('.').to_ascii_lowercase();
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if lowered.is_empty() || lowered.len() > 253 || !lowered.split('.').all(valid_label) {
            return Err(InvalidZoneName(s.chars().take(300).collect()));
        }
        Ok(Self(lowered))
    }

    /// The hostname.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses an origin URL: `http://` or `https://`, a host, optionally a port and a path prefix (put before
/// every request's path: `http://host/app` sends `/x` to `/app/x`); no query or fragment. Returns it without
/// a trailing `/`, or a message that shows the expected shape.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("{s:?} is not a URL"))?;
    let ok_scheme = matches!(uri.scheme_str(), Some("http" | "https"));
    let no_query = uri.query().is_none() && !s.contains('#');
    if !ok_scheme || uri.authority().is_none() || !no_query {
        return Err(format!(
            "{s:?}: expected an origin such as http://127.0.0.1:9000 or https://origin.example/prefix \
             (scheme, host, optional port and path prefix; no query)"
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// A zone as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: ZoneId,
    pub name: ZoneName,
    /// Where the proxy forwards misses, e.g. `http://127.0.0.1:9000`.
    pub origin: Option<String>,
    /// The Cache Reserve setting: `true` is Cloudflare's `on` ("sync").
    pub reserve_on: bool,
    /// When the reserve setting was last changed; `None` if never.
    pub reserve_modified_on: Option<Timestamp>,
    /// The zone's object generation: part of every stored object's location, bumped by each Clear.
    pub generation: i64,
    /// Bumped by every change to the zone: of two copies, the one with the higher revision is newer.
    pub revision: i64,
    /// The revision of the zone's latest purge or invalidation rule (SPEC §10); 0 if none.
    pub purge_revision: i64,
    pub created_on: Timestamp,
    pub modified_on: Timestamp,
    /// When the zone was deleted: a tombstone, kept so that the change feed carries the deletion to every
    /// node; `None` while the zone is live. Store reads other than the feed never return tombstones.
    pub deleted_on: Option<Timestamp>,
}

#[cfg(test)]
impl Zone {
    /// `example.com` (id `0123…cdef`, no origin) at the given revision and generation, for unit tests.
    pub(crate) fn example(revision: i64, generation: i64, reserve_on: bool) -> Self {
        Zone {
            id: ZoneId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            name: ZoneName::parse("example.com").unwrap(),
            origin: None,
            reserve_on,
            reserve_modified_on: None,
            generation,
            revision,
            purge_revision: 0,
            created_on: Timestamp::from_micros(0),
            modified_on: Timestamp::from_micros(0),
            deleted_on: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_trailing_dot() {
        assert_eq!(ZoneName::parse("Example.COM.").unwrap().as_str(), "example.com");
    }

    #[test]
    fn origins() {
        assert_eq!(parse_origin("http://127.0.0.1:9000/").unwrap(), "http://127.0.0.1:9000");
        assert!(parse_origin("https://origin.example.com").is_ok());
        assert_eq!(parse_origin("http://x/app/").unwrap(), "http://x/app");
        for bad in ["ftp://x", "127.0.0.1:9000", "http://x/path?q=1", "http://x/#f", "not a url"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_hostnames() {
        for bad in ["", ".", "a..b", "-a.com", "a-.com", "a b.com", "a_b.com", &"a".repeat(64)] {
            assert!(ZoneName::parse(bad).is_err(), "{bad}");
        }
    }
}
