//! Range requests answered from a stored `200` (RFC 9110 §14): which bytes a `Range` asks for, whether
//! `If-Range` lets it apply (§13.1.5), and the `206` or `416` that follows.
//!
//! One range is answered `206 Partial Content` with `Content-Range: bytes FIRST-LAST/LENGTH`; a range that
//! starts at or past the end (or `-0`, or any range of an empty representation) is `416 Range Not
//! Satisfiable` with `Content-Range: bytes */LENGTH`. Several ranges are answered with the whole `200` (a
//! server may ignore `Range`, §14.2): no `multipart/byteranges`. A `Range` that does not parse, or in a unit
//! other than `bytes`, is ignored the same way.

use std::ops::Range;

use http::{
    HeaderMap, HeaderValue,
    header::{DATE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE},
};

use super::date;

/// Most range specs read from one `Range`; a field with more is answered whole, like any multi-range one.
const MAX_SPECS: usize = 64;

/// One `byte-range-spec` or `suffix-byte-range-spec` (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// `FIRST-` or `FIRST-LAST` (inclusive).
    From { first: u64, last: Option<u64> },
    /// `-N`: the last N bytes.
    Suffix(u64),
}

/// What the request's `Range` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// One range.
    One(Spec),
    /// Several: answered with the whole representation.
    Several,
}

/// What to answer, for a representation of a known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The whole representation, `200`.
    Whole,
    /// These bytes, `206`.
    Partial(Range<u64>),
    /// `416`.
    Unsatisfiable,
}

/// The request's `Range`, if it is one this cache answers: a single field, `bytes=` and valid specs.
pub fn asked(request: &HeaderMap) -> Option<Asked> {
    let mut fields = request.get_all(RANGE).iter();
    let value = fields.next()?.to_str().ok()?;
    if fields.next().is_some() {
        return None;
    }
    let (unit, set) = value.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let first = parse_spec(specs.next()?)?;
    let mut more = 0;
    for spec in specs {
        parse_spec(spec)?;
        more += 1;
        if more >= MAX_SPECS {
            break;
        }
    }
    Some(if more == 0 { Asked::One(first) } else { Asked::Several })
}

fn parse_spec(s: &str) -> Option<Spec> {
    let (first, last) = s.split_once('-')?;
    let number = |t: &str| -> Option<u64> {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) { None } else { t.parse().ok() }
    };
    if first.trim().is_empty() {
        return number(last).map(Spec::Suffix);
    }
    let first = number(first)?;
    if last.trim().is_empty() {
        return Some(Spec::From { first, last: None });
    }
    let last = number(last)?;
    // "A byte-range-spec is invalid if the last-pos value is present and less than the first-pos."
    (last >= first).then_some(Spec::From { first, last: Some(last) })
}

/// What to answer for `asked` of a representation of `length` bytes (RFC 9110 §14.1.2, §15.3.7, §15.5.17).
pub fn decide(asked: Asked, length: u64) -> Decision {
    let Asked::One(spec) = asked else { return Decision::Whole };
    match spec {
        Spec::From { first, .. } if first >= length => Decision::Unsatisfiable,
        Spec::From { first, last } => Decision::Partial(first..last.map_or(length, |l| l.min(length - 1) + 1)),
        Spec::Suffix(0) => Decision::Unsatisfiable,
        Spec::Suffix(_) if length == 0 => Decision::Unsatisfiable,
        Spec::Suffix(n) => Decision::Partial(length.saturating_sub(n)..length),
    }
}

/// Whether the request's `If-Range` (if any) lets its `Range` apply to the stored response with these
/// header fields (RFC 9110 §13.1.5): an entity tag must match the stored `ETag` by strong comparison; a
/// date must equal the stored `Last-Modified`, which must be strong (at least a second before the stored
/// `Date`, §8.8.2.2). Anything else, including a weak tag, means the whole representation is sent.
pub fn if_range_holds(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(condition) = request.get(IF_RANGE) else { return true };
    let Ok(condition) = condition.to_str() else { return false };
    let condition = condition.trim();
    if condition.starts_with('"') || condition.starts_with("W/") {
        let strong = |v: &str| v.starts_with('"') && v.len() >= 2 && v.ends_with('"');
        let etag = stored.get(ETAG).and_then(|v| v.to_str().ok()).map(str::trim);
        return strong(condition) && etag.is_some_and(|e| strong(e) && e == condition);
    }
    let millis = |v: Option<&HeaderValue>| v.and_then(date::parse).map(date::unix_millis);
    let asked = HeaderValue::from_str(condition).ok();
    match (millis(asked.as_ref()), millis(stored.get(LAST_MODIFIED)), millis(stored.get(DATE))) {
        (Some(asked), Some(modified), Some(dated)) => asked == modified && dated >= modified + 1000,
        _ => false,
    }
}

