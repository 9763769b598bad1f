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
    let server =
        ServerProcess::start(&stores, &["--reclaim-batch", "10", "--reclaim-pause", "100ms", "--reclaim-lease", "2s"]);
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
        if deleted > 0 {
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
