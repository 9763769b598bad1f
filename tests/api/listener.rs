//! Both listeners against clients that misbehave: silent, slow, flooding, unparseable, or leaving their
//! bodies unread (issue #8). Raw sockets throughout; the timeouts are short so the tests are quick, and
//! each assertion has ample slack both ways.

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::{helpers::*, proxy::origin::*, raw::*};

/// A server whose listeners time out fast: head 1 s, keep-alive idle 4 s, body 1 s, send 1 s.
async fn impatient() -> TestApp {
    spawn_configured(|c| {
        for limits in [&mut c.proxy_conns, &mut c.api_conns] {
            limits.header_timeout = Duration::from_secs(1);
            limits.idle_timeout = Duration::from_secs(4);
            limits.body_timeout = Duration::from_secs(1);
            limits.send_timeout = Duration::from_secs(1);
        }
    })
    .await
}

fn api_addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").trim_end_matches("/client/v4").to_owned()
}

#[tokio::test]
async fn a_silent_or_trickling_client_is_disconnected_on_both_listeners() {
    let app = impatient().await;
    for addr in [app.proxy.clone(), api_addr(&app)] {
        // Sends nothing at all.
        let mut silent = connect(&addr).await;
        assert_eq!(read_until_closed(&mut silent, Duration::from_secs(20)).await, 0, "{addr}");

        // Sends its head a byte every 200 ms: 1 s is not enough for it.
        let mut slow = connect(&addr).await;
        let head = b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut cut = false;
        for b in head {
            if slow.write_all(&[*b]).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(cut || read_response(&mut slow).await.is_none(), "{addr}: a trickled head was served");
    }
}

#[tokio::test]
async fn a_kept_alive_connection_gets_the_idle_timeout_not_the_header_timeout() {
    let app = impatient().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("idle.example", &origin.url).await;
    origin.set("/", Reply::ok("hi", "no-store"));
    let request = b"GET / HTTP/1.1\r\nHost: idle.example\r\n\r\n";
    let mut conn = connect(&app.proxy).await;
    conn.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut conn).await.unwrap().text(), "hi");
    // Longer than the header timeout (1 s), shorter than the idle one (4 s): still open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    conn.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut conn).await.unwrap().text(), "hi");
    // Then left idle: closed.
    assert_eq!(read_until_closed(&mut conn, Duration::from_secs(20)).await, 0);
}

#[tokio::test]
async fn a_stalled_request_body_is_408_blamed_on_the_client() {
    let app = impatient().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("upload.example", &origin.url).await;
    origin.set("/up", Reply::ok("stored", "no-store"));

    let mut conn = connect(&app.proxy).await;
    conn.write_all(b"POST /up HTTP/1.1\r\nHost: upload.example\r\nContent-Length: 100\r\n\r\nonly this").await.unwrap();
    let got = read_response(&mut conn).await.expect("an answer");
    assert_eq!(got.status, 408, "{}", got.text());
    assert_eq!(got.text(), "request body timed out\n");

    let zone = app.zone("api-upload.example").await;
    let token = app.admin_token().await;
    let mut api = connect(&api_addr(&app)).await;
    let head = format!(
        "PATCH /client/v4/zones/{zone}/cache/cache_reserve HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 100\r\n\r\n{{"
    );
    api.write_all(head.as_bytes()).await.unwrap();
    let got = read_response(&mut api).await.expect("an answer");
    assert_eq!(got.status, 408, "{}", got.text());
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["errors"][0]["code"], 6010, "{body}");

    let metrics = app.metrics().await;
    assert_eq!(client_body_errors(&metrics), 1.0, "{metrics}");
    assert_eq!(origin_errors(&metrics), 0.0, "{metrics}");
}

#[tokio::test]
async fn a_malformed_or_short_chunked_upload_is_400_blamed_on_the_client() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("chunks.example", &origin.url).await;
    origin.set("/up", Reply::ok("stored", "no-store"));

    // A chunk size that is not hexadecimal.
    let bad = exchange(
        &app.proxy,
        b"POST /up HTTP/1.1\r\nHost: chunks.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.text(), "request body malformed or incomplete\n");

    // A body cut short: the client half-closes after part of a chunk.
    let mut short = connect(&app.proxy).await;
    short
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: chunks.example\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nnot a hundred",
        )
        .await
        .unwrap();
    short.shutdown().await.unwrap();
    if let Some(got) = read_response(&mut short).await {
        assert_eq!(got.status, 400, "{}", got.text());
    }

    let metrics = app.metrics().await;
    assert!(client_body_errors(&metrics) >= 1.0, "{metrics}");
    assert_eq!(origin_errors(&metrics), 0.0, "{metrics}");
}

