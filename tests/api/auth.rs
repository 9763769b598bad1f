//! SPEC §4: both credential schemes, every row of the error table, scope and permissions.

use cache_reserve::domain::{Permission, Timestamp, TokenScope};
use reqwest::Method;

use crate::helpers::*;

#[tokio::test]
async fn missing_or_half_credentials_are_9106() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let path = reserve_path(&z);
    let r = fails(app.request(Method::GET, &path).send().await.unwrap(), 400, 9106).await;
    assert_eq!(r["errors"][0]["message"], "Missing X-Auth-Key, X-Auth-Email or Authorization headers");
    fails(app.request(Method::GET, &path).header("X-Auth-Email", "a@example.com").send().await.unwrap(), 400, 9106)
        .await;
    fails(app.request(Method::GET, &path).header("X-Auth-Key", "a".repeat(37)).send().await.unwrap(), 400, 9106).await;
}

#[tokio::test]
async fn malformed_headers_are_6003_with_a_chain() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let path = reserve_path(&z);
    for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer tok%en", "token"] {
        let r =
            fails(app.request(Method::GET, &path).header("Authorization", bad).send().await.unwrap(), 400, 6003).await;
        assert_eq!(r["errors"][0]["message"], "Invalid request headers");
        assert_eq!(r["errors"][0]["error_chain"][0]["code"], 6111, "{bad}");
        assert_eq!(r["errors"][0]["error_chain"][0]["message"], "Invalid format for Authorization header");
    }
    let r = fails(
        app.request(Method::GET, &path)
            .header("X-Auth-Email", "not-an-email")
            .header("X-Auth-Key", "a".repeat(37))
            .send()
            .await
            .unwrap(),
        400,
        6003,
    )
    .await;
    assert_eq!(r["errors"][0]["error_chain"][0]["code"], 6102);
    let r = fails(
        app.request(Method::GET, &path)
            .header("X-Auth-Email", "a@example.com")
            .header("X-Auth-Key", "not-a-key")
            .send()
            .await
            .unwrap(),
        400,
        6003,
    )
    .await;
    assert_eq!(r["errors"][0]["error_chain"][0]["code"], 6103);
    assert_eq!(r["errors"][0]["error_chain"][0]["message"], "Invalid format for X-Auth-Key header");
}

#[tokio::test]
async fn global_key_works_on_every_zone_and_unknown_pairs_are_9103() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let key = app.user("ops@example.com").await;
    let with = |email: &str, key: &str| {
        app.request(Method::PATCH, &reserve_path(&z))
            .header("X-Auth-Email", email)
            .header("X-Auth-Key", key)
            .json(&serde_json::json!({"value": "on"}))
    };
    let r = ok(with("OPS@example.com", &key).send().await.unwrap()).await;
    assert_eq!(r["result"]["value"], "on");
    let r = fails(with("other@example.com", &key).send().await.unwrap(), 403, 9103).await;
    assert_eq!(r["errors"][0]["message"], "Unknown X-Auth-Key or X-Auth-Email");
    fails(with("ops@example.com", &"0".repeat(37)).send().await.unwrap(), 403, 9103).await;
}

#[tokio::test]
async fn unknown_revoked_and_expired_tokens_are_10000() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let path = reserve_path(&z);
    let r = fails(app.get(&path, "unknowntoken").send().await.unwrap(), 403, 10000).await;
    assert_eq!(r["errors"][0]["message"], "Authentication error");

    let expired = create_token(
        &app.data,
        &[Permission::ZoneSettingsRead],
        TokenScope::AllZones,
        Some(Timestamp::from_micros(Timestamp::now().as_micros() - 1)),
    )
    .await;
    fails(app.get(&path, &expired).send().await.unwrap(), 403, 10000).await;

    let token = app.token(&[Permission::ZoneSettingsRead], TokenScope::AllZones).await;
    ok(app.get(&path, &token).send().await.unwrap()).await;
    let verify = ok(app.get("/user/tokens/verify", &token).send().await.unwrap()).await;
    let id = verify["result"]["id"].as_str().unwrap().to_owned();
    assert_eq!(verify["result"]["status"], "active");
    use cache_reserve::storage::ControlStore;
    app.data.sql.revoke_token(&cache_reserve::domain::TokenId::parse(&id).unwrap(), Timestamp::now()).await.unwrap();
    fails(app.get(&path, &token).send().await.unwrap(), 403, 10000).await;
    fails(app.get("/user/tokens/verify", &token).send().await.unwrap(), 403, 10000).await;
}