/// `Content-Range` of a `206`: `bytes FIRST-LAST/LENGTH`.
pub fn content_range(range: &Range<u64>, length: u64) -> HeaderValue {
    let value = format!("bytes {}-{}/{length}", range.start, range.end - 1);
    HeaderValue::from_str(&value).expect("digits, a dash and a slash")
}

/// `Content-Range` of a `416`: `bytes */LENGTH`.
pub fn unsatisfied_range(length: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{length}")).expect("digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(value: &str) -> Option<Asked> {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_str(value).unwrap());
        asked(&h)
    }

    #[test]
    fn reads_one_range_and_ignores_what_it_does_not_answer() {
        assert_eq!(ask("bytes=0-9"), Some(Asked::One(Spec::From { first: 0, last: Some(9) })));
        assert_eq!(ask("Bytes = 5-"), Some(Asked::One(Spec::From { first: 5, last: None })));
        assert_eq!(ask("bytes=-20"), Some(Asked::One(Spec::Suffix(20))));
        assert_eq!(ask("bytes=0-1, 5-6"), Some(Asked::Several));
        for ignored in ["items=0-1", "bytes=5-1", "bytes=a-b", "bytes=", "bytes=-", "bytes=1-2-3", "0-9", "bytes=+1-2"]
        {
            assert_eq!(ask(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn decides_by_the_length() {
        let one = |first, last| Asked::One(Spec::From { first, last });
        assert_eq!(decide(one(0, Some(9)), 100), Decision::Partial(0..10));
        assert_eq!(decide(one(90, Some(200)), 100), Decision::Partial(90..100));
        assert_eq!(decide(one(99, None), 100), Decision::Partial(99..100));
        assert_eq!(decide(one(100, None), 100), Decision::Unsatisfiable);
        assert_eq!(decide(Asked::One(Spec::Suffix(30)), 100), Decision::Partial(70..100));
        assert_eq!(decide(Asked::One(Spec::Suffix(300)), 100), Decision::Partial(0..100));
        assert_eq!(decide(Asked::One(Spec::Suffix(0)), 100), Decision::Unsatisfiable);
        assert_eq!(decide(Asked::One(Spec::Suffix(5)), 0), Decision::Unsatisfiable);
        assert_eq!(decide(one(0, Some(0)), 0), Decision::Unsatisfiable);
        assert_eq!(decide(Asked::Several, 100), Decision::Whole);
        assert_eq!(content_range(&(90..100), 100), "bytes 90-99/100");
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let headers = |pairs: &[(http::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.insert(n, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let stored = headers(&[
            (ETAG, "\"v1\""),
            (LAST_MODIFIED, "Mon, 01 Jan 2024 00:00:00 GMT"),
            (DATE, "Tue, 02 Jan 2024 00:00:00 GMT"),
        ]);
        assert!(if_range_holds(&HeaderMap::new(), &stored));
        assert!(if_range_holds(&headers(&[(IF_RANGE, "\"v1\"")]), &stored));
        assert!(!if_range_holds(&headers(&[(IF_RANGE, "\"v2\"")]), &stored));
        assert!(!if_range_holds(&headers(&[(IF_RANGE, "W/\"v1\"")]), &stored));
        assert!(if_range_holds(&headers(&[(IF_RANGE, "Mon, 01 Jan 2024 00:00:00 GMT")]), &stored));
        assert!(!if_range_holds(&headers(&[(IF_RANGE, "Mon, 01 Jan 2024 00:00:01 GMT")]), &stored));
        let weak_date =
            headers(&[(LAST_MODIFIED, "Mon, 01 Jan 2024 00:00:00 GMT"), (DATE, "Mon, 01 Jan 2024 00:00:00 GMT")]);
        assert!(!if_range_holds(&headers(&[(IF_RANGE, "Mon, 01 Jan 2024 00:00:00 GMT")]), &weak_date));
        let weak_tag = headers(&[(ETAG, "W/\"v1\"")]);
        assert!(!if_range_holds(&headers(&[(IF_RANGE, "W/\"v1\"")]), &weak_tag));
    }
}
