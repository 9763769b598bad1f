//! Purge and invalidate (SPEC §10) over real HTTP: each selector on both tiers, the API's answers, and a
//! fill racing a purge.

use std::time::Duration;

use serde_json::{Value, json};

use super::{origin::*, *};

pub(super) fn purge_path(zone: &ZoneId) -> String {
    format!("/zones/{zone}/purge_cache")
}

pub(super) fn invalidate_path(zone: &ZoneId) -> String {
    format!("/zones/{zone}/invalidate_cache")
}

/// An app whose reserve takes every cacheable object, with one zone `host` in front of a test origin.
pub(super) async fn setup(host: &str) -> (TestApp, TestOrigin, ZoneId, String) {
    setup_tiers(host, true).await
}

/// [`setup`], with the edge tier off when `edge` is false (every hit then comes from the reserve).
pub(super) async fn setup_tiers(host: &str, edge: bool) -> (TestApp, TestOrigin, ZoneId, String) {
    let app = spawn_configured(|c| {
        c.proxy.reserve_min_ttl = Duration::ZERO;
        if !edge {
            c.proxy.edge_cache_bytes = 0;
        }
    })
    .await;
    let origin = TestOrigin::start().await;
    let zone = app.zone_with_origin(host, &origin.url).await;
    app.set_reserve(&zone, true).await;
    let token = app.token(&[Permission::CachePurge], TokenScope::AllZones).await;
    (app, origin, zone, token)
}

/// Serves `path` once from the origin and waits until both tiers hold it.
pub(super) async fn cached(app: &TestApp, origin: &TestOrigin, zone: &ZoneId, host: &str, path: &str, tags: &str) {
    origin.set(path, Reply::ok(format!("{path} v1"), "public, max-age=600").header("cache-tag", tags));
    let first = app.proxy_get(host, path).await;
    assert_eq!(first.cache(), "MISS", "{path}");
    assert!(first.headers.get("cache-tag").is_none(), "Cache-Tag reached the client");
    app.wait_stored(zone, host, path).await;
    let again = app.proxy_get(host, path).await;
    assert_eq!(again.cache(), "HIT", "{path}");
    assert!(again.headers.get("cache-tag").is_none(), "Cache-Tag reached the client from the cache");
}

#[tokio::test]
async fn each_selector_purges_its_objects_from_both_tiers_and_nothing_else() {
    let host = "purge.example";
    let (app, origin, zone, token) = setup(host).await;
    let cases: [(&str, Value); 4] = [
        ("/file?x=1", json!({"files": [format!("https://{host}/file?x=1")]})),
        ("/tagged", json!({"tags": ["Sale"]})),
        ("/dir/deep/a.css", json!({"prefixes": [format!("{host}/dir/deep")]})),
        ("/hosted", json!({"hosts": [host]})),
    ];
    cached(&app, &origin, &zone, host, "/dir/other", "keep").await;
    // `hosts` comes last: it takes the untargeted object too.
    for (path, body) in cases {
        cached(&app, &origin, &zone, host, path, "sale, shoes").await;
        ok(app.post(&purge_path(&zone), &token).json(&body).send().await.unwrap()).await;
        let hits = origin.hits(path);
        origin.set(path, Reply::ok(format!("{path} v2"), "public, max-age=600"));
        let after = app.proxy_get(host, path).await;
        assert_eq!((after.cache(), after.text()), ("MISS", format!("{path} v2")), "{body}");
        assert_eq!(origin.hits(path), hits + 1, "{body}: not fetched from the origin");
        let other = app.proxy_get(host, "/dir/other").await;
        let expected = if body.get("hosts").is_some() { "MISS" } else { "HIT" };
        assert_eq!(other.cache(), expected, "{body}: the untargeted object");
    }
    // purge_everything: a new generation, so the reserve's counts drop at once.
    cached(&app, &origin, &zone, host, "/all", "").await;
    ok(app.post(&purge_path(&zone), &token).json(&json!({"purge_everything": true})).send().await.unwrap()).await;
    // Checked before the next request, whose miss fills the reserve again.
    assert!(!app.reserve_has(&zone, host, "/all").await);
    assert_eq!(app.proxy_get(host, "/all").await.cache(), "MISS");
}

