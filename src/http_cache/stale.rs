//! Serving a stale response (RFC 9111 §4.2.4): when the origin's `stale-while-revalidate` and
//! `stale-if-error` (RFC 5861) allow it, or the operator's out-of-band permission does, and never when the
//! response forbids it.

use std::time::{Duration, SystemTime};

use http::request;

use super::{
    date,
    directives::FieldScope,
    stored::{CacheRules, StoredResponse, request_directives},
};

/// Why a stale stored response would be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleUse {
    /// At once, while one request in the background revalidates it: the response's
    /// `stale-while-revalidate=N` (RFC 5861 §3).
    WhileRevalidate,
    /// Because the origin failed, timed out, or answered `500`, `502`, `503` or `504` (RFC 5861 §4): the
    /// response's `stale-if-error=N`, or, past that, the operator's permission (`--use-stale-on-error`,
    /// nginx's `proxy_cache_use_stale`) for up to `operator` of staleness (zero: none).
    OnError { operator: Duration },
}

impl StoredResponse {
    /// Seconds this response has been stale at `now`: past its freshness lifetime (RFC 9111 §4.2), or since
    /// `invalidated_at` when an invalidation made it stale (SPEC §10: windows count from the invalidation),
    /// whichever is longer. `None` while it is fresh and not invalidated.
    pub fn staleness(&self, now: SystemTime, invalidated_at: Option<SystemTime>) -> Option<u64> {
        let now_ms = date::unix_millis(now);
        let freshness = self.freshness();
        let expired = (!freshness.is_fresh(now_ms)).then(|| freshness.current_age(now_ms) - freshness.lifetime);
        let invalidated = invalidated_at.map(|at| now_ms.saturating_sub(date::unix_millis(at)) / 1000);
        expired.max(invalidated)
    }

