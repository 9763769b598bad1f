use std::time::{Duration, UNIX_EPOCH};

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode,
    header::{IF_MODIFIED_SINCE, IF_NONE_MATCH},
    request,
};
use proptest::prelude::*;

use super::*;
use crate::http_cache::codec;

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn get(pairs: &[(&str, &str)]) -> request::Parts {
    let mut parts = Request::get("/x").body(()).unwrap().into_parts().0;
    parts.headers = headers(pairs);
    parts
}

fn rules() -> CacheRules {
    CacheRules::default()
}

fn admit(status: u16, pairs: &[(&str, &str)]) -> Result<StoredResponse, NotStorable> {
    StoredResponse::admit(&get(&[]), StatusCode::from_u16(status).unwrap(), &headers(pairs), at(T0), at(T0), &rules())
}

fn date(secs: u64) -> String {
    date::format(at(secs)).to_str().unwrap().to_owned()
}

#[test]
fn storability_follows_rfc_9111_section_3_and_cloudflare() {
    assert!(admit(200, &[("cache-control", "max-age=60")]).is_ok());
    assert!(admit(500, &[("cache-control", "max-age=60")]).is_ok(), "any final status with explicit freshness");
    assert!(admit(200, &[]).is_ok(), "200 is heuristically cacheable");
    assert_eq!(admit(201, &[]).unwrap_err(), NotStorable::NoFreshness);
    assert!(admit(599, &[("cache-control", "public")]).is_ok());
    assert_eq!(admit(200, &[("cache-control", "nO-StOrE, max-age=60")]).unwrap_err(), NotStorable::NoStore);
    assert_eq!(admit(200, &[("cache-control", "private, max-age=60")]).unwrap_err(), NotStorable::Private);
    assert_eq!(admit(206, &[("cache-control", "max-age=60")]).unwrap_err(), NotStorable::Status);
    assert_eq!(admit(304, &[("cache-control", "max-age=60")]).unwrap_err(), NotStorable::Status);
    assert_eq!(admit(200, &[("cache-control", "max-age=60"), ("vary", "a, *")]).unwrap_err(), NotStorable::VaryStar);
    assert_eq!(
        admit(200, &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]).unwrap_err(),
        NotStorable::SetCookie
    );
    // must-understand: stored (no-store ignored) only for a status this cache understands.
    assert!(admit(200, &[("cache-control", "max-age=60, no-store, must-understand")]).is_ok());
    assert_eq!(
        admit(599, &[("cache-control", "max-age=60, no-store, must-understand")]).unwrap_err(),
        NotStorable::Status
    );
    // Credentials: only when the response says a shared cache may reuse it.
    let authed = get(&[("authorization", "Bearer x")]);
    let judge = |cc: &str| {
        StoredResponse::admit(&authed, StatusCode::OK, &headers(&[("cache-control", cc)]), at(T0), at(T0), &rules())
    };
    assert_eq!(judge("max-age=60").unwrap_err(), NotStorable::Authorization);
    for ok in ["public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"] {
        assert!(judge(ok).is_ok(), "{ok}");
    }
    let mut post = get(&[]);
    post.method = Method::POST;
    let judged = StoredResponse::admit(
        &post,
        StatusCode::OK,
        &headers(&[("cache-control", "max-age=60")]),
        at(T0),
        at(T0),
        &rules(),
    );
    assert_eq!(judged.unwrap_err(), NotStorable::Method);
}

#[test]
fn qualified_private_and_no_cache_fields_are_not_stored() {
    let s = admit(
        200,
        &[
            ("cache-control", "max-age=60, private=\"x-user\", no-cache=\"set-cookie\""),
            ("set-cookie", "session=1"),
            ("x-user", "alice"),
            ("x-kept", "yes"),
        ],
    )
    .unwrap();
    assert!(!s.headers().contains_key("set-cookie") && !s.headers().contains_key("x-user"));
    assert_eq!(s.headers()["x-kept"], "yes");
    assert_eq!(s.reuse(&get(&[]), at(T0), &rules()), Reuse::Fresh, "a qualified no-cache does not force validation");
}

