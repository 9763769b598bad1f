//! `GET /zones` and `GET /zones/{id}`: lookup by name, pagination, scope.

use cache_reserve::domain::{Permission, TokenScope};

use crate::helpers::*;

#[tokio::test]
async fn find_by_name_and_paginate() {
    let app = spawn_app().await;
    let t = app.admin_token().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(app.zone(&format!("z{i:02}.example")).await);
    }
    let r = ok(app.get("/zones?name=z03.example", &t).send().await.unwrap()).await;
    assert_eq!(r["result"][0]["id"], ids[3].as_str());
    assert_eq!(r["result"][0]["name"], "z03.example");
    assert_eq!(r["result_info"]["total_count"], 1);

    let r = ok(app.get("/zones?per_page=5&page=3", &t).send().await.unwrap()).await;
    assert_eq!(r["result"].as_array().unwrap().len(), 2);
    assert_eq!(r["result"][0]["name"], "z10.example");
    assert_eq!(
        r["result_info"],
        serde_json::json!({"page": 3, "per_page": 5, "count": 2, "total_count": 12, "total_pages": 3})
    );
    let r = ok(app.get("/zones?name=nope.example", &t).send().await.unwrap()).await;
    assert_eq!(r["result"], serde_json::json!([]));
    let r = ok(app.get("/zones?name=not..a..name", &t).send().await.unwrap()).await;
    assert_eq!(r["result"], serde_json::json!([]));

    for bad in ["per_page=4", "per_page=51", "page=0", "page=x", "per_page=-1"] {
        fails(app.get(&format!("/zones?{bad}"), &t).send().await.unwrap(), 400, 1004).await;
    }
    let r = ok(app.get(&format!("/zones/{}", ids[0]), &t).send().await.unwrap()).await;
    assert_eq!(r["result"]["name"], "z00.example");
    assert_eq!(r["result"]["status"], "active");
}

#[tokio::test]
async fn a_scoped_token_lists_only_its_zones() {
    let app = spawn_app().await;
    let a = app.zone("a.example").await;
    let b = app.zone("b.example").await;
    let t = app.token(&[Permission::ZoneSettingsRead], TokenScope::Zones(vec![a.clone()])).await;
    let r = ok(app.get("/zones", &t).send().await.unwrap()).await;
    assert_eq!(r["result"].as_array().unwrap().len(), 1);
    assert_eq!(r["result"][0]["id"], a.as_str());
    let r = ok(app.get("/zones?name=b.example", &t).send().await.unwrap()).await;
    assert_eq!(r["result"], serde_json::json!([]));
    fails(app.get(&format!("/zones/{b}"), &t).send().await.unwrap(), 400, 7003).await;
}
