//! Coalescing without stalls (issue #12 A3): concurrent requests for one object make one origin request,
//! and the others are answered as the body arrives — not when the first client has read all of it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::watch,
};

use super::{origin::*, *};
use crate::raw::{ScriptedOrigin, read_request_head};

const LONG: &str = "public, max-age=86400";

/// Longest any step here may take: only a guard against hangs, never a measure.
const PATIENCE: Duration = Duration::from_secs(20);

/// A distinct body of `size` bytes.
fn body(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>())
}

/// Waits (up to `PATIENCE`) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that sends a GET for `path` and reads its response head, reading nothing more unless asked:
/// its receive buffer is small, so the proxy cannot push much of a body to it before it reads.
struct StalledClient {
    stream: TcpStream,
    /// Body bytes that came with the head.
    body: Vec<u8>,
}

impl StalledClient {
    async fn start(proxy: &str, host: &str, path: &str) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(proxy.trim_start_matches("http://").parse().unwrap()).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await.expect("a head").unwrap();
            assert!(n > 0, "the proxy closed before the head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        Self { stream, body: buf[head_end..].to_vec() }
    }

    /// Reads the rest of a body of `length` bytes.
    async fn finish(mut self, length: usize) -> Vec<u8> {
        while self.body.len() < length {
            let mut chunk = vec![0u8; 1 << 16];
            let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk)).await.expect("the body").unwrap();
            assert!(n > 0, "the body was cut at {} of {length}", self.body.len());
            self.body.extend_from_slice(&chunk[..n]);
        }
        self.body
    }
}

/// Starts `n` GETs of `path` through the proxy.
fn get_many(app: &TestApp, host: &'static str, path: &'static str, n: usize) -> Vec<tokio::task::JoinHandle<Got>> {
    (0..n)
        .map(|_| {
            let proxy = app.proxy_client();
            tokio::spawn(async move { proxy.get(host, path).await })
        })
        .collect()
}

/// The reported case: the origin sends the head at once and the body in slow pieces; the first client
/// reads nothing of its body. The others still get the head and the whole body, at the origin's pace, from
/// the one origin request.
#[tokio::test]
async fn followers_stream_the_body_while_the_leaders_client_reads_nothing() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "stall.example";
    app.zone_with_origin(host, &origin.url).await;
    // Far more than the socket buffers between the proxy and a client that does not read.
    let size = 12 << 20;
    let want = body(size);
    origin.set("/big", Reply::ok(want.clone(), LONG).slow(256 << 10, Duration::from_millis(5)));

    let leader = StalledClient::start(&app.proxy, host, "/big").await;
    assert_eq!(origin.hits("/big"), 1);
    let followers = get_many(&app, host, "/big", 4);
    for follower in followers {
        let got = tokio::time::timeout(PATIENCE, follower).await.expect("a follower stalled").unwrap();
        assert_eq!((got.status, got.cache(), got.reserve()), (StatusCode::OK, "HIT", "EDGE"));
        assert!(got.body == want, "a follower's body came back altered ({} bytes)", got.body.len());
    }
    // Every follower is done, and the leader's client has still read nothing past its head.
    assert!(leader.body.len() < size);
    assert_eq!(origin.hits("/big"), 1, "one origin request");
    assert!(leader.finish(size).await == want[..], "the leader's body came back altered");
    let again = app.proxy_get(host, "/big").await;
    assert_eq!((again.cache(), origin.hits("/big")), ("HIT", 1));
}

/// Sends a GET of `path` with `headers` and returns once its response head has arrived.
async fn head_of(app: &TestApp, host: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.proxy_client().request(reqwest::Method::GET, host, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(PATIENCE, request.send()).await.expect("a response head").unwrap()
}

/// Reads body chunks until at least `n` bytes have come.
async fn read_at_least(resp: &mut reqwest::Response, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = tokio::time::timeout(PATIENCE, resp.chunk()).await.expect("more of the body").unwrap();
        got.extend_from_slice(&chunk.expect("the body ended early"));
    }
    got
}