#[test]
fn the_stored_date_is_kept_and_a_missing_or_bad_one_is_the_time_of_receipt() {
    let sent = date(T0 - 5);
    let s = admit(200, &[("cache-control", "max-age=60"), ("date", &sent)]).unwrap();
    assert_eq!(s.response_headers(at(T0 + 100))["date"], sent.as_str());
    for bad in [None, Some("yesterday"), Some("Mon, 30 Nov 2026 20:22:37 +0000")] {
        let mut pairs = vec![("cache-control", "max-age=60")];
        pairs.extend(bad.map(|b| ("date", b)));
        let s = admit(200, &pairs).unwrap();
        assert_eq!(s.headers()["date"], date(T0).as_str(), "{bad:?}");
    }
}

#[test]
fn repeated_field_lines_are_kept() {
    let s =
        admit(200, &[("cache-control", "max-age=60"), ("link", "</a>; rel=preload"), ("link", "</b>; rel=preload")])
            .unwrap();
    let links: Vec<_> = s.response_headers(at(T0)).get_all("link").iter().cloned().collect();
    assert_eq!(links, ["</a>; rel=preload", "</b>; rel=preload"]);
}

#[test]
fn reuse_checks_vary_credentials_no_cache_and_freshness() {
    let s = admit(200, &[("cache-control", "max-age=60"), ("vary", "Accept-Language")]).unwrap();
    let r = rules();
    assert_eq!(s.reuse(&get(&[]), at(T0 + 59), &r), Reuse::Fresh);
    assert_eq!(s.reuse(&get(&[]), at(T0 + 60), &r), Reuse::Validate);
    assert_eq!(s.reuse(&get(&[("accept-language", "fr")]), at(T0), &r), Reuse::Unusable);
    assert_eq!(s.reuse(&get(&[("authorization", "x")]), at(T0), &r), Reuse::Unusable);
    let nc = admit(200, &[("cache-control", "max-age=60, No-CaChE")]).unwrap();
    assert_eq!(nc.reuse(&get(&[]), at(T0), &r), Reuse::Validate);
    let public = admit(200, &[("cache-control", "public, max-age=60")]).unwrap();
    assert_eq!(public.reuse(&get(&[("authorization", "x")]), at(T0), &r), Reuse::Fresh);
}

#[test]
fn request_directives_are_ignored_unless_honoured() {
    let s = admit(200, &[("cache-control", "max-age=60")]).unwrap();
    let asks = [
        get(&[("cache-control", "no-cache")]),
        get(&[("pragma", "no-cache")]),
        get(&[("cache-control", "max-age=0")]),
        get(&[("cache-control", "min-fresh=120")]),
    ];
    let honour = CacheRules { honor_request_directives: true, ..rules() };
    for ask in &asks {
        assert_eq!(s.reuse(ask, at(T0 + 1), &rules()), Reuse::Fresh);
        assert_eq!(s.reuse(ask, at(T0 + 1), &honour), Reuse::Validate, "{:?}", ask.headers);
    }
    let immutable = admit(200, &[("cache-control", "max-age=60, immutable")]).unwrap();
    assert_eq!(immutable.reuse(&asks[0], at(T0 + 1), &honour), Reuse::Fresh);
    assert!(StoredResponse::only_if_cached(&get(&[("cache-control", "only-if-cached")]), &honour));
    assert!(!StoredResponse::only_if_cached(&get(&[("cache-control", "only-if-cached")]), &rules()));
}

#[test]
fn validators_and_the_304s_that_match_them() {
    let lm = date(T0 - 1000);
    let s = admit(200, &[("cache-control", "max-age=1"), ("etag", "\"v1\""), ("last-modified", &lm)]).unwrap();
    assert_eq!(
        s.validators(),
        [(IF_NONE_MATCH, HeaderValue::from_static("\"v1\"")), (IF_MODIFIED_SINCE, HeaderValue::from_str(&lm).unwrap())]
    );
    assert!(s.validated_by(&headers(&[("etag", "W/\"v1\"")])));
    assert!(!s.validated_by(&headers(&[("etag", "\"v2\"")])));
    assert!(s.validated_by(&headers(&[("last-modified", &lm)])));
    assert!(!s.validated_by(&headers(&[("last-modified", &date(T0))])));
    assert!(s.validated_by(&HeaderMap::new()), "a bare 304 answers the one response asked about");
    // A strong tag selects only the same strong tag (RFC 9111 §4.3.4).
    let weak = admit(200, &[("cache-control", "max-age=1"), ("etag", "W/\"v1\"")]).unwrap();
    assert!(!weak.validated_by(&headers(&[("etag", "\"v1\"")])));
    assert!(weak.validated_by(&headers(&[("etag", "W/\"v1\"")])));
    let none = admit(200, &[("cache-control", "max-age=1")]).unwrap();
    assert!(none.validators().is_empty());
}

