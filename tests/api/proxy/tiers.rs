//! The edge tier, conditional answers from cache, Vary, and request coalescing.

use std::time::Duration;

use super::{origin::*, *};

#[tokio::test]
async fn a_miss_then_edge_hits_with_one_origin_request() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("edge.example", &origin.url).await;
    origin.set("/page", Reply::ok("cached body", "public, max-age=600").header("etag", "\"e1\""));

    let first = app.proxy_get("edge.example", "/page").await;
    assert_eq!((first.cache(), first.reserve()), ("MISS", "OFF"));
    let second = app.proxy_get("edge.example", "/page").await;
    assert_eq!((second.cache(), second.reserve()), ("HIT", "EDGE"));
    assert_eq!(second.text(), "cached body");
    assert!(second.headers.contains_key("age"));
    assert_eq!(origin.hits("/page"), 1);

    // HEAD from cache: headers, no body.
    let resp = app.proxy_client().request(reqwest::Method::HEAD, "edge.example", "/page").send().await.unwrap();
    assert_eq!(resp.headers()["cf-cache-status"], "HIT");
    assert_eq!(resp.bytes().await.unwrap().len(), 0);

    // The client's own validator: 304 from cache.
    let got = app.proxy_client().get_with("edge.example", "/page", &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(got.status, StatusCode::NOT_MODIFIED);
    assert!(got.body.is_empty());
    assert_eq!(origin.hits("/page"), 1);
}

#[tokio::test]
async fn vary_keeps_one_variant_and_never_serves_the_wrong_one() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("vary.example", &origin.url).await;
    origin.set("/v", Reply::ok("gzip variant", "public, max-age=600").header("vary", "Accept-Encoding"));

    let gz = [("accept-encoding", "gzip")];
    assert_eq!(app.proxy_client().get_with("vary.example", "/v", &gz).await.cache(), "MISS");
    assert_eq!(app.proxy_client().get_with("vary.example", "/v", &gz).await.cache(), "HIT");
    origin.set("/v", Reply::ok("br variant", "public, max-age=600").header("vary", "Accept-Encoding"));
    let br = app.proxy_client().get_with("vary.example", "/v", &[("accept-encoding", "br")]).await;
    assert_eq!((br.cache(), br.text().as_str()), ("MISS", "br variant"));
    assert_eq!(origin.hits("/v"), 2);
}

#[tokio::test]
async fn concurrent_misses_make_one_origin_request() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("herd.example", &origin.url).await;
    origin.set("/hot", Reply::ok("hot object", "public, max-age=600").delay(Duration::from_millis(500)));

    let requests = (0..20).map(|_| {
        let proxy = app.proxy_client();
        tokio::spawn(async move { proxy.get("herd.example", "/hot").await })
    });
    let answers: Vec<Got> = futures::future::join_all(requests).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(origin.hits("/hot"), 1, "concurrent misses were not coalesced");
    assert!(answers.iter().all(|a| a.status == StatusCode::OK && a.text() == "hot object"));
    assert_eq!(answers.iter().filter(|a| a.cache() == "MISS").count(), 1);
    assert_eq!(answers.iter().filter(|a| a.cache() == "HIT").count(), 19);
}

#[tokio::test]
async fn uncacheable_responses_are_not_shared_between_concurrent_requests() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("private.example", &origin.url).await;
    origin.set("/me", Reply::ok("private data", "private").delay(Duration::from_millis(200)));
    let requests = (0..5).map(|_| {
        let proxy = app.proxy_client();
        tokio::spawn(async move { proxy.get("private.example", "/me").await })
    });
    let answers: Vec<Got> = futures::future::join_all(requests).await.into_iter().map(Result::unwrap).collect();
    assert!(answers.iter().all(|a| a.cache() == "BYPASS"));
    assert_eq!(origin.hits("/me"), 5);
}

/// Issue #12 A5: an object filled while the reserve was off, then served from the edge tier, is written to
/// the reserve from memory on its first hit once the reserve is on — once, and only if the reserve takes it.
#[tokio::test]
async fn an_edge_copy_the_reserve_lacks_is_promoted_to_it_once() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "promote.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    origin.set("/long", Reply::ok("long-lived", "public, max-age=86400"));
    origin.set("/short", Reply::ok("short-lived", "public, max-age=60"));
    for path in ["/long", "/short"] {
        assert_eq!(app.proxy_get(host, path).await.reserve(), "OFF");
    }
    app.set_reserve(&zone, true).await;
    for _ in 0..3 {
        for path in ["/long", "/short"] {
            let got = app.proxy_get(host, path).await;
            assert_eq!((got.cache(), got.reserve()), ("HIT", "EDGE"), "{path}");
        }
    }
    app.wait_stored(&zone, host, "/long").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!app.reserve_has(&zone, host, "/short").await, "the reserve does not take a short-lived object");
    let metrics = app.metrics().await;
    let writes = sample(&metrics, &format!("cache_reserve_class_a_operations_total{{zone=\"{host}\"}}"));
    assert_eq!(writes, 1.0, "written once, not on every hit: {metrics}");
    assert_eq!((origin.hits("/long"), origin.hits("/short")), (1, 1), "promoted from memory");
    // What the reserve now holds is the object, served from it once the edge tier is gone.
    let stored = app.data.reserve().get(&zone, &format!("{host}/long")).await.unwrap().unwrap();
    assert_eq!(&stored.body[..], b"long-lived");
}
