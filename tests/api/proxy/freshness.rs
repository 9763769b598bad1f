//! Freshness and retention: stale copies are revalidated (a 304 refreshes what is stored), and objects not
//! read for the retention period are evicted, bodies included.

use std::time::{Duration, Instant};

use super::{origin::*, *};

#[tokio::test]
async fn stale_edge_copies_are_revalidated_and_refreshed_or_replaced() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "fresh.example";
    app.zone_with_origin(host, &origin.url).await;
    origin.set("/etag", Reply::ok("v1", "max-age=1").header("etag", "\"1\""));
    origin.set("/lm", Reply::ok("v1", "max-age=1").header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"));
    for path in ["/etag", "/lm"] {
        assert_eq!(app.proxy_get(host, path).await.cache(), "MISS");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for path in ["/etag", "/lm"] {
        let got = app.proxy_get(host, path).await;
        assert_eq!((got.cache(), got.text().as_str()), ("REVALIDATED", "v1"), "{path}");
        assert_eq!(origin.not_modified(path), 1, "{path}");
        // The 304 made the copy fresh again.
        assert_eq!(app.proxy_get(host, path).await.cache(), "HIT", "{path}");
        assert_eq!(origin.hits(path), 2, "{path}");
    }

    // Only Last-Modified: fresh for a tenth of its age (RFC 9111 §4.2.2), capped by --heuristic-max.
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    origin.set("/guessed", Reply::ok("static file", "").header("last-modified", lm));
    assert_eq!(app.proxy_get(host, "/guessed").await.cache(), "MISS");
    assert_eq!(app.proxy_get(host, "/guessed").await.cache(), "HIT");

    // Changed at the origin: the stale copy is replaced.
    origin.set("/etag", Reply::ok("v2", "max-age=60").header("etag", "\"2\""));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let got = app.proxy_get(host, "/etag").await;
    assert_eq!((got.cache(), got.text().as_str()), ("EXPIRED", "v2"));
    let got = app.proxy_get(host, "/etag").await;
    assert_eq!((got.cache(), got.text().as_str()), ("HIT", "v2"));
}

#[tokio::test]
async fn without_heuristics_last_modified_alone_is_revalidated_on_every_use_even_by_bare_304s() {
    let app = spawn_configured(|c| c.proxy.heuristic_max = Duration::ZERO).await;
    let origin = TestOrigin::start().await;
    let host = "bare.example";
    app.zone_with_origin(host, &origin.url).await;
    // 304s without validators, as Python's http.server sends them.
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    origin.set("/bare", Reply::ok("static file", "").header("last-modified", lm).bare_304());
    assert_eq!(app.proxy_get(host, "/bare").await.cache(), "MISS");
    for _ in 0..2 {
        let got = app.proxy_get(host, "/bare").await;
        assert_eq!((got.status, got.cache(), got.text().as_str()), (StatusCode::OK, "REVALIDATED", "static file"));
    }
    assert_eq!(origin.not_modified("/bare"), 2);
}

#[tokio::test]
async fn a_304_refreshes_the_metadata_stored_in_the_reserve() {
    // An edge tier too small for any body: every hit comes from the reserve.
    let app = spawn_configured(|c| {
        c.proxy.edge_cache_bytes = 0;
        c.proxy.reserve_min_ttl = Duration::ZERO;
    })
    .await;
    let origin = TestOrigin::start().await;
    let host = "reval.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    let reply = Reply::ok("reserved", "public, max-age=2").header("etag", "\"r\"").header("vary", "Cookie");
    origin.set("/r", reply);
    let client = app.proxy_client();
    let secret = [("cookie", "session=secret-cookie")];
    assert_eq!(client.get_with(host, "/r", &secret).await.cache(), "MISS");
    app.wait_stored(&zone, host, "/r").await;
    let hit = client.get_with(host, "/r", &secret).await;
    assert_eq!((hit.cache(), hit.reserve(), hit.text().as_str()), ("HIT", "HIT", "reserved"));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let credentials = [secret[0], ("authorization", "Bearer secret-token")];
    let got = client.get_with(host, "/r", &credentials).await;
    assert_eq!((got.cache(), got.reserve(), got.text().as_str()), ("REVALIDATED", "HIT", "reserved"));
    assert_eq!(origin.not_modified("/r"), 1);
    // The refresh is in the reserve before the answer goes back: the very next request is a hit.
    let got = client.get_with(host, "/r", &secret).await;
    assert_eq!((got.cache(), got.reserve()), ("HIT", "HIT"), "the reserve copy was not refreshed");
    assert_eq!(origin.hits("/r"), 2);
    // Another cookie is another variant (Vary: Cookie), never the stored one.
    let other = client.get_with(host, "/r", &[("cookie", "session=someone-else")]).await;
    assert_eq!(other.cache(), "MISS");
    // Neither the first request's cookie nor the revalidating request's credentials were stored.
    let stored = app.data.reserve().find(&zone, &format!("{host}/r")).await.unwrap().unwrap();
    let meta = String::from_utf8_lossy(&stored.meta);
    assert!(!meta.contains("secret-cookie") && !meta.contains("secret-token"), "{meta}");
}

#[tokio::test]
async fn objects_unread_for_the_retention_period_are_evicted_and_read_ones_kept() {
    let app = spawn_configured(|c| c.proxy.retention = Duration::from_secs(2)).await;
    let origin = TestOrigin::start().await;
    let host = "retain.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    for path in ["/idle", "/busy"] {
        origin.set(path, Reply::ok(format!("body of {path}"), "public, max-age=86400"));
        app.proxy_get(host, path).await;
        app.wait_stored(&zone, host, path).await;
    }
    // Read /busy (edge hits, noted in batches) for well over the retention period.
    let until = Instant::now() + Duration::from_millis(4000);
    while Instant::now() < until {
        assert_eq!(app.proxy_get(host, "/busy").await.cache(), "HIT");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!app.reserve_has(&zone, host, "/idle").await, "/idle was not evicted");
    assert!(app.reserve_has(&zone, host, "/busy").await, "/busy was evicted although read");
    assert_eq!(app.data.bodies(None).await, 1, "the evicted body is still stored");
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, &format!("cache_reserve_evicted_objects_total{{zone=\"{host}\"}}")), 1.0);
}
