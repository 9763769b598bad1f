//! Timestamps stored as unix microseconds and shown as Cloudflare does: RFC 3339, UTC, `Z`, fractional seconds.

use std::fmt;

use time::OffsetDateTime;

/// A point in time with microsecond precision, from 0001-01-01 to 9999-12-31 (the years RFC 3339 can
/// write): arithmetic saturates at those ends, so every timestamp can be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 0001-01-01T00:00:00Z, the earliest time shown.
    pub const MIN: Self = Self(-62_135_596_800_000_000);
    /// 9999-12-31T23:59:59.999999Z, the latest time shown.
    pub const MAX: Self = Self(253_402_300_799_999_999);

    /// The current time.
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self((nanos / 1_000) as i64)
    }

    /// From unix microseconds, as stored; clamped to [`Self::MIN`]..=[`Self::MAX`].
    pub fn from_micros(micros: i64) -> Self {
        Self(micros.clamp(Self::MIN.0, Self::MAX.0))
    }

    /// Unix microseconds, as stored.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// This time plus a duration, saturating at [`Self::MAX`].
    pub fn plus(self, d: std::time::Duration) -> Self {
        Self::from_micros(self.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    }

    /// This time minus a duration, saturating at [`Self::MIN`].
    pub fn minus(self, d: std::time::Duration) -> Self {
        Self::from_micros(self.0.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    }
}

impl fmt::Display for Timestamp {
    /// `2023-10-02T10:00:00.12345Z`: trailing zeros of the fraction trimmed, at least one digit kept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let dt = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| fmt::Error)?;
        let mut frac = format!("{micros:06}");
        while frac.len() > 1 && frac.ends_with('0') {
            frac.pop();
        }
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            frac
        )
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_cloudflare() {
        // 2023-10-02T10:00:00.12345Z
        let t = Timestamp::from_micros(1_696_240_800_123_450);
        assert_eq!(t.to_string(), "2023-10-02T10:00:00.12345Z");
        let whole = Timestamp::from_micros(1_696_240_800_000_000);
        assert_eq!(whole.to_string(), "2023-10-02T10:00:00.0Z");
    }

    #[test]
    fn saturates_at_the_years_rfc_3339_can_write() {
        // `token create --expires-in 3000000d` once stored a time past year 9999, which could not be shown.
        let far = Timestamp::now().plus(std::time::Duration::from_secs(3_000_000 * 86_400));
        assert_eq!(far, Timestamp::MAX);
        assert_eq!(far.to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(Timestamp::from_micros(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_micros(i64::MIN).to_string(), "0001-01-01T00:00:00.0Z");
        assert_eq!(Timestamp::now().minus(std::time::Duration::MAX), Timestamp::MIN);
    }

    #[test]
    fn parses_back_as_rfc3339() {
        let t = Timestamp::now();
        let parsed = OffsetDateTime::parse(&t.to_string(), &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!((parsed.unix_timestamp_nanos() / 1000) as i64, t.as_micros());
    }
}
