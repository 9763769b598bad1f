//! SPEC §6 guarantee 3: a Clear survives SIGKILL of the real process at any point and finishes after restart.

use std::time::{Duration, Instant};

use cache_reserve::{
    domain::{Permission, TokenScope, ZoneId},
    storage::ControlStore,
};
use serde_json::Value;

use crate::helpers::*;

async fn status(base: &str, zone: &ZoneId, token: &str) -> Value {
    let r = http_client().get(format!("{base}{}", clear_path(zone))).bearer_auth(token).send().await.unwrap();
    ok(r).await["result"].clone()
}

async fn seeded(objects: usize) -> (TestStores, ZoneId, String) {
    let stores = TestStores::fresh().await;
    let data = stores.open().await;
    let zone = create_zone(&data, "example.com").await;
    let token = create_token(&data, &[Permission::ZoneSettingsWrite], TokenScope::AllZones, None).await;
    fill(&data, &zone, "old", objects, 4096).await;
    data.close().await;
    (stores, zone, token)
}

/// After restart: the Clear completes, and no pre-clear object is readable or stored.
async fn restart_and_check(stores: &TestStores, zone: &ZoneId, token: &str, old: usize) {
    let server = ServerProcess::start(stores, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let s = status(&server.base, zone, token).await;
        if s["state"] == "Completed" {
            break s;
        }
        assert!(Instant::now() < deadline, "clear did not complete after restart: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["progress"]["objects_deleted"], old as u64, "{done}");
    assert_eq!(done["progress"]["objects_remaining"], 0);
    let data = stores.open().await;
    let reserve = data.reserve();
    for i in 0..old {
        assert!(reserve.get(zone, &format!("old{i}")).await.unwrap().is_none(), "old{i} readable");
    }
    assert_eq!(data.bodies(None).await, 0, "a pre-clear body remains stored");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_reclaim_then_restart_completes() {
    let (stores, zone, token) = seeded(300).await;
    // A short lease: with shared backends the restarted server is another node, which takes the Clear over
    // only once the killed one's lease has run out.
    let local = !stores.config.is_shared();
    let pause = if local { "3600s" } else { "100ms" };
    let server =
        ServerProcess::start(&stores, &["--reclaim-batch", "10", "--reclaim-pause", pause, "--reclaim-lease", "2s"]);
    let started = http_client()
        .post(format!("{}{}", server.base, clear_path(&zone)))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let started = ok(started).await["result"].clone();
    assert_eq!(started["state"], "In-progress");

    // A write racing the Clear, from another process on the same stores: refused (the reserve is off).
    let data = stores.open().await;
    let late = data.reserve().put(&zone, "late", vec![], bytes::Bytes::from_static(b"late")).await.unwrap();
    assert_eq!(late, cache_reserve::reserve::PutOutcome::ReserveOff);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&server.base, &zone, &token).await;
        let deleted = s["progress"]["objects_deleted"].as_u64().unwrap();
        // On local disk the cleared segment files all go in the first step and the index tables an hour
        // later (the pause): kill in between. On S3, kill between batches.
        let midway = if local { data.bodies(Some(&zone)).await == 0 } else { deleted > 0 };
        if midway {
            assert!(s["progress"]["objects_remaining"].as_u64().unwrap() > 0, "finished before the kill: {s}");
            break;
        }
        assert!(Instant::now() < deadline, "reclaim never started: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();

    // Killed mid-reclaim: still In-progress, and no pre-clear object is readable even now.
    let op = data.sql.latest_clear(&zone).await.unwrap().unwrap();
    assert!(op.end_ts.is_none());
    assert!(op.progress.objects_remaining > 0);
    let reserve = data.reserve();
    for i in 0..300 {
        assert!(reserve.get(&zone, &format!("old{i}")).await.unwrap().is_none());
    }
    data.close().await;

    restart_and_check(&stores, &zone, &token, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_post_then_restart_completes() {
    let (stores, zone, token) = seeded(20).await;
    // The reclaimer would wait an hour between batches: the kill lands before almost anything is deleted.
    let server =
        ServerProcess::start(&stores, &["--reclaim-batch", "1", "--reclaim-pause", "3600s", "--reclaim-lease", "2s"]);
    let r =
        http_client().post(format!("{}{}", server.base, clear_path(&zone))).bearer_auth(&token).send().await.unwrap();
    ok(r).await;
    server.kill();
    restart_and_check(&stores, &zone, &token, 20).await;
}

/// A node that shuts down cleanly leaves the node table: no other node's change waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_leaves_the_node_table() {
    let stores = TestStores::fresh().await;
    let running = cache_reserve::server::start(cache_reserve::server::ServeConfig::ephemeral(stores.config.clone()))
        .await
        .unwrap();
    let data = stores.open().await;
    let lagging = || data.sql.lagging_nodes("someone-else", i64::MAX, Duration::from_secs(3600));
    assert_eq!(lagging().await.unwrap(), 1, "the running node is listed");
    running.shutdown(Duration::from_secs(10)).await;
    assert_eq!(lagging().await.unwrap(), 0, "it left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let stores = TestStores::fresh().await;
    let server = ServerProcess::start(&stores, &[]);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// SPEC §10: the background deletion of purged objects, interrupted after some bodies were deleted and
/// before their entries were forgotten (where a crash can stop it), is finished by the next server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_interrupted_mid_deletion_is_finished_after_restart() {
    use cache_reserve::{
        domain::{PurgeAction, PurgeTarget},
        http_cache::{CacheRules, StoredResponse, codec},
    };
    let stores = TestStores::fresh().await;
    let data = stores.open().await;
    let zone = create_zone(&data, "example.com").await;
    data.sql.set_reserve(&zone, true).await.unwrap();
    // Objects as the proxy stores them: keys host + path, metadata a stored response.
    let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
    let mut headers = http::HeaderMap::new();
    headers.insert("cache-control", http::HeaderValue::from_static("max-age=86400"));
    let now = std::time::SystemTime::now();
    let stored = StoredResponse::admit(&parts, http::StatusCode::OK, &headers, now, now, &CacheRules::default());
    let meta = codec::encode(&stored.unwrap());
    let reserve = data.reserve();
    for i in 0..40 {
        let dir = if i % 2 == 0 { "gone" } else { "kept" };
        let key = format!("example.com/{dir}/{i}");
        reserve.put(&zone, &key, meta.clone(), bytes::Bytes::from(vec![b'x'; 100])).await.unwrap();
    }
    data.sql.purge(&zone, PurgeAction::Purge, &[PurgeTarget::Prefix("example.com/gone/".into())]).await.unwrap();
    // The state a crash leaves: half the targeted bodies deleted, every entry still there.
    let index = data.purge_index();
    let entries = index.objects_after(&zone, "", 1000).await.unwrap();
    let doomed: Vec<String> =
        entries.iter().filter(|e| e.key.contains("/gone/")).take(10).map(|e| e.blob.clone()).collect();
    data.bodies.delete_many(doomed).await.unwrap();
    assert_eq!(data.index().usage(&zone).await.unwrap().objects, 40);
    data.close().await;

    let _server = ServerProcess::start(&stores, &[]);
    let data = stores.open().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.purge_index().pending_purges(10).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the purge was never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(data.index().usage(&zone).await.unwrap(), cache_reserve::storage::Usage { objects: 20, bytes: 2000 });
    let left = data.purge_index().objects_after(&zone, "", 1000).await.unwrap();
    assert!(left.iter().all(|e| e.key.contains("/kept/")), "a targeted entry survived");
    for e in &left {
        assert!(data.bodies.open(&e.blob).await.unwrap().is_some(), "an untargeted body was deleted");
    }
}

/// Issue #11: compaction killed partway (some live records copied, some entries relocated, the old
/// segments not all removed) loses nothing and serves nothing stale: after a restart every live object
/// reads back as its latest version, and the next server finishes the job (space within the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_compaction_then_restart_keeps_every_live_object() {
    const SEGMENT: u64 = 1 << 20;
    let mut stores = TestStores::fresh().await;
    if stores.config.bodies != cache_reserve::storage::open::BodyBackend::Local {
        return; // Segments are the local store's; S3 keeps one object per body.
    }
    stores.config.segment_bytes = SEGMENT;
    let body = |i: usize, version: u8| bytes::Bytes::from(vec![(i % 251) as u8 ^ version; 4000 + i % 61]);
    let objects = 2000;
    let data = stores.open().await;
    let zone = create_zone(&data, "example.com").await;
    data.sql.set_reserve(&zone, true).await.unwrap();
    let reserve = data.reserve();
    let put = |keys: Vec<usize>, version: u8| {
        let reserve = reserve.clone();
        let zone = zone.clone();
        async move {
            let batch = keys
                .into_iter()
                .map(|i| cache_reserve::reserve::NewObject {
                    key: format!("k{i}"),
                    meta: vec![],
                    body: body(i, version),
                    fill_revision: 0,
                })
                .collect();
            reserve.put_many(&zone, batch).await.unwrap();
        }
    };
    put((0..objects).collect(), 0).await;
    // Every other object replaced: the first segments are half dead.
    put((0..objects).filter(|i| i % 2 == 0).collect(), 1).await;
    data.close().await;
    drop(data); // Its segment locks go with it.
    let generation_dir = stores.config.data_dir.join("objects").join(zone.as_str()).join("g1");
    let segment_files = |dir: &std::path::Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".seg"))
            .collect()
    };
    let before = segment_files(&generation_dir);
    assert!(before.len() >= 8, "{} segments", before.len());

    let args = ["--segment-bytes", "1MiB", "--compaction-interval", "50ms"];
    let server = ServerProcess::start(&stores, &args);
    // Kill as soon as compaction has written copies into a segment of its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    while segment_files(&generation_dir).is_subset(&before) {
        assert!(Instant::now() < deadline, "compaction never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill();
    let after_kill = segment_files(&generation_dir);
    assert!(before.iter().any(|s| after_kill.contains(s)), "compaction finished before the kill");

    let check = |data: cache_reserve::storage::open::Stores| {
        let zone = zone.clone();
        async move {
            let reserve = data.reserve();
            for i in 0..objects {
                let got = reserve.get(&zone, &format!("k{i}")).await.unwrap().expect("a live object was lost");
                let want = body(i, if i % 2 == 0 { 1 } else { 0 });
                assert!(got.body == want, "k{i}: wrong version or bytes");
            }
            data
        }
    };
    let data = check(stores.open().await).await;
    data.close().await;

    // The next server finishes: space back within the bound, and nothing but live records left.
    let server = ServerProcess::start(&stores, &args);
    let data = stores.open().await;
    let live: u64 = data.index().usage(&zone).await.unwrap().bytes + objects as u64 * 48;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files: u64 = segment_files(&generation_dir)
            .iter()
            .map(|s| std::fs::metadata(generation_dir.join(s)).map_or(0, |m| m.len()))
            .sum();
        if files as f64 <= 1.5 * live as f64 + 2.0 * SEGMENT as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "{files} bytes in segments for {live} live after restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And says so on /metrics (counted when its pass ends).
    let metrics = format!("{}/metrics", server.base.trim_end_matches("/client/v4"));
    loop {
        let text = http_client().get(&metrics).send().await.unwrap().text().await.unwrap();
        let removed = text
            .lines()
            .find_map(|l| l.strip_prefix("cache_reserve_compaction_segments_removed_total "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if removed.is_some_and(|n| n > 0.0) {
            assert!(text.contains("cache_reserve_compaction_moved_bytes_total "), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no compaction counted on /metrics: {removed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data = check(data).await;
    // Copies the kill left unnamed are dead records no `.dead` file lists: counted, within the bound above,
    // and reclaimed when their segment is next compacted.
    let stored = data.bodies.count(Some(&zone)).await.unwrap();
    assert!(stored >= objects as u64, "{stored} records stored for {objects} live objects");
}
