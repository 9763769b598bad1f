//! Cache directives: `Cache-Control` (RFC 9111 §5.2) and the targeted fields that take precedence over it for
//! this cache — `Cloudflare-CDN-Cache-Control`, then `CDN-Cache-Control` (RFC 9213), then `Surrogate-Control`
//! (W3C Edge Architecture) — read into one [`Directives`] value.
//!
//! Parsing never fails: what cannot be read is ignored, except that an unreadable argument of a freshness
//! directive (`max-age=abc`) makes the response stale rather than fresh, the safe reading.

use http::{HeaderMap, HeaderName, HeaderValue, header::CACHE_CONTROL};

/// The device token this cache answers to in `Surrogate-Control` (`max-age=60;cache-reserve`), advertised to
/// origins in `Surrogate-Capability`.
pub const SURROGATE_DEVICE: &str = "cache-reserve";

/// `Cloudflare-CDN-Cache-Control`: Cloudflare's own targeted field, never forwarded downstream.
pub const CLOUDFLARE_CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cloudflare-cdn-cache-control");
/// `CDN-Cache-Control` (RFC 9213), forwarded downstream for other CDNs.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Surrogate-Control` (W3C Edge Architecture 1.0), consumed here and not forwarded.
pub const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// The largest delta-seconds a cache needs to represent (RFC 9111 §1.2.2): larger values mean this.
pub const DELTA_MAX: u64 = 1 << 31;

/// A delta-seconds argument (RFC 9111 §1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// Seconds, at most [`DELTA_MAX`].
    Seconds(u64),
    /// Present but not a delta-seconds (negative, fractional, quoted oddly, ...).
    Invalid,
}

impl Delta {
    /// The seconds, with an invalid value read as zero (the safe reading for freshness).
    pub fn secs_or_zero(self) -> u64 {
        match self {
            Self::Seconds(s) => s,
            Self::Invalid => 0,
        }
    }

    /// `1*DIGIT`, leading zeros allowed, saturating at [`DELTA_MAX`].
    fn parse(s: &str) -> Self {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Self::Invalid;
        }
        let digits = s.trim_start_matches('0');
        if digits.len() > 10 {
            return Self::Seconds(DELTA_MAX);
        }
        Self::Seconds(digits.parse::<u64>().unwrap_or(0).min(DELTA_MAX))
    }
}

/// A directive that may name header fields (`no-cache="Set-Cookie"`, `private="X-User"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldScope {
    /// The whole response.
    All,
    /// Only these fields (lower-case).
    Fields(Vec<HeaderName>),
}

impl FieldScope {
    fn merge(self, other: FieldScope) -> FieldScope {
        match (self, other) {
            (Self::Fields(mut a), Self::Fields(b)) => {
                a.extend(b);
                Self::Fields(a)
            }
            _ => Self::All,
        }
    }
}

/// The cache directives in force for one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub max_age: Option<Delta>,
    pub s_maxage: Option<Delta>,
    pub no_store: bool,
    pub no_cache: Option<FieldScope>,
    pub private: Option<FieldScope>,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub immutable: bool,
    pub stale_while_revalidate: Option<Delta>,
    pub stale_if_error: Option<Delta>,
    /// Request only: `max-stale` (with or without a limit).
    pub max_stale: Option<Option<Delta>>,
    /// Request only.
    pub min_fresh: Option<Delta>,
    /// Request only.
    pub only_if_cached: bool,
}

/// Which field the response's directives came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CloudflareCdnCacheControl,
    CdnCacheControl,
    SurrogateControl,
    /// `Cache-Control` (or none at all): `Expires` applies too.
    CacheControl,
}

impl Directives {
    /// The directives of a request's `Cache-Control` (RFC 9111 §5.2.1).
    pub fn request(headers: &HeaderMap) -> Self {
        parse_cache_control(headers)
    }

