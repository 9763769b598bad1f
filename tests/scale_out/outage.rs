//! Outages of the shared servers, for real: PostgreSQL or SeaweedFS stopped and started again under a
//! running node. The API answers a retryable 503 in the envelope, the proxy keeps serving from the edge
//! tier and the origin, and everything comes back without a restart.

use std::{process::Command, time::Duration};

use crate::{helpers::*, origin::*, *};

/// Runs `scripts/services.sh <action>`.
fn services(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let status = Command::new("bash").arg(script).arg(action).status().unwrap();
    assert!(status.success(), "services.sh {action} failed");
}

/// Stops a server now and starts it again when dropped, even if the case fails midway.
struct Outage(&'static str);

impl Outage {
    fn begin(server: &'static str) -> Self {
        services(&format!("stop-{server}"));
        Self(server)
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        services(&format!("start-{}", self.0));
    }
}

/// `GET /readyz` of a node: status and body.
async fn readiness(node: &ServerProcess) -> (StatusCode, serde_json::Value) {
    let r = http_client().get(format!("{}/readyz", node.base.trim_end_matches("/client/v4"))).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// A node whose edge tier takes objects of up to 1 KiB: `/small` is served from it, `/large` (3,000 bytes)
/// only from the reserve.
async fn node_with_both_tiers(shared: &Shared, origin: &TestOrigin, host: &str) -> ServerProcess {
    let node = shared.node(&["--edge-cache-bytes", "16KiB"]);
    assert_eq!(set_reserve(&node, &shared.zone, &shared.token, true).await, StatusCode::OK);
    origin.set("/small", Reply::ok("small", LONG));
    origin.set("/large", Reply::ok(vec![b'l'; 3000], LONG));
    for path in ["/small", "/large"] {
        get(&node, host, path).await;
        wait_stored(&shared.data, &shared.zone, host, path).await;
    }
    assert_eq!(get(&node, host, "/small").await.cache, "HIT");
    assert_eq!(get(&node, host, "/large").await.reserve, "HIT");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_a_503_on_the_api_and_the_proxy_bypasses_the_reserve_until_it_returns() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "pg-outage.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    let node = node_with_both_tiers(&shared, &origin, host).await;
    let setting = reserve_path(&shared.zone);
    let large_hits = || origin.hits("/large");

    let outage = Outage::begin("postgres");
    let r = api(&node, reqwest::Method::GET, &setting, &shared.token).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((body["success"].as_bool(), body["errors"][0]["code"].as_u64()), (Some(false), Some(6015)), "{body}");
    let patch = set_reserve(&node, &shared.zone, &shared.token, false).await;
    assert_eq!(patch, StatusCode::SERVICE_UNAVAILABLE, "a change must not seem to succeed");
    // The proxy: its view of the zones has expired, so it cannot know of purges made meanwhile: neither tier
    // is read (SPEC §10), every object comes from the origin, and a new object is served (and not stored).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let small_hits = origin.hits("/small");
    assert_eq!(get(&node, host, "/small").await.cache, "MISS");
    assert_eq!(origin.hits("/small"), small_hits + 1, "served from the origin");
    let before = large_hits();
    let large = get(&node, host, "/large").await;
    assert_eq!((large.status, large.body.len()), (StatusCode::OK, 3000));
    assert_eq!(large_hits(), before + 1, "served from the origin");
    origin.set("/during", Reply::ok("during", LONG));
    assert_eq!(get(&node, host, "/during").await.status, StatusCode::OK);
    // Counted, and /metrics still answers.
    let metrics = http_client().get(format!("{}/metrics", node.base.trim_end_matches("/client/v4"))).send();
    let metrics = metrics.await.unwrap().text().await.unwrap();
    let series = format!("cache_reserve_reserve_unavailable_total{{zone=\"{host}\"}} ");
    let bypassed = metrics.lines().find_map(|l| l.strip_prefix(series.as_str())).expect("the counter");
    assert!(bypassed.trim().parse::<f64>().unwrap() >= 2.0, "{metrics}");
    // A load balancer sees this node as not ready, and live.
    let (status, ready) = readiness(&node).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!((ready["ready"].as_bool(), ready["control_store"].as_str()), (Some(false), Some("unavailable")));
    let live = http_client().get(format!("{}/healthz", node.base.trim_end_matches("/client/v4"))).send();
    assert_eq!(live.await.unwrap().status(), StatusCode::OK);

    drop(outage);
    wait_until("the node to be ready again", || async { readiness(&node).await.0 == StatusCode::OK }).await;
    // Back without a restart: the API answers, and the reserve serves again.
    wait_until("the API to answer again", || async {
        api(&node, reqwest::Method::GET, &setting, &shared.token).await.status() == StatusCode::OK
    })
    .await;
    wait_until("the reserve to serve again", || async { get(&node, host, "/large").await.reserve == "HIT" }).await;
    let body: serde_json::Value = api(&node, reqwest::Method::GET, &setting, &shared.token).await.json().await.unwrap();
    assert_eq!(body["result"]["value"], "on", "the refused PATCH changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_bypasses_the_reserve_and_it_serves_again_when_s3_returns() {
    let _serial = SERIAL.lock().await;
    let origin = TestOrigin::start().await;
    let host = "s3-outage.example";
    let Some(shared) = Shared::new(host, &origin.url).await else { return };
    let node = node_with_both_tiers(&shared, &origin, host).await;

    let outage = Outage::begin("s3");
    let before = origin.hits("/large");
    let large = get(&node, host, "/large").await;
    assert_eq!((large.status, large.body.len()), (StatusCode::OK, 3000));
    assert_eq!(origin.hits("/large"), before + 1, "served from the origin");
    let (status, ready) = readiness(&node).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["reserve_storage"], "unavailable", "{ready}");
    assert_eq!(get(&node, host, "/small").await.cache, "HIT");
    origin.set("/during", Reply::ok(vec![b'd'; 3000], LONG));
    assert_eq!(get(&node, host, "/during").await.status, StatusCode::OK);
    // The API does not depend on S3.
    let r = api(&node, reqwest::Method::GET, &reserve_path(&shared.zone), &shared.token).await;
    assert_eq!(r.status(), StatusCode::OK);

    drop(outage);
    wait_until("the reserve to serve again", || async { get(&node, host, "/large").await.reserve == "HIT" }).await;
    // Nothing was corrupted: what is stored is whole.
    assert_eq!(get(&node, host, "/large").await.body.len(), 3000);
    for path in ["/large", "/during"] {
        if let Some(entry) = shared.data.reserve().find(&shared.zone, &format!("{host}{path}")).await.unwrap() {
            let body = shared.data.reserve().get(&shared.zone, &format!("{host}{path}")).await.unwrap().unwrap();
            assert_eq!(body.body.len() as u64, entry.size, "{path}");
        }
    }
}
