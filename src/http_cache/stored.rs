//! A stored response (RFC 9111 §3): how it is made, reused (§4) and updated by a `304` (§3.2, §4.3.4), and
//! the header section it is served with (§4.2.3, §5.1). What may be stored is in `storable`, validation in
//! `validation`.

use std::time::{Duration, SystemTime};

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, StatusCode,
    header::{
        AGE, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG, PRAGMA, SET_COOKIE,
        TRANSFER_ENCODING,
    },
    request,
};

use super::{
    cache_tag::{self, CACHE_TAG},
    date,
    directives::{CLOUDFLARE_CDN_CACHE_CONTROL, Directives, FieldScope, SURROGATE_CONTROL},
    freshness::Freshness,
    storable::{NotStorable, check_storable},
    vary::{self, Selecting},
};

/// How this cache judges responses.
#[derive(Debug, Clone)]
pub struct CacheRules {
    /// Longest heuristic freshness lifetime (RFC 9111 §4.2.2); zero turns heuristic freshness off.
    pub heuristic_max: Duration,
    /// Honour a request's `Cache-Control` (`no-cache`, `max-age`, `min-fresh`, `no-store`, `only-if-cached`)
    /// and `Pragma: no-cache`. Off by default, as at Cloudflare and in nginx: any client could otherwise
    /// make every request go to the origin.
    pub honor_request_directives: bool,
    /// Most bytes of `Cache-Tag` a stored response may carry (see [`super::cache_tag`]).
    pub max_cache_tag_bytes: usize,
}

impl Default for CacheRules {
    fn default() -> Self {
        Self {
            heuristic_max: Duration::from_secs(86_400),
            honor_request_directives: false,
            max_cache_tag_bytes: cache_tag::DEFAULT_MAX_BYTES,
        }
    }
}

/// Whether a stored response may answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh: serve it (RFC 9111 §4.2).
    Fresh,
    /// Stale, or `no-cache`: validate it with the origin first (§4.3).
    Validate,
    /// Not for this request: another variant (`Vary`), or the request carries credentials the response
    /// does not allow to share.
    Unusable,
}

/// Header fields a `304` never changes in a stored response: those describing the stored content itself,
/// and `Set-Cookie`, which is never stored (RFC 9111 §3.2 lets a cache omit fields that keep the stored
/// response consistent).
const NOT_UPDATED: [HeaderName; 7] =
    [CONTENT_LENGTH, CONTENT_ENCODING, CONTENT_RANGE, ETAG, TRANSFER_ENCODING, SET_COOKIE, AGE];

/// `Content-MD5` (obsolete; describes the content, so never updated by a 304).
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");

/// Fields meant for this cache alone: read, stored, never sent to a client.
pub const CONSUMED: [HeaderName; 3] = [CLOUDFLARE_CDN_CACHE_CONTROL, SURROGATE_CONTROL, CACHE_TAG];

/// A response as stored: status, header fields, the request's selecting fields, and when it was requested
/// and received (unix milliseconds). Its directives and freshness are derived once, when it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    selecting: Selecting,
    request_time: u64,
    pub(super) response_time: u64,
    directives: Directives,
    freshness: Freshness,
    /// Its `Cache-Tag` tags (derived).
    tags: Vec<String>,
}

