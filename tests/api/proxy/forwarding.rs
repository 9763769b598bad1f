//! Forwarding: routing by Host, headers both ways, pass-through of what is never cached, origin failures.

use std::time::Duration;

use super::{origin::*, *};

#[tokio::test]
async fn unknown_host_is_421_and_a_zone_without_origin_is_502() {
    let app = spawn_app().await;
    let got = app.proxy_get("nobody.example", "/").await;
    assert_eq!(got.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(got.text().contains("nobody.example"), "{}", got.text());
    assert_eq!(got.cache(), "DYNAMIC");

    app.zone("no-origin.example").await;
    let got = app.proxy_get("no-origin.example", "/").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(got.text().contains("no origin"), "{}", got.text());
}

#[tokio::test]
async fn forwards_path_query_and_forwarding_headers_and_strips_hop_by_hop_both_ways() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("fwd.example", &origin.url).await;
    origin.set("/a/b?x=1", Reply::ok("hello", "no-store").header("x-origin", "yes").header("keep-alive", "timeout=5"));
    let got = app
        .proxy_client()
        .get_with(
            "fwd.example",
            "/a/b?x=1",
            &[("connection", "x-secret"), ("x-secret", "1"), ("x-forwarded-for", "10.1.2.3"), ("x-kept", "k")],
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.text(), "hello");
    assert_eq!(got.headers["x-origin"], "yes");
    assert!(!got.headers.contains_key("keep-alive"), "hop-by-hop header reached the client");

    let (method, seen, _) = origin.last("/a/b?x=1").unwrap();
    assert_eq!(method, "GET");
    assert!(!seen.contains_key("x-secret"), "a header named by Connection reached the origin");
    assert_eq!(seen["x-kept"], "k");
    assert_eq!(seen["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "fwd.example");
    assert_eq!(seen["host"], origin.url.trim_start_matches("http://"));
}

#[tokio::test]
async fn other_methods_pass_through_with_their_bodies_and_are_never_cached() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("post.example", &origin.url).await;
    origin.set("/submit", Reply::ok("accepted", "public, max-age=86400"));
    for i in 0..2 {
        let resp = http_client()
            .post(format!("{}/submit", app.proxy))
            .header("host", "post.example")
            .body(format!("payload {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["cf-cache-status"], "DYNAMIC");
        assert_eq!(resp.text().await.unwrap(), "accepted");
        let (method, _, body) = origin.last("/submit").unwrap();
        assert_eq!((method.as_str(), body.as_ref()), ("POST", format!("payload {i}").as_bytes()));
    }
    assert_eq!(origin.hits("/submit"), 2);
}

/// A range with a precondition meant for the origin (`If-Match`) goes to it as asked (RFC 9111 §4.3.2); a
/// plain range is answered by the cache (tests/api/proxy/ranges.rs).
#[tokio::test]
async fn a_range_with_an_origin_precondition_goes_to_the_origin_as_asked() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("range.example", &origin.url).await;
    origin.set("/r", Reply::ok("0123456789", "public, max-age=86400"));
    let headers = [("range", "bytes=0-3"), ("if-match", "\"x\"")];
    let got = app.proxy_client().get_with("range.example", "/r", &headers).await;
    assert_eq!(got.cache(), "BYPASS");
    let (_, seen, _) = origin.last("/r").unwrap();
    assert_eq!((seen["range"].to_str().unwrap(), seen["if-match"].to_str().unwrap()), ("bytes=0-3", "\"x\""));
    // Not filled for its sake: the next plain GET is a miss.
    assert_eq!(app.proxy_get("range.example", "/r").await.cache(), "MISS");
}

#[tokio::test]
async fn large_bodies_stream_through_unchanged() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("big.example", &origin.url).await;
    let body: Vec<u8> = (0..40 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    origin.set("/chunked", Reply::ok(body.clone(), "no-store").chunked());
    let got = app.proxy_get("big.example", "/chunked").await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == body, "body changed in transit ({} bytes)", got.body.len());
}

#[tokio::test]
async fn origin_failures_are_502_or_504_with_a_short_body() {
    let app = spawn_configured(|c| c.proxy.origin_timeout = Duration::from_millis(300)).await;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    app.zone_with_origin("down.example", &format!("http://{closed}")).await;
    let got = app.proxy_get("down.example", "/").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.text(), "origin unreachable\n");

    let origin = TestOrigin::start().await;
    app.zone_with_origin("slow.example", &origin.url).await;
    origin.set("/slow", Reply::ok("late", "no-store").delay(Duration::from_secs(2)));
    let got = app.proxy_get("slow.example", "/slow").await;
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(got.text(), "origin timed out\n");
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, "cache_reserve_origin_errors_total{zone=\"slow.example\"}"), 1.0, "{metrics}");
}

