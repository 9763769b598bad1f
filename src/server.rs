//! The composition root: opens the backends, starts the API, the proxy and the background jobs, and shuts
//! them down in order.

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, AppState},
    directory::{SyncConfig, ZoneDirectory, node_name},
    jobs::{CompactConfig, Compactor, PurgeReclaimer, ReclaimConfig, Reclaimer, Retention, RetentionConfig},
    metrics::Metrics,
    net::{
        ConnLimits, FileBudget, Listener, Protocols, raise_open_files_limit,
        tls::{CertStore, TlsFiles},
    },
    proxy::{self, CdnId, Proxy, ProxyConfig},
    reserve::Reserve,
    storage::{
        ChangeSignals,
        open::{ControlBackend, StoreConfig, Stores},
    },
};

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Which backends, and the data directory of the embedded ones.
    pub stores: StoreConfig,
    pub api_listen: SocketAddr,
    pub reclaim: ReclaimConfig,
    /// Compaction of local segments (unused with S3 bodies).
    pub compact: CompactConfig,
    pub proxy: ProxyConfig,
    /// How the zone table keeps in step with the store and the other nodes.
    pub sync: SyncConfig,
    /// The proxy listener's connection cap and client timeouts.
    pub proxy_conns: ConnLimits,
    /// The API listener's.
    pub api_conns: ConnLimits,
    /// What the proxy listener speaks.
    pub proxy_transport: ProxyTransport,
    /// Most items one purge request may name (SPEC §10).
    pub purge_max_items: usize,
}

/// What the proxy listener speaks. The API listener always speaks plain HTTP/1.1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyTransport {
    /// Plain HTTP/1.1.
    #[default]
    Http1,
    /// Plain HTTP/1.1, and HTTP/2 from clients that open with its preface (h2c with prior knowledge).
    H2c,
    /// TLS with this certificate and key (re-read on SIGHUP), then HTTP/2 or HTTP/1.1 by ALPN.
    Tls(TlsFiles),
}

/// The default of [`ServeConfig::purge_max_items`].
pub const DEFAULT_PURGE_MAX_ITEMS: usize = 500;

impl ServeConfig {
    /// Defaults for everything but the backends; both listeners on port 0 (tests).
    pub fn ephemeral(stores: StoreConfig) -> Self {
        Self {
            stores,
            api_listen: "127.0.0.1:0".parse().expect("a valid address"),
            reclaim: ReclaimConfig::default(),
            compact: CompactConfig::default(),
            proxy: ProxyConfig { listen: "127.0.0.1:0".parse().expect("a valid address"), ..ProxyConfig::default() },
            sync: SyncConfig::default(),
            proxy_conns: ConnLimits::with_max_connections(10_000),
            proxy_transport: ProxyTransport::Http1,
            api_conns: ConnLimits::with_max_connections(256),
            purge_max_items: DEFAULT_PURGE_MAX_ITEMS,
        }
    }
}

/// A started server.
pub struct Running {
    /// Where the API listens (the real port when 0 was asked for).
    pub api_addr: SocketAddr,
    /// Where the proxy listens.
    pub proxy_addr: SocketAddr,
    /// This node's name in the store (leases, syncs).
    pub node: String,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    stores: Stores,
    /// Held while this server runs: the data directory's `serve.lock`, when it has one.
    _lock: Option<std::fs::File>,
}

