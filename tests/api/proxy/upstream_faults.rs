//! Origins that misbehave (issue #8): framing lists, oversized heads, bodies that stall, connections
//! reset under a reused request. Scripted over raw sockets where the bytes matter.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{origin::*, *};
use crate::raw::*;

#[tokio::test]
async fn an_origin_content_length_list_goes_out_as_one_value_from_every_tier() {
    let origin = ScriptedOrigin::start(|_, mut conn| async move {
        while !read_request_head(&mut conn).await.is_empty() {
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\
                         Cache-Control: public, max-age=86400\r\n\r\nhello";
            if conn.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let app = spawn_app().await;
    let zone = app.zone_with_origin("list.example", &origin.url).await;
    app.set_reserve(&zone, true).await;
    let request = b"GET /l HTTP/1.1\r\nHost: list.example\r\nConnection: close\r\n\r\n";
    for want in ["MISS", "HIT"] {
        let got = exchange(&app.proxy, request).await;
        assert_eq!(got.header("cf-cache-status"), Some(want));
        assert_eq!(got.all("content-length"), ["5"], "{got:?}");
        assert_eq!(got.text(), "hello");
    }
    // The reserve's stored head holds the single value too.
    app.wait_stored(&zone, "list.example", "/l").await;
    let stored = app.data.reserve().find(&zone, "list.example/l").await.unwrap().unwrap();
    let meta = String::from_utf8_lossy(&stored.meta).into_owned();
    assert!(!meta.contains("5, 5"), "a length list was stored: {meta:?}");
}

#[tokio::test]
async fn an_origin_head_of_many_lines_is_accepted_and_a_huge_one_is_502_logged_as_such() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("lines.example", &origin.url).await;
    let mut many = Reply::ok("fine", "no-store");
    for i in 0..1000 {
        many = many.header(Box::leak(format!("x-line-{i}").into_boxed_str()), "v");
    }
    origin.set("/many", many);
    // (Raw: the test's own HTTP client takes at most 100 lines.)
    let got = exchange(&app.proxy, b"GET /many HTTP/1.1\r\nHost: lines.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "fine");
    assert_eq!(got.header("x-line-999"), Some("v"));

    let mut huge = Reply::ok("never", "no-store");
    for i in 0..5000 {
        huge = huge.header(Box::leak(format!("x-line-{i}").into_boxed_str()), "v");
    }
    origin.set("/huge", huge);
    let got = app.proxy_get("lines.example", "/huge").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.text(), "origin response head too large\n");
}

#[tokio::test]
async fn an_origin_body_that_stalls_is_cut_at_the_read_timeout_and_not_stored() {
    let app = spawn_configured(|c| c.proxy.origin_read_timeout = Duration::from_secs(1)).await;
    let origin = TestOrigin::start().await;
    let zone = app.zone_with_origin("stall.example", &origin.url).await;
    app.set_reserve(&zone, true).await;
    origin.set("/s", Reply::ok(vec![b'a'; 4096], "public, max-age=86400").slow(1024, Duration::from_secs(30)));
    let resp = app.proxy_client().request(reqwest::Method::GET, "stall.example", "/s").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(20), resp.bytes()).await.expect("the stall was cut");
    assert!(body.is_err(), "a truncated body was delivered as whole");
    // Nothing was stored: the next request goes to the origin again.
    origin.set("/s", Reply::ok("whole", "public, max-age=86400"));
    let got = app.proxy_get("stall.example", "/s").await;
    assert_eq!(got.text(), "whole");
    assert_eq!(got.cache(), "MISS");
    assert_eq!(origin.hits("/s"), 2);
}

#[tokio::test]
async fn an_idempotent_request_is_sent_again_when_a_reused_connection_is_reset() {
    // The first connection answers one request, then resets under the second; later ones answer.
    let origin = ScriptedOrigin::start(|n, mut conn| async move {
        let mut served = 0;
        loop {
            let head = read_request_head(&mut conn).await;
            if head.is_empty() {
                return;
            }
            if n == 0 && served == 1 {
                let std = conn.into_std().unwrap();
                socket2::SockRef::from(&std).set_linger(Some(Duration::ZERO)).unwrap();
                drop(std);
                return;
            }
            let body = format!("conn {n}");
            let reply =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}", body.len());
            conn.write_all(reply.as_bytes()).await.unwrap();
            served += 1;
        }
    })
    .await;
    let app = spawn_app().await;
    app.zone_with_origin("reset.example", &origin.url).await;
    let client = app.proxy_client();
    for (i, want) in ["conn 0", "conn 1"].iter().enumerate() {
        let resp = client.request(reqwest::Method::DELETE, "reset.example", "/item").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "request {i}");
        assert_eq!(resp.text().await.unwrap(), *want);
    }
    // A POST is never sent twice: reset under it, it fails.
    let origin = ScriptedOrigin::start(|_, mut conn| async move {
        loop {
            let head = read_request_head(&mut conn).await;
            if head.starts_with("GET") {
                let _ =
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok").await;
                continue;
            }
            let mut body = [0u8; 4];
            let _ = conn.read_exact(&mut body).await;
            let std = conn.into_std().unwrap();
            socket2::SockRef::from(&std).set_linger(Some(Duration::ZERO)).unwrap();
            return;
        }
    })
    .await;
    app.zone_with_origin("post-reset.example", &origin.url).await;
    assert_eq!(client.get("post-reset.example", "/").await.text(), "ok");
    let resp = client.request(reqwest::Method::POST, "post-reset.example", "/").body("data").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(origin.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "a POST was sent again");
}

