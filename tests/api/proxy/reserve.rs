//! The reserve under traffic (SPEC §5, §6): `on` and `off` take effect at once, a Clear makes every
//! pre-clear object a miss the moment its POST returns, objects survive restarts, and the counters.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{origin::*, *};

const LONG: &str = "public, max-age=86400";

/// An edge tier too small for any body: every hit comes from the reserve.
fn reserve_only(c: &mut cache_reserve::server::ServeConfig) {
    c.proxy.edge_cache_bytes = 0;
}

#[tokio::test]
async fn off_stops_reads_and_writes_at_once_and_on_resumes_them() {
    let app = spawn_configured(reserve_only).await;
    let origin = TestOrigin::start().await;
    let host = "toggle.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    origin.set("/a", Reply::ok("a", LONG));
    app.proxy_get(host, "/a").await;
    app.wait_stored(&zone, host, "/a").await;
    assert_eq!(app.proxy_get(host, "/a").await.reserve(), "HIT");
    assert_eq!(origin.hits("/a"), 1);

    app.set_reserve(&zone, false).await;
    let got = app.proxy_get(host, "/a").await;
    assert_eq!((got.cache(), got.reserve()), ("MISS", "OFF"), "read from the reserve while off");
    assert_eq!(origin.hits("/a"), 2);
    origin.set("/b", Reply::ok("b", LONG));
    app.proxy_get(host, "/b").await;
    // Stored objects stay (and count) while off.
    assert!(app.reserve_has(&zone, host, "/a").await);

    app.set_reserve(&zone, true).await;
    let got = app.proxy_get(host, "/a").await;
    assert_eq!((got.cache(), got.reserve(), got.text().as_str()), ("HIT", "HIT", "a"));
    assert!(!app.reserve_has(&zone, host, "/b").await, "written while off");
}

