//! Memory held outside the caches is bounded: bodies gathered for the edge tier take a share of
//! `--edge-fill-buffer-bytes` first; past it, objects are served whole without filling the edge tier, and
//! every share comes back however the request ends.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::{origin::*, *};

const LONG: &str = "public, max-age=86400";
const SIZE: usize = 100_000;
const IN_USE: &str = "cache_reserve_edge_fill_buffer_bytes";

/// A distinct body of `SIZE` bytes.
fn body(name: &str) -> Bytes {
    Bytes::from(format!("{name};").into_bytes().into_iter().cycle().take(SIZE).collect::<Vec<_>>())
}

fn skipped(host: &str) -> String {
    format!("cache_reserve_edge_fills_skipped_total{{zone=\"{host}\"}}")
}

/// Waits (up to 30 s) until every series has its value.
async fn wait_metrics(app: &TestApp, want: &[(&str, f64)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = app.metrics().await;
        if want.iter().all(|(series, v)| sample(&metrics, series) == *v) {
            return;
        }
        assert!(Instant::now() < deadline, "still not {want:?}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn concurrent_misses_beyond_the_fill_budget_are_served_whole_without_filling_the_edge() {
    // Room for two bodies at a time.
    let app = spawn_configured(|c| c.proxy.edge_fill_buffer_bytes = (2 * SIZE + SIZE / 2) as u64).await;
    let origin = TestOrigin::start().await;
    let host = "budget.example";
    app.zone_with_origin(host, &origin.url).await;
    let (open, gate) = watch::channel(false);
    let paths: Vec<String> = (0..5).map(|i| format!("/o{i}")).collect();
    for path in &paths {
        origin.set(path, Reply::ok(body(path), LONG).gated(gate.clone()));
    }

    let requests: Vec<_> = paths
        .iter()
        .map(|path| {
            let (proxy, path) = (app.proxy_client(), path.clone());
            tokio::spawn(async move { proxy.get(host, &path).await })
        })
        .collect();
    // Every response has begun, and taken its share or not, before any body ends.
    wait_metrics(&app, &[(&skipped(host), 3.0), (IN_USE, (2 * SIZE) as f64)]).await;
    open.send(true).unwrap();
    for (path, request) in paths.iter().zip(requests) {
        let got = request.await.unwrap();
        assert_eq!((got.status, got.cache()), (StatusCode::OK, "MISS"));
        assert!(got.body == body(path), "{path} came back altered");
    }
    wait_metrics(&app, &[(IN_USE, 0.0)]).await;

    // The two within budget were filled; the three beyond it were not.
    let mut edge_hits = 0;
    for path in &paths {
        let got = app.proxy_get(host, path).await;
        assert!(got.body == body(path));
        match got.cache() {
            "HIT" => {
                edge_hits += 1;
                assert_eq!((got.reserve(), origin.hits(path)), ("EDGE", 1));
            }
            "MISS" => assert_eq!(origin.hits(path), 2),
            other => panic!("{path}: {other}"),
        }
    }
    assert_eq!(edge_hits, 2);
}

#[tokio::test]
async fn every_share_comes_back_when_clients_leave_mid_body_or_a_head_drains() {
    let app = spawn_configured(|c| c.proxy.edge_fill_buffer_bytes = (10 * SIZE) as u64).await;
    let origin = TestOrigin::start().await;
    let host = "leave.example";
    app.zone_with_origin(host, &origin.url).await;
    let (open, gate) = watch::channel(false);
    // One announces its length (its share taken at once), one does not (taken as it grows).
    origin.set("/known", Reply::ok(body("/known"), LONG).gated(gate.clone()));
    origin.set("/chunked", Reply::ok(body("/chunked"), LONG).chunked().gated(gate.clone()));

    let proxy = app.proxy_client();
    let mut leaving = Vec::new();
    for path in ["/known", "/chunked"] {
        let mut resp = proxy.request(reqwest::Method::GET, host, path).send().await.unwrap();
        assert!(resp.chunk().await.unwrap().is_some(), "the first half arrives");
        leaving.push(resp);
    }
    let metrics = app.metrics().await;
    assert!(sample(&metrics, IN_USE) >= (SIZE + SIZE / 2) as f64, "{metrics}");
    drop(leaving);
    // The body of unknown length is given up with its client. The other is shared with any request that
    // joins it (issue #12 A3), so it is read on for the tiers: its share stays until its body ends.
    wait_metrics(&app, &[(IN_USE, SIZE as f64)]).await;

    // A HEAD miss fills in the background; its share comes back when the body has been read.
    origin.set("/head", Reply::ok(body("/head"), LONG).gated(gate.clone()));
    let head = proxy.request(reqwest::Method::HEAD, host, "/head").send().await.unwrap();
    assert_eq!(head.headers()["cf-cache-status"], "MISS");
    wait_metrics(&app, &[(IN_USE, (2 * SIZE) as f64)]).await;
    open.send(true).unwrap();
    wait_metrics(&app, &[(IN_USE, 0.0)]).await;
    for path in ["/head", "/known"] {
        let got = app.proxy_get(host, path).await;
        assert_eq!((got.cache(), got.reserve(), origin.hits(path)), ("HIT", "EDGE", 1), "{path}");
        assert!(got.body == body(path));
    }

    // Nothing from the abandoned body was kept; now it fills as usual.
    let got = app.proxy_get(host, "/chunked").await;
    assert_eq!(got.cache(), "MISS");
    assert!(got.body == body("/chunked"));
    let got = app.proxy_get(host, "/chunked").await;
    assert_eq!((got.cache(), got.reserve()), ("HIT", "EDGE"));
    assert!(got.body == body("/chunked"));
    assert_eq!(sample(&app.metrics().await, &skipped(host)), 0.0);
}

#[tokio::test]
async fn a_reserve_hit_beyond_the_fill_budget_streams_from_disk_without_filling_the_edge() {
    let app = spawn_configured(|c| c.proxy.edge_fill_buffer_bytes = (SIZE / 2) as u64).await;
    let origin = TestOrigin::start().await;
    let host = "stream.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    origin.set("/big", Reply::ok(body("/big"), LONG));

    // The miss skips the edge tier, not the reserve.
    let got = app.proxy_get(host, "/big").await;
    assert_eq!((got.cache(), got.reserve()), ("MISS", "MISS"));
    assert!(got.body == body("/big"));
    app.wait_stored(&zone, host, "/big").await;
    for _ in 0..2 {
        let got = app.proxy_get(host, "/big").await;
        assert_eq!((got.cache(), got.reserve()), ("HIT", "HIT"), "promoted to the edge beyond the budget");
        assert!(got.body == body("/big"));
    }
    assert_eq!(origin.hits("/big"), 1);
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, &skipped(host)), 3.0, "{metrics}");
    assert_eq!(sample(&metrics, IN_USE), 0.0);
}

