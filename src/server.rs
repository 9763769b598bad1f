//! The composition root: opens the data directory, builds the backends, starts the API, the proxy and the
//! background jobs,
//! and shuts them down in order.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use object_store::ObjectStore;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, AppState},
    directory::ZoneDirectory,
    jobs::{ReclaimConfig, Reclaimer, Retention, RetentionConfig},
    metrics::Metrics,
    net::{ConnLimits, FileBudget, Listener, raise_open_files_limit},
    proxy::{self, CdnId, Proxy, ProxyConfig},
    reserve::Reserve,
    storage::{ControlStore, ObjectIndex, local_bodies::LocalBodies, sqlite::SqliteStore},
};

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub reclaim: ReclaimConfig,
    pub proxy: ProxyConfig,
    /// How often the proxy re-reads the zone table (changes made by the API apply at once regardless).
    pub zone_refresh: Duration,
    /// The proxy listener's connection cap and client timeouts.
    pub proxy_conns: ConnLimits,
    /// The API listener's.
    pub api_conns: ConnLimits,
}

impl ServeConfig {
    /// Defaults for everything but the data directory; both listeners on port 0 (tests).
    pub fn ephemeral(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            api_listen: "127.0.0.1:0".parse().expect("a valid address"),
            reclaim: ReclaimConfig::default(),
            proxy: ProxyConfig { listen: "127.0.0.1:0".parse().expect("a valid address"), ..ProxyConfig::default() },
            zone_refresh: Duration::from_secs(1),
            proxy_conns: ConnLimits::with_max_connections(10_000),
            api_conns: ConnLimits::with_max_connections(256),
        }
    }
}

/// The data directory's stores, opened (and created on first use).
#[derive(Clone)]
pub struct DataDir {
    pub store: SqliteStore,
    pub blobs: Arc<dyn ObjectStore>,
}

impl DataDir {
    /// Opens `dir`: `control.db` (SQLite, WAL) and `objects/` (bodies, fsynced), creating what is missing.
    pub async fn open(dir: &Path) -> anyhow::Result<Self> {
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let store = SqliteStore::open(&dir.join("control.db"))
            .await
            .with_context(|| format!("cannot open the control store in {}", dir.display()))?;
        let blobs = LocalBodies::new(&objects)
            .with_context(|| format!("cannot open the object directory {}", objects.display()))?;
        Ok(Self { store, blobs: Arc::new(blobs) })
    }

    /// The reserve over this data directory.
    pub fn reserve(&self) -> Reserve {
        Reserve::new(Arc::new(self.store.clone()) as Arc<dyn ObjectIndex>, self.blobs.clone())
    }
}

/// A started server.
pub struct Running {
    /// Where the API listens (the real port when 0 was asked for).
    pub api_addr: SocketAddr,
    /// Where the proxy listens.
    pub proxy_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    data: DataDir,
    /// Held while this server runs: the data directory's `serve.lock`.
    _lock: std::fs::File,
}

/// Opens the data directory and starts the API, the proxy and the background jobs.
pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let lock = lock_data_dir(&config.data_dir)?;
    let data = DataDir::open(&config.data_dir).await?;
    // No write is in flight yet: any staging file is a leftover of a crash.
    let staged = LocalBodies::new(&config.data_dir.join("objects"))?
        .remove_staging_files()
        .context("cannot clean up interrupted writes in the object directory")?;
    if staged > 0 {
        tracing::info!(files = staged, "removed partial bodies of writes interrupted by a crash");
    }
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let control = Arc::new(data.store.clone()) as Arc<dyn ControlStore>;
    let index = Arc::new(data.store.clone()) as Arc<dyn ObjectIndex>;
    let reserve = data.reserve();

    let zones = ZoneDirectory::new(control.clone());
    zones.reload().await.context("cannot read the zones")?;
    tasks.spawn(zones.clone().run(config.zone_refresh, shutdown.clone()));

    let metrics = Arc::new(Metrics::new());
    let retention = Retention::new(
        reserve.clone(),
        zones.clone(),
        metrics.clone(),
        RetentionConfig::for_retention(config.proxy.retention),
    );
    let access = retention.log.clone();
    tasks.spawn(retention.run(shutdown.clone()));

    let reclaimer = Reclaimer::new(index.clone(), data.blobs.clone(), config.reclaim.clone());
    let state =
        AppState { control, clear_started: reclaimer.waker(), zones: zones.clone(), metrics: metrics.clone(), index };
    tasks.spawn(reclaimer.run(shutdown.clone()));

    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} (API)", config.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    let proxy_listener = TcpListener::bind(config.proxy.listen)
        .await
        .with_context(|| format!("cannot listen on {} (proxy)", config.proxy.listen))?;
    let proxy_addr = proxy_listener.local_addr()?;

    let budget =
        FileBudget::fit(config.proxy_conns.max_connections, config.api_conns.max_connections, raise_open_files_limit());
    let api = Listener {
        name: "api",
        limits: ConnLimits { max_connections: budget.api, ..config.api_conns },
        error_body: api::listener_error_body,
    };
    tasks.spawn(api.serve(api_listener, api::router(state), shutdown.clone()));
    let cdn_id = CdnId::load_or_create(&config.data_dir)?;
    let proxy = Proxy::new(config.proxy.clone(), zones, reserve, metrics, access, cdn_id)?;
    let listener = Listener {
        name: "proxy",
        limits: ConnLimits { max_connections: budget.proxy, ..config.proxy_conns },
        error_body: proxy::listener_error_body,
    };
    tasks.spawn(listener.serve(proxy_listener, proxy::router(Arc::new(proxy)), shutdown.clone()));
    Ok(Running { api_addr, proxy_addr, shutdown, tasks, data, _lock: lock })
}

/// Takes the data directory's `serve.lock` (an exclusive `flock`, released when the process ends, however
/// it ends), so that a second `serve` on the same directory refuses to start instead of deleting the first
/// one's in-flight writes as crash leftovers. Admin commands do not take it: they work while `serve` runs.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            anyhow::bail!(
                "another cache-reserve serve is using the data directory {} (it holds {}); stop it first, or \
                 give this one its own --data-dir",
                dir.display(),
                path.display()
            );
        }
        return Err(e).with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(file)
}

impl Running {
    /// Stops accepting requests, lets the reclaimer finish its batch, and closes the stores.
    /// Gives up waiting after `deadline`.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(deadline, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("shutdown deadline passed; stopping the remaining tasks");
            self.tasks.abort_all();
        }
        self.data.store.close().await;
    }
}

/// Installs SIGINT and SIGTERM handlers now, and returns a future that resolves when either arrives.
/// Installing before the server announces itself means a signal sent right after start-up is not lost.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
