//! Purge and invalidate across nodes (SPEC §10): once the call answers on one node, the other serves no
//! targeted copy, from its edge tier or the reserve — even when it is cut off from the database.

use serde_json::json;

use crate::{helpers::*, origin::*, *};

async fn call(node: &ServerProcess, path: &str, token: &str, body: serde_json::Value) {
    let r = http_client().post(format!("{}{path}", node.base)).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_or_invalidation_on_one_node_is_in_force_on_the_other_in_both_tiers() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "purge-nodes.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    let (a, b) = (shared.node(&["--reserve-min-ttl", "0s"]), shared.node(&["--edge-cache-bytes", "0"]));
    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, true).await, StatusCode::OK);
    let purge = format!("/zones/{}/purge_cache", shared.zone);
    let invalidate = format!("/zones/{}/invalidate_cache", shared.zone);
    for path in ["/edge", "/reserved", "/validated"] {
        origin.set(path, Reply::ok(format!("{path} v1"), LONG).header("etag", "\"1\"").header("cache-tag", path));
        get(&a, host, path).await;
        wait_stored(&shared.data, &shared.zone, host, path).await;
    }
    assert_eq!(get(&a, host, "/edge").await.cache, "HIT");
    assert_eq!(get(&b, host, "/reserved").await.reserve, "HIT");

    // Called on B, in force on A's edge tier when it answers.
    call(&b, &purge, &shared.token, json!({"files": [format!("https://{host}/edge")]})).await;
    origin.set("/edge", Reply::ok("/edge v2", LONG));
    let got = get(&a, host, "/edge").await;
    assert_eq!((got.cache.as_str(), got.body.as_str()), ("MISS", "/edge v2"));

    // Called on A, in force on B's reserve reads when it answers.
    call(&a, &purge, &shared.token, json!({"tags": ["/reserved"]})).await;
    origin.set("/reserved", Reply::ok("/reserved v2", LONG));
    let got = get(&b, host, "/reserved").await;
    assert_eq!((got.cache.as_str(), got.body.as_str()), ("MISS", "/reserved v2"));

    // An invalidation on A: B revalidates its reserve copy.
    call(&a, &invalidate, &shared.token, json!({"prefixes": [format!("{host}/valid")]})).await;
    let got = get(&b, host, "/validated").await;
    assert_eq!((got.cache.as_str(), got.body.as_str()), ("REVALIDATED", "/validated v1"));
    // Revalidated, it is fresh again: a reserve hit, not another revalidation.
    let again = get(&b, host, "/validated").await;
    assert_eq!((again.cache.as_str(), again.reserve.as_str()), ("HIT", "HIT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_serves_nothing_stored_once_its_view_expires() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "purge-cut.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    let db = shared.link().await;
    let (a, b) = (shared.node(&[]), shared.node_behind(&db, &[]));
    origin.set("/p", Reply::ok("v1", LONG));
    get(&b, host, "/p").await;
    assert_eq!(get(&b, host, "/p").await.cache, "HIT");

    db.freeze(true);
    let purge = format!("/zones/{}/purge_cache", shared.zone);
    call(&a, &purge, &shared.token, json!({"files": [format!("http://{host}/p")]})).await;
    origin.set("/p", Reply::ok("v2", LONG));
    let hits = origin.hits("/p");
    let got = get(&b, host, "/p").await;
    assert_eq!((got.cache.as_str(), got.body.as_str()), ("MISS", "v2"), "B served its edge copy");
    assert_eq!(origin.hits("/p"), hits + 1);
    db.freeze(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_away_while_rules_are_retired_empties_its_memory_before_serving_again() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "purge-away.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    let db = shared.link().await;
    let (a, b) = (shared.node(&[]), shared.node_behind(&db, &["--reserve-min-ttl", "0s"]));
    assert_eq!(set_reserve(&a, &shared.zone, &shared.token, true).await, StatusCode::OK);
    origin.set("/p", Reply::ok("v1", LONG));
    get(&b, host, "/p").await;
    wait_stored(&shared.data, &shared.zone, host, "/p").await;
    assert_eq!(get(&b, host, "/p").await.cache, "HIT");

    // B is away while A purges and the rule is worked and retired without it.
    db.freeze(true);
    let purge = format!("/zones/{}/purge_cache", shared.zone);
    call(&a, &purge, &shared.token, json!({"files": [format!("http://{host}/p")]})).await;
    origin.set("/p", Reply { status: 503, ..Reply::ok("down", "no-store") });
    let control = shared.data.control();
    wait_until("the rule to be retired", || async { control.purge_rules(0, i64::MAX).await.unwrap().is_empty() }).await;

    // Back, B never learns of the rule: it must not serve its edge copy. Until its view is fresh it serves
    // nothing stored (the reserve marked UNAVAILABLE); then its memory tiers must have been emptied.
    db.freeze(false);
    let mut got = get(&b, host, "/p").await;
    while got.reserve == "UNAVAILABLE" {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = get(&b, host, "/p").await;
    }
    assert_eq!((got.status.as_u16(), got.body.as_str()), (503, "down"), "B served a copy the purge targeted");
}