/// Opens the backends and starts the API, the proxy and the background jobs.
pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    // Anything the body store finds half-written from before this moment is a crash's leftover.
    let started = SystemTime::now();
    let dir = &config.stores.data_dir;
    let lock = if config.stores.uses_data_dir() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
        Some(lock_data_dir(dir)?)
    } else {
        None
    };
    let stores = Stores::open(&config.stores).await?;
    if config.stores.control == ControlBackend::Sqlite {
        // The data directory is locked: no other server uses this store, so no lease is held by a live one.
        stores.sql.release_all_leases().await.context("cannot release the leases of a previous run")?;
    }
    let node = node_name();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let control = stores.control();
    let index = stores.index();
    let reserve = Reserve::over(&stores);

    let signals = Arc::new(ChangeSignals::default());
    {
        let (sql, signals, stop) = (stores.sql.clone(), signals.clone(), shutdown.clone());
        tasks.spawn(async move { sql.relay_notifications(signals, stop).await });
    }
    let zones = ZoneDirectory::new(control.clone(), &node, config.sync, signals);
    zones.sync().await.context("cannot read the zones")?;
    tasks.spawn(zones.clone().run(shutdown.clone()));

    let metrics = Arc::new(Metrics::new());
    let retention = Retention::new(
        reserve.clone(),
        zones.clone(),
        metrics.clone(),
        RetentionConfig::for_retention(config.proxy.retention),
    );
    let access = retention.log.clone();
    tasks.spawn(retention.run(shutdown.clone()));

    let reclaimer = Reclaimer::new(index.clone(), stores.bodies.clone(), config.reclaim.clone(), node.clone());
    // A node silent for longer than its view's lifetime serves no stored copy; twice that is the margin.
    let liveness = config.sync.view_ttl * 2;
    let purges =
        PurgeReclaimer::new(stores.purge_index(), stores.bodies.clone(), config.reclaim.poll_interval, liveness);
    let state = AppState {
        control: control.clone(),
        clear_started: reclaimer.waker(),
        purge_recorded: purges.waker(),
        zones: zones.clone(),
        metrics: metrics.clone(),
        index,
        reserve: reserve.clone(),
        purge_limit: config.purge_max_items,
    };
    tasks.spawn(reclaimer.run(shutdown.clone()));
    tasks.spawn(purges.run(shutdown.clone()));
    if let Some(segments) = stores.segments.clone() {
        let compactor = Compactor::new(stores.index(), stores.compaction_index(), segments, config.compact.clone())
            .with_metrics(&metrics);
        tasks.spawn(compactor.run(shutdown.clone()));
    }

    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} (API)", config.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    let proxy_protocols = proxy_protocols(&config.proxy_transport, &mut tasks, &shutdown)?;
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
        protocols: Protocols::Http1,
    };
    tasks.spawn(api.serve(api_listener, api::router(state), shutdown.clone()));
    let legacy_dir = config.stores.uses_data_dir().then_some(dir.as_path());
    let cdn_id = CdnId::load_or_create(control.as_ref(), legacy_dir).await?;
    let proxy = Proxy::new(config.proxy.clone(), zones, reserve, metrics, access, cdn_id)?;
    tasks.spawn(proxy.sweeper(stores.purge_index(), config.reclaim.poll_interval).run(shutdown.clone()));
    let listener = Listener {
        name: "proxy",
        limits: ConnLimits { max_connections: budget.proxy, ..config.proxy_conns },
        error_body: proxy::listener_error_body,
        protocols: proxy_protocols,
    };
    tasks.spawn(listener.serve(proxy_listener, proxy::router(Arc::new(proxy)), shutdown.clone()));

    // Off the listening path: walking a large object directory must not delay start-up.
    let bodies = stores.bodies.clone();
    tasks.spawn(async move {
        match bodies.recover(started).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed partial bodies of writes interrupted by a crash"),
            Err(e) => tracing::warn!(error = %e, "could not clean up writes interrupted by a crash"),
        }
    });
    Ok(Running { api_addr, proxy_addr, node, shutdown, tasks, stores, _lock: lock })
}

/// What the proxy listener speaks; for TLS, the certificate and key read now (an unreadable or unusable
/// file fails start-up, naming it) and a task that reads them again on SIGHUP.
fn proxy_protocols(
    transport: &ProxyTransport,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Protocols> {
    Ok(match transport {
        ProxyTransport::Http1 => Protocols::Http1,
        ProxyTransport::H2c => Protocols::H2c,
        ProxyTransport::Tls(files) => {
            let certs = CertStore::load(files.clone())?;
            let config = certs.server_config()?;
            tasks.spawn(certs.reload_on_sighup(shutdown.clone()).context("cannot handle SIGHUP")?);
            Protocols::Tls(tokio_rustls::TlsAcceptor::from(config))
        }
    })
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
    /// Stops accepting requests, lets the reclaimer finish its batch, leaves the store's node table (so no
    /// other node waits for this one's acknowledgements), and closes the stores. Gives up waiting after
    /// `deadline`.
    pub async fn shutdown(mut self, deadline: Duration) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(deadline, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("shutdown deadline passed; stopping the remaining tasks");
            self.tasks.abort_all();
        }
        if let Err(e) = self.stores.control().forget_node(&self.node).await {
            tracing::warn!(error = %e, "could not leave the node table; other nodes wait out this one's view once");
        }
        self.stores.close().await;
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
