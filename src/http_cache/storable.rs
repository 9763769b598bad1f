//! What a shared cache may store (RFC 9111 §3 and §3.5), on the directives in force, with Cloudflare's
//! refusals on top.

use http::{
    HeaderMap, StatusCode,
    header::{AUTHORIZATION, EXPIRES, SET_COOKIE},
};

use super::{
    directives::{Directives, FieldScope, Source},
    freshness::heuristically_cacheable,
    vary,
};

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// The request method is not GET.
    Method,
    /// Not a final status this cache stores: 1xx, 206 (partial content is not stored), 304, or a status it
    /// does not understand under `must-understand`.
    Status,
    /// `no-store` (or the request's `no-store`, when request directives are honoured).
    NoStore,
    /// `private`: for a browser cache only.
    Private,
    /// The request carried `Authorization` and the response does not say a shared cache may reuse it
    /// (`public`, `s-maxage` or `must-revalidate`, RFC 9111 §3.5).
    Authorization,
    /// Nothing allows storing it: no explicit freshness, not `public`, not a heuristically cacheable status.
    NoFreshness,
    /// It sets a cookie (Cloudflare never caches those), unless `private` or `no-cache` names `Set-Cookie`.
    SetCookie,
    /// `Vary: *`: no request could ever match it.
    VaryStar,
    /// Its `Cache-Tag` lines exceed the bounds (see [`super::cache_tag`]).
    CacheTags,
}

impl NotStorable {
    /// A short name, for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::NoFreshness => "no-freshness",
            Self::SetCookie => "set-cookie",
            Self::VaryStar => "vary-star",
            Self::CacheTags => "cache-tags",
        }
    }
}

/// RFC 9111 §3 for a shared cache, on the directives in force, and Cloudflare's refusals.
pub(super) fn check_storable(
    status: StatusCode,
    headers: &HeaderMap,
    directives: &Directives,
    source: Source,
    request: &HeaderMap,
) -> Result<(), NotStorable> {
    if status.is_informational() || status == StatusCode::PARTIAL_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Err(NotStorable::Status);
    }
    if directives.must_understand {
        // Stored only if this cache understands the status; then `no-store` is to be ignored (§5.2.2.3).
        if !understood(status) {
            return Err(NotStorable::Status);
        }
    } else if directives.no_store {
        return Err(NotStorable::NoStore);
    }
    if directives.private == Some(FieldScope::All) {
        return Err(NotStorable::Private);
    }
    if request.contains_key(AUTHORIZATION)
        && !(directives.public || directives.s_maxage.is_some() || directives.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    let allowed = directives.public
        || directives.max_age.is_some()
        || directives.s_maxage.is_some()
        || (source == Source::CacheControl && headers.contains_key(EXPIRES))
        || heuristically_cacheable(status);
    if !allowed {
        return Err(NotStorable::NoFreshness);
    }
    if headers.contains_key(SET_COOKIE) {
        let named =
            |scope: &Option<FieldScope>| matches!(scope, Some(FieldScope::Fields(f)) if f.contains(&SET_COOKIE));
        if !named(&directives.private) && !named(&directives.no_cache) {
            return Err(NotStorable::SetCookie);
        }
    }
    if vary::names(headers).is_none() {
        return Err(NotStorable::VaryStar);
    }
    Ok(())
}

/// Status codes whose caching requirements this cache implements (for `must-understand`): those RFC 9110
/// defines, less 206 (partial content is not stored).
fn understood(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200..=205 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505)
}