/// Traffic runs throughout; the origin's content changes before the Clear. Every request that starts after
/// the POST returns must get the new content, from whichever tier.
async fn clear_during_traffic(configure: fn(&mut cache_reserve::server::ServeConfig)) {
    let app = spawn_configured(configure).await;
    let origin = Arc::new(TestOrigin::start().await);
    let host = "traffic.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    let paths: Vec<String> = (0..20).map(|i| format!("/o{i}")).collect();
    for p in &paths {
        origin.set(p, Reply::ok(format!("v1 {p}"), LONG));
        app.proxy_get(host, p).await;
    }
    for p in &paths {
        app.wait_stored(&zone, host, p).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (proxy, paths, stop, seen) = (app.proxy_client(), paths.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let got = proxy.get(host, &paths[i % paths.len()]).await;
                    assert_eq!(got.status, StatusCode::OK);
                    seen.lock().unwrap().push((started, got.text()));
                    i += 1;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    app.set_reserve(&zone, false).await;
    for p in &paths {
        origin.set(p, Reply::ok(format!("v2 {p}"), LONG));
    }
    let token = app.admin_token().await;
    ok(app.post(&clear_path(&zone), &token).send().await.unwrap()).await;
    let returned = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let before = seen.iter().filter(|(t, _)| *t < returned).count();
    let after: Vec<_> = seen.iter().filter(|(t, _)| *t > returned).collect();
    assert!(before > 0 && after.len() > 20, "too little traffic: {before} before, {} after", after.len());
    for (_, body) in &after {
        assert!(body.starts_with("v2 "), "a pre-clear body was served after the POST returned: {body}");
    }
    app.wait_completed(&zone, &token).await;
    assert_eq!(app.data.bodies(None).await, 0, "cleared bodies left stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_during_traffic_is_instant_for_edge_copies() {
    clear_during_traffic(|_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_during_traffic_is_instant_for_reserve_copies() {
    clear_during_traffic(reserve_only).await;
}

#[tokio::test]
async fn counters_show_on_metrics_and_through_the_stats_command() {
    let app = spawn_configured(reserve_only).await;
    let origin = TestOrigin::start().await;
    let host = "stats.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    origin.set("/s", Reply::ok(vec![b's'; 1000], LONG));
    app.proxy_get(host, "/s").await;
    app.wait_stored(&zone, host, "/s").await;
    for _ in 0..3 {
        assert_eq!(app.proxy_get(host, "/s").await.reserve(), "HIT");
    }
    let m = app.metrics().await;
    let z = format!("zone=\"{host}\"");
    assert_eq!(sample(&m, &format!("cache_reserve_class_a_operations_total{{{z}}}")), 1.0, "{m}");
    assert_eq!(sample(&m, &format!("cache_reserve_class_b_operations_total{{{z}}}")), 3.0);
    assert_eq!(sample(&m, &format!("cache_reserve_served_bytes_total{{{z}}}")), 3000.0);
    assert_eq!(sample(&m, &format!("cache_reserve_stored_bytes{{{z}}}")), 1000.0);
    assert_eq!(sample(&m, &format!("cache_reserve_responses_total{{{z},cache_status=\"HIT\"}}")), 3.0);
    assert_eq!(sample(&m, &format!("cache_reserve_tier_lookups_total{{{z},tier=\"reserve\",result=\"hit\"}}")), 3.0);

    // The command runs while this runtime serves its requests.
    let stats = |zone: &'static str| {
        let mut cmd = binary();
        cmd.args(["stats", zone]).env("CLOUDFLARE_BASE_URL", &app.base);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let out = stats(host).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row = |label: &str| {
        let line = text.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{text}"));
        line.split_whitespace().last().unwrap().to_owned()
    };
    assert_eq!(row("reserve reads (Class B)"), "3");
    assert_eq!(row("reserve writes (Class A)"), "1");
    assert_eq!(row("bytes served from reserve"), "3000");

    let out = stats("nothing.example").await.unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn reserve_objects_survive_a_restart() {
    let origin = TestOrigin::start().await;
    let host = "restart.example";
    let seeded = Seeded::new(host, &origin.url).await;

    let server = ServerProcess::start(&seeded.stores, &[]);
    seeded.reserve_on(&server).await;
    origin.set("/persist", Reply::ok("kept across restarts", LONG));
    assert_eq!(ProxyClient::new(&server.proxy).get(host, "/persist").await.cache(), "MISS");
    wait_stored(&seeded.data, &seeded.zone, host, "/persist").await;
    assert!(server.terminate().success());

    let server = ServerProcess::start(&seeded.stores, &[]);
    let got = ProxyClient::new(&server.proxy).get(host, "/persist").await;
    assert_eq!((got.cache(), got.reserve(), got.text().as_str()), ("HIT", "HIT", "kept across restarts"));
    assert_eq!(origin.hits("/persist"), 1);
}

#[tokio::test]
async fn a_missing_or_damaged_reserve_body_is_a_miss_that_heals_the_index() {
    let app = spawn_configured(reserve_only).await;
    let origin = TestOrigin::start().await;
    let host = "damaged.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    let body = vec![b'd'; 3000];
    let paths = ["/truncated", "/gone", "/head"];
    for path in paths {
        origin.set(path, Reply::ok(body.clone(), LONG));
        app.proxy_get(host, path).await;
        app.wait_stored(&zone, host, path).await;
        assert_eq!(app.proxy_get(host, path).await.reserve(), "HIT");
    }
    let blob = |path: &str| {
        let key = format!("{host}{path}");
        let data = app.data.clone();
        let zone = zone.clone();
        async move { data.reserve().find(&zone, &key).await.unwrap().unwrap().blob }
    };
    let bodies = app.data.bodies.clone();
    cache_reserve::storage::testing::damage_body(app.store_config(), &blob("/truncated").await, &[b'x'; 1000])
        .await
        .unwrap();
    bodies.delete_many(vec![blob("/gone").await, blob("/head").await]).await.unwrap();
    // Never a short body under the stored length: a miss, fetched whole.
    for path in ["/truncated", "/gone"] {
        let got = app.proxy_get(host, path).await;
        assert_eq!((got.status, got.cache(), got.body.len()), (StatusCode::OK, "MISS", 3000), "{path}");
    }
    // Not a HIT for HEAD either, once the body is gone.
    let head = app.proxy_client().request(reqwest::Method::HEAD, host, "/head").send().await.unwrap();
    assert_eq!(head.headers()["cf-cache-status"], "MISS");
    // The index no longer names the damaged bodies; the misses stored whole ones again.
    for path in paths {
        app.wait_stored(&zone, host, path).await;
        let got = app.proxy_get(host, path).await;
        assert_eq!((got.reserve(), got.body.len()), ("HIT", 3000), "{path}");
    }
}

/// A body moved after the proxy remembered where it was (compaction, in another process): the next hit
/// finds the old location gone, reads the index again and serves the copy, without going to the origin.
#[tokio::test]
async fn a_hit_whose_remembered_body_moved_reads_the_index_again() {
    let app = spawn_configured(reserve_only).await;
    if app.data.segments.is_none() {
        return; // Only the local segment store moves bodies.
    }
    let origin = TestOrigin::start().await;
    let host = "moved.example";
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    origin.set("/m", Reply::ok("moved body", LONG));
    app.proxy_get(host, "/m").await;
    app.wait_stored(&zone, host, "/m").await;
    assert_eq!(app.proxy_get(host, "/m").await.reserve(), "HIT", "read once, so remembered in memory");

    // Compaction's three moves, done here: a copy, the entry pointed at it, the original deleted.
    let entry = app.data.reserve().find(&zone, &format!("{host}/m")).await.unwrap().unwrap();
    let body = app.data.bodies.open(&entry.blob).await.unwrap().unwrap().bytes().await.unwrap();
    let copy = app.data.bodies.put(&zone, entry.generation, &entry.key_hash, body).await.unwrap();
    let moved = cache_reserve::storage::Relocation {
        key_hash: entry.key_hash.clone(),
        from: entry.blob.clone(),
        to: copy.location.clone(),
    };
    let made = app.data.compaction_index().relocate(&zone, entry.generation, &[moved]).await.unwrap();
    assert_eq!(made, Some(vec![true]));
    drop(copy.hold);
    app.data.bodies.delete_many(vec![entry.blob.clone()]).await.unwrap();
    assert!(app.data.bodies.open(&entry.blob).await.unwrap().is_none());

    let got = app.proxy_get(host, "/m").await;
    assert_eq!((got.cache(), got.reserve(), got.text().as_str()), ("HIT", "HIT", "moved body"));
    assert_eq!(origin.hits("/m"), 1, "the move sent a request to the origin");
}
