//! The proxy listener over TLS (HTTP/2 and HTTP/1.1 by ALPN; the certificate re-read on SIGHUP) and with
//! h2c, against clients that verify the certificate: reqwest over rustls, curl, and raw sockets for the
//! timeouts (`limits`). Each test makes its own self-signed certificate for `tls.example`.

mod limits;

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use cache_reserve::{
    domain::{Permission, TokenScope},
    net::tls::TlsFiles,
    server::{ProxyTransport, ServeConfig},
};
use reqwest::Version;
use rustls::pki_types::CertificateDer;

use crate::{helpers::*, proxy::Seeded, proxy::origin::*};

const HOST: &str = "tls.example";

/// A self-signed certificate for [`HOST`] (and `nobody.example`), as PEM files, and its DER for clients to trust.
struct Cert {
    files: TlsFiles,
    der: CertificateDer<'static>,
}

fn cert(dir: &Path, name: &str) -> Cert {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![HOST.to_owned(), "nobody.example".to_owned()]).unwrap();
    let files = TlsFiles { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, signing_key.serialize_pem()).unwrap();
    Cert { files, der: cert.der().clone() }
}

/// A rustls client configuration that trusts `trusted` alone and offers `alpn`.
fn client_tls(trusted: &CertificateDer<'static>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client that reaches [`HOST`] at `proxy` and trusts `trusted` alone: HTTP/2 when `h2` (ALPN `h2` then
/// `http/1.1`), else HTTP/1.1 only.
fn client(trusted: &CertificateDer<'static>, proxy: SocketAddr, h2: bool) -> reqwest::Client {
    let alpn: &[&[u8]] = if h2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
    let builder =
        reqwest::Client::builder().tls_backend_preconfigured(client_tls(trusted, alpn)).resolve(HOST, proxy).no_proxy();
    if h2 { builder } else { builder.http1_only() }.build().unwrap()
}

/// The socket address of `http://addr` or `https://addr`.
fn addr_of(url: &str) -> SocketAddr {
    url.rsplit("://").next().unwrap().parse().unwrap()
}

fn url(proxy: SocketAddr, path: &str) -> String {
    format!("https://{HOST}:{}{path}", proxy.port())
}

async fn tls_app(cert: &Cert, configure: impl FnOnce(&mut ServeConfig)) -> (TestApp, SocketAddr) {
    let files = cert.files.clone();
    let app = spawn_configured(|c| {
        c.proxy_transport = ProxyTransport::Tls(files);
        configure(c);
    })
    .await;
    let proxy = addr_of(&app.proxy);
    (app, proxy)
}

#[tokio::test]
async fn a_verifying_client_gets_a_miss_then_hits_over_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    let (app, proxy) = tls_app(&cert, |_| {}).await;
    let origin = TestOrigin::start().await;
    let zone = app.zone_with_origin(HOST, &origin.url).await;
    origin.set("/a", Reply::ok("over tls", "max-age=600"));

    let h2 = client(&cert.der, proxy, true);
    let first = h2.get(url(proxy, "/a")).send().await.unwrap();
    assert_eq!(first.version(), Version::HTTP_2);
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cf-cache-status"], "MISS");
    assert_eq!(first.text().await.unwrap(), "over tls");
    let second = h2.get(url(proxy, "/a")).send().await.unwrap();
    assert_eq!(second.version(), Version::HTTP_2);
    assert_eq!(second.headers()["cf-cache-status"], "HIT");
    assert_eq!(second.text().await.unwrap(), "over tls");

    let h1 = client(&cert.der, proxy, false);
    let third = h1.get(url(proxy, "/a")).send().await.unwrap();
    assert_eq!(third.version(), Version::HTTP_11);
    assert_eq!(third.headers()["cf-cache-status"], "HIT");
    assert_eq!(third.text().await.unwrap(), "over tls");

    assert_eq!(origin.hits("/a"), 1);
    let (_, seen, _) = origin.last("/a").unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], HOST);

    // A purge by URL reaches the copy stored for requests over TLS.
    let token = app.token(&[Permission::CachePurge], TokenScope::AllZones).await;
    let purge = app.post(&format!("/zones/{zone}/purge_cache"), &token);
    ok(purge.json(&serde_json::json!({"files": [format!("https://{HOST}/a")]})).send().await.unwrap()).await;
    let after = h2.get(url(proxy, "/a")).send().await.unwrap();
    assert_eq!(after.headers()["cf-cache-status"], "MISS");
    assert_eq!(origin.hits("/a"), 2);

    // A client that does not trust the certificate is refused at the handshake.
    let stranger = self::cert(dir.path(), "stranger");
    assert!(client(&stranger.der, proxy, true).get(url(proxy, "/a")).send().await.is_err());
}

#[tokio::test]
async fn curl_gets_http2_200() {
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    let (app, proxy) = tls_app(&cert, |_| {}).await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin(HOST, &origin.url).await;
    origin.set("/curl", Reply::ok("hello curl", "max-age=600"));
    let resolve = format!("{HOST}:{}:127.0.0.1", proxy.port());
    for expected in ["MISS", "HIT"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--http2", "--cacert"])
            .arg(&cert.files.cert)
            .args(["--resolve", &resolve, "-D", "-", &url(proxy, "/curl")])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.starts_with("HTTP/2 200"), "{text}");
        assert!(text.contains(&format!("cf-cache-status: {expected}")), "{text}");
        assert!(text.ends_with("hello curl"), "{text}");
    }
}