#[tokio::test]
async fn each_permission_grants_exactly_its_endpoints() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    for p in Permission::ALL {
        let token = app.token(&[p], TokenScope::AllZones).await;
        let can_write = matches!(p, Permission::ZoneSettingsWrite | Permission::ZoneWrite);
        // Every zone permission reads the zone and the zone list; all but Cache Purge read the settings.
        let setting = app.get(&reserve_path(&z), &token).send().await.unwrap();
        let shield_object = app.get(&format!("/zones/{z}/smart_shield"), &token).send().await.unwrap();
        if p == Permission::CachePurge {
            fails(setting, 403, 10000).await;
            fails(shield_object, 403, 10000).await;
        } else {
            ok(setting).await;
            ok(shield_object).await;
        }
        ok(app.get(&format!("/zones/{z}"), &token).send().await.unwrap()).await;
        // Only Cache Purge purges.
        let purge = app.post(&format!("/zones/{z}/purge_cache"), &token).json(&serde_json::json!({"tags": ["t"]}));
        let purge = purge.send().await.unwrap();
        if p == Permission::CachePurge {
            ok(purge).await;
        } else {
            fails(purge, 403, 10000).await;
        }
        ok(app.get("/zones", &token).send().await.unwrap()).await;
        let patch =
            app.patch(&reserve_path(&z), &token).json(&serde_json::json!({"value": "off"})).send().await.unwrap();
        let post = app.post(&clear_path(&z), &token).send().await.unwrap();
        let shield =
            app.patch(&format!("/zones/{z}/smart_shield"), &token).json(&serde_json::json!({})).send().await.unwrap();
        if can_write {
            ok(patch).await;
            ok(post).await;
            ok(shield).await;
        } else {
            fails(patch, 403, 10000).await;
            fails(post, 403, 10000).await;
            fails(shield, 403, 10000).await;
        }
    }
}

#[tokio::test]
async fn zones_outside_scope_answer_exactly_like_nonexistent_ones() {
    let app = spawn_app().await;
    let mine = app.zone("mine.example").await;
    let theirs = app.zone("theirs.example").await;
    let token = app.token(&[Permission::ZoneWrite], TokenScope::Zones(vec![mine.clone()])).await;
    ok(app.get(&reserve_path(&mine), &token).send().await.unwrap()).await;
    let nonexistent = cache_reserve::domain::ZoneId::generate();
    for path in [reserve_path, clear_path] {
        let a = fails(app.get(&path(&theirs), &token).send().await.unwrap(), 400, 7003).await;
        let b = fails(app.get(&path(&nonexistent), &token).send().await.unwrap(), 400, 7003).await;
        let strip = |v: &serde_json::Value, id: &str| v.to_string().replace(id, "ID");
        assert_eq!(strip(&a, theirs.as_str()), strip(&b, nonexistent.as_str()));
    }
    // Even a token without the needed permission cannot tell an out-of-scope zone exists.
    let read_only = app.token(&[Permission::ZoneRead], TokenScope::Zones(vec![mine.clone()])).await;
    fails(app.post(&clear_path(&theirs), &read_only).send().await.unwrap(), 400, 7003).await;
    fails(app.post(&clear_path(&mine), &read_only).send().await.unwrap(), 403, 10000).await;
}

#[tokio::test]
async fn verify_wants_a_token() {
    let app = spawn_app().await;
    let key = app.user("ops@example.com").await;
    let r = app
        .request(Method::GET, "/user/tokens/verify")
        .header("X-Auth-Email", "ops@example.com")
        .header("X-Auth-Key", key)
        .send()
        .await
        .unwrap();
    fails(r, 400, 1001).await;
    fails(app.request(Method::GET, "/user/tokens/verify").send().await.unwrap(), 400, 9106).await;
}

#[tokio::test]
async fn a_credential_in_the_query_string_never_reaches_the_log() {
    // The real binary at debug level, its log in a file.
    let stores = TestStores::fresh().await;
    let log_path = stores.dir.path().join("serve.log");
    let mut command = binary();
    stores.apply(&mut command);
    let mut server = command
        .args(["serve", "--api-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let api = loop {
        let text = read_log();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "the server did not start: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let secret = "cfut_0123456789abcdefghijklmnopqrstuvwxyzABCD";
    let url = format!("http://{api}/client/v4/zones?token={secret}&cf_api_token={secret}");
    let resp = http_client().get(url).send().await.unwrap();
    assert!(resp.status().is_client_error());
    // The request's log lines are written by the time the response has gone out; give the writer a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !read_log().contains("path=/client/v4/zones") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let text = read_log();
    assert!(text.contains("path=/client/v4/zones"), "the request was not logged at all: {text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(!text.contains(secret), "a token reached the log: {text}");
}