#[test]
fn a_304_updates_fields_age_date_and_vary_but_not_the_content_description() {
    let s = admit(
        200,
        &[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
            ("content-type", "text/plain"),
            ("content-md5", "abc"),
            ("age", "5"),
            ("date", &date(T0)),
            ("x-old", "1"),
        ],
    )
    .unwrap();
    let req = get(&[("accept-language", "en")]);
    let not_modified = headers(&[
        ("cache-control", "max-age=100"),
        ("content-type", "text/html"),
        ("content-length", "0"),
        ("content-md5", "xyz"),
        ("etag", "\"v1\""),
        ("vary", "Accept-Language"),
        ("x-new", "a"),
        ("x-new", "b"),
        ("set-cookie", "a=b"),
    ]);
    let f = s.freshen(&not_modified, &req, at(T0 + 50), at(T0 + 50), &rules()).unwrap();
    let h = f.response_headers(at(T0 + 50));
    assert_eq!(h["content-type"], "text/html");
    assert_eq!(
        (&h["content-length"], &h["content-md5"]),
        (&HeaderValue::from_static("5"), &HeaderValue::from_static("abc"))
    );
    assert_eq!(h.get_all("x-new").iter().count(), 2);
    assert_eq!(h["x-old"], "1");
    assert!(!h.contains_key("set-cookie"));
    // No Age and no Date in the 304: the old Age is gone and the Date is the 304's arrival.
    assert_eq!(
        (&h["age"], &h["date"]),
        (&HeaderValue::from_static("0"), &HeaderValue::from_str(&date(T0 + 50)).unwrap())
    );
    assert_eq!(f.reuse(&req, at(T0 + 140), &rules()), Reuse::Fresh);
    assert_eq!(f.reuse(&get(&[("accept-language", "fr")]), at(T0 + 51), &rules()), Reuse::Unusable);
    // A 304 that says no-store makes it unstorable.
    let gone = s.freshen(&headers(&[("cache-control", "no-store")]), &req, at(T0), at(T0), &rules());
    assert_eq!(gone.unwrap_err(), NotStorable::NoStore);
}