    /// Whether this response may answer `request` stale at `now`, for `why` (RFC 9111 §4.2.4).
    ///
    /// Never when the response forbids it: `no-cache`, `must-revalidate` or `proxy-revalidate` (§5.2.2).
    /// `s-maxage` implies `proxy-revalidate` for a shared cache, so it forbids the operator's permission;
    /// a `stale-while-revalidate` or `stale-if-error` beside it is the origin's own explicit leave and is
    /// honoured (as at Cloudflare and Fastly). A response still fresh is not stale (`false`).
    /// `WhileRevalidate` also not when request directives are honoured and the request asks for a
    /// validated response (`no-cache` or `Pragma: no-cache`, `max-age`, `min-fresh`, §5.2.1, §5.4).
    pub fn may_serve_stale(
        &self,
        request: &request::Parts,
        why: StaleUse,
        now: SystemTime,
        invalidated_at: Option<SystemTime>,
        rules: &CacheRules,
    ) -> bool {
        let d = self.directives();
        if d.no_cache == Some(FieldScope::All) || d.must_revalidate || d.proxy_revalidate {
            return false;
        }
        let Some(staleness) = self.staleness(now, invalidated_at) else { return false };
        let within = |window: Option<super::directives::Delta>| window.is_some_and(|w| staleness <= w.secs_or_zero());
        match why {
            StaleUse::WhileRevalidate => {
                if rules.honor_request_directives {
                    let asked = request_directives(&request.headers);
                    if asked.no_cache.is_some() || asked.max_age.is_some() || asked.min_fresh.is_some() {
                        return false;
                    }
                }
                within(d.stale_while_revalidate)
            }
            StaleUse::OnError { operator } => {
                within(d.stale_if_error)
                    || (d.s_maxage.is_none() && staleness <= operator.as_secs() && !operator.is_zero())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};

    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn get(pairs: &[(&str, &str)]) -> request::Parts {
        let mut parts = Request::get("/x").body(()).unwrap().into_parts().0;
        for (n, v) in pairs {
            parts.headers.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        parts
    }

    /// A response received at T0 with this `Cache-Control`.
    fn stored(cache_control: &str) -> StoredResponse {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_str(cache_control).unwrap());
        h.insert("date", date::format(at(T0)));
        StoredResponse::admit(&get(&[]), StatusCode::OK, &h, at(T0), at(T0), &CacheRules::default()).unwrap()
    }

    fn may(s: &StoredResponse, why: StaleUse, secs_after_t0: u64) -> bool {
        s.may_serve_stale(&get(&[]), why, at(T0 + secs_after_t0), None, &CacheRules::default())
    }

    const ON_ERROR: StaleUse = StaleUse::OnError { operator: Duration::ZERO };

    #[test]
    fn staleness_counts_from_the_end_of_freshness_or_the_invalidation() {
        let s = stored("max-age=60");
        assert_eq!(s.staleness(at(T0 + 59), None), None);
        assert_eq!(s.staleness(at(T0 + 60), Some(at(T0 + 60))), Some(0));
        assert_eq!(s.staleness(at(T0 + 90), None), Some(30));
        // Invalidated while fresh: stale from the invalidation on.
        assert_eq!(s.staleness(at(T0 + 20), Some(at(T0 + 10))), Some(10));
        // Invalidated long after it went stale: the longer count holds.
        assert_eq!(s.staleness(at(T0 + 200), Some(at(T0 + 190))), Some(140));
    }

    #[test]
    fn stale_while_revalidate_is_a_window_past_freshness() {
        let s = stored("max-age=60, stale-while-revalidate=30");
        assert!(!may(&s, StaleUse::WhileRevalidate, 30), "fresh is not stale");
        assert!(may(&s, StaleUse::WhileRevalidate, 61));
        assert!(may(&s, StaleUse::WhileRevalidate, 90));
        assert!(!may(&s, StaleUse::WhileRevalidate, 91));
        assert!(!may(&s, ON_ERROR, 61), "stale-while-revalidate does not cover errors");
        assert!(!may(&stored("max-age=60"), StaleUse::WhileRevalidate, 61));
    }

    #[test]
    fn stale_if_error_is_a_window_past_freshness_and_the_operator_may_extend_it() {
        let s = stored("max-age=60, stale-if-error=100");
        assert!(may(&s, ON_ERROR, 160));
        assert!(!may(&s, ON_ERROR, 161));
        assert!(!may(&s, StaleUse::WhileRevalidate, 61));
        let day = StaleUse::OnError { operator: Duration::from_secs(86_400) };
        assert!(may(&s, day, 10_000));
        assert!(may(&stored("max-age=60"), day, 60 + 86_400));
        assert!(!may(&stored("max-age=60"), day, 61 + 86_400));
    }

    #[test]
    fn what_the_response_forbids_is_never_served_stale() {
        let day = StaleUse::OnError { operator: Duration::from_secs(86_400) };
        for cc in ["must-revalidate", "proxy-revalidate", "no-cache"] {
            let s = stored(&format!("max-age=60, stale-while-revalidate=99, stale-if-error=99, {cc}"));
            for why in [StaleUse::WhileRevalidate, ON_ERROR, day] {
                assert!(!may(&s, why, 61), "{cc} {why:?}");
            }
        }
        // s-maxage forbids the operator's permission, not the origin's own window beside it.
        let s = stored("s-maxage=60, stale-while-revalidate=30, stale-if-error=30");
        assert!(may(&s, StaleUse::WhileRevalidate, 61));
        assert!(may(&s, ON_ERROR, 61));
        assert!(!may(&s, day, 100));
    }

    #[test]
    fn an_invalidation_starts_the_windows() {
        let s = stored("max-age=3600, stale-while-revalidate=30");
        let rules = CacheRules::default();
        let why = StaleUse::WhileRevalidate;
        assert!(s.may_serve_stale(&get(&[]), why, at(T0 + 130), Some(at(T0 + 100)), &rules));
        assert!(!s.may_serve_stale(&get(&[]), why, at(T0 + 131), Some(at(T0 + 100)), &rules));
    }

    #[test]
    fn a_request_asking_for_validation_is_not_answered_while_revalidating_when_honoured() {
        let s = stored("max-age=60, stale-while-revalidate=30");
        let asks = get(&[("cache-control", "no-cache")]);
        let now = at(T0 + 61);
        assert!(s.may_serve_stale(&asks, StaleUse::WhileRevalidate, now, None, &CacheRules::default()));
        let honour = CacheRules { honor_request_directives: true, ..CacheRules::default() };
        assert!(!s.may_serve_stale(&asks, StaleUse::WhileRevalidate, now, None, &honour));
        let pragma = get(&[("pragma", "no-cache")]);
        assert!(!s.may_serve_stale(&pragma, StaleUse::WhileRevalidate, now, None, &honour));
        assert!(s.may_serve_stale(&get(&[]), StaleUse::WhileRevalidate, now, None, &honour));
    }
}
