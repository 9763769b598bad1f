//! Hostile clients and origins (issue #8): what of a request reaches the origin, and what the cache keys on.

use std::time::Duration;

use super::{origin::*, raw_origin::*, *};
use crate::raw::exchange;

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
    // A GET with a precondition meant for the origin goes to it as asked (pass-through).
    let r = with_body("/r", Some(("if-match", "\"x\""))).send().await.unwrap();
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
    assert_eq!(origin.requests("GET /r ", 1).await[0].all("if-match"), ["\"x\""]);
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
    assert_eq!(exchange(&addr, chunked).await.text(), "path:/p2");
    // A length sent as a list is refused by the server (hyper), so never forwarded; on two lines of one
    // value it is accepted and forwarded as one value.
    let listed = b"POST /p3 HTTP/1.1\r\nHost: bodies.example\r\nContent-Length: 5, 5\r\n\r\nhello";
    assert_eq!(exchange(&addr, listed).await.status, 400);
    let twice = b"POST /p4 HTTP/1.1\r\nHost: bodies.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(exchange(&addr, twice).await.text(), "path:/p4");
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
        let got = exchange(&addr, format!("GET /h HTTP/1.1\r\n{head}\r\n\r\n").as_bytes()).await;
        assert_eq!((got.status, got.text().as_str()), (400, "invalid Host header\n"), "{head:?}");
    }
    // An absolute-form target names the host; its Host line is then ignored (RFC 9112 §3.2.2), but must
    // still be a single line.
    let ok = exchange(&addr, b"GET http://second.example/h HTTP/1.1\r\nHost: first.example\r\n\r\n").await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "path:/h"));
    let one = exchange(&addr, b"GET /h HTTP/1.1\r\nHost: FIRST.example.:80\r\n\r\n").await;
    assert_eq!(one.status, 200);
    assert_eq!(origin.requests("GET /h ", 2).await.len(), 2, "only the valid requests reached the origin");
}

#[tokio::test]
async fn the_origin_header_is_part_of_the_cache_key() {
    let app = spawn_impatient().await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("cors.example", &origin.url).await;
    let proxy = app.proxy_client();
    let get = |from: Option<&'static str>| {
        let proxy = proxy.clone();
        async move {
            let got = proxy.get_with("cors.example", "/font", from.map(|o| ("origin", o)).as_slice()).await;
            let grant = got.headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
            (got.cache().to_owned(), grant)
        }
    };
    let evil = Some("https://evil.example");
    let good = Some("https://good.example");
    assert_eq!(get(evil).await, ("MISS".into(), Some("https://evil.example".into())));
    assert_eq!(get(None).await, ("MISS".into(), None), "a grant for one Origin served without one");
    assert_eq!(get(good).await, ("MISS".into(), Some("https://good.example".into())));
    assert_eq!(get(evil).await, ("HIT".into(), Some("https://evil.example".into())));
    assert_eq!(get(None).await, ("HIT".into(), None));
    assert_eq!(get(good).await, ("HIT".into(), Some("https://good.example".into())));

    // An unsafe request invalidates the plain key and its own Origin's (RFC 9111 §4.4); others stay.
    let post = proxy.request(reqwest::Method::POST, "cors.example", "/font").header("origin", "https://good.example");
    assert_eq!(post.send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(None).await.0, "MISS");
    assert_eq!(get(good).await.0, "MISS");
    assert_eq!(get(evil).await.0, "HIT");
}

/// Fields no client may set for a request the cache may answer (the first 16 for any request).
const OVERRIDES: [&str; 19] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-host",
    "x-original-host",
    "x-forwarded-server",
    "x-http-host-override",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-protocol",
    "x-url-scheme",
    "front-end-https",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

