//! HTTP-date (RFC 9110 §5.6.7): parsed in all three forms a recipient must accept, written only as
//! IMF-fixdate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// Parses an HTTP-date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), or the obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms. Exactly those shapes:
/// extra spaces, another zone or any other form is `None` (RFC 9110 §5.6.7). Dates before 1970 are `None`.
pub fn parse(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// Formats `t` as an IMF-fixdate header value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Times after year
/// 9999 are written as the last second of 9999.
pub fn format(t: SystemTime) -> HeaderValue {
    // 9999-12-31T23:59:59Z, the latest time an IMF-fixdate can say.
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    let t = t.min(UNIX_EPOCH + LAST);
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).expect("an HTTP-date is a valid header value")
}

/// Unix milliseconds of `t` (0 before 1970, saturating far in the future).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` unix milliseconds name.
pub fn from_unix_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<u64> {
        parse(&HeaderValue::from_str(s).unwrap()).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn accepts_the_three_forms_and_nothing_else() {
        // RFC 9110 §5.6.7's own examples, all the same instant.
        let want = Some(784_111_777);
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(at("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(at("Sun Nov  6 08:49:37 1994"), want);
        for bad in [
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994  08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37  GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "0",
            "-1",
            "",
            "Thu, 01 Jan 1960 00:00:00 GMT",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_imf_fixdate_even_far_in_the_future() {
        assert_eq!(format(UNIX_EPOCH + Duration::from_secs(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(UNIX_EPOCH + Duration::from_secs(u64::MAX / 4)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