#[tokio::test]
async fn a_length_beside_a_transfer_coding_is_dropped_and_an_invalid_head_is_502_as_such() {
    let origin = ScriptedOrigin::start(|_, mut conn| async move {
        let head = read_request_head(&mut conn).await;
        let reply: &[u8] = if head.starts_with("GET /both") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello"
        };
        let _ = conn.write_all(reply).await;
    })
    .await;
    let app = spawn_app().await;
    app.zone_with_origin("coded.example", &origin.url).await;
    let got = exchange(&app.proxy, b"GET /both HTTP/1.1\r\nHost: coded.example\r\nConnection: close\r\n\r\n").await;
    assert_eq!(got.status, 200);
    assert!(got.all("content-length").is_empty(), "a length beside chunked was forwarded: {got:?}");
    assert!(got.text().contains("hello"), "{got:?}");

    let got = app.proxy_get("coded.example", "/conflict").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.text(), "invalid origin response\n");
}

#[tokio::test]
async fn request_targets_and_methods_a_reverse_proxy_must_treat_with_care() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let origin = ScriptedOrigin::start(move |_, mut conn| {
        let log = log.clone();
        async move {
            loop {
                let head = read_request_head(&mut conn).await;
                if head.is_empty() {
                    return;
                }
                log.lock().unwrap().push(head.lines().next().unwrap_or_default().to_owned());
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok";
                if conn.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let app = spawn_app().await;
    app.zone_with_origin("targets.example", &format!("{}/base", origin.url)).await;
    let ask = |request: &'static str| {
        let proxy = app.proxy.clone();
        async move { exchange(&proxy, request.as_bytes()).await }
    };
    // An absolute-form target with a query and no path keeps its query.
    assert_eq!(ask("GET http://targets.example?q=2 HTTP/1.1\r\nHost: targets.example\r\n\r\n").await.status, 200);
    // `OPTIONS *` is about the server: no path prefix.
    assert_eq!(ask("OPTIONS * HTTP/1.1\r\nHost: targets.example\r\n\r\n").await.status, 200);
    assert_eq!(*seen.lock().unwrap(), ["GET /base/?q=2 HTTP/1.1", "OPTIONS * HTTP/1.1"]);

    // Not a forward proxy; no transfer codings it cannot pass on; one trailing dot only.
    let connect = ask("CONNECT targets.example:80 HTTP/1.1\r\nHost: targets.example:80\r\n\r\n").await;
    assert_eq!(
        (connect.status, connect.text().as_str()),
        (501, "not implemented: CONNECT (this is a reverse proxy)\n")
    );
    let coded = ask(
        "POST /up HTTP/1.1\r\nHost: targets.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(coded.status, 501);
    assert_eq!(ask("GET / HTTP/1.1\r\nHost: targets.example..\r\n\r\n").await.status, 400);
    assert_eq!(ask("GET / HTTP/1.1\r\nHost: targets.example.\r\nConnection: close\r\n\r\n").await.status, 200);
    assert_eq!(seen.lock().unwrap().len(), 3, "{:?}", seen.lock().unwrap());
}
