//! Hostile clients and origins (issue #8): what of a request reaches the origin, and what the cache keys on.

use std::time::Duration;

use super::{raw::*, *};

/// A server whose origin requests give up after a few seconds, so a desynchronised origin fails a test fast.
async fn spawn_impatient() -> TestApp {
    spawn_configured(|c| c.proxy.origin_timeout = Duration::from_secs(5)).await
}

fn addr(app: &TestApp) -> String {
    app.proxy.trim_start_matches("http://").to_owned()
}

/// Asserts the origin read every GET it was sent with no body and no framing header.
fn assert_bodiless_gets(origin: &RawOrigin) {
    for seen in origin.seen().iter().filter(|s| s.line.starts_with("GET ")) {
        assert!(seen.all("content-length").is_empty(), "a length without its body: {seen:?}");
        assert!(seen.all("transfer-encoding").is_empty(), "{seen:?}");
        assert!(seen.body.is_empty(), "{seen:?}");
    }
}

#[tokio::test]
async fn a_get_body_reaches_the_origin_with_neither_its_length_nor_its_bytes() {
    let app = spawn_impatient().await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("desync.example", &origin.url).await;
    let proxy = app.proxy_client();
    let with_body = |path: &str, extra: Option<(&str, &str)>| {
        let mut req = proxy.request(reqwest::Method::GET, "desync.example", path).body("hello");
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req
    };

    // Through the cache: a miss, then the next request on the pooled origin connection gets its own answer.
    let a = with_body("/a", None).send().await.unwrap();
    assert_eq!(a.text().await.unwrap(), "path:/a");
    let b = proxy.get("desync.example", "/b").await;
    assert_eq!((b.text().as_str(), b.cache()), ("path:/b", "MISS"));
    // A Range GET goes to the origin as asked (pass-through).
    let r = with_body("/r", Some(("range", "bytes=0-1"))).send().await.unwrap();
    assert_eq!(r.headers()["cf-cache-status"], "BYPASS");
    let c = proxy.get("desync.example", "/c").await;
    assert_eq!(c.text(), "path:/c");
    // A GET that revalidates a stale copy.
    assert_eq!(proxy.get("desync.example", "/stale").await.cache(), "MISS");
    let v = with_body("/stale", None).send().await.unwrap();
    assert_eq!(v.headers()["cf-cache-status"], "REVALIDATED");
    assert_eq!(v.text().await.unwrap(), "path:/stale");
    let d = proxy.get("desync.example", "/d").await;
    assert_eq!(d.text(), "path:/d");

    // Nothing was filed under another URL.
    for path in ["/a", "/b", "/c", "/d"] {
        let got = proxy.get("desync.example", path).await;
        assert_eq!((got.text(), got.cache()), (format!("path:{path}"), "HIT"), "{path}");
    }
    assert_eq!(origin.requests("GET /stale ", 2).await[1].all("if-none-match"), ["\"v1\""]);
    assert_eq!(origin.requests("GET /r ", 1).await[0].all("range"), ["bytes=0-1"]);
    assert_eq!(origin.requests("GET /", 7).await.len(), 7, "{:#?}", origin.seen());
    assert_bodiless_gets(&origin);
}

#[tokio::test]
async fn other_bodies_reach_the_origin_whole_and_framed_by_what_is_sent() {
    let app = spawn_impatient().await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("bodies.example", &origin.url).await;
    let proxy = app.proxy_client();
    let addr = addr(&app);

    // A POST with a length.
    let resp = proxy.request(reqwest::Method::POST, "bodies.example", "/p1").body("hello").send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "path:/p1");
    // A chunked POST: still chunked to the origin (its length is not known ahead), the body whole.
    let chunked = b"POST /p2 HTTP/1.1\r\nHost: bodies.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
    assert_eq!(send_raw(&addr, chunked).await.text(), "path:/p2");
    // A length sent as a list is refused by the server (hyper), so never forwarded; on two lines of one
    // value it is accepted and forwarded as one value.
    let listed = b"POST /p3 HTTP/1.1\r\nHost: bodies.example\r\nContent-Length: 5, 5\r\n\r\nhello";
    assert_eq!(send_raw(&addr, listed).await.status(), 400);
    let twice = b"POST /p4 HTTP/1.1\r\nHost: bodies.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(send_raw(&addr, twice).await.text(), "path:/p4");
    // Each was followed on the pooled connection by a request that got its own answer.
    assert_eq!(proxy.get("bodies.example", "/after").await.text(), "path:/after");

    for path in ["/p1", "/p4"] {
        let seen = &origin.requests(&format!("POST {path} "), 1).await[0];
        assert_eq!(seen.all("content-length"), ["5"], "{seen:?}");
        assert!(seen.all("transfer-encoding").is_empty(), "{seen:?}");
        assert_eq!(seen.body, b"hello", "{seen:?}");
    }
    let seen = &origin.requests("POST /p2 ", 1).await[0];
    assert_eq!(seen.all("transfer-encoding"), ["chunked"], "{seen:?}");
    assert!(seen.all("content-length").is_empty(), "{seen:?}");
    assert_eq!(seen.body, b"hello");
    assert!(origin.seen().iter().all(|s| !s.line.starts_with("POST /p3 ")), "{:#?}", origin.seen());
    assert_bodiless_gets(&origin);
}

#[tokio::test]
async fn more_than_one_host_line_or_an_invalid_host_is_400() {
    let app = spawn_impatient().await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("first.example", &origin.url).await;
    app.zone_with_origin("second.example", &origin.url).await;
    let addr = addr(&app);
    for head in [
        "Host: first.example\r\nHost: second.example",
        "Host: first.example\r\nHost: first.example",
        "Host: user@first.example",
        "Host: first.example:http",
        "Host: first.example/x",
    ] {
        let got = send_raw(&addr, format!("GET /h HTTP/1.1\r\n{head}\r\n\r\n").as_bytes()).await;
        assert_eq!((got.status(), got.text().as_str()), (400, "invalid Host header\n"), "{head:?}");
    }
    // An absolute-form target names the host; its Host line is then ignored (RFC 9112 §3.2.2), but must
    // still be a single line.
    let ok = send_raw(&addr, b"GET http://second.example/h HTTP/1.1\r\nHost: first.example\r\n\r\n").await;
    assert_eq!((ok.status(), ok.text().as_str()), (200, "path:/h"));
    let one = send_raw(&addr, b"GET /h HTTP/1.1\r\nHost: FIRST.example.:80\r\n\r\n").await;
    assert_eq!(one.status(), 200);
    assert_eq!(origin.requests("GET /h ", 2).await.len(), 2, "only the valid requests reached the origin");
}