/// Puts a certificate and key in place under `live`'s names, each by a rename (as a deploy tool would).
fn install(from: &TlsFiles, live: &TlsFiles) {
    for (src, dst) in [(&from.cert, &live.cert), (&from.key, &live.key)] {
        let staged = dst.with_extension("new");
        std::fs::copy(src, &staged).unwrap();
        std::fs::rename(&staged, dst).unwrap();
    }
}

#[tokio::test]
async fn sighup_serves_the_new_certificate_to_new_connections_and_keeps_open_ones() {
    let origin = TestOrigin::start().await;
    origin.set("/r", Reply::ok("still here", "no-store"));
    let seeded = Seeded::new(HOST, &origin.url).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cert(dir.path(), "a"), cert(dir.path(), "b"));
    let live = TlsFiles { cert: dir.path().join("live.crt"), key: dir.path().join("live.key") };
    install(&a.files, &live);
    let server = ServerProcess::start(
        &seeded.stores,
        &["--proxy-tls-cert", live.cert.to_str().unwrap(), "--proxy-tls-key", live.key.to_str().unwrap()],
    );
    assert!(server.proxy.starts_with("https://"), "{}", server.proxy);
    let proxy = addr_of(&server.proxy);

    // This client trusts A alone, so once B is served it can only succeed on the connection it holds.
    let old = client(&a.der, proxy, true);
    let before = old.get(url(proxy, "/r")).send().await.unwrap();
    assert_eq!((before.status(), before.version()), (reqwest::StatusCode::OK, Version::HTTP_2));
    assert!(client(&b.der, proxy, true).get(url(proxy, "/r")).send().await.is_err());

    install(&b.files, &live);
    // SAFETY: kill sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client(&b.der, proxy, true).get(url(proxy, "/r")).send().await {
            Ok(r) => {
                assert_eq!(r.text().await.unwrap(), "still here");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "certificate B never served: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(client(&a.der, proxy, true).get(url(proxy, "/r")).send().await.is_err(), "A is still served");
    let after = old.get(url(proxy, "/r")).send().await.unwrap();
    assert_eq!(after.text().await.unwrap(), "still here", "the connection opened under A still works");

    // A reload that fails (a half-written certificate file) is logged, and B stays in force.
    std::fs::write(&live.cert, "-----BEGIN CERTIFICATE-----\ntruncat").unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) }, 0);
    let logged = server.wait_for_log("could not reload the TLS certificate").await;
    assert!(logged.contains("ERROR") && logged.contains("live.crt"), "{logged}");
    let still = client(&b.der, proxy, true).get(url(proxy, "/r")).send().await.unwrap();
    assert_eq!(still.text().await.unwrap(), "still here");
    // The server did not take SIGHUP for a signal to stop. (Waited for off this thread, so that the client's
    // connection can answer the server's `GOAWAY` exchange.)
    let exit = tokio::task::spawn_blocking(move || server.terminate()).await.unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test]
async fn with_h2c_the_plain_listener_serves_http2_with_prior_knowledge_and_http1() {
    let app = spawn_configured(|c| c.proxy_transport = ProxyTransport::H2c).await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin("h2c.example", &origin.url).await;
    origin.set("/c", Reply::ok("clear text", "max-age=600"));
    let proxy = addr_of(&app.proxy);
    let h2c = reqwest::Client::builder().http2_prior_knowledge().resolve("h2c.example", proxy).build().unwrap();
    let url = format!("http://h2c.example:{}/c", proxy.port());
    for expected in ["MISS", "HIT"] {
        let got = h2c.get(&url).send().await.unwrap();
        assert_eq!(got.version(), Version::HTTP_2);
        assert_eq!(got.headers()["cf-cache-status"], expected);
        assert_eq!(got.text().await.unwrap(), "clear text");
    }
    let (_, seen, _) = origin.last("/c").unwrap();
    assert_eq!(seen["x-forwarded-proto"], "http");
    // HTTP/1.1 on the same listener, the same cache key.
    let got = app.proxy_get("h2c.example", "/c").await;
    assert_eq!((got.cache(), got.text().as_str()), ("HIT", "clear text"));
    assert_eq!(origin.hits("/c"), 1);
}

#[tokio::test]
async fn over_http2_uploads_reach_the_origin_and_an_unread_body_leaves_the_connection_usable() {
    let dir = tempfile::tempdir().unwrap();
    let cert = cert(dir.path(), "a");
    let (app, proxy) = tls_app(&cert, |_| {}).await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin(HOST, &origin.url).await;
    origin.set("/up", Reply::ok("taken", "no-store"));
    let h2 = client(&cert.der, proxy, true);

    let got = h2.post(url(proxy, "/up")).body("a body of 21 bytes...").send().await.unwrap();
    assert_eq!(got.version(), Version::HTTP_2);
    assert_eq!((got.status().as_u16(), got.headers()["cf-cache-status"].to_str().unwrap()), (200, "DYNAMIC"));
    let (_, seen, body) = origin.last("/up").unwrap();
    assert_eq!(body, "a body of 21 bytes...");
    assert_eq!(seen["content-length"], "21");
    assert_eq!(seen["host"], origin.url.trim_start_matches("http://"));

    // An unknown host is answered before its body is read: no `Connection` field (not HTTP/2's), and the
    // connection serves the next request.
    let other = format!("https://nobody.example:{}/x", proxy.port());
    let h2_other = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(&cert.der, &[b"h2"]))
        .resolve("nobody.example", proxy)
        .build()
        .unwrap();
    let refused = h2_other.post(&other).body(vec![b'x'; 100_000]).send().await.unwrap();
    assert_eq!(refused.status(), 421);
    assert!(refused.headers().get("connection").is_none());
    let next = h2_other.get(&other).send().await.unwrap();
    assert_eq!((next.version(), next.status().as_u16()), (Version::HTTP_2, 421));
}
