//! Freshness (RFC 9111 §4.2): a stored response's freshness lifetime and its current age.

use std::time::Duration;

use http::{
    HeaderMap, StatusCode,
    header::{AGE, DATE, EXPIRES, LAST_MODIFIED},
};

use super::{
    date,
    directives::{DELTA_MAX, Directives, Source},
};

/// Status codes defined as heuristically cacheable (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501)
}

/// What the cache derives from a stored response's header fields and times, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime, seconds (RFC 9111 §4.2.1).
    pub lifetime: u64,
    /// Whether the lifetime was given by the origin (`s-maxage`, `max-age`, `Expires`) rather than guessed
    /// (§4.2.2) or absent.
    pub explicit: bool,
    /// `corrected_initial_age` of §4.2.3, seconds.
    pub initial_age: u64,
    /// When the response was received, unix milliseconds.
    pub response_time: u64,
}

impl Freshness {
    /// Derives freshness for a response received between `request_time` and `response_time` (unix
    /// milliseconds). `heuristic_max` bounds a heuristic lifetime (zero: no heuristics).
    pub fn derive(
        status: StatusCode,
        headers: &HeaderMap,
        directives: &Directives,
        source: Source,
        request_time: u64,
        response_time: u64,
        heuristic_max: Duration,
    ) -> Self {
        let response_secs = response_time / 1000;
        // The Date the origin sent; a missing or invalid one is the time of receipt (RFC 9110 §6.6.1).
        let date_secs =
            single(headers, DATE).and_then(date::parse).map_or(response_secs, |d| date::unix_millis(d) / 1000);
        let (lifetime, explicit) = if let Some(s) = directives.s_maxage {
            (s.secs_or_zero(), true)
        } else if let Some(m) = directives.max_age {
            (m.secs_or_zero(), true)
        } else if source == Source::CacheControl && headers.contains_key(EXPIRES) {
            // An invalid Expires, a list of them, or "0" means already expired (RFC 9111 §5.3).
            let expires = single(headers, EXPIRES).and_then(date::parse).map(|t| date::unix_millis(t) / 1000);
            (expires.map_or(0, |e| e.saturating_sub(date_secs)), true)
        } else if !heuristic_max.is_zero() && (heuristically_cacheable(status) || directives.public) {
            // 10% of the time since last modification, at most `heuristic_max` (RFC 9111 §4.2.2).
            let modified = single(headers, LAST_MODIFIED).and_then(date::parse).map(|t| date::unix_millis(t) / 1000);
            let guess = modified.map_or(0, |m| date_secs.saturating_sub(m) / 10);
            (guess.min(heuristic_max.as_secs()), false)
        } else {
            (0, false)
        };
        // RFC 9111 §4.2.3, with `Age` read as §5.1 says: the first member of a list (over all lines) counts,
        // and an invalid value is ignored.
        let age_value = headers
            .get(AGE)
            .and_then(|first_line| parse_age(first_line.as_bytes().split(|&b| b == b',').next().unwrap_or_default()))
            .unwrap_or(0);
        let apparent_age = response_secs.saturating_sub(date_secs);
        let response_delay = response_time.saturating_sub(request_time) / 1000;
        let corrected_age_value = age_value.saturating_add(response_delay);
        Self {
            lifetime: lifetime.min(DELTA_MAX),
            explicit,
            initial_age: apparent_age.max(corrected_age_value).min(DELTA_MAX),
            response_time,
        }
    }

    /// `current_age` of RFC 9111 §4.2.3 at `now` (unix milliseconds), seconds, at most 2^31.
    pub fn current_age(&self, now: u64) -> u64 {
        let resident = now.saturating_sub(self.response_time) / 1000;
        self.initial_age.saturating_add(resident).min(DELTA_MAX)
    }

    /// Fresh at `now`: lifetime greater than current age.
    pub fn is_fresh(&self, now: u64) -> bool {
        self.lifetime > self.current_age(now)
    }

    /// What is left of an explicit lifetime at `now` (zero for a heuristic or no lifetime).
    pub fn explicit_ttl(&self, now: u64) -> Duration {
        if self.explicit {
            Duration::from_secs(self.lifetime.saturating_sub(self.current_age(now)))
        } else {
            Duration::ZERO
        }
    }
}

/// The value of a field that must appear on one line: `None` when absent or repeated.
fn single(headers: &HeaderMap, name: http::HeaderName) -> Option<&http::HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() { None } else { Some(first) }
}