#[tokio::test]
async fn a_reserve_hit_within_the_fill_budget_is_promoted_and_its_share_comes_back() {
    // Room for one body at a time.
    let app = spawn_configured(|c| c.proxy.edge_fill_buffer_bytes = SIZE as u64).await;
    let origin = TestOrigin::start().await;
    let host = "promote.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    let (open, gate) = watch::channel(false);
    origin.set("/a", Reply::ok(body("/a"), LONG).gated(gate.clone()));
    origin.set("/b", Reply::ok(body("/b"), LONG).gated(gate));

    // /a holds the whole budget while its body is held back, so /b's miss cannot fill the edge.
    let proxy = app.proxy_client();
    let first = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.get(host, "/a").await }
    });
    wait_metrics(&app, &[(IN_USE, SIZE as f64)]).await;
    let second = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.get(host, "/b").await }
    });
    wait_metrics(&app, &[(&skipped(host), 1.0)]).await;
    open.send(true).unwrap();
    assert!(first.await.unwrap().body == body("/a"));
    assert!(second.await.unwrap().body == body("/b"));
    app.wait_stored(&zone, host, "/b").await;

    // /b is in the reserve only: its hit is read whole within the budget and promoted.
    let got = app.proxy_get(host, "/b").await;
    assert_eq!((got.cache(), got.reserve()), ("HIT", "HIT"));
    assert!(got.body == body("/b"));
    wait_metrics(&app, &[(IN_USE, 0.0)]).await;
    let got = app.proxy_get(host, "/b").await;
    assert_eq!((got.cache(), got.reserve()), ("HIT", "EDGE"));
    assert!(got.body == body("/b"));
    assert_eq!(origin.hits("/b"), 1);
}