/// Reads the rest of a body.
async fn rest_of(resp: reqwest::Response) -> reqwest::Result<Bytes> {
    tokio::time::timeout(PATIENCE, resp.bytes()).await.expect("the rest of the body")
}

fn cache_status(resp: &reqwest::Response) -> &str {
    resp.headers()["cf-cache-status"].to_str().unwrap()
}

/// A request that arrives when the body is half there joins the stream: it gets that half at once, the
/// rest as it comes, and no origin request of its own; so do a range request (cut from the stream) and a
/// `HEAD` (the head alone).
#[tokio::test]
async fn a_request_arriving_mid_body_joins_the_stream() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "midway.example";
    app.zone_with_origin(host, &origin.url).await;
    let size = 200_000;
    let want = body(size);
    let (open, gate) = watch::channel(false);
    origin.set("/half", Reply::ok(want.clone(), LONG).gated(gate));

    let mut leader = head_of(&app, host, "/half", &[]).await;
    let mut got = read_at_least(&mut leader, 1).await;
    let mut joiner = head_of(&app, host, "/half", &[]).await;
    assert_eq!(cache_status(&joiner), "HIT");
    let first_half = read_at_least(&mut joiner, size / 2).await;
    assert!(first_half[..] == want[..size / 2], "the joiner got what had arrived, with the rest held back");
    let ranged = head_of(&app, host, "/half", &[("range", "bytes=10-19")]).await;
    assert_eq!((ranged.status(), cache_status(&ranged)), (StatusCode::PARTIAL_CONTENT, "HIT"));
    assert!(rest_of(ranged).await.unwrap() == want[10..20]);
    let head = app.proxy_client().request(reqwest::Method::HEAD, host, "/half").send();
    let head = tokio::time::timeout(PATIENCE, head).await.expect("a HEAD answer").unwrap();
    assert_eq!((head.status(), cache_status(&head)), (StatusCode::OK, "HIT"));
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert!(rest_of(head).await.unwrap().is_empty());
    assert_eq!(origin.hits("/half"), 1, "all of them while the body was half there");

    open.send(true).unwrap();
    got.extend_from_slice(&rest_of(leader).await.unwrap());
    assert!(got == want[..], "the leader's body came back altered");
    let mut joined = first_half;
    joined.extend_from_slice(&rest_of(joiner).await.unwrap());
    assert!(joined == want[..], "the joiner's body came back altered");
    assert_eq!(origin.hits("/half"), 1);
}