#[tokio::test]
async fn a_purged_copy_is_not_served_stale_when_the_origin_fails() {
    let host = "stale-purge.example";
    let (app, origin, zone, token) = setup(host).await;
    cached(&app, &origin, &zone, host, "/p", "").await;
    ok(app
        .post(&purge_path(&zone), &token)
        .json(&json!({"files": [format!("http://{host}/p")]}))
        .send()
        .await
        .unwrap())
    .await;
    origin.set("/p", Reply { status: 503, ..Reply::ok("down", "no-store") });
    let got = app.proxy_get(host, "/p").await;
    assert_eq!((got.status.as_u16(), got.text().as_str()), (503, "down"));
}

#[tokio::test]
async fn invalidate_revalidates_with_the_stored_validators() {
    let host = "inv.example";
    let (app, origin, zone, token) = setup(host).await;
    origin.set("/etag", Reply::ok("same", "public, max-age=600").header("etag", "\"v1\"").header("cache-tag", "t"));
    origin.set("/plain", Reply::ok("plain v1", "public, max-age=600").header("cache-tag", "t"));
    for path in ["/etag", "/plain"] {
        assert_eq!(app.proxy_get(host, path).await.cache(), "MISS");
        app.wait_stored(&zone, host, path).await;
        assert_eq!(app.proxy_get(host, path).await.cache(), "HIT");
    }
    ok(app.post(&invalidate_path(&zone), &token).json(&json!({"tags": ["T"]})).send().await.unwrap()).await;
    let revalidated = app.proxy_get(host, "/etag").await;
    assert_eq!((revalidated.cache(), revalidated.text().as_str()), ("REVALIDATED", "same"));
    assert_eq!(origin.not_modified("/etag"), 1);
    assert_eq!(app.proxy_get(host, "/etag").await.cache(), "HIT", "a revalidated copy is fresh again");
    origin.set("/plain", Reply::ok("plain v2", "public, max-age=600"));
    let refetched = app.proxy_get(host, "/plain").await;
    assert_eq!((refetched.cache(), refetched.text().as_str()), ("EXPIRED", "plain v2"));
    assert_eq!(app.proxy_get(host, "/plain").await.cache(), "HIT");
}

#[tokio::test]
async fn a_fill_racing_a_purge_never_resurrects_it() {
    let host = "race.example";
    let (app, origin, zone, token) = setup(host).await;
    let (open, gate) = tokio::sync::watch::channel(false);
    origin.set("/r", Reply::ok(vec![b'x'; 64 * 1024], "public, max-age=600").gated(gate));
    let c = app.proxy_client();
    let filling = tokio::spawn(async move { c.get(host, "/r").await });
    // The origin has sent half the body: the fill began before the purge.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while origin.hits("/r") == 0 {
        assert!(std::time::Instant::now() < deadline, "the origin was never asked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ok(app
        .post(&purge_path(&zone), &token)
        .json(&json!({"files": [format!("https://{host}/r")]}))
        .send()
        .await
        .unwrap())
    .await;
    open.send(true).unwrap();
    let first = filling.await.unwrap();
    assert_eq!((first.cache(), first.body.len()), ("MISS", 64 * 1024));
    // Give the reserve write time to be refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!app.reserve_has(&zone, host, "/r").await, "the racing fill reached the reserve");
    origin.set("/r", Reply::ok("after", "public, max-age=600"));
    let after = app.proxy_get(host, "/r").await;
    assert_eq!((after.cache(), after.text().as_str()), ("MISS", "after"), "the racing fill was served");
}

