//! Responses the proxy makes: status headers on every response, answers from cache, and its own errors.

use axum::body::Body;
use http::{
    HeaderValue, Response, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH},
    request, response,
};

use crate::metrics::CacheStatus;

/// Cloudflare's cache status header.
pub const CF_CACHE_STATUS: &str = "cf-cache-status";
/// Ours: what the reserve had to do with the response.
pub const X_CACHE_RESERVE: &str = "x-cache-reserve";

/// The `x-cache-reserve` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveTag {
    /// The body came from the reserve.
    Hit,
    /// The reserve was asked and did not have a fresh copy.
    Miss,
    /// The zone's reserve is off: neither read nor written.
    Off,
    /// Served from the edge tier; the reserve was not asked.
    Edge,
    /// Not eligible for caching at all.
    Bypass,
}

impl ReserveTag {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Off => "OFF",
            Self::Edge => "EDGE",
            Self::Bypass => "BYPASS",
        }
    }

    /// `Miss` or `Off`, by the zone's setting.
    pub fn miss(reserve_on: bool) -> Self {
        if reserve_on { Self::Miss } else { Self::Off }
    }
}

/// Sets both status headers.
pub fn tag<B>(resp: &mut Response<B>, cache: CacheStatus, reserve: ReserveTag) {
    let h = resp.headers_mut();
    h.insert(CF_CACHE_STATUS, HeaderValue::from_static(cache.as_str()));
    h.insert(X_CACHE_RESERVE, HeaderValue::from_static(reserve.as_str()));
}

/// A short plain-text response of the proxy's own.
pub fn plain(
    status: StatusCode,
    message: impl Into<String>,
    cache: CacheStatus,
    reserve: ReserveTag,
) -> Response<Body> {
    let mut resp = Response::new(Body::from(message.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    tag(&mut resp, cache, reserve);
    resp
}

/// An answer from cache: the stored response's head (as the cache policy computed it, with `Age`) and its
/// body; a `304` when the client's `If-None-Match` names the stored `ETag`; no body for `HEAD`.
pub fn from_cache(
    head: response::Parts,
    body: Body,
    req: &request::Parts,
    cache: CacheStatus,
    reserve: ReserveTag,
) -> Response<Body> {
    let not_modified = match (req.headers.get(IF_NONE_MATCH), head.headers.get(ETAG)) {
        (Some(inm), Some(etag)) => etag_listed(inm, etag),
        _ => false,
    };
    let mut resp = Response::from_parts(head, body);
    if not_modified {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut().remove(CONTENT_LENGTH);
        *resp.body_mut() = Body::empty();
    } else if req.method == http::Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    tag(&mut resp, cache, reserve);
    resp
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC 9110 §13.1.2 asks) or is `*`.
fn etag_listed(inm: &HeaderValue, etag: &HeaderValue) -> bool {
    let (Ok(inm), Ok(etag)) = (inm.to_str(), etag.to_str()) else {
        return false;
    };
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    inm.trim() == "*" || inm.split(',').any(|t| weak(t) == weak(etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_star() {
        let etag = HeaderValue::from_static("\"v1\"");
        assert!(etag_listed(&HeaderValue::from_static("\"v0\", W/\"v1\""), &etag));
        assert!(etag_listed(&HeaderValue::from_static("*"), &etag));
        assert!(!etag_listed(&HeaderValue::from_static("\"v2\""), &etag));
    }
}
