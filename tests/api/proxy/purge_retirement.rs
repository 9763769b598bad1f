//! Purge rules are retired once their work is done (SPEC §10), and what they did holds afterwards: a
//! purged object stays gone and an invalidated one still revalidates, in the edge tier and in the reserve.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    origin::*,
    purge::{cached, invalidate_path, purge_path, setup, setup_tiers},
    *,
};

/// The rules this node still judges by, from `/metrics`.
async fn rules_held(app: &TestApp) -> f64 {
    let url = format!("{}/metrics", app.base.trim_end_matches("/client/v4"));
    let text = app.http.get(url).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("cache_reserve_purge_rules ")).expect("the gauge");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Waits until every rule is retired: gone from the store, and from this node's book.
async fn retired(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = app.data.control().purge_rules(0, i64::MAX).await.unwrap();
        if stored.is_empty() && rules_held(app).await == 0.0 {
            return;
        }
        assert!(Instant::now() < deadline, "rules were never retired: {} stored", stored.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn retired_rules_leave_edge_copies_purged_or_invalidated() {
    let host = "retire-edge.example";
    let (app, origin, zone, token) = setup(host).await;
    cached(&app, &origin, &zone, host, "/gone", "g").await;
    cached(&app, &origin, &zone, host, "/kept", "k").await;
    origin.set("/inv", Reply::ok("inv", "public, max-age=600").header("etag", "\"i\"").header("cache-tag", "i"));
    app.proxy_get(host, "/inv").await;
    app.wait_stored(&zone, host, "/inv").await;
    assert_eq!(app.proxy_get(host, "/inv").await.cache(), "HIT");
    ok(app.post(&purge_path(&zone), &token).json(&json!({"tags": ["g"]})).send().await.unwrap()).await;
    ok(app.post(&invalidate_path(&zone), &token).json(&json!({"tags": ["i"]})).send().await.unwrap()).await;
    retired(&app).await;
    // No rule is left to judge them: the copies themselves say what the rules said.
    let hits = origin.hits("/gone");
    assert_eq!(app.proxy_get(host, "/gone").await.cache(), "MISS");
    assert_eq!(origin.hits("/gone"), hits + 1);
    let inv = app.proxy_get(host, "/inv").await;
    assert_eq!((inv.cache(), inv.text().as_str()), ("REVALIDATED", "inv"));
    assert_eq!(origin.not_modified("/inv"), 1);
    assert_eq!(app.proxy_get(host, "/inv").await.cache(), "HIT", "fresh again once revalidated");
    assert_eq!(app.proxy_get(host, "/kept").await.cache(), "HIT", "an untargeted copy");
}

#[tokio::test]
async fn retired_rules_leave_reserve_copies_purged_or_invalidated() {
    let host = "retire-reserve.example";
    let (app, origin, zone, token) = setup_tiers(host, false).await;
    for (path, tag) in [("/gone", "g"), ("/inv", "i"), ("/kept", "k")] {
        origin.set(path, Reply::ok(path, "public, max-age=600").header("etag", "\"e\"").header("cache-tag", tag));
        app.proxy_get(host, path).await;
        app.wait_stored(&zone, host, path).await;
        // Read once from the reserve, so its metadata is held in memory too.
        assert_eq!(app.proxy_get(host, path).await.reserve(), "HIT", "{path}");
    }
    ok(app.post(&purge_path(&zone), &token).json(&json!({"tags": ["g"]})).send().await.unwrap()).await;
    ok(app.post(&invalidate_path(&zone), &token).json(&json!({"tags": ["i"]})).send().await.unwrap()).await;
    retired(&app).await;
    assert!(!app.reserve_has(&zone, host, "/gone").await, "the purged object was deleted");
    assert_eq!(app.proxy_get(host, "/gone").await.cache(), "MISS");
    assert_eq!(app.proxy_get(host, "/inv").await.cache(), "REVALIDATED");
    let again = app.proxy_get(host, "/inv").await;
    assert_eq!((again.cache(), again.reserve()), ("HIT", "HIT"));
    assert_eq!(app.proxy_get(host, "/kept").await.reserve(), "HIT");
}