#[tokio::test]
async fn bad_bodies_get_cloudflare_answers_and_change_nothing() {
    let host = "badpurge.example";
    let (app, origin, zone, token) = setup(host).await;
    cached(&app, &origin, &zone, host, "/kept", "").await;
    let send = |body: Value| app.post(&purge_path(&zone), &token).json(&body).send();
    fails(send(json!({})).await.unwrap(), 400, 1012).await;
    fails(send(json!({"purge_everything": false})).await.unwrap(), 400, 1012).await;
    fails(send(json!({"files": format!("https://{host}/kept")})).await.unwrap(), 400, 1014).await;
    let bare = fails(send(json!({"files": ["/kept"]})).await.unwrap(), 400, 1016).await;
    assert!(bare["errors"][0]["message"].as_str().unwrap().contains("\"/kept\""), "{bare}");
    fails(
        send(json!({"files": [{"url": format!("https://{host}/kept"), "headers": {"origin": null}}]})).await.unwrap(),
        400,
        1016,
    )
    .await;
    fails(send(json!({"files": [null]})).await.unwrap(), 400, 1016).await;
    fails(send(json!({"hosts": ["elsewhere.example"]})).await.unwrap(), 400, 1016).await;
    fails(send(json!({"tags": ["a"], "hosts": [host]})).await.unwrap(), 400, 1017).await;
    fails(send(json!({"purge_everything": true, "tags": ["a"]})).await.unwrap(), 400, 1017).await;
    let many: Vec<String> = (0..501).map(|i| format!("t{i}")).collect();
    let over = fails(send(json!({ "tags": many })).await.unwrap(), 400, 1018).await;
    assert!(over["errors"][0]["message"].as_str().unwrap().contains("500"), "{over}");
    let raw = app.post(&purge_path(&zone), &token).header("content-type", "application/json").body("{");
    fails(raw.send().await.unwrap(), 400, 6007).await;
    // Settings permissions do not purge.
    let settings = app.token(&[Permission::ZoneSettingsWrite, Permission::ZoneWrite], TokenScope::AllZones).await;
    let body = json!({"purge_everything": true});
    fails(app.post(&purge_path(&zone), &settings).json(&body).send().await.unwrap(), 403, 10000).await;
    assert_eq!(app.proxy_get(host, "/kept").await.cache(), "HIT", "a refused purge changed something");
    // The DELETE alias of older clients.
    let delete = app.request(reqwest::Method::DELETE, &purge_path(&zone)).bearer_auth(&token);
    let answer = ok(delete.json(&json!({"files": [format!("https://{host}/kept")]})).send().await.unwrap()).await;
    assert_eq!(answer["result"], json!({"id": zone.to_string()}));
    assert_eq!(app.proxy_get(host, "/kept").await.cache(), "MISS");
}

#[tokio::test]
async fn a_purge_during_a_clear_is_answered_and_the_clear_completes() {
    let host = "clearing.example";
    let (app, origin, zone, token) = setup(host).await;
    cached(&app, &origin, &zone, host, "/c", "").await;
    app.fill(&zone, "bulk", 200, 100).await;
    app.set_reserve(&zone, false).await;
    let settings = app.token(&[Permission::ZoneSettingsWrite], TokenScope::AllZones).await;
    ok(app.post(&clear_path(&zone), &settings).send().await.unwrap()).await;
    ok(app.post(&purge_path(&zone), &token).json(&json!({"purge_everything": true})).send().await.unwrap()).await;
    ok(app.post(&purge_path(&zone), &token).json(&json!({"tags": ["x"]})).send().await.unwrap()).await;
    let done = app.wait_completed(&zone, &settings).await;
    assert_eq!(done["progress"]["objects_remaining"], 0, "{done}");
    assert_eq!(app.proxy_get(host, "/c").await.cache(), "MISS");
}

