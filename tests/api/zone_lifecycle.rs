//! Issue #12 B8: `POST /zones` and `DELETE /zones/{id}` as Cloudflare's, who may call them, and what a
//! deletion leaves: nothing served, nothing stored, and a name (or id) free to be used again.

use std::time::{Duration, Instant};

use cache_reserve::{
    domain::{Permission, TokenScope, ZoneId, ZoneName},
    storage::{ControlStore, NewZone},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::*,
    proxy::{
        ProxyClient,
        origin::{Reply, TestOrigin},
    },
};

/// A request with a user's global key.
fn with_key(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.request(method, path).header("X-Auth-Email", "owner@example.com").header("X-Auth-Key", key)
}

async fn create(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    with_key(app, Method::POST, "/zones", key).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn create_takes_cloudflares_body_and_refuses_what_it_cannot_do() {
    let app = spawn_app().await;
    let key = app.user("owner@example.com").await;
    let account = app.data.sql.account_id().await.unwrap();
    let body = json!({"name": "New.Example.com", "account": {"id": account}, "type": "full"});
    let r = ok(create(&app, &key, body.clone()).await).await;
    let id = r["result"]["id"].as_str().unwrap().to_owned();
    assert!(ZoneId::parse(&id).is_ok(), "{r}");
    assert_eq!((&r["result"]["name"], &r["result"]["account"]["id"]), (&json!("new.example.com"), &json!(account)));
    let got = ok(with_key(&app, Method::GET, &format!("/zones/{id}"), &key).send().await.unwrap()).await;
    assert_eq!(got["result"], r["result"]);
    // Just the name is enough.
    ok(create(&app, &key, json!({"name": "bare.example"})).await).await;

    let dup = fails(create(&app, &key, body).await, 400, 1061).await;
    assert_eq!(dup["errors"][0]["message"], "new.example.com already exists");
    let refused = [
        (json!({"name": "a.example", "type": "partial"}), "\"type\" must be \"full\""),
        (json!({"name": "a.example", "plan": {"id": "free"}}), "unknown field \"plan\""),
        (json!({"name": "a.example", "account": {"id": "0".repeat(32)}}), "\"account\" must be"),
        (json!({"name": "a.example", "account": {"id": account, "x": 1}}), "unknown field \"x\""),
        (json!({"name": "not a name"}), "is not a valid zone name"),
        (json!({"account": {"id": account}}), "\"name\" is required"),
        (json!({"name": "a.example", "origin": "ftp://x"}), "\"origin\" must be a URL"),
        (json!(["a.example"]), "an object with \"name\""),
    ];
    for (body, says) in refused {
        let r = fails(create(&app, &key, body.clone()).await, 400, 1007).await;
        assert!(r["errors"][0]["message"].as_str().unwrap().contains(says), "{body}: {r}");
    }
    let resp = with_key(&app, Method::POST, "/zones", &key).body("{not json").send().await.unwrap();
    fails(resp, 400, 6007).await;
    // None of the refused bodies created anything.
    let listed = ok(with_key(&app, Method::GET, "/zones", &key).send().await.unwrap()).await;
    assert_eq!(listed["result_info"]["total_count"], 2, "{listed}");
}

#[tokio::test]
async fn zone_write_over_all_zones_creates_and_a_scoped_token_deletes_only_its_zones() {
    let app = spawn_app().await;
    let a = app.zone("a.example").await;
    let b = app.zone("b.example").await;
    let settings = app.token(&[Permission::ZoneSettingsWrite, Permission::ZoneRead], TokenScope::AllZones).await;
    let scoped = app.token(&[Permission::ZoneWrite], TokenScope::Zones(vec![a.clone()])).await;
    let admin = app.token(&[Permission::ZoneWrite], TokenScope::AllZones).await;
    let new = json!({"name": "c.example"});
    for t in [&settings, &scoped] {
        fails(app.post("/zones", t).json(&new).send().await.unwrap(), 403, 10000).await;
    }
    let delete = |z: &ZoneId, t: &str| app.request(Method::DELETE, &format!("/zones/{z}")).bearer_auth(t).send();
    fails(delete(&a, &settings).await.unwrap(), 403, 10000).await;
    fails(delete(&b, &scoped).await.unwrap(), 400, 7003).await;
    let r = ok(delete(&a, &scoped).await.unwrap()).await;
    assert_eq!(r["result"], json!({"id": a.as_str()}));
    fails(delete(&a, &scoped).await.unwrap(), 400, 7003).await;
    ok(app.post("/zones", &admin).json(&new).send().await.unwrap()).await;
    ok(delete(&b, &admin).await.unwrap()).await;
}

/// Polls until no body of `zone` is stored.
async fn wait_reclaimed(app: &TestApp, zone: &ZoneId) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.data.bodies(Some(zone)).await > 0 {
        assert!(Instant::now() < deadline, "the deleted zone's bodies were not reclaimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_deleted_zone_is_gone_everywhere_its_objects_are_reclaimed_and_its_name_and_id_are_free() {
    let app = spawn_app().await;
    let t = app.admin_token().await;
    let z = app.zone("gone.example").await;
    let other = app.zone("kept.example").await;
    app.fill(&z, "old", 10, 100).await;
    app.fill(&other, "keep", 2, 10).await;
    ok(app.patch(&reserve_path(&z), &t).json(&json!({"value": "on"})).send().await.unwrap()).await;

    let r = ok(app.request(Method::DELETE, &format!("/zones/{z}")).bearer_auth(&t).send().await.unwrap()).await;
    assert_eq!(r["result"]["id"], z.as_str());
    let reserve = app.data.reserve();
    for i in 0..10 {
        assert!(reserve.get(&z, &format!("old{i}")).await.unwrap().is_none(), "old{i} still served");
    }
    for path in [format!("/zones/{z}"), reserve_path(&z), clear_path(&z), format!("/zones/{z}/smart_shield")] {
        fails(app.get(&path, &t).send().await.unwrap(), 400, 7003).await;
    }
    let on = json!({"value": "on"});
    fails(app.patch(&reserve_path(&z), &t).json(&on).send().await.unwrap(), 400, 7003).await;
    fails(app.post(&clear_path(&z), &t).send().await.unwrap(), 400, 7003).await;
    let purge = json!({"purge_everything": true});
    fails(app.post(&format!("/zones/{z}/purge_cache"), &t).json(&purge).send().await.unwrap(), 400, 7003).await;
    let listed = ok(app.get("/zones", &t).send().await.unwrap()).await;
    assert_eq!(listed["result_info"]["total_count"], 1, "{listed}");
    assert_eq!(ProxyClient::new(&app.proxy).get("gone.example", "/").await.status, 421);

    wait_reclaimed(&app, &z).await;
    assert_eq!(app.data.bodies(None).await, 2, "only the other zone's objects are left");

    // The name again, under a new id: nothing of the old zone.
    let again = ok(app.post("/zones", &t).json(&json!({"name": "gone.example"})).send().await.unwrap()).await;
    let renewed = ZoneId::parse(again["result"]["id"].as_str().unwrap()).unwrap();
    assert_ne!(renewed, z);
    assert!(reserve.get(&renewed, "old0").await.unwrap().is_none());
    ok(app.request(Method::DELETE, &format!("/zones/{renewed}")).bearer_auth(&t).send().await.unwrap()).await;

    // The id again (`zone create --id`): the same row, at a generation above everything it stored.
    let name = ZoneName::parse("gone.example").unwrap();
    let back = app.data.sql.create_zone(NewZone { id: z.clone(), name, origin: None }).await.unwrap();
    assert!(!back.reserve_on && back.deleted_on.is_none());
    for i in 0..10 {
        assert!(reserve.get(&z, &format!("old{i}")).await.unwrap().is_none(), "old{i} came back");
    }
    assert_eq!(reserve.usage(&z).await.unwrap().objects, 0);
    // The deletion is not shown as a Clear of the new zone; the zone takes objects again.
    fails(app.get(&clear_path(&z), &t).send().await.unwrap(), 400, 1142).await;
    ok(app.patch(&reserve_path(&z), &t).json(&on).send().await.unwrap()).await;
    app.fill(&z, "new", 2, 10).await;
    assert!(reserve.get(&z, "new0").await.unwrap().is_some());
    // A live id is refused.
    let name = ZoneName::parse("other.example").unwrap();
    let taken = app.data.sql.create_zone(NewZone { id: z.clone(), name, origin: None }).await.unwrap_err();
    assert_eq!(taken.to_string(), format!("zone id {z} already exists"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_created_again_is_never_served_the_deleted_zones_copy_from_memory() {
    let origin = TestOrigin::start().await;
    origin.set("/page", Reply::ok("old", "max-age=3600"));
    let app = spawn_app().await;
    let t = app.admin_token().await;
    let proxy = ProxyClient::new(&app.proxy);
    let body = json!({"name": "mem.example", "origin": origin.url});
    let first = ok(app.post("/zones", &t).json(&body).send().await.unwrap()).await;
    let id = ZoneId::parse(first["result"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(proxy.get("mem.example", "/page").await.text(), "old");
    let hit = proxy.get("mem.example", "/page").await;
    assert_eq!((hit.cache(), hit.text().as_str()), ("HIT", "old"));

    ok(app.request(Method::DELETE, &format!("/zones/{id}")).bearer_auth(&t).send().await.unwrap()).await;
    assert_eq!(proxy.get("mem.example", "/page").await.status, 421);
    origin.set("/page", Reply::ok("new", "max-age=3600"));
    // Under a new id, then under the old one.
    let second = ok(app.post("/zones", &t).json(&body).send().await.unwrap()).await;
    let got = proxy.get("mem.example", "/page").await;
    assert_eq!((got.cache(), got.text().as_str()), ("MISS", "new"));
    let second = ZoneId::parse(second["result"]["id"].as_str().unwrap()).unwrap();
    ok(app.request(Method::DELETE, &format!("/zones/{second}")).bearer_auth(&t).send().await.unwrap()).await;
    let name = ZoneName::parse("mem.example").unwrap();
    let back = NewZone { id: id.clone(), name, origin: Some(origin.url.clone()) };
    let back = app.data.sql.create_zone(back).await.unwrap();
    // The admin command's change reaches the proxy through the change feed.
    app_sees(&proxy, "mem.example").await;
    let got = proxy.get("mem.example", "/page").await;
    assert_eq!(got.text(), "new", "served the deleted zone's copy (generation {})", back.generation);
}

/// Waits until the proxy serves `host` (a zone created in the store, not through this server's API).
async fn app_sees(proxy: &ProxyClient, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.get(host, "/unknown-path").await.status == 421 {
        assert!(Instant::now() < deadline, "the proxy never served {host}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
