//! The last phase: every response the proxy sends is made here — from a stored response, from the origin's,
//! or from a failure — and [`finish`] is the one place that sets the cache status headers and the version.

use std::time::SystemTime;

use axum::body::Body;
use http::{
    HeaderValue, Method, Response, StatusCode, Version,
    header::{CONTENT_LENGTH, CONTENT_TYPE},
    request, response,
};

use super::error::ProxyError;
use crate::{
    http_cache::StoredResponse,
    metrics::{CacheStatus, NotStored},
};

/// Cloudflare's cache status header.
pub const CF_CACHE_STATUS: &str = "cf-cache-status";
/// Ours: what the reserve had to do with the response.
pub const X_CACHE_RESERVE: &str = "x-cache-reserve";
/// Ours: why the reserve did not take a response fetched from the origin (with `INELIGIBLE`, or `MISS`
/// when a write was skipped).
pub const X_CACHE_RESERVE_REASON: &str = "x-cache-reserve-reason";

/// The `x-cache-reserve` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveTag {
    /// The body came from the reserve.
    Hit,
    /// The reserve was asked and did not have a usable copy (or will be written).
    Miss,
    /// The zone's reserve is off: neither read nor written.
    Off,
    /// The zone's reserve is on, but could not be used just now — its storage is unreachable, or this
    /// node's view of the zones is out of date (see [`crate::directory`]): neither read nor written.
    Unavailable,
    /// Served from the edge tier; the reserve was not asked.
    Edge,
    /// Not eligible for caching at all.
    Bypass,
    /// Stored in the edge tier at most: the reserve does not take this response (`x-cache-reserve-reason`
    /// says why: `short-lived`, `no-content-length`, `too-large`).
    Ineligible(NotStored),
    /// The reserve would take it, but it was not written this time (`MISS` with `x-cache-reserve-reason:
    /// write-budget-full`).
    NotWritten(NotStored),
}

impl ReserveTag {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Off => "OFF",
            Self::Unavailable => "UNAVAILABLE",
            Self::Edge => "EDGE",
            Self::Bypass => "BYPASS",
            Self::Ineligible(_) => "INELIGIBLE",
            Self::NotWritten(_) => "MISS",
        }
    }

    /// Why the reserve did not take the response, when the tag says it did not.
    pub fn reason(self) -> Option<NotStored> {
        match self {
            Self::Ineligible(why) | Self::NotWritten(why) => Some(why),
            _ => None,
        }
    }

    /// `Miss`, `Off` or `Unavailable`, by the zone's setting and whether the reserve could be used.
    pub fn miss(reserve_on: bool, usable: bool) -> Self {
        match (reserve_on, usable) {
            (false, _) => Self::Off,
            (true, false) => Self::Unavailable,
            (true, true) => Self::Miss,
        }
    }
}

/// A response on its way out, with what the status headers will say.
pub struct Answer {
    pub status: CacheStatus,
    pub tag: ReserveTag,
    pub response: Response<Body>,
}

/// An answer from a stored response: its status and stored header fields with the current `Age`
/// ([`StoredResponse::response_headers`]); `304` when the client's own conditionals match it; no body for
/// `HEAD` (the stored `Content-Length` says how long the content is).
pub fn from_cache(stored: &StoredResponse, body: Body, request: &request::Parts, now: SystemTime) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = stored.status();
    *resp.headers_mut() = stored.response_headers(now);
    if stored.not_modified_for(request) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut().remove(CONTENT_LENGTH);
        *resp.body_mut() = Body::empty();
    } else if request.method == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    resp
}

/// An answer from the origin's response (already free of hop-by-hop fields): the fields meant for this
/// cache alone removed; no body for `HEAD`.
pub fn from_origin(mut head: response::Parts, body: Body, request: &request::Parts) -> Response<Body> {
    for name in &crate::http_cache::CONSUMED {
        head.headers.remove(name);
    }
    let body = if request.method == Method::HEAD { Body::empty() } else { body };
    Response::from_parts(head, body)
}

/// A short plain-text response of the proxy's own, for a failure (see [`ProxyError::answer`]).
pub fn failure(e: &ProxyError) -> Response<Body> {
    let (status, message, _) = e.answer();
    let mut resp = Response::new(Body::from(message));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Sets the status headers every response carries, and this proxy's own HTTP version (an intermediary
/// sends its own, RFC 9110 §6.2: a response from an HTTP/1.0 origin still goes out as HTTP/1.1).
pub fn finish(answer: Answer) -> Response<Body> {
    let Answer { status, tag, mut response } = answer;
    *response.version_mut() = Version::HTTP_11;
    let h = response.headers_mut();
    h.insert(CF_CACHE_STATUS, HeaderValue::from_static(status.as_str()));
    h.insert(X_CACHE_RESERVE, HeaderValue::from_static(tag.as_str()));
    match tag.reason() {
        Some(why) => h.insert(X_CACHE_RESERVE_REASON, HeaderValue::from_static(why.as_str())),
        // Never the origin's own.
        None => h.remove(X_CACHE_RESERVE_REASON),
    };
    response
}
