use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn cc(value: &str) -> Directives {
    Directives::response(&headers(&[("cache-control", value)])).0
}

#[test]
fn names_are_case_insensitive_and_arguments_take_both_forms() {
    let d = cc("MaX-AgE=60, No-CaChE, PUBLIC");
    assert_eq!(d.max_age, Some(Delta::Seconds(60)));
    assert_eq!(d.no_cache, Some(FieldScope::All));
    assert!(d.public);
    assert_eq!(cc("max-age=\"3600\"").max_age, Some(Delta::Seconds(3600)));
    assert_eq!(cc("max-age=003600").max_age, Some(Delta::Seconds(3600)));
}

#[test]
fn bad_arguments_are_invalid_not_ignored() {
    for bad in
        ["max-age=-1", "max-age='3600'", "max-age=3600.0", "max-age=", "max-age", "max-age=\"3600\"x", "max-age=1e3"]
    {
        assert_eq!(cc(bad).max_age, Some(Delta::Invalid), "{bad:?}");
    }
    // A space before '=' makes the name not a token: the member is not max-age at all.
    assert_eq!(cc("max-age =60").max_age, None);
}

#[test]
fn delta_seconds_saturate_at_2_pow_31() {
    assert_eq!(cc("max-age=2147483647").max_age, Some(Delta::Seconds(2_147_483_647)));
    for big in ["2147483648", "2147483649", "99999999999", "18446744073709551615", "99999999999999999999999"] {
        assert_eq!(cc(&format!("max-age={big}")).max_age, Some(Delta::Seconds(DELTA_MAX)), "{big}");
    }
}

#[test]
fn quoted_strings_hide_commas_and_directives() {
    let d = cc("foo=\"max-age=3600, public\", max-age=0");
    assert_eq!((d.max_age, d.public), (Some(Delta::Seconds(0)), false));
    let d = cc("max-age=0, foo=\"max-age=3600\"");
    assert_eq!(d.max_age, Some(Delta::Seconds(0)));
    let d = cc("foo=\"a\\\"b, max-age=5\", s-maxage=7");
    assert_eq!((d.max_age, d.s_maxage), (None, Some(Delta::Seconds(7))));
}

#[test]
fn repeated_directives_over_lines_keep_agreeing_values_only() {
    let d =
        Directives::response(&headers(&[("cache-control", "max-age=60"), ("cache-control", "max-age=60, s-maxage=5")]))
            .0;
    assert_eq!((d.max_age, d.s_maxage), (Some(Delta::Seconds(60)), Some(Delta::Seconds(5))));
    assert_eq!(cc("max-age=60, max-age=3600").max_age, Some(Delta::Invalid));
}

#[test]
fn qualified_private_and_no_cache_list_fields() {
    let d = cc("private=\"Set-Cookie, X-User\", no-cache=x-debug");
    let names = |s: &[&str]| s.iter().map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()).collect::<Vec<_>>();
    assert_eq!(d.private, Some(FieldScope::Fields(names(&["set-cookie", "x-user"]))));
    assert_eq!(d.no_cache, Some(FieldScope::Fields(names(&["x-debug"]))));
    assert_eq!(cc("no-cache=\"a\", no-cache").no_cache, Some(FieldScope::All));
    // A qualified form that names nothing readable is the unqualified one.
    for bad in ["private=", "private=\"x", "private=\",\"", "private=\"\""] {
        assert_eq!(cc(bad).private, Some(FieldScope::All), "{bad}");
    }
}

#[test]
fn targeted_fields_win_in_cloudflares_order_and_bad_ones_fall_through() {
    let h = headers(&[
        ("cache-control", "no-store"),
        ("surrogate-control", "max-age=1"),
        ("cdn-cache-control", "max-age=2"),
        ("cloudflare-cdn-cache-control", "max-age=3, stale-if-error=10"),
    ]);
    let (d, source) = Directives::response(&h);
    assert_eq!(
        (source, d.max_age, d.stale_if_error),
        (Source::CloudflareCdnCacheControl, Some(Delta::Seconds(3)), Some(Delta::Seconds(10)))
    );
    assert!(!d.no_store);
    for (cdn, want) in [
        ("max-age=2", Some(Source::CdnCacheControl)),
        ("", None),
        ("Max-Age=2", None),
        ("max-age=2, ", None),
        ("max-age=\"2\"", Some(Source::CdnCacheControl)),
    ] {
        let h = headers(&[("cdn-cache-control", cdn), ("cache-control", "max-age=9")]);
        let (d, source) = Directives::response(&h);
        assert_eq!(source, want.unwrap_or(Source::CacheControl), "{cdn:?}");
        if want.is_none() {
            assert_eq!(d.max_age, Some(Delta::Seconds(9)), "{cdn:?}");
        }
    }
    // A string is not an integer: the directive is ignored, the field still applies.
    let (d, source) = Directives::response(&headers(&[("cdn-cache-control", "max-age=\"2\", no-store")]));
    assert_eq!((source, d.max_age, d.no_store), (Source::CdnCacheControl, None, true));
    let (d, _) = Directives::response(&headers(&[("cdn-cache-control", "max-age=-5, private")]));
    assert_eq!((d.max_age, d.private), (None, Some(FieldScope::All)));
}

#[test]
fn surrogate_control_obeys_device_targets() {
    let sc = |v: &str| Directives::response(&headers(&[("surrogate-control", v), ("cache-control", "max-age=9")]));
    assert_eq!(sc("max-age=60").0.max_age, Some(Delta::Seconds(60)));
    assert_eq!(sc("MaX-aGe=60;cache-reserve").0.max_age, Some(Delta::Seconds(60)));
    // Nothing for this cache (another device's directive, an ESI capability): Cache-Control stays in force.
    for other in ["max-age=60;not-for-you", "content=\"ESI/1.0\"", "no-store-remote"] {
        let (d, source) = sc(other);
        assert_eq!((source, d.max_age), (Source::CacheControl, Some(Delta::Seconds(9))), "{other}");
    }
    let d = sc("max-age=60+30, no-store;other").0;
    assert_eq!(
        (d.max_age, d.stale_while_revalidate, d.no_store),
        (Some(Delta::Seconds(60)), Some(Delta::Seconds(30)), false)
    );
    assert!(sc("no-store").0.no_store);
    assert_eq!(sc("").1, Source::CacheControl);
}

#[test]
fn request_directives() {
    let d = Directives::request(&headers(&[("cache-control", "no-cache, max-stale, min-fresh=5, only-if-cached")]));
    assert_eq!(d.no_cache, Some(FieldScope::All));
    assert_eq!(d.max_stale, Some(None));
    assert_eq!(d.min_fresh, Some(Delta::Seconds(5)));
    assert!(d.only_if_cached);
}
