//! The proxy listener's limits over TLS and HTTP/2: silent clients, the connection cap, streams that stall,
//! and shutdown.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::Version;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;

use super::{HOST, addr_of, cert, client, client_tls, tls_app, url};
use crate::{helpers::*, proxy::Seeded, proxy::origin::*, raw::*};

/// Reads and discards until the peer closes. Fails the test if it stays open past `patience`.
async fn read_until_closed_tls<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, patience: Duration) {
    let mut chunk = vec![0u8; 1 << 14];
    loop {
        match tokio::time::timeout(patience, stream.read(&mut chunk)).await {
            Err(_) => panic!("the connection is still open after {patience:?}"),
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_before_and_after_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    let (_app, proxy) = tls_app(&cert, |c| {
        c.proxy_conns.header_timeout = Duration::from_secs(1);
        c.proxy_conns.idle_timeout = Duration::from_secs(2);
    })
    .await;

    // Opens TCP and sends nothing: no handshake within the header timeout.
    let started = Instant::now();
    let mut silent = connect(&proxy.to_string()).await;
    assert_eq!(read_until_closed(&mut silent, Duration::from_secs(20)).await, 0);
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());

    // Completes the handshake (HTTP/2 by ALPN), then sends nothing: idle past the keep-alive timeout.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(&cert.der, &[b"h2"])));
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from(HOST).unwrap(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    read_until_closed_tls(&mut tls, Duration::from_secs(20)).await;
    assert!(started.elapsed() >= Duration::from_millis(1900), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn the_connection_cap_holds_over_tls_and_a_refused_client_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    let (app, proxy) = tls_app(&cert, |c| c.proxy_conns.max_connections = 2).await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin(HOST, &origin.url).await;
    origin.set("/cap", Reply::ok("in", "no-store"));
    let mut held = vec![connect(&proxy.to_string()).await, connect(&proxy.to_string()).await];
    // Both held connections are taken once a refusal is seen; until then a handshake may still get in.
    let deadline = Instant::now() + Duration::from_secs(20);
    while client(&cert.der, proxy, true).get(url(proxy, "/cap")).send().await.is_ok() {
        assert!(Instant::now() < deadline, "the cap of 2 connections never refused one");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A connection and its one request take both slots.
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(got) = client(&cert.der, proxy, true).get(url(proxy, "/cap")).send().await {
            assert_eq!(got.text().await.unwrap(), "in");
            break;
        }
        assert!(Instant::now() < deadline, "the freed connection slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_lets_an_http2_request_in_flight_finish() {
    let origin = TestOrigin::start().await;
    origin.set("/slow", Reply::ok("worth the wait", "no-store").delay(Duration::from_secs(1)));
    let seeded = Seeded::new(HOST, &origin.url).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    let (c, k) = (cert.files.cert.to_str().unwrap(), cert.files.key.to_str().unwrap());
    let server = ServerProcess::start(&seeded.stores, &["--proxy-tls-cert", c, "--proxy-tls-key", k]);
    let proxy = addr_of(&server.proxy);
    let h2 = client(&cert.der, proxy, true);
    let request = tokio::spawn(h2.get(url(proxy, "/slow")).send());
    let deadline = Instant::now() + Duration::from_secs(20);
    while origin.hits("/slow") == 0 {
        assert!(Instant::now() < deadline, "the request never reached the origin");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exit = tokio::task::spawn_blocking(move || server.terminate());
    let got = request.await.unwrap().unwrap();
    assert_eq!(got.version(), Version::HTTP_2);
    assert_eq!(got.text().await.unwrap(), "worth the wait");
    assert_eq!(exit.await.unwrap().code(), Some(0));
}

#[tokio::test]
async fn an_http2_client_that_leaves_a_response_untaken_is_dropped_after_the_send_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    let (app, proxy) = tls_app(&cert, |c| c.proxy_conns.send_timeout = Duration::from_secs(1)).await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin(HOST, &origin.url).await;
    let size = 32 << 20;
    origin.set("/big", Reply::ok(vec![b'x'; size], "no-store"));
    origin.set("/small", Reply::ok("small", "no-store").delay(Duration::from_secs(2)));
    let h2 = client(&cert.der, proxy, true);
    // An origin slower than the send timeout is not the client's stall.
    let slow = h2.get(url(proxy, "/small")).send().await.unwrap();
    assert_eq!(slow.text().await.unwrap(), "small");

    let big = h2.get(url(proxy, "/big")).send().await.unwrap();
    assert_eq!(big.version(), Version::HTTP_2);
    // Takes nothing for well past the send timeout (1 s): its stream window fills and the stream stalls,
    // while the socket is read (HTTP/2's own frames) and never blocks...
    tokio::time::sleep(Duration::from_secs(4)).await;
    // ...so what it then finds is what was in flight, and the connection's end.
    assert!(big.bytes().await.is_err(), "the whole body was delivered to a client that took none of it");
}

#[tokio::test]
async fn each_open_http2_request_takes_a_connection_slot() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    // Three slots: the connection's, and two for requests.
    let (app, proxy) = tls_app(&cert, |c| c.proxy_conns.max_connections = 3).await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin(HOST, &origin.url).await;
    origin.set("/wait", Reply::ok("waited", "no-store").delay(Duration::from_secs(2)));
    origin.set("/now", Reply::ok("now", "no-store"));
    let h2 = client(&cert.der, proxy, true);
    // One connection first, for the four requests to share.
    assert_eq!(h2.get(url(proxy, "/now")).send().await.unwrap().text().await.unwrap(), "now");
    let requests: Vec<_> = (0..4).map(|_| tokio::spawn(h2.get(url(proxy, "/wait")).send())).collect();
    let mut statuses = Vec::new();
    for request in requests {
        let got = request.await.unwrap().unwrap();
        assert_eq!(got.version(), Version::HTTP_2);
        statuses.push(got.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503, 503]);
    // The slots come back with the responses.
    let again = h2.get(url(proxy, "/wait")).send().await.unwrap();
    assert_eq!(again.text().await.unwrap(), "waited");
}
