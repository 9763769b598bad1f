//! Several nodes sharing one PostgreSQL database and one S3 bucket: real `cache-reserve serve` processes on
//! the servers `scripts/services.sh` runs (skipped when they are not set up; required in CI).
//!
//! The cases run one at a time (the outage cases stop and restart those servers), and this binary runs
//! alone: cargo runs test binaries one after another.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../api/proxy/origin.rs"]
mod origin;

mod clear;
mod outage;
mod partition;
mod purge;
mod settings;
mod takeover;

use std::time::{Duration, Instant};

use cache_reserve::{
    domain::{Permission, TokenScope, ZoneId},
    storage::{
        ControlStore,
        open::{ControlBackend, Stores},
        testing::{Backend, SharedEnv, shared_required},
    },
};
use reqwest::StatusCode;

use helpers::*;

/// One case at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Freshness long enough for the reserve (it takes objects fresh for at least 10 hours).
pub const LONG: &str = "public, max-age=86400";

/// Shared stores with one zone `host` in front of `origin`, and a token for every permission; `None` (the
/// case is skipped) when the shared servers are not set up.
pub struct Shared {
    pub stores: TestStores,
    pub data: Stores,
    pub zone: ZoneId,
    pub token: String,
}

impl Shared {
    pub async fn new(host: &str, origin: &str) -> Option<Self> {
        if SharedEnv::from_env().is_none() {
            assert!(!shared_required(), "the shared test servers are not set up");
            eprintln!("skipped: the shared test servers are not set up (bash scripts/services.sh start)");
            return None;
        }
        let stores = TestStores::fresh_of(Backend::Shared).await;
        let data = stores.open().await;
        let zone = create_zone(&data, host).await;
        data.sql.set_origin(&zone, Some(origin.to_owned())).await.unwrap();
        let token = create_token(&data, &Permission::ALL, TokenScope::AllZones, None).await;
        Some(Self { stores, data, zone, token })
    }

    /// A node: `cache-reserve serve` on these stores.
    pub fn node(&self, extra: &[&str]) -> ServerProcess {
        ServerProcess::start(&self.stores, extra)
    }

    /// A node that reaches PostgreSQL only through `link`, which the test can freeze (a partition).
    pub fn node_behind(&self, link: &partition::Freezable, extra: &[&str]) -> ServerProcess {
        let ControlBackend::Postgres { url } = &self.stores.config.control else { unreachable!("shared stores") };
        let url = link.url(url);
        ServerProcess::start_with(&self.stores, extra, |command| {
            command.env("CACHE_RESERVE_CONTROL_STORE", url);
        })
    }

    /// A freezable link to this store's PostgreSQL.
    pub async fn link(&self) -> partition::Freezable {
        let ControlBackend::Postgres { url } = &self.stores.config.control else { unreachable!("shared stores") };
        partition::Freezable::start(partition::host_port(url)).await
    }
}

/// An API call on a node.
pub async fn api(node: &ServerProcess, method: reqwest::Method, path: &str, token: &str) -> reqwest::Response {
    let req = http_client().request(method.clone(), format!("{}{path}", node.base)).bearer_auth(token);
    let req = if method == reqwest::Method::PATCH || method == reqwest::Method::POST {
        req.header("content-type", "application/json")
    } else {
        req
    };
    req.send().await.unwrap()
}

/// Sets the zone's reserve through a node's API; returns the HTTP status.
pub async fn set_reserve(node: &ServerProcess, zone: &ZoneId, token: &str, on: bool) -> StatusCode {
    let value = if on { "on" } else { "off" };
    let r = http_client()
        .patch(format!("{}{}", node.base, reserve_path(zone)))
        .bearer_auth(token)
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .unwrap();
    r.status()
}

/// A proxied GET through a node: status, `cf-cache-status`, `x-cache-reserve`, body.
pub struct Got {
    pub status: StatusCode,
    pub cache: String,
    pub reserve: String,
    pub body: String,
}

pub async fn get(node: &ServerProcess, host: &str, path: &str) -> Got {
    let r = http_client().get(format!("{}{path}", node.proxy)).header("host", host).send().await.unwrap();
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let (status, cache, reserve) = (r.status(), header("cf-cache-status"), header("x-cache-reserve"));
    Got { status, cache, reserve, body: r.text().await.unwrap() }
}

/// Waits until the reserve holds `host` + `path`.
pub async fn wait_stored(data: &Stores, zone: &ZoneId, host: &str, path: &str) {
    wait_until("the object to reach the reserve", || async {
        data.reserve().find(zone, &format!("{host}{path}")).await.unwrap().is_some()
    })
    .await;
}

/// Polls `check` every 20 ms for up to 60 s.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The zone's latest Clear, from the store.
pub async fn latest_clear(data: &Stores, zone: &ZoneId) -> cache_reserve::domain::ClearOperation {
    data.sql.latest_clear(zone).await.unwrap().expect("a clear")
}