#[tokio::test]
async fn routing_and_method_overrides_never_reach_the_origin_of_a_cached_request() {
    let app = spawn_impatient().await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("override.example", &origin.url).await;
    let proxy = app.proxy_client();
    let with_all = |method: reqwest::Method, path: &str| {
        OVERRIDES.iter().fold(proxy.request(method, "override.example", path), |r, name| r.header(*name, "/admin"))
    };
    assert_eq!(with_all(reqwest::Method::GET, "/page").send().await.unwrap().text().await.unwrap(), "path:/page");
    assert_eq!(with_all(reqwest::Method::HEAD, "/head").send().await.unwrap().status(), StatusCode::OK);
    for seen in [&origin.requests("GET /page ", 1).await[0], &origin.requests("GET /head ", 1).await[0]] {
        for name in OVERRIDES {
            assert!(seen.all(name).is_empty(), "{name} reached the origin: {seen:?}");
        }
    }
    // A later visitor gets what the plain request would have: nothing planted.
    let hit = proxy.get("override.example", "/page").await;
    assert_eq!((hit.text().as_str(), hit.cache()), ("path:/page", "HIT"));

    // Method tunnelling through POST still works; its answers are never stored.
    assert_eq!(with_all(reqwest::Method::POST, "/tunnel").send().await.unwrap().status(), StatusCode::OK);
    let seen = &origin.requests("POST /tunnel ", 1).await[0];
    for name in &OVERRIDES[..16] {
        assert!(seen.all(name).is_empty(), "{name} reached the origin: {seen:?}");
    }
    for name in &OVERRIDES[16..] {
        assert_eq!(seen.all(name), ["/admin"], "{name}");
    }
}

#[tokio::test]
async fn client_address_fields_from_an_untrusted_peer_are_replaced_by_the_connection_s() {
    let app = spawn_impatient().await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("ip.example", &origin.url).await;
    let spoofed = [
        ("cf-connecting-ip", "192.0.2.66"),
        ("true-client-ip", "192.0.2.66"),
        ("x-real-ip", "192.0.2.66"),
        ("x-client-ip", "192.0.2.66"),
        ("x-cluster-client-ip", "192.0.2.66"),
        ("x-forwarded-for", "192.0.2.66"),
        ("forwarded", "for=192.0.2.66"),
        ("via", "1.1 spoof"),
    ];
    app.proxy_client().get_with("ip.example", "/ip", &spoofed).await;
    let seen = &origin.requests("GET /ip ", 1).await[0];
    assert_eq!(seen.all("cf-connecting-ip"), ["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-for"), ["192.0.2.66, 127.0.0.1"], "appended to, as at Cloudflare");
    for name in ["true-client-ip", "x-real-ip", "x-client-ip", "x-cluster-client-ip", "forwarded", "via"] {
        assert!(seen.all(name).is_empty(), "{name} reached the origin: {seen:?}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarded_address_is_believed() {
    let app = spawn_configured(|c| c.proxy.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("behind.example", &origin.url).await;
    let forwarded = [
        ("x-forwarded-for", "192.0.2.66, 198.51.100.7, 127.0.0.9"),
        ("x-real-ip", "192.0.2.66"),
        ("forwarded", "for=198.51.100.7"),
        ("via", "1.1 front"),
    ];
    app.proxy_client().get_with("behind.example", "/ip", &forwarded).await;
    let seen = &origin.requests("GET /ip ", 1).await[0];
    assert_eq!(seen.all("cf-connecting-ip"), ["198.51.100.7"], "the rightmost untrusted address");
    assert_eq!(seen.all("x-forwarded-for"), ["192.0.2.66, 198.51.100.7, 127.0.0.9, 127.0.0.1"]);
    assert_eq!(seen.all("forwarded"), ["for=198.51.100.7"]);
    assert_eq!(seen.all("via"), ["1.1 front"]);
    assert!(seen.all("x-real-ip").is_empty());
}

#[tokio::test]
async fn a_zone_whose_origin_is_this_cache_makes_one_nested_hop_then_508() {
    let app = spawn_impatient().await;
    app.zone_with_origin("127.0.0.1", &app.proxy).await;
    let proxy = app.proxy_client();
    let resp = proxy.request(reqwest::Method::POST, "127.0.0.1", "/loop").body("once").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::LOOP_DETECTED);
    assert_eq!(resp.text().await.unwrap(), "loop detected: this request has come round to this cache\n");
    let got = proxy.get("127.0.0.1", "/loop").await;
    assert_eq!(got.status, StatusCode::LOOP_DETECTED);
    // One origin request each (the nested one, refused before it could make another); the API still answers.
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, "cache_reserve_origin_requests_total{zone=\"127.0.0.1\"}"), 2.0, "{metrics}");
}

