//! Bad input of every kind gets an envelope answer: never a panic, never internal text.

use reqwest::Method;

use crate::helpers::*;

#[tokio::test]
async fn unknown_routes_are_7000_and_wrong_methods_7001() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    for path in ["/nope", "/zones/x/y/z/w", &format!("/zones/{z}/cache"), &format!("/zones/{z}/smart_shield/nope")] {
        let r = fails(app.get(path, &t).send().await.unwrap(), 404, 7000).await;
        assert_eq!(r["errors"][0]["message"], "No route for that URI");
    }
    let root = app.http.get(app.base.replace("/client/v4", "/")).send().await.unwrap();
    fails(root, 404, 7000).await;
    for (m, path) in [
        (Method::PUT, clear_path(&z)),
        (Method::DELETE, reserve_path(&z)),
        (Method::POST, reserve_path(&z)),
        (Method::PUT, "/zones".into()),
    ] {
        fails(app.request(m, &path).bearer_auth(&t).send().await.unwrap(), 405, 7001).await;
    }
}

#[tokio::test]
async fn malformed_zone_ids_are_7003_and_echoed_safely() {
    let app = spawn_app().await;
    let t = app.admin_token().await;
    let long = "a".repeat(10_000);
    for id in [
        "023E105F4ECEF8AD9CA31A8372D0C353",
        "023e105f4ecef8ad9ca31a8372d0c35",
        "023e105f4ecef8ad9ca31a8372d0c3533",
        "zzze105f4ecef8ad9ca31a8372d0c353",
        "%1b%5b31m",
        "%00",
        "a%2Fb",
        long.as_str(),
    ] {
        let r = fails(app.get(&format!("/zones/{id}/cache/cache_reserve"), &t).send().await.unwrap(), 400, 7003).await;
        let msg = r["errors"][0]["message"].as_str().unwrap();
        assert!(msg.starts_with("Could not route to /client/v4/zones/"), "{msg}");
        assert!(msg.ends_with(", perhaps your object identifier is invalid?"), "{msg}");
        assert!(msg.chars().all(|c| !c.is_control()), "{msg:?}");
        assert!(msg.len() < 400, "echo is bounded");
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_in_the_envelope() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    let big = vec![b' '; 2 * 1024 * 1024];
    fails(app.post(&clear_path(&z), &t).body(big.clone()).send().await.unwrap(), 413, 6009).await;
    // Without Content-Length (chunked), the limit still holds.
    let stream =
        futures::stream::iter(big.chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
    let r = app.patch(&reserve_path(&z), &t).body(reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    fails(r, 413, 6009).await;
    // Nothing was started.
    fails(app.get(&clear_path(&z), &t).send().await.unwrap(), 400, 1142).await;
}

#[tokio::test]
async fn non_utf8_headers_and_garbage_bodies_never_leak_internals() {
    let app = spawn_app().await;
    let z = app.zone("example.com").await;
    let t = app.admin_token().await;
    let r = app
        .request(Method::GET, &reserve_path(&z))
        .header("Authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap())
        .send()
        .await
        .unwrap();
    fails(r, 400, 6003).await;
    let r = app
        .request(Method::GET, &reserve_path(&z))
        .header("X-Auth-Email", reqwest::header::HeaderValue::from_bytes(b"\xffa@b.com").unwrap())
        .header("X-Auth-Key", "a".repeat(37))
        .send()
        .await
        .unwrap();
    fails(r, 400, 6003).await;
    for body in ["\u{0}", "{\"value\": \"on\"", "{'value':'on'}", "\u{feff}{}"] {
        let r = app.patch(&reserve_path(&z), &t).body(body).send().await.unwrap();
        let text = fails(r, 400, 6007).await.to_string().to_lowercase();
        for leak in ["sqlite", "serde", "line ", "column", "/tmp", "panicked"] {
            assert!(!text.contains(leak), "{text}");
        }
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let resp = app.request(Method::GET, "/openapi.json").send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: serde_json::Value = resp.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/zones/{zone_id}/smart_shield/cache_reserve_clear",
        "/zones/{zone_id}/cache/cache_reserve_clear",
        "/zones/{zone_id}/cache/cache_reserve",
        "/zones/{zone_id}/smart_shield",
        "/zones",
        "/zones/{zone_id}",
        "/user/tokens/verify",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(paths["/zones/{zone_id}/cache/cache_reserve"].get("patch").is_some());
}
