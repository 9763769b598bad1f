//! The data plane (SPEC §8): the proxy in front of a real origin, over real HTTP.

mod admission;
mod coalescing;
mod crash;
mod forwarding;
mod freshness;
mod hostile;
mod invalidation;
mod memory;
pub mod origin;
mod purge;
mod purge_retirement;
mod ranges;
mod raw_origin;
mod reserve;
mod semantics;
mod stale;
mod tiers;
mod upstream_faults;

use axum::http::HeaderMap;
use bytes::Bytes;
use cache_reserve::domain::{Permission, TokenScope, ZoneId, ZoneName};
use cache_reserve::storage::open::Stores;
use cache_reserve::storage::{ControlStore, NewZone};
use reqwest::StatusCode;

use crate::helpers::*;

/// A proxied response.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn cache(&self) -> &str {
        self.headers.get("cf-cache-status").map(|v| v.to_str().unwrap()).unwrap_or("(none)")
    }

    pub fn reserve(&self) -> &str {
        self.headers.get("x-cache-reserve").map(|v| v.to_str().unwrap()).unwrap_or("(none)")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one proxy, keeping its connections.
#[derive(Clone)]
pub struct ProxyClient {
    http: reqwest::Client,
    base: String,
}

impl ProxyClient {
    /// For the proxy at `base` (`http://addr`).
    pub fn new(base: &str) -> Self {
        Self { http: http_client(), base: base.to_owned() }
    }

    /// GET `path` for zone `host`, with extra headers.
    pub async fn get_with(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut req = self.http.get(format!("{}{path}", self.base)).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        Got { status, headers, body }
    }

    pub async fn get(&self, host: &str, path: &str) -> Got {
        self.get_with(host, path, &[]).await
    }

    pub fn request(&self, method: reqwest::Method, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).header("host", host)
    }
}

impl TestApp {
    /// Creates a zone with an origin, directly in the store.
    pub async fn zone_with_origin(&self, name: &str, origin: &str) -> ZoneId {
        let id = ZoneId::generate();
        self.data
            .sql
            .create_zone(NewZone {
                id: id.clone(),
                name: ZoneName::parse(name).unwrap(),
                origin: Some(origin.to_owned()),
            })
            .await
            .unwrap();
        id
    }

    /// Turns the zone's reserve on or off through the API, as a user would.
    pub async fn set_reserve(&self, zone: &ZoneId, on: bool) {
        let token = self.token(&[Permission::ZoneSettingsWrite], TokenScope::AllZones).await;
        let value = if on { "on" } else { "off" };
        ok(self.patch(&reserve_path(zone), &token).json(&serde_json::json!({ "value": value })).send().await.unwrap())
            .await;
    }

    pub fn proxy_client(&self) -> ProxyClient {
        ProxyClient { http: self.http.clone(), base: self.proxy.clone() }
    }

    pub async fn proxy_get(&self, host: &str, path: &str) -> Got {
        self.proxy_client().get(host, path).await
    }

    /// Whether the reserve holds the object for `host` + `path`.
    pub async fn reserve_has(&self, zone: &ZoneId, host: &str, path: &str) -> bool {
        self.data.reserve().find(zone, &format!("{host}{path}")).await.unwrap().is_some()
    }

    /// Waits until the reserve holds the object: its write completes after the response.
    pub async fn wait_stored(&self, zone: &ZoneId, host: &str, path: &str) {
        wait_stored(&self.data, zone, host, path).await
    }

    /// The server's /metrics text.
    pub async fn metrics(&self) -> String {
        let root = self.base.trim_end_matches("/client/v4");
        self.http.get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap()
    }
}

/// Waits (up to 30 s) until the reserve in `data` holds the object for `host` + `path`.
pub async fn wait_stored(data: &Stores, zone: &ZoneId, host: &str, path: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while data.reserve().find(zone, &format!("{host}{path}")).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "{host}{path} never reached the reserve");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Backends for the real binary: one zone `host` in front of `origin`, and a token that may change its
/// settings.
pub struct Seeded {
    pub stores: TestStores,
    pub data: Stores,
    pub zone: ZoneId,
    pub token: String,
}

impl Seeded {
    pub async fn new(host: &str, origin: &str) -> Self {
        let stores = TestStores::fresh().await;
        let data = stores.open().await;
        let zone = create_zone(&data, host).await;
        data.sql.set_origin(&zone, Some(origin.to_owned())).await.unwrap();
        let token = create_token(&data, &[Permission::ZoneSettingsWrite], TokenScope::AllZones, None).await;
        Self { stores, data, zone, token }
    }

    /// Turns the reserve on through the API of `server`.
    pub async fn reserve_on(&self, server: &ServerProcess) {
        let patch =
            http_client().patch(format!("{}{}", server.base, reserve_path(&self.zone))).bearer_auth(&self.token);
        ok(patch.json(&serde_json::json!({"value": "on"})).send().await.unwrap()).await;
    }
}

/// The value of one sample in a Prometheus text, 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
