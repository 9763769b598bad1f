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