#[test]
fn client_conditionals_are_answered_from_the_stored_validators() {
    let lm = date(T0 - 1000);
    let s = admit(200, &[("cache-control", "max-age=60"), ("etag", "W/\"v1\""), ("last-modified", &lm)]).unwrap();
    assert!(s.not_modified_for(&get(&[("if-none-match", "\"x\", \"v1\"")])));
    assert!(s.not_modified_for(&get(&[("if-none-match", "*")])));
    assert!(
        !s.not_modified_for(&get(&[("if-none-match", "\"v2\""), ("if-modified-since", &date(T0))])),
        "INM wins over IMS"
    );
    assert!(s.not_modified_for(&get(&[("if-modified-since", &lm)])));
    assert!(!s.not_modified_for(&get(&[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")])));
    assert!(s.not_modified_for(&get(&[("if-modified-since", &date(T0 + 10))])));
    assert!(!s.not_modified_for(&get(&[("if-modified-since", &date(T0 - 2000))])));
    let no_lm = admit(200, &[("cache-control", "max-age=60"), ("date", &date(T0 - 10))]).unwrap();
    assert!(no_lm.not_modified_for(&get(&[("if-modified-since", &date(T0))])), "the Date stands in for Last-Modified");
    let missing = admit(404, &[("cache-control", "max-age=60"), ("etag", "\"v1\"")]).unwrap();
    assert!(!missing.not_modified_for(&get(&[("if-none-match", "\"v1\"")])));
}

#[test]
fn fields_for_this_cache_alone_are_never_served() {
    let s = admit(
        200,
        &[
            ("cloudflare-cdn-cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=30"),
            ("surrogate-control", "max-age=10"),
        ],
    )
    .unwrap();
    assert_eq!(s.freshness().lifetime, 60);
    let h = s.response_headers(at(T0));
    assert!(!h.contains_key("cloudflare-cdn-cache-control") && !h.contains_key("surrogate-control"));
    assert_eq!(h["cdn-cache-control"], "max-age=30");
}

#[test]
fn a_chunked_response_gets_its_length_once_complete() {
    let s = admit(200, &[("cache-control", "max-age=60")]).unwrap().with_content_length(100);
    assert_eq!(s.headers()["content-length"], "100");
}

#[test]
fn the_stored_form_round_trips_and_rejects_garbage() {
    let s =
        admit(200, &[("cache-control", "max-age=60"), ("vary", "accept-encoding, x-y"), ("link", "a"), ("link", "b")])
            .unwrap();
    let bytes = codec::encode(&s);
    assert_eq!(codec::decode(&bytes, &rules()), Some(s));
    for cut in 0..bytes.len() {
        assert_eq!(codec::decode(&bytes[..cut], &rules()), None, "truncated at {cut}");
    }
    assert_eq!(codec::decode(b"{\"v\":1,\"policy\":{}}", &rules()), None, "the format before version 2");
}

/// Header names that steer caching, and a few others.
fn name() -> impl Strategy<Value = HeaderName> {
    prop::sample::select(vec![
        "cache-control",
        "cdn-cache-control",
        "cloudflare-cdn-cache-control",
        "surrogate-control",
        "expires",
        "date",
        "age",
        "last-modified",
        "etag",
        "vary",
        "set-cookie",
        "pragma",
        "content-length",
        "location",
        "x-other",
    ])
    .prop_map(HeaderName::from_static)
}

/// Any bytes a header value may hold, biased towards digits, separators and directive names.
fn value() -> impl Strategy<Value = HeaderValue> {
    let piece = prop_oneof![
        Just("max-age".to_owned()),
        Just("s-maxage".to_owned()),
        Just("no-cache".to_owned()),
        Just("private".to_owned()),
        Just("must-understand".to_owned()),
        Just("=".to_owned()),
        Just(",".to_owned()),
        Just("\"".to_owned()),
        Just(";".to_owned()),
        Just(" ".to_owned()),
        "[0-9]{1,25}",
        "[ -~]{0,8}",
        prop::collection::vec(0x80u8..=0xff, 1..3).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| {
        let s: String = parts.concat();
        HeaderValue::from_bytes(s.as_bytes()).unwrap_or(HeaderValue::from_static("x"))
    })
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((name(), value()), 0..12).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n, v);
        }
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No header value, count or size an origin or a client sends makes any decision panic, and what is
    /// stored reads back the same.
    #[test]
    fn no_header_value_panics_and_stored_responses_round_trip(
        response in header_map(),
        not_modified in header_map(),
        request in header_map(),
        status in 100u16..1000,
        times in (0u64..u64::MAX / 2_000_000, 0u64..10_000_000, 0u64..u64::MAX / 2_000_000),
    ) {
        let (t_req, delay, later) = times;
        let mut parts = get(&[]);
        parts.headers = request;
        let status = StatusCode::from_u16(status).unwrap();
        let honour = CacheRules { honor_request_directives: true, ..rules() };
        for r in [rules(), honour] {
            let (t0, t1) = (UNIX_EPOCH + Duration::from_millis(t_req), UNIX_EPOCH + Duration::from_millis(t_req + delay));
            let now = UNIX_EPOCH + Duration::from_millis(later);
            let Ok(s) = StoredResponse::admit(&parts, status, &response, t0, t1, &r) else { continue };
            let _ = s.reuse(&parts, now, &r);
            let _ = s.validators();
            let _ = s.validated_by(&not_modified);
            let _ = s.not_modified_for(&parts);
            let _ = s.response_headers(now);
            let _ = s.freshness().explicit_ttl(date::unix_millis(now));
            prop_assert_eq!(codec::decode(&codec::encode(&s), &r), Some(s.clone()));
            if let Ok(f) = s.freshen(&not_modified, &parts, now, now, &r) {
                let _ = f.reuse(&parts, now, &r);
                prop_assert_eq!(codec::decode(&codec::encode(&f), &r), Some(f.clone()));
            }
        }
        let _ = crate::http_cache::invalidation::invalidated(&Method::POST, status, "example.com", &"/a".parse().unwrap(), &response);
    }

    /// Whatever bytes the reserve hands back, decoding never panics.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut with_version = bytes.clone();
        with_version.insert(0, 2);
        let _ = codec::decode(&bytes, &rules());
        let _ = codec::decode(&with_version, &rules());
    }
}