/// `Age = delta-seconds` exactly: digits only, saturating at 2^31.
fn parse_age(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))).min(DELTA_MAX))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn derive(pairs: &[(&str, &str)]) -> Freshness {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let (d, source) = Directives::response(&h);
        Freshness::derive(StatusCode::OK, &h, &d, source, NOW, NOW, Duration::from_secs(86_400))
    }

    fn date(offset_secs: i64) -> String {
        let t = date::from_unix_millis(NOW.checked_add_signed(offset_secs * 1000).unwrap());
        date::format(t).to_str().unwrap().to_owned()
    }

    #[test]
    fn lifetime_precedence_is_s_maxage_max_age_expires_heuristic() {
        let d = date(0);
        assert_eq!(derive(&[("cache-control", "max-age=60, s-maxage=10")]).lifetime, 10);
        assert_eq!(derive(&[("cache-control", "max-age=60"), ("expires", &date(600)), ("date", &d)]).lifetime, 60);
        assert_eq!(derive(&[("expires", &date(600)), ("date", &d)]).lifetime, 600);
        assert_eq!(derive(&[("expires", "0"), ("date", &d)]).lifetime, 0);
        let heuristic = derive(&[("last-modified", &date(-1000)), ("date", &d)]);
        assert_eq!((heuristic.lifetime, heuristic.explicit), (100, false));
        assert_eq!(derive(&[("last-modified", &date(-10_000_000)), ("date", &d)]).lifetime, 86_400);
        assert_eq!(derive(&[]).lifetime, 0);
    }

    #[test]
    fn targeted_fields_take_precedence_over_cache_control_and_expires() {
        let d = date(0);
        let f = derive(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=30"),
            ("expires", &date(600)),
            ("date", &d),
        ]);
        assert_eq!(f.lifetime, 30);
        let f = derive(&[("cdn-cache-control", "max-age=30"), ("cloudflare-cdn-cache-control", "max-age=5")]);
        assert_eq!(f.lifetime, 5);
        // A targeted field that does not parse is ignored (RFC 9213 §2.1).
        let f = derive(&[("cdn-cache-control", "MAX-AGE=30"), ("cache-control", "max-age=7")]);
        assert_eq!(f.lifetime, 7);
        // Expires is ignored once a targeted field applies.
        let f = derive(&[("cdn-cache-control", "public"), ("expires", &date(600)), ("date", &d)]);
        assert_eq!(f.lifetime, 0);
    }

    #[test]
    fn age_is_its_first_member_invalid_ones_are_ignored_and_ages_saturate() {
        assert_eq!(derive(&[("age", "30")]).initial_age, 30);
        // RFC 9111 §5.1: the first member of a list counts, over lines too.
        for (age, want) in [("7200, 0", 7200), ("0,7200", 0), ("0, 0", 0), (" 3600 , 3600", 3600)] {
            assert_eq!(derive(&[("age", age)]).initial_age, want, "{age:?}");
        }
        assert_eq!(derive(&[("age", "7200"), ("age", "0")]).initial_age, 7200);
        assert_eq!(derive(&[("age", "0"), ("age", "7200")]).initial_age, 0);
        // An invalid value is ignored.
        for bad in ["abc", "-1", "7200.0", "30;x=1", "", "1e3"] {
            assert_eq!(derive(&[("age", bad)]).initial_age, 0, "{bad:?}");
        }
        assert_eq!(derive(&[("age", "18446744073709551615")]).initial_age, DELTA_MAX);
        assert_eq!(derive(&[("age", "99999999999999999999")]).initial_age, DELTA_MAX);
        assert!(!derive(&[("age", "99999999999999999999"), ("cache-control", "max-age=3600")]).is_fresh(NOW));
        assert_eq!(derive(&[("age", "5")]).current_age(u64::MAX), DELTA_MAX);
    }

    #[test]
    fn apparent_age_counts_a_slow_date() {
        let f = derive(&[("date", &date(-7200)), ("cache-control", "max-age=3600")]);
        assert_eq!(f.initial_age, 7200);
        assert!(!f.is_fresh(NOW));
    }

    #[test]
    fn explicit_ttl_is_what_is_left_of_an_explicit_lifetime() {
        let f = derive(&[("cache-control", "max-age=100"), ("age", "40")]);
        assert_eq!(f.explicit_ttl(NOW), Duration::from_secs(60));
        assert_eq!(f.explicit_ttl(NOW + 200_000), Duration::ZERO);
        let guessed = derive(&[("last-modified", &date(-1000)), ("date", &date(0))]);
        assert_eq!(guessed.explicit_ttl(NOW), Duration::ZERO);
    }
}
