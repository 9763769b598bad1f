//! SPEC §5 and §7: the Cache Reserve setting and the Smart Shield object.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn reserve_setting_defaults_off_and_changes() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    let r = ok(app.get(&reserve_path(&z), &t).send().await.unwrap()).await;
    assert_eq!(r["result"], json!({"id": "cache_reserve", "value": "off", "editable": true, "modified_on": null}));
    let r = ok(app.patch(&reserve_path(&z), &t).json(&json!({"value": "on"})).send().await.unwrap()).await;
    assert_eq!(r["result"]["value"], "on");
    assert!(r["result"]["modified_on"].as_str().unwrap().ends_with('Z'));
    let r = ok(app.get(&reserve_path(&z), &t).send().await.unwrap()).await;
    assert_eq!(r["result"]["value"], "on");
}

#[tokio::test]
async fn bad_setting_values_are_1007_and_change_nothing() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    for body in ["{}", r#"{"value":"ON"}"#, r#"{"value":"sync"}"#, r#"{"value":1}"#, "[]", "\"on\"", ""] {
        let r = app
            .patch(&reserve_path(&z), &t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let r = fails(r, 400, 1007).await;
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("cache_reserve"), "{body}");
    }
    fails(app.patch(&reserve_path(&z), &t).body("{\"value\":").send().await.unwrap(), 400, 6007).await;
    let r = ok(app.get(&reserve_path(&z), &t).send().await.unwrap()).await;
    assert_eq!(r["result"]["value"], "off");
}

#[tokio::test]
async fn smart_shield_reports_all_five_keys_honestly() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    let path = format!("/zones/{z}/smart_shield");
    let r = ok(app.get(&path, &t).send().await.unwrap()).await;
    assert_eq!(
        r["result"],
        json!({
            "cache_reserve": {"id": "cache_reserve", "editable": true, "value": "off"},
            "regional_tiered_cache": {"id": "regional_tiered_cache", "editable": false, "value": "off"},
            "smart_routing": {"id": "smart_routing", "editable": false, "value": "off"},
            "smart_tiered_cache": {"id": "smart_tiered_cache", "editable": false, "value": "off", "modified_on": null},
            "healthchecks_count": 0
        })
    );
    let r = ok(app.patch(&path, &t).json(&json!({"cache_reserve": {"value": "on"}})).send().await.unwrap()).await;
    assert_eq!(r["result"]["cache_reserve"]["value"], "on");
    // Same setting as /cache/cache_reserve.
    let r = ok(app.get(&reserve_path(&z), &t).send().await.unwrap()).await;
    assert_eq!(r["result"]["value"], "on");
}

#[tokio::test]
async fn smart_shield_refuses_features_it_does_not_have_and_changes_nothing() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    let path = format!("/zones/{z}/smart_shield");
    for name in ["regional_tiered_cache", "smart_routing", "smart_tiered_cache"] {
        let body = json!({"cache_reserve": {"value": "on"}, name: {"value": "on"}});
        let r = fails(app.patch(&path, &t).json(&body).send().await.unwrap(), 400, 1007).await;
        assert!(r["errors"][0]["message"].as_str().unwrap().contains(name));
        let body = json!({name: {"value": "maybe"}});
        fails(app.patch(&path, &t).json(&body).send().await.unwrap(), 400, 1007).await;
        ok(app.patch(&path, &t).json(&json!({name: {"value": "off"}})).send().await.unwrap()).await;
    }
    let r = ok(app.get(&reserve_path(&z), &t).send().await.unwrap()).await;
    assert_eq!(r["result"]["value"], "off", "a refused PATCH must not half-apply");
    fails(app.patch(&path, &t).json(&json!([1])).send().await.unwrap(), 400, 1007).await;
}

/// Issue #12 B7: `{"foo":1}` once answered 200 with nothing changed. Every body that changes something refuses
/// a field it does not take, at any depth, naming it, and changes nothing.
#[tokio::test]
async fn unknown_fields_are_refused_by_every_body_and_change_nothing() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    let shield = format!("/zones/{z}/smart_shield");
    let reserve = reserve_path(&z);
    let purge = format!("/zones/{z}/purge_cache");
    let invalidate = format!("/zones/{z}/invalidate_cache");
    let cases = [
        (shield.as_str(), json!({"foo": 1}), 1007, "foo"),
        (
            shield.as_str(),
            json!({"cache_reserve": {"value": "on"}, "cache_reserv": {"value": "on"}}),
            1007,
            "cache_reserv",
        ),
        (shield.as_str(), json!({"cache_reserve": {"value": "on", "editable": false}}), 1007, "editable"),
        (reserve.as_str(), json!({"value": "on", "foo\n": 1}), 1007, "foo%0A"),
        (purge.as_str(), json!({"tags": ["a"], "files_": ["https://example.com/"]}), 1016, "files_"),
        (
            purge.as_str(),
            json!({"files": [{"url": "https://example.com/", "header": {"Origin": "x"}}]}),
            1016,
            "header",
        ),
        (invalidate.as_str(), json!({"prefixes": ["example.com/a"], "purge": true}), 1016, "purge"),
    ];
    for (path, body, code, named) in cases {
        let request = if path.ends_with("_cache") { app.post(path, &t) } else { app.patch(path, &t) };
        let r = request.json(&body).send().await.unwrap();
        let r = fails(r, 400, code).await;
        let message = r["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(&format!("unknown field \"{named}\"")), "{body}: {message}");
    }
    let r = ok(app.get(&reserve_path(&z), &t).send().await.unwrap()).await;
    assert_eq!(r["result"]["value"], "off", "a refused PATCH must not half-apply");
}