impl StoredResponse {
    /// Judges a response to `request` for a shared cache (RFC 9111 §3 and §3.5, with the targeted fields of
    /// RFC 9213 taking precedence) and, if it may be stored, returns its stored form: fields listed by a
    /// qualified `private` or `no-cache` removed, a `Date` added if it had none or an invalid one (RFC 9110
    /// §6.6.1), and the request's selecting fields kept as digests. `headers` must be free of hop-by-hop
    /// fields already.
    pub fn admit(
        request: &request::Parts,
        status: StatusCode,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        rules: &CacheRules,
    ) -> Result<Self, NotStorable> {
        if request.method != Method::GET {
            return Err(NotStorable::Method);
        }
        if rules.honor_request_directives && Directives::request(&request.headers).no_store {
            return Err(NotStorable::NoStore);
        }
        let (directives, source) = Directives::response(headers);
        check_storable(status, headers, &directives, source, &request.headers)?;
        if !cache_tag::within_bounds(headers, rules.max_cache_tag_bytes) {
            return Err(NotStorable::CacheTags);
        }
        let mut stored = headers.clone();
        for scope in [&directives.private, &directives.no_cache].into_iter().flatten() {
            if let FieldScope::Fields(names) = scope {
                for name in names {
                    stored.remove(name);
                }
            }
        }
        let response_time = date::unix_millis(response_time);
        let date_ok = stored.get_all(DATE).iter().count() == 1 && stored.get(DATE).and_then(date::parse).is_some();
        if !date_ok {
            stored.insert(DATE, date::format(date::from_unix_millis(response_time)));
        }
        let names = vary::names(&stored).ok_or(NotStorable::VaryStar)?;
        let selecting = Selecting::capture(&names, &request.headers);
        Ok(Self::assemble(status, stored, selecting, date::unix_millis(request_time), response_time, rules))
    }