    /// The directives this cache obeys for a response: the first targeted field with a valid, non-empty
    /// value, else `Cache-Control` (RFC 9213 §2.1; Cloudflare's precedence).
    pub fn response(headers: &HeaderMap) -> (Self, Source) {
        if let Some(d) = parse_targeted(headers, &CLOUDFLARE_CDN_CACHE_CONTROL) {
            return (d, Source::CloudflareCdnCacheControl);
        }
        if let Some(d) = parse_targeted(headers, &CDN_CACHE_CONTROL) {
            return (d, Source::CdnCacheControl);
        }
        if let Some(d) = parse_surrogate_control(headers) {
            return (d, Source::SurrogateControl);
        }
        (parse_cache_control(headers), Source::CacheControl)
    }

    /// Sets a directive by (lower-case) name and argument. Repeated value directives keep the first value,
    /// or become invalid when a later one disagrees (RFC 9111 §4.2.1 allows either; stale is the safe one).
    fn set(&mut self, name: &str, arg: Option<&str>) {
        fn delta(slot: &mut Option<Delta>, arg: Option<&str>) {
            let new = arg.map_or(Delta::Invalid, Delta::parse);
            *slot = match *slot {
                None => Some(new),
                Some(old) if old == new => Some(old),
                Some(_) => Some(Delta::Invalid),
            };
        }
        fn scope(slot: &mut Option<FieldScope>, arg: Option<&str>) {
            // A qualified form naming no valid field (`private=`, an unterminated quote, `private=","`) is read
            // as the unqualified one: the safe reading (RFC 9111 §5.2.2.4, §5.2.2.7).
            let names: Vec<HeaderName> = arg
                .into_iter()
                .flat_map(|list| list.split(','))
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
                .collect();
            let new = if names.is_empty() { FieldScope::All } else { FieldScope::Fields(names) };
            *slot = Some(match slot.take() {
                None => new,
                Some(old) => old.merge(new),
            });
        }
        match name {
            "max-age" => delta(&mut self.max_age, arg),
            "s-maxage" => delta(&mut self.s_maxage, arg),
            "stale-while-revalidate" => delta(&mut self.stale_while_revalidate, arg),
            "stale-if-error" => delta(&mut self.stale_if_error, arg),
            "min-fresh" => delta(&mut self.min_fresh, arg),
            "max-stale" if self.max_stale.is_none() => self.max_stale = Some(arg.map(Delta::parse)),
            "no-cache" => scope(&mut self.no_cache, arg),
            "private" => scope(&mut self.private, arg),
            "no-store" => self.no_store = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "immutable" => self.immutable = true,
            "only-if-cached" => self.only_if_cached = true,
            _ => {}
        }
    }
}

/// `Cache-Control` over all its field lines: `#( token [ "=" ( token / quoted-string ) ] )`, names compared
/// case-insensitively, both argument forms accepted (RFC 9111 §5.2).
fn parse_cache_control(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for line in headers.get_all(CACHE_CONTROL) {
        for (name, arg) in members(line.as_bytes()) {
            d.set(&name, arg.as_deref());
        }
    }
    d
}

/// The members of one comma-separated directive list: (lower-case name, argument). A member whose name is
/// not a token, or whose argument is malformed, is skipped — except that a malformed argument still names
/// its directive (as an empty, hence invalid, argument), so `max-age=3600x` is not simply ignored.
fn members(line: &[u8]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        // One member: up to the next comma outside a quoted string.
        let start = i;
        let mut quoted = false;
        let mut escaped = false;
        while i < line.len() {
            let b = line[i];
            if quoted {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    quoted = false;
                }
            } else if b == b'"' {
                quoted = true;
            } else if b == b',' {
                break;
            }
            i += 1;
        }
        let member = trim_ows(&line[start..i]);
        i += 1;
        if member.is_empty() {
            continue;
        }
        let (name, arg) = match member.iter().position(|&b| b == b'=') {
            Some(eq) => (&member[..eq], Some(&member[eq + 1..])),
            None => (member, None),
        };
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            continue;
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let arg = arg.map(|a| argument(a).unwrap_or_default());
        out.push((name, arg));
    }
    out
}

