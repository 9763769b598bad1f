//! HTTP-date (RFC 9110 §5.6.7): read in all three forms a recipient must accept, matched case-insensitively
//! as RFC 9111 §4.2 asks of a cache; written only as IMF-fixdate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// Parses an HTTP-date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), or the obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms. Names match in any
/// case; the day name is not checked against the date (it carries nothing the rest does not). Anything else
/// — extra or missing spaces, another zone, an impossible date — is `None`.
pub fn parse(value: &HeaderValue) -> Option<SystemTime> {
    parse_str(value.to_str().ok()?.trim(), SystemTime::now())
}

/// [`parse`], with `now` deciding the century of an RFC 850 two-digit year.
fn parse_str(s: &str, now: SystemTime) -> Option<SystemTime> {
    let s = s.as_bytes();
    if let Some((day_name, rest)) = split_once(s, b", ") {
        if DAYS.iter().any(|d| day_name.eq_ignore_ascii_case(d.as_bytes())) {
            return imf_fixdate(rest);
        }
        if LONG_DAYS.iter().any(|d| day_name.eq_ignore_ascii_case(d.as_bytes())) {
            return rfc850(rest, now);
        }
        return None;
    }
    asctime(s)
}

/// `DD Mon YYYY hh:mm:ss GMT`
fn imf_fixdate(s: &[u8]) -> Option<SystemTime> {
    let [d1, d2, b' ', m1, m2, m3, b' ', y1, y2, y3, y4, b' ', time @ .., b' ', g, m, t] = s else { return None };
    gmt(*g, *m, *t)?;
    let day = digits(&[*d1, *d2])?;
    let year = digits(&[*y1, *y2, *y3, *y4])?;
    build(year, month(&[*m1, *m2, *m3])?, day, time)
}

/// `DD-Mon-YY hh:mm:ss GMT`, the year within 50 years of `now` (RFC 9110 §5.6.7).
fn rfc850(s: &[u8], now: SystemTime) -> Option<SystemTime> {
    let [d1, d2, b'-', m1, m2, m3, b'-', y1, y2, b' ', time @ .., b' ', g, m, t] = s else { return None };
    gmt(*g, *m, *t)?;
    let day = digits(&[*d1, *d2])?;
    let yy = digits(&[*y1, *y2])?;
    let this_year = time::OffsetDateTime::from(now).year();
    let mut year = this_year - this_year.rem_euclid(100) + i32::try_from(yy).ok()?;
    if year > this_year + 50 {
        year -= 100;
    } else if year <= this_year - 50 {
        year += 100;
    }
    build(u32::try_from(year).ok()?, month(&[*m1, *m2, *m3])?, day, time)
}

/// `Day Mon DD hh:mm:ss YYYY`, the day of the month two digits or a space and one digit.
fn asctime(s: &[u8]) -> Option<SystemTime> {
    let [w1, w2, w3, b' ', m1, m2, m3, b' ', d1, d2, b' ', time @ .., b' ', y1, y2, y3, y4] = s else { return None };
    if !DAYS.iter().any(|d| [*w1, *w2, *w3].eq_ignore_ascii_case(d.as_bytes())) {
        return None;
    }
    let day = if *d1 == b' ' { digits(&[*d2])? } else { digits(&[*d1, *d2])? };
    let year = digits(&[*y1, *y2, *y3, *y4])?;
    build(year, month(&[*m1, *m2, *m3])?, day, time)
}

fn split_once<'a>(s: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = s.windows(sep.len()).position(|w| w == sep)?;
    Some((&s[..at], &s[at + sep.len()..]))
}

fn gmt(g: u8, m: u8, t: u8) -> Option<()> {
    [g, m, t].eq_ignore_ascii_case(b"GMT").then_some(())
}

fn month(name: &[u8]) -> Option<u32> {
    MONTHS.iter().position(|m| name.eq_ignore_ascii_case(m.as_bytes())).map(|i| i as u32 + 1)
}

/// Exactly these ASCII digits, as a number.
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
}

/// The instant of a calendar date and an `hh:mm:ss` time in UTC; a leap second counts as the second before.
fn build(year: u32, month: u32, day: u32, time: &[u8]) -> Option<SystemTime> {
    let [h1, h2, b':', n1, n2, b':', s1, s2] = time else { return None };
    let (hour, minute, second) = (digits(&[*h1, *h2])?, digits(&[*n1, *n2])?, digits(&[*s1, *s2])?);
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    let clock =
        time::Time::from_hms(u8::try_from(hour).ok()?, u8::try_from(minute).ok()?, u8::try_from(second.min(59)).ok()?)
            .ok()?;
    let unix = time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp();
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs)),
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(unix.unsigned_abs())),
    }
}

/// Formats `t` as an IMF-fixdate header value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Times after year
/// 9999 are written as the last second of 9999.
pub fn format(t: SystemTime) -> HeaderValue {
    // 9999-12-31T23:59:59Z, the latest time an IMF-fixdate can say.
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    let t = t.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST);
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

    fn at(s: &str) -> Option<i64> {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_000_000); // late 2026
        parse_str(s, now).map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        })
    }

    #[test]
    fn accepts_the_three_forms_in_any_case_and_nothing_else() {
        // RFC 9110 §5.6.7's own examples, all the same instant.
        let want = Some(784_111_777);
        for ok in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun Nov 06 08:49:37 1994",
            "SUN, 06 NOV 1994 08:49:37 gmt",
            "sunday, 06-nov-94 08:49:37 Gmt",
            // The day name is redundant: a wrong one does not make the date unreadable.
            "Thu, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(at(ok), want, "{ok:?}");
        }
        for bad in [
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994  08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37  GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "0",
            "-1",
            "",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
        assert_eq!(at("Thu, 01 Jan 1960 00:00:00 GMT"), Some(-315_619_200));
        assert_eq!(at("Sun, 06 Nov 1994 08:49:60 GMT"), Some(784_111_799), "a leap second");
    }

    #[test]
    fn a_two_digit_year_is_the_one_within_fifty_years() {
        let year = |s: &str| at(s).map(|t| time::OffsetDateTime::from_unix_timestamp(t).unwrap().year());
        assert_eq!(year("Monday, 01-Jan-30 00:00:00 GMT"), Some(2030));
        assert_eq!(year("Monday, 01-Jan-76 00:00:00 GMT"), Some(2076));
        assert_eq!(year("Monday, 01-Jan-77 00:00:00 GMT"), Some(1977));
        assert_eq!(year("Monday, 01-Jan-94 00:00:00 GMT"), Some(1994));
    }

    #[test]
    fn formats_imf_fixdate_even_far_away() {
        assert_eq!(format(UNIX_EPOCH + Duration::from_secs(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(UNIX_EPOCH + Duration::from_secs(u64::MAX / 4)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
