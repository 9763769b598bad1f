//! `spawn_app()`: a server on port 0 with fresh backends, plus helpers to seed and call it.
//!
//! The backends are the embedded ones (a fresh data directory), or, with `CACHE_RESERVE_TEST_BACKEND=shared`,
//! a fresh PostgreSQL database and S3 prefix on the servers `scripts/services.sh` starts
//! (see `cache_reserve::storage::testing`).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_reserve::{
    domain::{Permission, Timestamp, TokenId, TokenScope, UserId, ZoneId, ZoneName, secret::Secret},
    jobs::ReclaimConfig,
    reserve::Reserve,
    server::{self, Running, ServeConfig},
    storage::{
        ControlStore, NewZone, StoredToken, StoredUser,
        open::{BodyBackend, ControlBackend, StoreConfig, Stores},
        testing::Backend,
    },
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// Fresh backends of the kind `CACHE_RESERVE_TEST_BACKEND` names, for one test.
pub struct TestStores {
    /// The data directory (the embedded backends' home; empty for the shared ones).
    pub dir: tempfile::TempDir,
    pub config: StoreConfig,
}

impl TestStores {
    pub async fn fresh() -> Self {
        Self::fresh_of(Backend::from_env()).await
    }

    pub async fn fresh_of(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = backend.fresh(dir.path()).await.unwrap();
        Self { dir, config }
    }

    /// Opens them, as another process (an admin command, another node) would.
    pub async fn open(&self) -> Stores {
        Stores::open(&self.config).await.unwrap()
    }

    /// Points a `cache-reserve` command at them (through the environment, as an operator would).
    pub fn apply(&self, command: &mut Command) {
        command.env("CACHE_RESERVE_DATA_DIR", self.dir.path());
        match &self.config.control {
            ControlBackend::Sqlite => command.env("CACHE_RESERVE_CONTROL_STORE", "sqlite"),
            ControlBackend::Postgres { url } => command.env("CACHE_RESERVE_CONTROL_STORE", url),
        };
        match &self.config.bodies {
            BodyBackend::Local => {
                command.env("CACHE_RESERVE_OBJECT_STORE", "local").env_remove("CACHE_RESERVE_S3_ENDPOINT");
            }
            BodyBackend::S3 { location, endpoint } => {
                command.env("CACHE_RESERVE_OBJECT_STORE", location.to_string());
                if let Some(e) = endpoint {
                    command.env("CACHE_RESERVE_S3_ENDPOINT", e);
                }
            }
        }
    }
}

/// What tests do with opened stores.
pub trait StoresExt {
    fn reserve(&self) -> Reserve;
    /// Bodies stored (for the zone, or in all), by listing the body store.
    async fn bodies(&self, zone: Option<&ZoneId>) -> u64;
}

impl StoresExt for Stores {
    fn reserve(&self) -> Reserve {
        Reserve::over(self)
    }

    async fn bodies(&self, zone: Option<&ZoneId>) -> u64 {
        self.bodies.count(zone).await.unwrap()
    }
}

