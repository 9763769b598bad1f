//! RFC 9111 over real HTTP, one test per class of fault the conformance suite or other caches' bug reports
//! found: each stores a response from a scripted origin and checks what a later request gets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{origin::*, *};

/// A proxy with one zone in front of a fresh origin.
async fn setup(host: &str) -> (TestApp, TestOrigin) {
    let app = spawn_app().await;
    let origin = TestOrigin::start().await;
    app.zone_with_origin(host, &origin.url).await;
    (app, origin)
}

fn all(got: &Got, name: &str) -> Vec<String> {
    got.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn repeated_field_lines_survive_and_vary_over_two_lines_never_serves_a_wrong_variant() {
    let (app, origin) = setup("lines.example").await;
    let host = "lines.example";
    let reply = Reply::ok("en gzip", "max-age=1")
        .header("etag", "\"v\"")
        .header("link", "</a.css>; rel=preload")
        .header("link", "</b.js>; rel=preload")
        .header("vary", "Accept-Language")
        .header("vary", "Accept-Encoding")
        .bare_304();
    origin.set("/p", reply);
    let c = app.proxy_client();
    let en_gzip = [("accept-language", "en"), ("accept-encoding", "gzip")];
    assert_eq!(c.get_with(host, "/p", &en_gzip).await.cache(), "MISS");
    let hit = c.get_with(host, "/p", &en_gzip).await;
    assert_eq!(hit.cache(), "HIT");
    assert_eq!(all(&hit, "link"), ["</a.css>; rel=preload", "</b.js>; rel=preload"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revalidated = c.get_with(host, "/p", &en_gzip).await;
    assert_eq!(revalidated.cache(), "REVALIDATED");
    assert_eq!(all(&revalidated, "vary"), ["Accept-Language", "Accept-Encoding"]);
    // Same language, another encoding: the second Vary line still selects.
    origin.set("/p", Reply::ok("en br", "max-age=60").header("vary", "Accept-Language, Accept-Encoding"));
    let other = c.get_with(host, "/p", &[("accept-language", "en"), ("accept-encoding", "br")]).await;
    assert_eq!((other.cache(), other.text().as_str()), ("MISS", "en br"));
}

#[tokio::test]
async fn a_304_updates_the_stored_fields_its_vary_included_and_restarts_the_age() {
    let (app, origin) = setup("update.example").await;
    let host = "update.example";
    let reply = Reply::ok("english", "max-age=100").header("etag", "\"e\"").header("age", "99").on_304(&[
        ("etag", "\"e\""),
        ("cache-control", "max-age=100"),
        ("vary", "Accept-Language"),
        ("x-added", "by the 304"),
    ]);
    origin.set("/u", reply);
    let c = app.proxy_client();
    let en = [("accept-language", "en")];
    let first = c.get_with(host, "/u", &en).await;
    assert_eq!((first.cache(), first.headers["age"].to_str().unwrap()), ("MISS", "99"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let got = c.get_with(host, "/u", &en).await;
    assert_eq!((got.cache(), got.text().as_str()), ("REVALIDATED", "english"));
    assert_eq!(got.headers["x-added"], "by the 304");
    // The 304 carried no Age: the stored 99 is gone, the copy is young and fresh again.
    assert!(got.headers["age"].to_str().unwrap().parse::<u64>().unwrap() < 5, "{:?}", got.headers["age"]);
    assert_eq!(c.get_with(host, "/u", &en).await.cache(), "HIT");
    // The 304 added Vary: Accept-Language, so French never gets the English copy.
    origin.set("/u", Reply::ok("français", "max-age=100").header("vary", "Accept-Language"));
    let fr = c.get_with(host, "/u", &[("accept-language", "fr")]).await;
    assert_eq!((fr.cache(), fr.text().as_str()), ("MISS", "français"));
}

#[tokio::test]
async fn absurd_ages_and_lifetimes_neither_panic_nor_make_a_stale_copy_fresh() {
    let (app, origin) = setup("absurd.example").await;
    let host = "absurd.example";
    let c = app.proxy_client();
    for (path, age) in [("/u64", "18446744073709551615"), ("/huge", "99999999999999999999"), ("/list", "7200, 0")] {
        origin.set(path, Reply::ok("old", "max-age=3600").header("age", age));
        for _ in 0..3 {
            let got = c.get(host, path).await;
            assert_eq!(got.status, StatusCode::OK, "{path}");
            assert_ne!(got.cache(), "HIT", "{path}: an ancient copy served fresh");
        }
    }
    for (path, cc) in [("/max", "max-age=99999999999999999999"), ("/smax", "s-maxage=18446744073709551616")] {
        origin.set(path, Reply::ok("forever", cc));
        c.get(host, path).await;
        let got = c.get(host, path).await;
        assert_eq!((got.status, got.cache()), (StatusCode::OK, "HIT"), "{path}: saturates at 2^31 seconds");
    }
}

#[tokio::test]
async fn head_is_answered_from_a_get_and_reports_the_stored_length_even_for_a_chunked_original() {
    let (app, origin) = setup("head.example").await;
    let host = "head.example";
    origin.set("/chunked", Reply::ok(vec![b'x'; 100], "max-age=60").chunked());
    let c = app.proxy_client();
    assert_eq!(c.get(host, "/chunked").await.cache(), "MISS");
    let head = c.request(reqwest::Method::HEAD, host, "/chunked").send().await.unwrap();
    assert_eq!(
        (head.headers()["cf-cache-status"].to_str().unwrap(), head.headers()["content-length"].to_str().unwrap()),
        ("HIT", "100")
    );
    assert!(head.bytes().await.unwrap().is_empty());
    // A HEAD miss asks the origin for the whole object (as Cloudflare does) and fills the cache with it.
    origin.set("/h", Reply::ok("whole body", "max-age=60"));
    let head = c.request(reqwest::Method::HEAD, host, "/h").send().await.unwrap();
    assert_eq!(head.headers()["cf-cache-status"], "MISS");
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(origin.last("/h").unwrap().0, "GET");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = c.get(host, "/h").await;
        if got.cache() == "HIT" {
            assert_eq!(got.text(), "whole body");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the HEAD's fill never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(origin.hits("/h"), 1);
}

#[tokio::test]
async fn responses_from_an_http_1_0_origin_go_out_as_http_1_1_and_keep_the_connection() {
    // An origin that speaks HTTP/1.0 and closes after each response.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ =
                    s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nCache-Control: no-store\r\n\r\nhello").await;
            });
        }
    });
    let app = spawn_app().await;
    app.zone_with_origin("old.example", &format!("http://{addr}")).await;
    let mut client = tokio::net::TcpStream::connect(app.proxy.trim_start_matches("http://")).await.unwrap();
    for _ in 0..2 {
        client.write_all(b"GET / HTTP/1.1\r\nHost: old.example\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"hello") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed the connection: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    }
}

#[tokio::test]
async fn request_cache_directives_are_ignored_unless_the_operator_says_otherwise() {
    let host = "directives.example";
    for honour in [false, true] {
        let app = spawn_configured(|c| c.proxy.honor_request_cache_control = honour).await;
        let origin = TestOrigin::start().await;
        app.zone_with_origin(host, &origin.url).await;
        origin.set("/d", Reply::ok("body", "max-age=600").header("etag", "\"d\""));
        let c = app.proxy_client();
        c.get(host, "/d").await;
        let want = if honour { "REVALIDATED" } else { "HIT" };
        for asks in [[("cache-control", "no-cache")], [("pragma", "no-cache")], [("cache-control", "max-age=0")]] {
            assert_eq!(c.get_with(host, "/d", &asks).await.cache(), want, "{asks:?}, honour {honour}");
        }
        let only = c.get_with(host, "/nothing", &[("cache-control", "only-if-cached")]).await;
        assert_eq!(only.status == StatusCode::GATEWAY_TIMEOUT, honour);
    }
}

#[tokio::test]
async fn concurrent_revalidations_make_one_origin_request() {
    let (app, origin) = setup("stampede.example").await;
    let host = "stampede.example";
    origin.set("/s", Reply::ok("hot", "max-age=1").header("etag", "\"s\"").delay(Duration::from_millis(300)));
    app.proxy_get(host, "/s").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answers = futures::future::join_all((0..20).map(|_| {
        let c = app.proxy_client();
        tokio::spawn(async move { c.get(host, "/s").await })
    }))
    .await;
    assert!(answers.into_iter().all(|a| a.unwrap().text() == "hot"));
    assert_eq!((origin.hits("/s"), origin.not_modified("/s")), (2, 1), "revalidations were not coalesced");
}

#[tokio::test]
async fn the_cache_validates_with_its_own_validators_and_answers_the_clients_from_the_result() {
    let (app, origin) = setup("validators.example").await;
    let host = "validators.example";
    let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
    origin.set("/lm", Reply::ok("dated", "max-age=1").header("last-modified", lm).bare_304());
    let c = app.proxy_client();
    c.get(host, "/lm").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The client's tag is not ours to send: the stored copy has no ETag, so its own bare 304 (which would
    // match anything) must not be read as validating it through the client's tag.
    let got = c.get_with(host, "/lm", &[("if-none-match", "\"client-tag\"")]).await;
    assert_eq!((got.status, got.cache(), got.text().as_str()), (StatusCode::OK, "REVALIDATED", "dated"));
    let (_, asked, _) = origin.last("/lm").unwrap();
    assert!(!asked.contains_key("if-none-match"), "{asked:?}");
    assert_eq!(asked["if-modified-since"], lm);
    // The client's own conditionals are answered from cache.
    assert_eq!(c.get_with(host, "/lm", &[("if-modified-since", lm)]).await.status, StatusCode::NOT_MODIFIED);
    let since = "Sunday, 01-Jan-23 00:00:00 GMT";
    assert_eq!(c.get_with(host, "/lm", &[("if-modified-since", since)]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_stored_date_is_kept_in_imf_fixdate() {
    let (app, origin) = setup("date.example").await;
    let host = "date.example";
    let sent = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(2));
    let sent = sent.as_str();
    origin.set("/d", Reply::ok("dated", "max-age=600").header("date", sent));
    assert_eq!(app.proxy_get(host, "/d").await.headers["date"], sent);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hit = app.proxy_get(host, "/d").await;
    assert_eq!((hit.cache(), hit.headers["date"].to_str().unwrap()), ("HIT", sent));
    // No Date from the origin: the one recorded on receipt, an IMF-fixdate.
    origin.set("/none", Reply::ok("undated", "max-age=600"));
    app.proxy_get(host, "/none").await;
    let date = app.proxy_get(host, "/none").await.headers["date"].to_str().unwrap().to_owned();
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
}

#[tokio::test]
async fn directive_names_are_case_insensitive_and_all_three_date_forms_are_read() {
    let (app, origin) = setup("parse.example").await;
    let host = "parse.example";
    let in_a_day = std::time::SystemTime::now() + Duration::from_secs(86_400);
    let imf = httpdate::fmt_http_date(in_a_day);
    // RFC 850 and asctime forms of the same instant.
    let t = time::OffsetDateTime::from(in_a_day);
    let rfc850 = t
        .format(time::macros::format_description!(
            "[weekday], [day]-[month repr:short]-[year repr:last_two] [hour]:[minute]:[second] GMT"
        ))
        .unwrap();
    let asctime = t
        .format(time::macros::format_description!(
            "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
        ))
        .unwrap();
    let cases = [
        ("/maxage", "MaX-AgE=600", None, "HIT"),
        ("/nocache", "No-CaChE, max-age=600", None, "REVALIDATED"),
        ("/imf", "", Some(imf.clone()), "HIT"),
        ("/rfc850", "", Some(rfc850), "HIT"),
        ("/asctime", "", Some(asctime), "HIT"),
        // Not an HTTP-date: already expired (RFC 9111 §5.3), so validated before use.
        ("/spaced", "", Some(imf.replacen(' ', "  ", 1)), "REVALIDATED"),
    ];
    for (path, cc, expires, _) in &cases {
        let mut reply = Reply::ok("body", cc).header("etag", "\"p\"");
        if let Some(e) = expires {
            reply = reply.header("expires", e);
        }
        origin.set(path, reply);
        app.proxy_get(host, path).await;
    }
    for (path, _, expires, want) in &cases {
        let got = app.proxy_get(host, path).await;
        assert_eq!(got.cache(), *want, "{path} {expires:?}");
    }
}

#[tokio::test]
async fn cdn_cache_control_takes_precedence_and_cloudflares_own_is_never_forwarded() {
    let (app, origin) = setup("cdn.example").await;
    let host = "cdn.example";
    origin.set("/cdn", Reply::ok("cdn", "no-store").header("cdn-cache-control", "max-age=600"));
    origin.set("/cf", Reply::ok("cf", "private").header("cloudflare-cdn-cache-control", "max-age=600"));
    origin.set("/bad", Reply::ok("bad", "max-age=600").header("cdn-cache-control", "MAX-AGE=600, no-store"));
    for path in ["/cdn", "/cf", "/bad"] {
        let miss = app.proxy_get(host, path).await;
        let hit = app.proxy_get(host, path).await;
        assert_eq!((miss.cache(), hit.cache()), ("MISS", "HIT"), "{path}");
        for got in [&miss, &hit] {
            assert!(!got.headers.contains_key("cloudflare-cdn-cache-control"), "{path}");
        }
    }
    // CDN-Cache-Control is for downstream CDNs too: it goes on.
    assert_eq!(app.proxy_get(host, "/cdn").await.headers["cdn-cache-control"], "max-age=600");
    assert_eq!(origin.hits("/cdn") + origin.hits("/cf") + origin.hits("/bad"), 3);
    // A Surrogate-Control with nothing for this cache (an ESI capability) leaves Cache-Control in force.
    origin.set("/esi", Reply::ok("per user", "private").header("surrogate-control", "content=\"ESI/1.0\""));
    for _ in 0..2 {
        assert_eq!(app.proxy_get(host, "/esi").await.cache(), "BYPASS");
    }
}

#[tokio::test]
async fn a_variant_is_keyed_by_what_the_origin_saw_not_by_fields_the_client_made_hop_by_hop() {
    let (app, origin) = setup("hop.example").await;
    let host = "hop.example";
    origin.set("/v", Reply::ok("english (no language asked)", "max-age=600").header("vary", "Accept-Language"));
    let c = app.proxy_client();
    // `Connection` names Accept-Language, so the origin never sees it and answers for no language.
    let sneaky = [("accept-language", "fr"), ("connection", "Accept-Language")];
    assert_eq!(c.get_with(host, "/v", &sneaky).await.cache(), "MISS");
    let (_, asked, _) = origin.last("/v").unwrap();
    assert!(!asked.contains_key("accept-language"), "{asked:?}");
    // A French client must not get that answer as a hit.
    origin.set("/v", Reply::ok("français", "max-age=600").header("vary", "Accept-Language"));
    let fr = c.get_with(host, "/v", &[("accept-language", "fr")]).await;
    assert_eq!((fr.cache(), fr.text().as_str()), ("MISS", "français"));
}
