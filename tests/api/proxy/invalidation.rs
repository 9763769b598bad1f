//! Invalidation by unsafe requests (RFC 9111 §4.4): in every tier, for the request's URI and same-host
//! `Location` / `Content-Location`, only on success, and never undone by a fill that was already running.

use std::time::Duration;

use super::{origin::*, *};

#[tokio::test]
async fn a_successful_unsafe_request_invalidates_its_uri_in_every_tier() {
    let app = spawn_configured(|c| c.proxy.reserve_min_ttl = Duration::ZERO).await;
    let origin = TestOrigin::start().await;
    let host = "inval.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    let c = app.proxy_client();
    for (i, method) in ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH"].into_iter().enumerate() {
        let path = format!("/doc{i}");
        origin.set(&path, Reply::ok("v1", "public, max-age=600"));
        assert_eq!(c.get(host, &path).await.cache(), "MISS");
        app.wait_stored(&zone, host, &path).await;
        assert_eq!(c.get(host, &path).await.cache(), "HIT");
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = c.request(m, host, &path).body("change").send().await.unwrap();
        assert_eq!(resp.headers()["cf-cache-status"], "DYNAMIC", "{method}");
        assert!(!app.reserve_has(&zone, host, &path).await, "{method}: the reserve copy survived");
        origin.set(&path, Reply::ok("v2", "public, max-age=600"));
        let after = c.get(host, &path).await;
        assert_eq!((after.cache(), after.text().as_str()), ("MISS", "v2"), "{method}");
    }
}

#[tokio::test]
async fn same_host_locations_are_invalidated_and_failures_invalidate_nothing() {
    let (app, origin) = {
        let app = spawn_app().await;
        let origin = TestOrigin::start().await;
        app.zone_with_origin("loc.example", &origin.url).await;
        (app, origin)
    };
    let host = "loc.example";
    let c = app.proxy_client();
    for path in ["/a", "/b", "/c", "/kept"] {
        origin.set(path, Reply::ok(path, "max-age=600"));
        c.get(host, path).await;
    }
    origin.set(
        "/form",
        Reply::ok("created", "").header("location", "/a").header("content-location", "http://LOC.example:8080/b"),
    );
    origin.set("/other", Reply::ok("moved", "").header("location", "https://elsewhere.example/c"));
    let post = |path: &'static str| c.request(reqwest::Method::POST, host, path).send();
    post("/form").await.unwrap();
    post("/other").await.unwrap();
    assert_eq!(c.get(host, "/a").await.cache(), "MISS");
    assert_eq!(c.get(host, "/b").await.cache(), "MISS");
    assert_eq!(c.get(host, "/c").await.cache(), "HIT", "another host's URI was invalidated");
    // A failed unsafe request leaves everything in place.
    origin.set("/kept", Reply { status: 500, ..Reply::ok("boom", "no-store") });
    let failed = c.request(reqwest::Method::POST, host, "/kept").send().await.unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(c.get(host, "/kept").await.cache(), "HIT");
}

#[tokio::test]
async fn a_fill_running_when_the_uri_is_invalidated_never_lands() {
    let app = spawn_configured(|c| c.proxy.reserve_min_ttl = Duration::ZERO).await;
    let origin = TestOrigin::start().await;
    let host = "race.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    // A slow body: the GET's fill is still streaming when the POST's invalidation happens.
    origin.set("/slow", Reply::ok(vec![b's'; 4000], "public, max-age=600").slow(1000, Duration::from_millis(150)));
    let c = app.proxy_client();
    let get = tokio::spawn({
        let c = c.clone();
        async move { c.get(host, "/slow").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let post = c.request(reqwest::Method::POST, host, "/slow").send().await.unwrap();
    assert!(post.status().is_success());
    let first = get.await.unwrap();
    assert_eq!(first.body.len(), 4000);
    // Give the writer time to try to commit, then check neither tier kept the pre-invalidation copy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!app.reserve_has(&zone, host, "/slow").await);
    origin.set("/slow", Reply::ok("new", "public, max-age=600"));
    let after = c.get(host, "/slow").await;
    assert_eq!((after.cache(), after.text().as_str()), ("MISS", "new"));
}