/// A directive argument: a token, or a quoted-string unquoted. `None` when it is neither.
fn argument(raw: &[u8]) -> Option<String> {
    if raw.first() == Some(&b'"') {
        let mut s = Vec::new();
        let mut escaped = false;
        for (i, &b) in raw.iter().enumerate().skip(1) {
            if escaped {
                s.push(b);
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                return (i == raw.len() - 1).then(|| String::from_utf8_lossy(&s).into_owned());
            } else {
                s.push(b);
            }
        }
        None
    } else if !raw.is_empty() && raw.iter().all(|&b| is_tchar(b)) {
        Some(String::from_utf8_lossy(raw).into_owned())
    } else {
        None
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A targeted field (RFC 9213): a Structured Fields dictionary over all its lines. `None` when absent, empty
/// or unparsable, so the next field in precedence applies (RFC 9213 §2.1). Arguments of the wrong type are
/// ignored; parameters are ignored.
fn parse_targeted(headers: &HeaderMap, name: &HeaderName) -> Option<Directives> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut joined = Vec::new();
    for line in lines {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    let dict: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
    if dict.is_empty() {
        return None;
    }
    let mut d = Directives::default();
    for (key, entry) in &dict {
        let sfv::ListEntry::Item(item) = entry else { continue };
        let key = key.as_str();
        match &item.bare_item {
            sfv::BareItem::Boolean(true) => d.set(key, None),
            sfv::BareItem::Integer(n) => {
                let n = i64::from(*n);
                if n >= 0 {
                    d.set(key, Some(&n.to_string()));
                }
            }
            sfv::BareItem::String(s) if matches!(key, "no-cache" | "private") => d.set(key, Some(s.as_str())),
            _ => {}
        }
    }
    Some(d)
}

/// `Surrogate-Control` (W3C Edge Architecture §3): `1#( directive [ ";" device-token ] )`. Directives targeted
/// at another device are ignored; `max-age=N+M` grants `M` seconds of stale-while-revalidate. `None` unless
/// at least one directive this cache understands applies to it (a field holding only `content="ESI/1.0"` or
/// another device's directives leaves `Cache-Control` in force).
fn parse_surrogate_control(headers: &HeaderMap) -> Option<Directives> {
    let mut lines = headers.get_all(SURROGATE_CONTROL).iter().peekable();
    lines.peek()?;
    let mut d = Directives::default();
    let mut any = false;
    for line in lines {
        for (member, device) in surrogate_members(line) {
            if device.is_some_and(|dev| !dev.eq_ignore_ascii_case(SURROGATE_DEVICE)) {
                continue;
            }
            let (name, arg) = match member.split_once('=') {
                Some((n, a)) => (n, Some(a)),
                None => (member.as_str(), None),
            };
            if name.is_empty() || !name.bytes().all(is_tchar) {
                continue;
            }
            match (name.to_ascii_lowercase().as_str(), arg) {
                ("max-age", Some(a)) => {
                    let (fresh, stale) = a.split_once('+').map_or((a, None), |(f, s)| (f, Some(s)));
                    d.set("max-age", Some(fresh));
                    if let Some(s) = stale {
                        d.set("stale-while-revalidate", Some(s));
                    }
                    any = true;
                }
                ("max-age", None) => {
                    d.set("max-age", None);
                    any = true;
                }
                ("no-store", _) => {
                    d.no_store = true;
                    any = true;
                }
                _ => {}
            }
        }
    }
    any.then_some(d)
}

/// The members of a `Surrogate-Control` line: (directive, optional device token), trimmed.
fn surrogate_members(line: &HeaderValue) -> Vec<(String, Option<String>)> {
    let Ok(s) = line.to_str() else { return Vec::new() };
    s.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| match m.split_once(';') {
            Some((d, dev)) => (d.trim().to_owned(), Some(dev.trim().to_owned())),
            None => (m.to_owned(), None),
        })
        .collect()
}

#[cfg(test)]
mod tests;