/// An origin that announces a body and closes the connection halfway through: every client's body ends in
/// an error, and nothing is kept; the next request asks the origin again.
#[tokio::test]
async fn a_body_cut_short_fails_every_client_and_fills_nothing() {
    let app = spawn_app().await;
    let size = 100_000;
    let want = body(size);
    let (cut, cut_rx) = watch::channel(false);
    let served = want.clone();
    let origin = ScriptedOrigin::start(move |n, mut stream| {
        let (served, mut cut_rx) = (served.clone(), cut_rx.clone());
        async move {
            read_request_head(&mut stream).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {size}\r\ncache-control: {LONG}\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            if n == 0 {
                stream.write_all(&served[..size / 2]).await.unwrap();
                let _ = cut_rx.wait_for(|cut| *cut).await;
            } else {
                stream.write_all(&served).await.unwrap();
            }
        }
    })
    .await;
    let host = "cut.example";
    app.zone_with_origin(host, &origin.url).await;

    let mut leader = head_of(&app, host, "/c", &[]).await;
    read_at_least(&mut leader, 1).await;
    let mut follower = head_of(&app, host, "/c", &[]).await;
    assert_eq!(cache_status(&follower), "HIT");
    read_at_least(&mut follower, size / 2).await;
    cut.send(true).unwrap();
    assert!(rest_of(leader).await.is_err(), "the leader's client saw a whole body");
    assert!(rest_of(follower).await.is_err(), "the follower saw a whole body");

    let again = app.proxy_get(host, "/c").await;
    assert_eq!((again.status, again.cache()), (StatusCode::OK, "MISS"));
    assert!(again.body == want);
    assert_eq!(origin.connections.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// The first client leaves as soon as it has the head: the body is still read from the origin, the others
/// get all of it, and it is kept.
#[tokio::test]
async fn followers_finish_and_the_object_is_kept_when_the_leaders_client_leaves() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "leave.example";
    app.zone_with_origin(host, &origin.url).await;
    let size = 200_000;
    let want = body(size);
    let (open, gate) = watch::channel(false);
    origin.set("/l", Reply::ok(want.clone(), LONG).gated(gate));

    let leader = StalledClient::start(&app.proxy, host, "/l").await;
    drop(leader);
    let mut followers = Vec::new();
    for _ in 0..3 {
        let follower = head_of(&app, host, "/l", &[]).await;
        assert_eq!(cache_status(&follower), "HIT");
        followers.push(follower);
    }
    open.send(true).unwrap();
    for follower in followers {
        assert!(rest_of(follower).await.unwrap() == want, "a follower's body came back altered");
    }
    let again = app.proxy_get(host, "/l").await;
    assert_eq!((again.cache(), again.reserve()), ("HIT", "EDGE"));
    assert!(again.body == want);
    assert_eq!(origin.hits("/l"), 1);
}

/// An object the edge tier does not take (the reserve alone does) is not shared as it arrives: a request
/// waiting for its fill waits at most `--coalesce-timeout`, then asks the origin itself — without waiting
/// for the first body to end.
#[tokio::test]
async fn a_fill_not_shared_is_waited_for_at_most_the_coalesce_timeout() {
    let app = spawn_configured(|c| {
        c.proxy.coalesce_timeout = Duration::from_millis(200);
        // One object may take a sixteenth: 64 KiB.
        c.proxy.edge_cache_bytes = 16 << 16;
    })
    .await;
    let origin = TestOrigin::start().await;
    let host = "large.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    let size = 256 << 10;
    let want = body(size);
    let (open, gate) = watch::channel(false);
    origin.set("/large", Reply::ok(want.clone(), LONG).gated(gate));

    let mut leader = head_of(&app, host, "/large", &[]).await;
    let mut got = read_at_least(&mut leader, 1).await;
    let follower = {
        let proxy = app.proxy_client();
        tokio::spawn(async move { proxy.get(host, "/large").await })
    };
    until("the waiting request asks the origin itself", || origin.hits("/large") == 2).await;
    assert!(!*open.borrow(), "while the first body is still held back");
    open.send(true).unwrap();
    got.extend_from_slice(&rest_of(leader).await.unwrap());
    assert!(got == want[..]);
    let follower = tokio::time::timeout(PATIENCE, follower).await.expect("the follower").unwrap();
    assert_eq!((follower.status, follower.cache()), (StatusCode::OK, "MISS"));
    assert!(follower.body == want);
}

/// An unsafe request that succeeds invalidates its URI (RFC 9111 §4.4): a fill under way then never lands,
/// and a request that starts after the invalidation does not join it — it asks the origin itself.
#[tokio::test]
async fn a_request_after_an_invalidating_post_does_not_join_the_fill_under_way() {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    let host = "invalidated-midway.example";
    app.zone_with_origin(host, &origin.url).await;
    let size = 100_000;
    let (open, gate) = watch::channel(false);
    origin.set("/doc", Reply::ok(body(size), LONG).gated(gate));

    let mut leader = head_of(&app, host, "/doc", &[]).await;
    read_at_least(&mut leader, 1).await;
    let post = app.proxy_client().request(reqwest::Method::POST, host, "/doc").body("x").send();
    let post = tokio::time::timeout(PATIENCE, post).await.expect("the POST's head").unwrap();
    assert_eq!(post.status(), StatusCode::OK);
    drop(post);
    let client = app.proxy_client();
    let after = tokio::spawn(async move { client.get(host, "/doc").await });
    until("the request after the POST asks the origin", || origin.hits("/doc") == 3).await;
    open.send(true).unwrap();
    let after = tokio::time::timeout(PATIENCE, after).await.expect("an answer").unwrap();
    assert_eq!((after.status, after.cache(), after.body.len()), (StatusCode::OK, "MISS", size));
}
