//! SPEC §6: the Clear state machine, the bodies real clients send, and the four guarantees.

use std::time::Duration;

use cache_reserve::{domain::ZoneId, jobs::ReclaimConfig, storage::ControlStore};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

/// An app whose reclaimer deletes one object per 100 ms, so a Clear stays in progress long enough to watch.
/// A server whose Clears stay In-progress for seconds: on S3, batches of 10 entries two seconds apart; on
/// local disk, two seconds between removing the cleared segment files and dropping the index tables.
async fn slow_app() -> TestApp {
    spawn_app_with(ReclaimConfig {
        batch_size: Some(10),
        pause: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn status_before_any_clear_is_1142_on_both_paths() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    for path in
        [format!("/zones/{z}/smart_shield/cache_reserve_clear"), format!("/zones/{z}/cache/cache_reserve_clear")]
    {
        let r = fails(app.get(&path, &t).send().await.unwrap(), 400, 1142).await;
        assert_eq!(
            r["errors"][0]["message"],
            "Unable to retrieve cache_reserve_clear setting value. The zone setting does not exist because you never performed a Cache Reserve Clear operation."
        );
    }
}

#[tokio::test]
async fn start_is_refused_while_the_reserve_is_on() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    ok(app.patch(&reserve_path(&z), &t).json(&json!({"value": "on"})).send().await.unwrap()).await;
    let r = fails(app.post(&clear_path(&z), &t).send().await.unwrap(), 400, 1152).await;
    assert_eq!(r["errors"][0]["message"], "Turn off Cache Reserve sync to proceed with deletion.");
    // Refused means nothing was recorded.
    fails(app.get(&clear_path(&z), &t).send().await.unwrap(), 400, 1142).await;
}

#[tokio::test]
async fn post_accepts_what_real_clients_send() {
    let app = spawn_app().await;
    let t = app.admin_token().await;
    let bodies: Vec<(&str, Option<&str>, &str)> = vec![
        ("python-sdk", Some("application/json"), ""),
        ("typescript-sdk", None, ""),
        ("curl", Some("application/json"), "{}"),
        ("array", Some("application/json"), "[1,2]"),
        ("null", Some("application/json"), "null"),
        ("string", Some("text/plain"), "\"x\""),
    ];
    for (name, ctype, body) in bodies {
        let z = app.zone(&format!("{name}.example")).await;
        let mut req = app.post(&clear_path(&z), &t).body(body);
        if let Some(c) = ctype {
            req = req.header("Content-Type", c);
        }
        let r = ok(req.send().await.unwrap()).await;
        assert_eq!(r["result"]["id"], "cache_reserve_clear", "{name}");
        assert_eq!(r["result"]["state"], "In-progress", "{name}");
        assert!(r["result"]["start_ts"].as_str().unwrap().ends_with('Z'));
        assert!(r["result"].get("end_ts").is_none(), "{name}: {r}");
    }
    let z = app.zone("garbage.example").await;
    fails(app.post(&clear_path(&z), &t).body("{not json").send().await.unwrap(), 400, 6007).await;
    fails(app.get(&clear_path(&z), &t).send().await.unwrap(), 400, 1142).await;
}

#[tokio::test]
async fn running_clear_is_idempotent_shared_by_both_paths_and_blocks_reserve_on() {
    let app = slow_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    app.fill(&z, "k", 20, 100).await;
    let first = ok(app.post(&clear_path(&z), &t).send().await.unwrap()).await;
    let again = ok(app.post(&format!("/zones/{z}/cache/cache_reserve_clear"), &t).send().await.unwrap()).await;
    assert_eq!(first["result"]["start_ts"], again["result"]["start_ts"]);
    assert_eq!(again["result"]["state"], "In-progress");
    let seen = ok(app.get(&format!("/zones/{z}/cache/cache_reserve_clear"), &t).send().await.unwrap()).await;
    assert_eq!(seen["result"]["start_ts"], first["result"]["start_ts"]);

    let r =
        fails(app.patch(&reserve_path(&z), &t).json(&json!({"value": "on"})).send().await.unwrap(), 400, 1153).await;
    assert_eq!(r["errors"][0]["message"], "Cache Reserve cannot be enabled because a deletion is already in progress.");
    fails(
        app.patch(&format!("/zones/{z}/smart_shield"), &t)
            .json(&json!({"cache_reserve": {"value": "on"}}))
            .send()
            .await
            .unwrap(),
        400,
        1153,
    )
    .await;
    let off = ok(app.patch(&reserve_path(&z), &t).json(&json!({"value": "off"})).send().await.unwrap()).await;
    assert_eq!(off["result"]["value"], "off");

    // No way to cancel it.
    fails(app.request(Method::DELETE, &clear_path(&z)).bearer_auth(&t).send().await.unwrap(), 405, 7001).await;

    let done = app.wait_completed(&z, &t).await;
    assert_eq!(done["start_ts"], first["result"]["start_ts"]);
    assert!(done["end_ts"].as_str().unwrap() >= done["start_ts"].as_str().unwrap());
    // After completion the reserve can be turned on, and a new Clear gets a new start.
    ok(app.patch(&reserve_path(&z), &t).json(&json!({"value": "on"})).send().await.unwrap()).await;
    ok(app.patch(&reserve_path(&z), &t).json(&json!({"value": "off"})).send().await.unwrap()).await;
    let second = ok(app.post(&clear_path(&z), &t).send().await.unwrap()).await;
    assert_ne!(second["result"]["start_ts"], first["result"]["start_ts"]);
}

#[tokio::test]
async fn logically_instant_hides_every_old_object_before_deleting_any() {
    // Reclaim paused far beyond the test after its first batch: when POST returns, nothing is readable, yet
    // the reclaim has at most begun (a segment store frees every body in its first batch; a store of one
    // file per body, one body a batch).
    let app = spawn_app_with(ReclaimConfig {
        batch_size: Some(1),
        pause: Duration::from_secs(3600),
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    app.fill(&z, "old", 300, 64).await;
    let before = app.data.bodies(None).await;
    assert_eq!(before, 300);
    ok(app.post(&clear_path(&z), &t).send().await.unwrap()).await;
    let reserve = app.data.reserve();
    for i in 0..300 {
        assert!(reserve.get(&z, &format!("old{i}")).await.unwrap().is_none(), "old{i} still served");
    }
    let clear = app.data.sql.latest_clear(&z).await.unwrap().unwrap();
    assert!(
        clear.end_ts.is_none() && clear.progress.objects_remaining >= 299,
        "POST must not do the reclaiming itself"
    );
    assert_eq!(reserve.usage(&z).await.unwrap().objects, 0);
}

#[tokio::test]
async fn progress_is_visible_and_completion_is_physical() {
    let app = slow_app().await;
    let z = app.zone("example.com").await;
    let other = app.zone("other.example").await;
    let t = app.admin_token().await;
    app.fill(&z, "old", 12, 1000).await;
    app.fill(&other, "keep", 3, 10).await;
    let started = ok(app.post(&clear_path(&z), &t).send().await.unwrap()).await;
    let p = &started["result"]["progress"];
    assert_eq!((p["objects_deleted"].as_u64(), p["objects_remaining"].as_u64()), (Some(0), Some(12)));
    assert_eq!(p["bytes_remaining"], 12_000);
    // The reserve is off while a Clear runs: a write racing it is refused by the store itself.
    let late = app.data.reserve().put(&z, "late", vec![], bytes::Bytes::from_static(b"late")).await.unwrap();
    assert_eq!(late, cache_reserve::reserve::PutOutcome::ReserveOff);

    let mut seen_partial = false;
    let mut last_deleted = 0;
    loop {
        let r = ok(app.get(&clear_path(&z), &t).send().await.unwrap()).await["result"].clone();
        let p = &r["progress"];
        let (d, rem) = (p["objects_deleted"].as_u64().unwrap(), p["objects_remaining"].as_u64().unwrap());
        assert_eq!(d + rem, 12, "{r}");
        assert_eq!(p["bytes_deleted"].as_u64().unwrap() + p["bytes_remaining"].as_u64().unwrap(), 12_000);
        assert!(d >= last_deleted, "progress went backwards");
        last_deleted = d;
        if d > 0 && rem > 0 {
            seen_partial = true;
            assert_eq!(r["state"], "In-progress");
            assert!(r.get("end_ts").is_none());
        }
        if r["state"] == "Completed" {
            assert_eq!((d, rem), (12, 0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    if !app.data.bodies.drops_generations() {
        assert!(seen_partial, "never observed a partially done Clear");
    }
    // (On local disk the counts go in one step: the files all go first, then the index tables.)
    let reserve = app.data.reserve();
    for i in 0..3 {
        assert!(reserve.get(&other, &format!("keep{i}")).await.unwrap().is_some());
    }
    // Only the other zone's 3 objects are left stored.
    assert_eq!(app.data.bodies(Some(&z)).await, 0);
    assert_eq!(app.data.bodies(None).await, 3);
    // Objects stored after the Clear are the zone's new contents.
    app.fill(&z, "new", 4, 10).await;
    for i in 0..4 {
        assert!(reserve.get(&z, &format!("new{i}")).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_zone_with_nothing_stored_completes() {
    let app = spawn_app().await;
    let z: ZoneId = app.zone("empty.example").await;
    let t = app.admin_token().await;
    ok(app.post(&clear_path(&z), &t).send().await.unwrap()).await;
    let done = app.wait_completed(&z, &t).await;
    assert_eq!(done["progress"]["objects_deleted"], 0);
}