#[tokio::test]
async fn parse_failures_are_answered_with_a_body_the_api_s_in_the_envelope() {
    let app = spawn_app().await;
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: [(Vec<u8>, u16, u32); 4] = [
        (b"GET /client/v4/zones HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n".to_vec(), 400, 6014),
        (format!("GET /client/v4/zones HTTP/1.1\r\nHost: a\r\n{many_headers}\r\n").into_bytes(), 431, 6003),
        (format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(20_000)).into_bytes(), 414, 6012),
        // A head past 64 KiB, in few lines.
        (format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "b".repeat(70_000)).into_bytes(), 431, 6003),
    ];
    for (request, status, code) in cases {
        let got = exchange(&api_addr(&app), &request).await;
        assert_eq!(got.status, status, "{}", got.text());
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(got.header("connection"), Some("close"));
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["errors"][0]["code"], code, "{body}");
        assert!(body["result"].is_null());

        let got = exchange(&app.proxy, &request).await;
        assert_eq!(got.status, status);
        assert_eq!(got.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(!got.body.is_empty());
    }
}

#[tokio::test]
async fn a_request_answered_before_its_body_is_read_closes_its_connection() {
    let app = spawn_app().await;
    // The API refuses a bad token without reading the body; the proxy refuses an unknown host.
    let api = "POST /client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/cache_reserve_clear HTTP/1.1\r\nHost: a\r\n\
               Authorization: Bearer nonsense\r\nContent-Length: 20\r\n\r\n"
        .to_owned();
    let proxy = "POST /x HTTP/1.1\r\nHost: nobody.example\r\nContent-Length: 20\r\n\r\n".to_owned();
    for (addr, head) in [(api_addr(&app), api), (app.proxy.clone(), proxy)] {
        let mut conn = connect(&addr).await;
        conn.write_all(head.as_bytes()).await.unwrap();
        let got = read_response(&mut conn).await.unwrap();
        assert!(got.status >= 400, "{got:?}");
        assert_eq!(got.header("connection"), Some("close"), "{addr}: {got:?}");
        // The body arriving late is not taken for the next request.
        let _ = conn.write_all(b"GET / HTTP/1.1\r\nHost:").await;
        assert_eq!(read_until_closed(&mut conn, Duration::from_secs(20)).await, 0, "{addr}");
    }
    // A request whose body is read keeps its connection.
    let zone = app.zone("kept.example").await;
    let token = app.admin_token().await;
    let mut conn = connect(&api_addr(&app)).await;
    for _ in 0..2 {
        let request = format!(
            "PATCH /client/v4/zones/{zone}/cache/cache_reserve HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 2\r\n\r\n{{}}"
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let got = read_response(&mut conn).await.unwrap();
        assert_eq!(got.status, 400, "{got:?}");
        assert_eq!(got.header("connection"), None);
    }
}

#[tokio::test]
async fn past_the_connection_cap_the_proxy_refuses_and_the_api_stays_reachable() {
    let app = spawn_configured(|c| c.proxy_conns.max_connections = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&app.proxy).await);
    }
    // Give the accept loop time to take all four.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = connect(&app.proxy).await;
    let got = read_response(&mut over).await.expect("a refusal");
    assert_eq!(got.status, 503);
    assert_eq!(got.text(), "too many connections; retry shortly\n");
    assert_eq!(got.header("connection"), Some("close"));

    // The API has a budget of its own.
    let resp = app.request(reqwest::Method::GET, "/user/tokens/verify").send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);

    // A freed slot is used again.
    held.pop();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = exchange(&app.proxy, b"GET / HTTP/1.1\r\nHost: nobody.example\r\n\r\n").await;
        if got.status == 421 {
            break;
        }
        assert_eq!(got.status, 503);
        assert!(std::time::Instant::now() < deadline, "the freed connection slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let app = impatient().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("big.example", &origin.url).await;
    let size = 64 << 20;
    origin.set("/big", Reply::ok(vec![b'x'; size], "no-store"));
    let mut conn = connect(&app.proxy).await;
    conn.write_all(b"GET /big HTTP/1.1\r\nHost: big.example\r\n\r\n").await.unwrap();
    // Reads nothing for well past the send timeout (1 s)...
    tokio::time::sleep(Duration::from_secs(4)).await;
    // ...so what it then finds is what was in flight, and the connection's end.
    let got = read_until_closed(&mut conn, Duration::from_secs(20)).await;
    assert!(got < size, "the whole body was delivered to a client that stopped reading ({got} bytes)");
}

/// A counter summed over every zone.
fn total(metrics: &str, counter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(counter))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn client_body_errors(metrics: &str) -> f64 {
    total(metrics, "cache_reserve_client_body_errors_total")
}

fn origin_errors(metrics: &str) -> f64 {
    total(metrics, "cache_reserve_origin_errors_total")
}

#[tokio::test]
async fn the_open_files_soft_limit_is_raised_to_the_hard_limit_at_start() {
    let mut ours = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct passed.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut ours) }, 0);
    let low = 256.min(ours.rlim_max);
    assert!(ours.rlim_max > low, "the hard limit ({}) leaves nothing to raise", ours.rlim_max);
    let stores = TestStores::fresh().await;
    let server = ServerProcess::start_with(&stores, &[], |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let mut lowered = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut lowered);
                lowered.rlim_cur = low;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, low.to_string(), "{line}");
    server.kill();
}
