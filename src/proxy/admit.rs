//! The admission phase: what an origin response may fill, as a pure function of the request, the response
//! and the zone's settings. RFC 9111 decides whether it may be stored at all ([`StoredResponse::admit`]);
//! the edge tier takes what fits in memory; the reserve takes what SPEC §8 admits.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, header::CONTENT_LENGTH, request, response};

use crate::http_cache::{CacheRules, NotStorable, StoredResponse, date};

/// The limits admission applies.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest body the edge tier keeps (zero: the tier is off).
    pub edge_max: u64,
    /// Shortest remaining explicit freshness the reserve takes.
    pub reserve_min_ttl: Duration,
    /// Largest body the reserve takes.
    pub reserve_max: u64,
}

/// Why a storable response does not go to the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveSkip {
    /// Not storable at all.
    NotStorable(NotStorable),
    /// The zone's reserve is off.
    Off,
    /// Less explicit freshness left than the minimum (a heuristic lifetime never counts).
    ShortLived,
    /// No `Content-Length`: its size is unknown until it ends.
    NoLength,
    /// Larger than the reserve's object limit.
    TooLarge,
}

/// What a response may fill.
#[derive(Debug)]
pub struct Admission {
    /// Its stored form, or why it may not be stored anywhere.
    pub stored: Result<StoredResponse, NotStorable>,
    /// The edge tier may keep it (if its body, whose length may be unknown, turns out to fit).
    pub edge: bool,
    /// The reserve may keep it, and its announced length.
    pub reserve: Result<u64, ReserveSkip>,
    /// The content's length, when known before it arrives.
    pub length: Option<u64>,
}

/// Judges an origin response to `request` (a GET), received between `request_time` and `response_time`, for
/// a zone whose reserve may (`use_reserve`) or may not be written now.
pub fn admit(
    request: &request::Parts,
    head: &response::Parts,
    use_reserve: bool,
    limits: &Limits,
    rules: &CacheRules,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Admission {
    let stored = StoredResponse::admit(request, head.status, &head.headers, request_time, response_time, rules);
    // A 204 has no content by definition (RFC 9110 §15.3.5), whatever its framing says.
    let length = if head.status == http::StatusCode::NO_CONTENT { Some(0) } else { content_length(&head.headers) };
    let edge = stored.is_ok() && limits.edge_max > 0 && length.is_none_or(|n| n <= limits.edge_max);
    let reserve = match &stored {
        Err(why) => Err(ReserveSkip::NotStorable(*why)),
        Ok(_) if !use_reserve => Err(ReserveSkip::Off),
        Ok(s) if s.freshness().explicit_ttl(date::unix_millis(response_time)) < limits.reserve_min_ttl => {
            Err(ReserveSkip::ShortLived)
        }
        Ok(_) => match length {
            None => Err(ReserveSkip::NoLength),
            Some(n) if n > limits.reserve_max => Err(ReserveSkip::TooLarge),
            Some(n) => Ok(n),
        },
    };
    Admission { stored, edge, reserve, length }
}

/// `Content-Length`, when it is one valid number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut all = headers.get_all(CONTENT_LENGTH).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Request, Response, StatusCode};

    use super::*;

    fn judge(reserve_on: bool, pairs: &[(&str, &str)]) -> Admission {
        let req = Request::get("/a").body(()).unwrap().into_parts().0;
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::OK;
        for (n, v) in pairs {
            resp.headers_mut()
                .append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let limits = Limits { edge_max: 1000, reserve_min_ttl: Duration::from_secs(36_000), reserve_max: 5000 };
        let now = SystemTime::now();
        admit(&req, &resp.into_parts().0, reserve_on, &limits, &CacheRules::default(), now, now)
    }

    #[test]
    fn the_reserve_takes_long_lived_objects_of_known_size_within_the_limit() {
        let day = "public, max-age=86400";
        assert_eq!(judge(true, &[("cache-control", day), ("content-length", "100")]).reserve, Ok(100));
        assert_eq!(judge(false, &[("cache-control", day), ("content-length", "100")]).reserve, Err(ReserveSkip::Off));
        assert_eq!(
            judge(true, &[("cache-control", "max-age=60"), ("content-length", "1")]).reserve,
            Err(ReserveSkip::ShortLived)
        );
        assert_eq!(judge(true, &[("cache-control", day)]).reserve, Err(ReserveSkip::NoLength));
        assert_eq!(
            judge(true, &[("cache-control", day), ("content-length", "5001")]).reserve,
            Err(ReserveSkip::TooLarge)
        );
        assert_eq!(
            judge(true, &[("cache-control", day), ("content-length", "5, 5")]).reserve,
            Err(ReserveSkip::NoLength)
        );
        let private = judge(true, &[("cache-control", "private"), ("content-length", "1")]);
        assert_eq!(private.reserve, Err(ReserveSkip::NotStorable(NotStorable::Private)));
        assert!(!private.edge);
        // A heuristic lifetime never qualifies, however long.
        let lm = date::format(SystemTime::now() - Duration::from_secs(100 * 86_400));
        let guessed = judge(true, &[("last-modified", lm.to_str().unwrap()), ("content-length", "1")]);
        assert_eq!(guessed.reserve, Err(ReserveSkip::ShortLived));
    }

    #[test]
    fn the_edge_takes_what_fits_or_may_fit() {
        assert!(judge(true, &[("cache-control", "max-age=60"), ("content-length", "1000")]).edge);
        assert!(judge(true, &[("cache-control", "max-age=60")]).edge, "chunked: decided when the body ends");
        assert!(!judge(true, &[("cache-control", "max-age=60"), ("content-length", "1001")]).edge);
    }
}
