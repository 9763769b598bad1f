//! Issue #12 A1: range requests answered from either tier (RFC 9110 §14), and on a miss from the whole object
//! fetched for the tiers.

use super::{origin::*, *};

const LONG: &str = "public, max-age=86400";

/// 0, 1, ..., 250, 0, 1, ...: every slice is distinct enough to catch an offset error.
fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn ranged(app: &TestApp, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    app.proxy_client().get_with(host, path, headers).await
}

fn header<'a>(got: &'a Got, name: &str) -> &'a str {
    got.headers.get(name).map_or("(none)", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn ranges_from_the_edge_tier_and_on_a_miss() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "ranges.example";
    app.zone_with_origin(host, &origin.url).await;
    let whole = body(1000);
    origin.set("/v", Reply::ok(whole.clone(), LONG).header("etag", "\"v1\""));

    // A miss: the origin is asked for the whole object, the client gets its range.
    let got = ranged(&app, host, "/v", &[("range", "bytes=10-19")]).await;
    assert_eq!((got.status.as_u16(), got.cache()), (206, "MISS"));
    assert_eq!(header(&got, "content-range"), "bytes 10-19/1000");
    assert_eq!(&got.body[..], &whole[10..20]);
    let (_, asked, _) = origin.last("/v").unwrap();
    assert!(!asked.contains_key("range"), "the origin is asked for the whole object");

    // Then from the edge tier: the object was filled whole.
    // Range, status, Content-Range, the bytes sent.
    let cases = [
        ("bytes=-5", 206, "bytes 995-999/1000", 995..1000),
        ("bytes=990-", 206, "bytes 990-999/1000", 990..1000),
        ("bytes=0-0", 206, "bytes 0-0/1000", 0..1),
        ("bytes=900-5000", 206, "bytes 900-999/1000", 900..1000),
        ("bytes=1000-", 416, "bytes */1000", 0..0),
        ("bytes=0-1,5-6", 200, "(none)", 0..1000),
    ];
    for (range, status, content_range, part) in cases {
        let headers = [("range", range)];
        let got = ranged(&app, host, "/v", &headers).await;
        assert_eq!((got.status.as_u16(), got.cache(), got.reserve()), (status, "HIT", "EDGE"), "{headers:?}");
        assert_eq!(header(&got, "content-range"), content_range, "{headers:?}");
        assert_eq!(&got.body[..], &whole[part], "{headers:?}");
        assert_eq!(header(&got, "content-length"), got.body.len().to_string(), "{headers:?}");
    }
    // If-Range: the same tag gets the range, another the whole object.
    let same = ranged(&app, host, "/v", &[("range", "bytes=0-9"), ("if-range", "\"v1\"")]).await;
    assert_eq!((same.status.as_u16(), same.body.len()), (206, 10));
    let other = ranged(&app, host, "/v", &[("range", "bytes=0-9"), ("if-range", "\"v0\"")]).await;
    assert_eq!((other.status.as_u16(), other.body.len()), (200, 1000));
    // A HEAD ignores Range; a precondition meant for the origin goes to it, with the range as asked.
    let head = app.proxy_client().request(reqwest::Method::HEAD, host, "/v").header("range", "bytes=0-9");
    assert_eq!(head.send().await.unwrap().status(), 200);
    assert_eq!(origin.hits("/v"), 1, "every answer so far came from the one fetch");
}

#[tokio::test]
async fn ranges_from_the_reserve_read_only_what_they_ask() {
    // No edge tier: everything after the first fetch comes from the reserve.
    let app = spawn_configured(|c| c.proxy.edge_cache_bytes = 0).await;
    let origin = TestOrigin::start().await;
    let host = "reserve-ranges.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    // One body in a segment record, one in its own file (over 1 MiB).
    let (small, large) = (body(3000), body((2 << 20) + 5));
    origin.set("/small", Reply::ok(small.clone(), LONG));
    origin.set("/large", Reply::ok(large.clone(), LONG));
    for path in ["/small", "/large"] {
        // A miss with a range fills the reserve with the whole object.
        let got = ranged(&app, host, path, &[("range", "bytes=100-199")]).await;
        assert_eq!((got.status.as_u16(), got.body.len()), (206, 100), "{path}");
        app.wait_stored(&zone, host, path).await;
    }
    for (path, whole) in [("/small", &small), ("/large", &large)] {
        let n = whole.len();
        for (range, part) in [(format!("bytes={}-{}", n - 1000, n - 1), n - 1000..n), ("bytes=0-99".into(), 0..100)] {
            let got = ranged(&app, host, path, &[("range", range.as_str())]).await;
            assert_eq!((got.status.as_u16(), got.cache(), got.reserve()), (206, "HIT", "HIT"), "{path} {range}");
            assert_eq!(header(&got, "content-range"), format!("bytes {}-{}/{n}", part.start, part.end - 1));
            assert_eq!(&got.body[..], &whole[part], "{path} {range}");
        }
        let past = ranged(&app, host, path, &[("range", format!("bytes={n}-").as_str())]).await;
        assert_eq!((past.status.as_u16(), header(&past, "content-range")), (416, format!("bytes */{n}").as_str()));
        assert_eq!(origin.hits(path), 1, "{path}: served from the reserve");
    }
    // Bytes served from the reserve count what was sent: 1,100 per object, none for a 416.
    let metrics = app.metrics().await;
    let served = sample(&metrics, &format!("cache_reserve_served_bytes_total{{zone=\"{host}\"}}"));
    assert_eq!(served, 2200.0, "{metrics}");
}

/// What is not cached is not fetched whole for a range that skips bytes: the origin is asked for the range
/// itself (`BYPASS`), as it is for a range with credentials; a range from byte 0 is cut from the stream.
#[tokio::test]
async fn a_range_of_what_is_not_cached_is_asked_of_the_origin() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "uncached-ranges.example";
    app.zone_with_origin(host, &origin.url).await;
    let whole = body(1000);
    origin.set("/dynamic", Reply::ok(whole.clone(), "no-store"));
    origin.set("/private", Reply::ok(whole.clone(), LONG));

    let got = ranged(&app, host, "/dynamic", &[("range", "bytes=-10")]).await;
    assert_eq!(got.cache(), "BYPASS");
    let (_, asked, _) = origin.last("/dynamic").unwrap();
    assert_eq!(asked["range"], "bytes=-10", "the second request carries the client's range");
    // This test origin ignores Range and sends its whole 200: the range is cut from it.
    assert_eq!((got.status.as_u16(), &got.body[..]), (206, &whole[990..]));

    let first = ranged(&app, host, "/dynamic", &[("range", "bytes=0-9")]).await;
    assert_eq!((first.status.as_u16(), &first.body[..]), (206, &whole[..10]));
    let (_, asked, _) = origin.last("/dynamic").unwrap();
    assert!(!asked.contains_key("range"), "a range from byte 0 is cut from the whole response");

    let before = origin.hits("/private");
    let got = ranged(&app, host, "/private", &[("range", "bytes=5-9"), ("authorization", "Bearer x")]).await;
    assert_eq!((got.cache(), origin.hits("/private")), ("BYPASS", before + 1));
    assert_eq!(origin.last("/private").unwrap().1["range"], "bytes=5-9");
}