#[tokio::test]
async fn a_fetch_on_a_keep_alive_connection_the_origin_just_closed_is_retried_on_a_new_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An origin that answers the first request on each connection and drops the connection, unanswered, when
    // a second one arrives on it: what a keep-alive timeout racing a reused connection looks like.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let Ok(n) = s.read(&mut buf).await else { return };
                if n == 0 {
                    return;
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok").await;
                let _ = s.read(&mut buf).await;
                // The second request on this connection: closed without an answer.
            });
        }
    });
    let app = spawn_app().await;
    app.zone_with_origin("flaky.example", &format!("http://{addr}")).await;
    for i in 0..3 {
        let got = app.proxy_get("flaky.example", "/").await;
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "ok"), "request {i}");
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// Reads from `stream` until `buf` holds `needle` (or panics when the peer closes first).
async fn read_until(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before {:?}; got {}", String::from_utf8_lossy(needle), String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn early_hints_from_the_origin_reach_the_client_before_the_response() {
    use tokio::io::AsyncWriteExt;
    // An origin that sends 103 at once, and its 200 only when the test says so: the client must see the 103
    // while the origin is still holding back the 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release_tx, release_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(release_rx));
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let release_rx = release_rx.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                read_until(&mut s, &mut req, b"\r\n\r\n").await;
                s.write_all(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n",
                )
                .await
                .unwrap();
                release_rx.lock().await.recv().await;
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\n\r\nok")
                    .await
                    .unwrap();
            });
        }
    });
    let app = spawn_app().await;
    app.zone_with_origin("hints.example", &format!("http://{addr}")).await;
    let proxy = app.proxy.trim_start_matches("http://").to_owned();

    let mut client = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    client.write_all(b"GET /page HTTP/1.1\r\nHost: hints.example\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let early = tokio::time::timeout(Duration::from_secs(10), read_until(&mut client, &mut got, b"\r\n\r\n")).await;
    assert!(early.is_ok(), "no 103 while the origin held its response back");
    let hints = String::from_utf8_lossy(&got).to_lowercase();
    assert!(hints.starts_with("http/1.1 103 early hints\r\n"), "{hints}");
    assert!(hints.contains("link: </a.css>; rel=preload\r\n"), "{hints}");
    assert!(!hints.contains("x-hop"), "a hop-by-hop field went through: {hints}");
    release_tx.send(()).unwrap();
    read_until(&mut client, &mut got, b"\r\n\r\nok").await;
    let all = String::from_utf8_lossy(&got).to_lowercase();
    assert!(all.contains("\r\n\r\nhttp/1.1 200 ok\r\n"), "{all}");
    // The same connection goes on: the next answer is a hit, with no hint (the origin is not asked).
    got.clear();
    client.write_all(b"GET /page HTTP/1.1\r\nHost: hints.example\r\n\r\n").await.unwrap();
    read_until(&mut client, &mut got, b"\r\n\r\nok").await;
    let hit = String::from_utf8_lossy(&got).to_lowercase();
    assert!(hit.starts_with("http/1.1 200 ok\r\n") && hit.contains("cf-cache-status: hit"), "{hit}");

    // An HTTP/1.0 client never gets a 1xx (RFC 9110 §15.2).
    let mut old = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    old.write_all(b"GET /other HTTP/1.0\r\nHost: hints.example\r\n\r\n").await.unwrap();
    // Lets the origin's 103 reach the proxy before the 200 is released; it only strengthens the check.
    tokio::time::sleep(Duration::from_millis(100)).await;
    release_tx.send(()).unwrap();
    let mut got = Vec::new();
    read_until(&mut old, &mut got, b"\r\n\r\nok").await;
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 200 ok\r\n") || text.starts_with("http/1.0 200 ok\r\n"), "{text}");
    assert!(!text.contains("103"), "{text}");
}