#[tokio::test]
async fn a_zone_serves_its_subdomains_the_most_specific_zone_wins_and_hosts_purge_one() {
    let host = "apex.example";
    let (app, origin, zone, token) = setup(host).await;
    let other = TestOrigin::start().await;
    app.zone_with_origin("own.apex.example", &other.url).await;
    origin.set("/x", Reply::ok("apex origin", "public, max-age=600"));
    other.set("/x", Reply::ok("own origin", "public, max-age=600"));
    assert_eq!(app.proxy_get("static.apex.example", "/x").await.text(), "apex origin");
    // The subdomain's zone was created in the store behind the server's back: it is routed once synced.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.proxy_get("deep.own.apex.example", "/x").await.text() != "own origin" {
        assert!(std::time::Instant::now() < deadline, "the more specific zone never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.proxy_get("nope.example", "/x").await.status, StatusCode::MISDIRECTED_REQUEST);
    // The cache key keeps the full hostname: a `hosts` purge of one subdomain leaves the others.
    assert_eq!(app.proxy_get(host, "/x").await.cache(), "MISS");
    for h in ["static.apex.example", host] {
        app.wait_stored(&zone, h, "/x").await;
        assert_eq!(app.proxy_get(h, "/x").await.cache(), "HIT", "{h}");
    }
    ok(app.post(&purge_path(&zone), &token).json(&json!({"hosts": ["Static.Apex.Example"]})).send().await.unwrap())
        .await;
    assert_eq!(app.proxy_get("static.apex.example", "/x").await.cache(), "MISS");
    assert_eq!(app.proxy_get(host, "/x").await.cache(), "HIT");
}

#[tokio::test]
async fn purged_objects_are_deleted_from_the_reserve_and_counted_out() {
    let host = "reclaim.example";
    let (app, origin, zone, token) = setup(host).await;
    for (path, tags) in [("/a", "gone"), ("/b", "Gone, other"), ("/c", "other"), ("/d/e", "")] {
        cached(&app, &origin, &zone, host, path, tags).await;
    }
    let index = app.data.index();
    assert_eq!(index.usage(&zone).await.unwrap().objects, 4);
    let blob_of = |path: &'static str| {
        let reserve = app.data.reserve();
        let zone = zone.clone();
        async move { reserve.find(&zone, &format!("{host}{path}")).await.unwrap().unwrap().blob }
    };
    let (a_blob, d_blob) = (blob_of("/a").await, blob_of("/d/e").await);
    ok(app.post(&purge_path(&zone), &token).json(&json!({"tags": ["gone"]})).send().await.unwrap()).await;
    ok(app.post(&purge_path(&zone), &token).json(&json!({"prefixes": [format!("{host}/d/")]})).send().await.unwrap())
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while index.usage(&zone).await.unwrap().objects != 1 {
        assert!(std::time::Instant::now() < deadline, "purged objects were never deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.reserve_has(&zone, host, "/c").await, "an untargeted object was deleted");
    for (path, blob) in [("/a", a_blob), ("/d/e", d_blob)] {
        assert!(!app.reserve_has(&zone, host, path).await, "{path}");
        assert!(app.data.bodies.open(&blob).await.unwrap().is_none(), "{path}: its body is still stored");
    }
    assert_eq!(app.proxy_get(host, "/c").await.cache(), "HIT");
}

#[tokio::test]
async fn an_invalidated_reserve_copy_is_fresh_again_once_revalidated() {
    let host = "inv-reserve.example";
    let (app, origin, zone, token) = setup_tiers(host, false).await;
    origin.set("/e", Reply::ok("e", "public, max-age=600").header("etag", "\"e\""));
    app.proxy_get(host, "/e").await;
    app.wait_stored(&zone, host, "/e").await;
    assert_eq!(app.proxy_get(host, "/e").await.reserve(), "HIT");
    ok(app.post(&invalidate_path(&zone), &token).json(&json!({"hosts": [host]})).send().await.unwrap()).await;
    assert_eq!(app.proxy_get(host, "/e").await.cache(), "REVALIDATED");
    let again = app.proxy_get(host, "/e").await;
    assert_eq!((again.cache(), again.reserve()), ("HIT", "HIT"));
    assert_eq!(origin.not_modified("/e"), 1);
}