    /// Builds a stored response from its parts (also when read back from storage), deriving its directives
    /// and freshness.
    pub(super) fn assemble(
        status: StatusCode,
        headers: HeaderMap,
        selecting: Selecting,
        request_time: u64,
        response_time: u64,
        rules: &CacheRules,
    ) -> Self {
        let (directives, source) = Directives::response(&headers);
        let freshness =
            Freshness::derive(status, &headers, &directives, source, request_time, response_time, rules.heuristic_max);
        let tags = cache_tag::tags(&headers);
        Self { status, headers, selecting, request_time, response_time, directives, freshness, tags }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stored header fields (with the `Age` received, and the fields meant only for this cache).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The directives in force (RFC 9213's targeted fields taking precedence).
    pub(super) fn directives(&self) -> &Directives {
        &self.directives
    }

    /// Its `Cache-Tag` tags, lower-cased (SPEC §10).
    pub fn cache_tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether a request with `headers` would select this variant (its `Vary`, RFC 9111 §4.1).
    pub fn selected_by(&self, headers: &HeaderMap) -> bool {
        self.selecting.matches(headers)
    }

    /// Whether this response may answer `request` at `now` as it is, after validation, or not at all.
    pub fn reuse(&self, request: &request::Parts, now: SystemTime, rules: &CacheRules) -> Reuse {
        if !self.selecting.matches(&request.headers) {
            return Reuse::Unusable;
        }
        if request.headers.contains_key(AUTHORIZATION) && !self.shareable_with_credentials() {
            return Reuse::Unusable;
        }
        if self.directives.no_cache == Some(FieldScope::All) {
            return Reuse::Validate;
        }
        let now = date::unix_millis(now);
        let age = self.freshness.current_age(now);
        if rules.honor_request_directives {
            let asked = request_directives(&request.headers);
            let fresh_and_immutable = self.directives.immutable && self.freshness.is_fresh(now);
            if asked.no_cache.is_some() && !fresh_and_immutable {
                return Reuse::Validate;
            }
            // `max-age=0` asks for validation, as browsers mean it (an age below one second is still 0).
            if asked.max_age.is_some_and(|m| age > m.secs_or_zero() || m.secs_or_zero() == 0) {
                return Reuse::Validate;
            }
            if asked.min_fresh.is_some_and(|m| self.freshness.lifetime < age.saturating_add(m.secs_or_zero())) {
                return Reuse::Validate;
            }
        }
        if self.freshness.is_fresh(now) { Reuse::Fresh } else { Reuse::Validate }
    }

    /// Whether the request asks to be answered from cache only (`only-if-cached`, when request directives
    /// are honoured): a miss is then `504` (RFC 9111 §5.2.1.7).
    pub fn only_if_cached(request: &request::Parts, rules: &CacheRules) -> bool {
        rules.honor_request_directives && Directives::request(&request.headers).only_if_cached
    }

    /// `public`, `s-maxage` or `must-revalidate`: a shared cache may answer requests with `Authorization`.
    fn shareable_with_credentials(&self) -> bool {
        self.directives.public || self.directives.s_maxage.is_some() || self.directives.must_revalidate
    }

    /// This response updated by a `304` that validated it (RFC 9111 §4.3.4): each field the 304 carries
    /// replaces the stored one of that name (§3.2), except those describing the stored content (and
    /// `Set-Cookie`); `Age` is the 304's (none if it has none), `Date` the 304's or the time it arrived;
    /// the selecting fields are taken from `request` if `Vary` changed. `Err` if the update makes it
    /// unstorable (e.g. the 304 says `no-store`): it must then not be kept.
    pub fn freshen(
        &self,
        not_modified: &HeaderMap,
        request: &request::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        rules: &CacheRules,
    ) -> Result<Self, NotStorable> {
        let mut headers = self.headers.clone();
        headers.remove(AGE);
        for name in not_modified.keys() {
            if NOT_UPDATED.contains(name) || *name == CONTENT_MD5 {
                continue;
            }
            headers.remove(name);
            for value in not_modified.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(age) = not_modified.get(AGE) {
            headers.insert(AGE, age.clone());
        }
        let response_time = date::unix_millis(response_time);
        let date_ok = headers.get_all(DATE).iter().count() == 1 && headers.get(DATE).and_then(date::parse).is_some();
        if !not_modified.contains_key(DATE) || !date_ok {
            headers.insert(DATE, date::format(date::from_unix_millis(response_time)));
        }
        let (directives, source) = Directives::response(&headers);
        check_storable(self.status, &headers, &directives, source, &request.headers)?;
        if !cache_tag::within_bounds(&headers, rules.max_cache_tag_bytes) {
            return Err(NotStorable::CacheTags);
        }
        for scope in [&directives.private, &directives.no_cache].into_iter().flatten() {
            if let FieldScope::Fields(names) = scope {
                for name in names {
                    headers.remove(name);
                }
            }
        }
        let names = vary::names(&headers).ok_or(NotStorable::VaryStar)?;
        let selecting = if not_modified.contains_key(http::header::VARY) {
            Selecting::capture(&names, &request.headers)
        } else {
            self.selecting.clone()
        };
        Ok(Self::assemble(self.status, headers, selecting, date::unix_millis(request_time), response_time, rules))
    }

    /// The header section to serve this response with at `now`: the stored fields, `Age` set to the current
    /// age (RFC 9111 §5.1; `Date` is kept as stored, §4), and the fields meant for this cache alone removed.
    pub fn response_headers(&self, now: SystemTime) -> HeaderMap {
        let mut headers = self.headers.clone();
        for name in &CONSUMED {
            headers.remove(name);
        }
        headers.insert(AGE, HeaderValue::from(self.freshness.current_age(date::unix_millis(now))));
        headers
    }

    /// The stored header fields with `Content-Length` set to the stored content's length, for a response
    /// that arrived without one (chunked): a later `HEAD` then says how long the content is.
    pub fn with_content_length(mut self, length: u64) -> Self {
        if !self.headers.contains_key(CONTENT_LENGTH) {
            self.headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        self
    }

    /// The parts that are stored; the rest is derived again on load.
    pub(super) fn parts(&self) -> (StatusCode, &HeaderMap, &Selecting, u64, u64) {
        (self.status, &self.headers, &self.selecting, self.request_time, self.response_time)
    }
}

/// The request's cache directives; `Pragma: no-cache` counts as `no-cache` when there is no
/// `Cache-Control` (RFC 9111 §5.4).
pub(super) fn request_directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::request(headers);
    if !headers.contains_key(http::header::CACHE_CONTROL)
        && headers.get_all(PRAGMA).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
    {
        d.no_cache = Some(FieldScope::All);
    }
    d
}

#[cfg(test)]
mod tests;