/// Waits (up to 30 s) until the body store holds `n` bodies in all: start-up clean-up runs in the
/// background.
pub async fn wait_bodies(stores: &Stores, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = stores.bodies(None).await;
        if got == n {
            return;
        }
        assert!(Instant::now() < deadline, "{got} bodies stored, expected {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct TestApp {
    pub base: String,
    /// The proxy's address, `http://127.0.0.1:PORT`.
    pub proxy: String,
    pub data: Stores,
    /// Held so the data directory outlives the server.
    _stores: TestStores,
    pub http: reqwest::Client,
    /// Held so the server runs as long as the app: dropping it stops the server's tasks.
    _running: Running,
}

impl TestApp {
    /// The backends the server runs on.
    pub fn store_config(&self) -> &StoreConfig {
        &self._stores.config
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(ReclaimConfig { poll_interval: Duration::from_millis(50), ..Default::default() }).await
}

pub async fn spawn_app_with(reclaim: ReclaimConfig) -> TestApp {
    spawn_configured(|c| c.reclaim = reclaim).await
}

/// A server with defaults changed by `configure`.
pub async fn spawn_configured(configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let stores = TestStores::fresh().await;
    let mut config = ServeConfig::ephemeral(stores.config.clone());
    config.reclaim.poll_interval = Duration::from_millis(50);
    configure(&mut config);
    let running = server::start(config).await.unwrap();
    let base = format!("http://{}/client/v4", running.api_addr);
    let proxy = format!("http://{}", running.proxy_addr);
    let data = stores.open().await;
    TestApp { base, proxy, data, _stores: stores, http: http_client(), _running: running }
}

impl TestApp {
    /// Creates a zone directly in the store.
    pub async fn zone(&self, name: &str) -> ZoneId {
        create_zone(&self.data, name).await
    }

    /// Creates a token directly in the store; returns its secret.
    pub async fn token(&self, permissions: &[Permission], scope: TokenScope) -> String {
        create_token(&self.data, permissions, scope, None).await
    }

    /// A token with every permission on every zone.
    pub async fn admin_token(&self) -> String {
        self.token(&Permission::ALL, TokenScope::AllZones).await
    }

    /// Creates a user; returns the global API key.
    pub async fn user(&self, email: &str) -> String {
        let key = Secret::new_global_key();
        self.data
            .sql
            .create_user(StoredUser {
                id: UserId::generate(),
                email: email.into(),
                key_hash: key.hash(),
                created_on: Timestamp::now(),
            })
            .await
            .unwrap();
        key.expose().to_owned()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.request(Method::GET, path).bearer_auth(token)
    }

    pub fn post(&self, path: &str, token: &str) -> RequestBuilder {
        self.request(Method::POST, path).bearer_auth(token)
    }

    pub fn patch(&self, path: &str, token: &str) -> RequestBuilder {
        self.request(Method::PATCH, path).bearer_auth(token)
    }

    /// Stores `n` objects of `size` bytes named `{prefix}{i}` in the zone's reserve.
    pub async fn fill(&self, zone: &ZoneId, prefix: &str, n: usize, size: usize) {
        fill(&self.data, zone, prefix, n, size).await
    }

    /// Polls the Clear status until `Completed`, returning the final result.
    pub async fn wait_completed(&self, zone: &ZoneId, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = ok(self.get(&clear_path(zone), token).send().await.unwrap()).await;
            if body["result"]["state"] == "Completed" {
                return body["result"].clone();
            }
            assert!(Instant::now() < deadline, "clear did not complete: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A reqwest client (reqwest is built without a default TLS provider; the binary installs ring, so do we).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub async fn create_zone(data: &Stores, name: &str) -> ZoneId {
    let id = ZoneId::generate();
    data.sql.create_zone(NewZone { id: id.clone(), name: ZoneName::parse(name).unwrap(), origin: None }).await.unwrap();
    id
}

pub async fn create_token(
    data: &Stores,
    permissions: &[Permission],
    scope: TokenScope,
    expires_on: Option<Timestamp>,
) -> String {
    let secret = Secret::new_token();
    data.sql
        .create_token(StoredToken {
            id: TokenId::generate(),
            name: "test".into(),
            hash: secret.hash(),
            permissions: permissions.to_vec(),
            scope,
            created_on: Timestamp::now(),
            expires_on,
            revoked_on: None,
        })
        .await
        .unwrap();
    secret.expose().to_owned()
}

/// Stores `n` objects of `size` bytes in the zone's reserve, turning it on for the writes (the reserve takes
/// writes only while on) and back to what it was.
pub async fn fill(data: &Stores, zone: &ZoneId, prefix: &str, n: usize, size: usize) {
    let was_on = data.sql.zone(zone).await.unwrap().unwrap().reserve_on;
    data.sql.set_reserve(zone, true).await.unwrap();
    let reserve = data.reserve();
    for i in 0..n {
        let body = Bytes::from(format!("{prefix}{i}:").into_bytes().into_iter().cycle().take(size).collect::<Vec<_>>());
        let outcome = reserve.put(zone, &format!("{prefix}{i}"), vec![], body).await.unwrap();
        assert_eq!(outcome, cache_reserve::reserve::PutOutcome::Stored);
    }
    data.sql.set_reserve(zone, was_on).await.unwrap();
}

pub fn clear_path(zone: &ZoneId) -> String {
    format!("/zones/{zone}/smart_shield/cache_reserve_clear")
}

pub fn reserve_path(zone: &ZoneId) -> String {
    format!("/zones/{zone}/cache/cache_reserve")
}

/// Asserts a 200 success envelope; returns the body.
pub async fn ok(resp: Response) -> Value {
    let status = resp.status();
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ctype.as_deref(), Some("application/json"));
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["errors"], serde_json::json!([]));
    assert_eq!(body["messages"], serde_json::json!([]));
    body
}

/// Asserts a failure envelope with this status and first error code; returns the body.
pub async fn fails(resp: Response, status: u16, code: u64) -> Value {
    let got = resp.status();
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(got.as_u16(), status, "{body}");
    assert_eq!(ctype.as_deref(), Some("application/json"));
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["result"], Value::Null, "{body}");
    assert_eq!(body["messages"], serde_json::json!([]));
    assert_eq!(body["errors"][0]["code"], code, "{body}");
    body
}

/// The real binary.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cache-reserve"))
}

/// A `cache-reserve serve` process on port 0.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    /// The proxy, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub proxy: String,
    /// Its log lines after the start-up line.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    pub fn start(stores: &TestStores, extra: &[&str]) -> Self {
        Self::start_with(stores, extra, |_| {})
    }

    /// Like [`Self::start`], with the command changed by `configure` before it is spawned.
    pub fn start_with(stores: &TestStores, extra: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = binary();
        stores.apply(&mut command);
        command
            .args(["serve", "--api-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut sent = false;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sent {
                    kept.lock().unwrap().push(line);
                } else if let Some(rest) = line.split("listening on http://").nth(1) {
                    let api = rest.split_whitespace().next().unwrap().to_owned();
                    // `http://addr`, or `https://addr` with TLS.
                    let proxy = line.split("proxy on ").nth(1).unwrap().split([',', ' ']).next().unwrap();
                    tx.send((api, proxy.to_owned())).unwrap();
                    sent = true;
                }
            }
        });
        let (api, proxy) = rx.recv_timeout(Duration::from_secs(30)).expect("server did not say where it listens");
        Self { child, base: format!("http://{api}/client/v4"), proxy, log }
    }

    /// Waits (up to 20 s) for a log line containing `needle`; returns it.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "the server never logged {needle:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