#[tokio::test]
async fn cdn_loop_carries_this_installation_s_id_appended() {
    let app = spawn_impatient().await;
    let origin = RawOrigin::start().await;
    app.zone_with_origin("chain.example", &origin.url).await;
    let ours = app.data.sql.installation_value("cdn_id", "unset").await.unwrap();
    assert!(ours.starts_with("cache-reserve-"), "{ours}");
    let addr = addr(&app);
    let two_lines = b"GET /chain HTTP/1.1\r\nHost: chain.example\r\nCDN-Loop: cloudflare\r\nCDN-Loop: Fastly\r\n\r\n";
    assert_eq!(exchange(&addr, two_lines).await.status, 200);
    assert_eq!(origin.requests("GET /chain ", 1).await[0].all("cdn-loop"), [format!("cloudflare, Fastly, {ours}")]);

    let looped = format!("GET /x HTTP/1.1\r\nHost: chain.example\r\nCDN-Loop: cloudflare, {ours}\r\n\r\n");
    assert_eq!(exchange(&addr, looped.as_bytes()).await.status, 508);
    let many = vec!["other"; 17].join(", ");
    let too_many = format!("GET /y HTTP/1.1\r\nHost: chain.example\r\nCDN-Loop: {many}\r\n\r\n");
    assert_eq!(exchange(&addr, too_many.as_bytes()).await.status, 508);
    let sixteen = vec!["other"; 16].join(", ");
    let enough = format!("GET /z HTTP/1.1\r\nHost: chain.example\r\nCDN-Loop: {sixteen}\r\n\r\n");
    assert_eq!(exchange(&addr, enough.as_bytes()).await.status, 200);
}

#[tokio::test]
async fn vary_compares_a_field_sent_on_several_lines_as_one_list() {
    let app = spawn_impatient().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("vary.example", &origin.url).await;
    origin.set("/v", Reply::ok("for gzip and br", "max-age=60").header("vary", "Accept-Encoding"));
    let addr = addr(&app);
    let get = |fields: &'static str| {
        let addr = addr.clone();
        async move {
            let got =
                exchange(&addr, format!("GET /v HTTP/1.1\r\nHost: vary.example\r\n{fields}\r\n").as_bytes()).await;
            got.header("cf-cache-status").unwrap_or_default().to_owned()
        }
    };
    assert_eq!(get("Accept-Encoding: gzip\r\nAccept-Encoding: br\r\n").await, "MISS");
    let (_, seen, _) = origin.last("/v").unwrap();
    assert_eq!(seen.get_all("accept-encoding").iter().collect::<Vec<_>>(), ["gzip", "br"], "both lines forwarded");
    assert_eq!(get("Accept-Encoding: gzip, br\r\n").await, "HIT", "the same list on one line");
    assert_eq!(get("Accept-Encoding: gzip\r\n").await, "MISS", "only the first line was compared");
    assert_eq!(get("Accept-Encoding: gzip\r\nAccept-Encoding: br\r\n").await, "MISS");
    assert_eq!(origin.hits("/v"), 3);
}

#[tokio::test]
async fn a_field_named_in_connection_selects_the_variant_by_its_absence() {
    let app = spawn_impatient().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("lang.example", &origin.url).await;
    origin.set("/page", Reply::ok("default page", "max-age=60").header("vary", "Accept-Language"));
    let addr = addr(&app);
    let get = |fields: &'static str| {
        let addr = addr.clone();
        async move {
            let request = format!("GET /page HTTP/1.1\r\nHost: lang.example\r\n{fields}\r\n");
            let got = exchange(&addr, request.as_bytes()).await;
            (got.header("cf-cache-status").unwrap_or_default().to_owned(), got.text())
        }
    };
    // The origin does not see the hop-by-hop Accept-Language, so its answer is the default page...
    assert_eq!(get("Accept-Language: fr\r\nConnection: Accept-Language\r\n").await.0, "MISS");
    let (_, seen, _) = origin.last("/page").unwrap();
    assert!(!seen.contains_key("accept-language"), "{seen:?}");
    // ...filed for requests without Accept-Language, not as the fr variant.
    assert_eq!(get("").await, ("HIT".to_owned(), "default page".to_owned()));
    assert_eq!(get("Accept-Language: fr\r\n").await.0, "MISS");
    assert_eq!(origin.last("/page").unwrap().1["accept-language"], "fr");
}
