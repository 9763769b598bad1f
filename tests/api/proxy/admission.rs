//! Reserve admission (SPEC §8): setting on, storable, freshness ≥ the minimum, Content-Length present,
//! within the size limit. Each rule has a response that must not be admitted, beside one that must.

use super::{origin::*, *};

const LONG: &str = "public, max-age=86400";

#[tokio::test]
async fn only_responses_meeting_every_rule_reach_the_reserve() {
    let app = spawn_configured(|c| c.proxy.max_object_bytes = 64 * 1024).await;
    let origin = TestOrigin::start().await;
    let host = "admit.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;

    let big = vec![b'x'; 100 * 1024];
    // Path, reply, cf-cache-status, and x-cache-reserve with x-cache-reserve-reason (issue #12 A6: say why,
    // rather than MISS for ever).
    let cases: Vec<(&str, Reply, &str, (&str, &str))> = vec![
        ("/no-store", Reply::ok("a", "no-store"), "BYPASS", ("BYPASS", "(none)")),
        ("/private", Reply::ok("a", "private, max-age=86400"), "BYPASS", ("BYPASS", "(none)")),
        ("/short-ttl", Reply::ok("a", "public, max-age=3600"), "MISS", ("INELIGIBLE", "short-lived")),
        (
            "/no-freshness",
            Reply::ok("a", "").header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            "MISS",
            ("INELIGIBLE", "short-lived"),
        ),
        ("/no-length", Reply::ok("a", LONG).chunked(), "MISS", ("INELIGIBLE", "no-content-length")),
        ("/too-big", Reply::ok(big, LONG), "MISS", ("INELIGIBLE", "too-large")),
        ("/cookie", Reply::ok("a", LONG).header("set-cookie", "s=1"), "BYPASS", ("BYPASS", "(none)")),
        ("/vary-star", Reply::ok("a", LONG).header("vary", "*"), "BYPASS", ("BYPASS", "(none)")),
        // An origin's own reason header never reaches the client.
        (
            "/forged",
            Reply::ok("a", "no-store").header("x-cache-reserve-reason", "short-lived"),
            "BYPASS",
            ("BYPASS", "(none)"),
        ),
    ];
    for (path, reply, status, (tag, reason)) in &cases {
        origin.set(path, reply.clone());
        let got = app.proxy_get(host, path).await;
        let got_reason = got.headers.get("x-cache-reserve-reason").map_or("(none)", |v| v.to_str().unwrap());
        assert_eq!((got.cache(), got.reserve(), got_reason), (*status, *tag, *reason), "{path}");
    }
    // Credentials in the request: a shared cache must not store the answer.
    origin.set("/authorized", Reply::ok("a", "max-age=86400"));
    let got = app.proxy_client().get_with(host, "/authorized", &[("authorization", "Bearer x")]).await;
    assert_eq!(got.cache(), "BYPASS");

    // The control: admitted. Writes are asynchronous; once it is stored, every earlier write is done.
    origin.set("/admitted", Reply::ok("a", LONG));
    assert_eq!(app.proxy_get(host, "/admitted").await.cache(), "MISS");
    app.wait_stored(&zone, host, "/admitted").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    for (path, ..) in &cases {
        assert!(!app.reserve_has(&zone, host, path).await, "{path} was admitted to the reserve");
    }
    assert!(!app.reserve_has(&zone, host, "/authorized").await);
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, &format!("cache_reserve_class_a_operations_total{{zone=\"{host}\"}}")), 1.0);
    assert_eq!(sample(&metrics, &format!("cache_reserve_stored_objects{{zone=\"{host}\"}}")), 1.0, "{metrics}");
    let not_stored = |reason: &str| {
        sample(&metrics, &format!("cache_reserve_not_stored_total{{zone=\"{host}\",reason=\"{reason}\"}}"))
    };
    assert_eq!(not_stored("not-storable"), 6.0, "{metrics}");
    assert_eq!(not_stored("short-lived"), 2.0, "{metrics}");
    assert_eq!(not_stored("no-content-length"), 1.0, "{metrics}");
    assert_eq!(not_stored("too-large"), 1.0, "{metrics}");

    // Uncacheable answers were never kept at the edge either: asked again, they go to the origin.
    for path in ["/no-store", "/private", "/cookie", "/vary-star"] {
        app.proxy_get(host, path).await;
        assert_eq!(origin.hits(path), 2, "{path}");
    }
}

/// With `--write-buffer-bytes` spent, an eligible object is served and not written, and says so.
#[tokio::test]
async fn a_write_skipped_for_the_write_budget_says_so() {
    let app = spawn_configured(|c| c.proxy.write_buffer_bytes = 0).await;
    let origin = TestOrigin::start().await;
    let host = "budget.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    origin.set("/a", Reply::ok("a", LONG));
    let got = app.proxy_get(host, "/a").await;
    assert_eq!((got.cache(), got.reserve()), ("MISS", "MISS"));
    assert_eq!(got.headers["x-cache-reserve-reason"], "write-budget-full");
    let metrics = app.metrics().await;
    let series = format!("cache_reserve_not_stored_total{{zone=\"{host}\",reason=\"write-budget-full\"}}");
    assert_eq!(sample(&metrics, &series), 1.0, "{metrics}");
    assert!(!app.reserve_has(&zone, host, "/a").await);
}

#[tokio::test]
async fn nothing_is_written_while_the_reserve_is_off() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "off.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    origin.set("/a", Reply::ok("a", LONG));
    let got = app.proxy_get(host, "/a").await;
    assert_eq!((got.cache(), got.reserve()), ("MISS", "OFF"));
    // The edge tier still caches.
    assert_eq!(app.proxy_get(host, "/a").await.cache(), "HIT");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!app.reserve_has(&zone, host, "/a").await);
    let series = format!("cache_reserve_not_stored_total{{zone=\"{host}\",reason=\"reserve-off\"}}");
    assert_eq!(sample(&app.metrics().await, &series), 1.0);
}

#[tokio::test]
async fn the_minimum_freshness_is_configurable() {
    let app = spawn_configured(|c| c.proxy.reserve_min_ttl = std::time::Duration::from_secs(60)).await;
    let origin = TestOrigin::start().await;
    let host = "ttl.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    origin.set("/59s", Reply::ok("a", "max-age=59"));
    origin.set("/60s", Reply::ok("a", "max-age=60"));
    app.proxy_get(host, "/59s").await;
    app.proxy_get(host, "/60s").await;
    app.wait_stored(&zone, host, "/60s").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!app.reserve_has(&zone, host, "/59s").await);
}
