//! A whole node: store, certificate authority, MQTT front end and HTTP API, started together
//! and stopped in order: first `/readyz` turns 503 (draining, for `node.drain_delay_ms`), then
//! the listeners close and the front end stops reading requests, the requests already read are
//! answered, connections close, open HTTP requests get up to `node.shutdown_grace_secs`, and
//! the store is flushed. After an account deletion the database is then rewritten into fresh
//! files, so that the erased data is gone from the disk (`chat_store::rewrite_if_pending`;
//! a start-up does it if a stop could not).
//!
//! When the store fails (disk full, read-only file system, I/O error), sled refuses every later
//! operation: the node answers `unavailable`, `/readyz` turns 503, and a watch task probes the
//! data directory until a write succeeds again; [`Node::storage_recovered`] then resolves and
//! the `chatd` program restarts itself in place to reopen the store (see `cli.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chat_bridge::Bridge;
use chat_broker::{Authorizer, Broker, BrokerHandle};
use chat_certs::{Authority, IssuedCerts};
use chat_push::Pusher;
use chat_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::ops::{self, Live, Ops, StorePush};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] chat_store::StoreError),
    #[error("certificates: {0}")]
    Certs(#[from] chat_certs::CertError),
    #[error("MQTT: {0}")]
    Broker(#[from] chat_broker::BrokerError),
    #[error("HTTP listener {addr}: {source}")]
    HttpBind {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP TLS: {0}")]
    HttpTls(String),
    #[error("message service: {0}")]
    Bridge(#[from] chat_bridge::BridgeError),
    #[error("{0}")]
    Push(#[from] chat_push::PushError),
    #[error("{0}")]
    Media(String),
    #[error("start-up task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A running node. Stop it with [`Node::shutdown`].
pub struct Node {
    config: Config,
    store: Store,
    authority: Arc<Authority>,
    broker: Broker,
    bridge: Bridge,
    pusher: Pusher,
    http_addr: SocketAddr,
    http_tls: bool,
    stop_http: watch::Sender<bool>,
    http_task: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    ops: Arc<Ops>,
    recovered: watch::Receiver<bool>,
}

/// Lets a device connect only while it is enrolled, not revoked, and its user is enabled;
/// checks plaintext logins against session tokens; gives the MQTT listener's TLS check the
/// certificate fingerprints recorded at enrolment.
struct StoreAuthorizer {
    store: Store,
}

impl std::fmt::Debug for StoreAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAuthorizer").finish_non_exhaustive()
    }
}

impl IssuedCerts for StoreAuthorizer {
    fn recorded_fingerprint(&self, user: &str, device: &str) -> Option<String> {
        match self.store.device(user, device) {
            Ok(Some(rec)) if rec.revoked_at.is_none() => rec.cert_fingerprint,
            Ok(_) => None,
            Err(e) => {
                // The full certificate check still runs; `device_allowed` decides after it.
                warn!(user, device, error = %e, "device lookup failed in the TLS handshake");
                None
            }
        }
    }
}

impl Authorizer for StoreAuthorizer {
    fn device_allowed(&self, user: &str, device: &str) -> bool {
        self.store.device_active(user, device).unwrap_or_else(|e| {
            warn!(user, device, error = %e, "device lookup failed; refusing");
            false
        })
    }

    fn login(&self, user: &str, password: &str) -> bool {
        matches!(self.store.check_session(password), Ok(Some(owner)) if owner == user)
    }
}

impl Node {
    /// Opens the data directory, creates or loads the certificates, and starts both listeners.
    pub async fn start(config: Config) -> Result<Node, NodeError> {
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let (db_dir, store_cfg) = (data_dir.join("db"), config.store.clone());
        let store = tokio::task::spawn_blocking(move || open_store(&db_dir, &store_cfg)).await??;
        let (certs_dir, certs_cfg) = (data_dir.join("certs"), config.certs.clone());
        let authority = Arc::new(
            tokio::task::spawn_blocking(move || Authority::load_or_create(&certs_dir, &certs_cfg))
                .await??,
        );

        let auth = Arc::new(StoreAuthorizer {
            store: store.clone(),
        });
        let mqtt_tls = authority.device_tls_config(auth.clone())?;
        let pusher = Pusher::start(store.clone(), &config.push)?;
        let (broker, events) = Broker::start(config.mqtt.clone(), mqtt_tls, auth).await?;
        let bridge = Bridge::start(
            config.node.node_id,
            config.limits.bridge(),
            pusher.queue(),
            store.clone(),
            &broker,
            events,
        )
        .await?;
        let online = bridge.presence();
        pusher.set_online_check(Arc::new(move |user: &str| online.is_online(user)));
        let live = Live {
            broker: broker.handle(),
            presence: bridge.presence(),
            bridge: bridge.stats(),
        };
        let ops = Arc::new(Ops::new(
            config.node.node_id,
            store.clone(),
            Some(live),
            Arc::new(StorePush {
                enabled: pusher.queue().is_some(),
                store: store.clone(),
                stats: pusher.stats(),
            }),
        ));
        let (recovered_tx, recovered) = watch::channel(false);
        let background = vec![
            tokio::spawn(purge_sessions(store.clone())),
            tokio::spawn(ops::run_sampler(ops.clone())),
            tokio::spawn(watch_storage(
                store.clone(),
                data_dir.join("db"),
                recovered_tx,
            )),
        ];

        let listener = TcpListener::bind(&config.http.listen)
            .await
            .map_err(|source| NodeError::HttpBind {
                addr: config.http.listen.clone(),
                source,
            })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| NodeError::HttpBind {
                addr: config.http.listen.clone(),
                source,
            })?;
        let http_tls = http_tls_config(&config, &authority)?;
        let kicker = broker.handle();
        let blobs = config.media.open(&data_dir).map_err(NodeError::Media)?;
        let state = AppState {
            blobs,
            media: Arc::new(config.media.clone()),
            store: store.clone(),
            flusher: bridge.flusher(),
            authority: authority.clone(),
            config: Arc::new(config.http.clone()),
            on_device_revoked: Arc::new(move |user: &str, device: &str| {
                let closed = kicker.disconnect_device(user, device);
                info!(user, device, closed, "device revoked");
            }),
            admin: Arc::new(config.admin.clone()),
            ops: ops.clone(),
            bridge: Some(bridge.handle()),
        };
        let (stop_http, mut stopped) = watch::channel(false);
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let http_task = tokio::spawn(http::serve(
            listener,
            http::router(state),
            http_tls.clone(),
            shutdown,
        ));
        info!(http = %http_addr, mqtt = %broker.local_addr(), data_dir = %data_dir.display(), "node started");
        Ok(Node {
            config,
            store,
            authority,
            broker,
            bridge,
            pusher,
            http_addr,
            http_tls: http_tls.is_some(),
            stop_http,
            http_task,
            background,
            ops,
            recovered,
        })
    }

    /// Resolves once the store has failed and the data directory takes writes again. The
    /// failed store cannot be used any more (sled keeps its error); the caller restarts the
    /// node (the `chatd` program re-executes itself) to reopen it, which recovers everything
    /// flushed before the failure, like a restart after a crash.
    pub async fn storage_recovered(&self) {
        let mut recovered = self.recovered.clone();
        if recovered.wait_for(|r| *r).await.is_err() {
            // The watch task is gone (node shutting down): never resolve.
            std::future::pending::<()>().await;
        }
    }

    /// Live figures, readiness and the push seam (what `/metrics` and the admin API read).
    pub fn ops(&self) -> &Arc<Ops> {
        &self.ops
    }

    /// The HTTP API address (with the real port when configured with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Whether the HTTP listener speaks HTTPS.
    pub fn http_is_tls(&self) -> bool {
        self.http_tls
    }

    /// The MQTT-over-TLS address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// The plaintext MQTT address, when enabled.
    pub fn mqtt_plaintext_addr(&self) -> Option<SocketAddr> {
        self.broker.plaintext_addr()
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Path of the CA certificate clients must trust.
    pub fn ca_path(&self) -> PathBuf {
        self.config.node.data_dir.join("certs").join("ca.pem")
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        self.authority.ca_pem()
    }

    /// Closes live connections and reads connection counts.
    pub fn broker(&self) -> BrokerHandle {
        self.broker.handle()
    }

    /// The store (shared handle).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bridge's group-commit flusher (tests hold or fail flushes through its hook).
    pub fn flusher(&self) -> chat_bridge::Flusher {
        self.bridge.flusher()
    }

    /// Users with at least one connected device.
    pub fn online_users(&self) -> usize {
        self.bridge.online_users()
    }

    /// Push counters (sent, retried, dropped, dead-lettered).
    pub fn push_stats(&self) -> Arc<chat_push::PushStats> {
        self.pusher.stats()
    }

    /// Drains: `/readyz` answers 503 at once and for `node.drain_delay_ms` the node keeps
    /// serving; then it stops accepting and reading requests, answers the requests it has read
    /// (until nothing has moved for 100 ms, within the grace period), closes connections, lets
    /// HTTP requests finish (within the grace period) and flushes the store.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let grace = Duration::from_secs(self.config.node.shutdown_grace_secs);
        let drain = Duration::from_millis(self.config.node.drain_delay_ms);
        self.ops.set_draining();
        info!(
            drain_delay_ms = drain.as_millis() as u64,
            "draining: /readyz answers 503"
        );
        if !drain.is_zero() {
            tokio::time::sleep(drain).await;
        }
        info!("shutting down: no new connections or requests");
        // Queued pushes stay on disk and are sent after the restart.
        self.pusher.stop();
        let _ = self.stop_http.send(true);
        self.broker.stop_reading();
        if !self.ops.wait_settled(SETTLE_QUIET, grace).await {
            warn!("requests still in progress after the grace period; closing connections anyway");
        }
        self.broker.shutdown(grace).await;
        self.bridge.shutdown().await;
        match tokio::time::timeout(grace, self.http_task).await {
            Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server ended with an error"),
            Err(_) => warn!("HTTP requests still running after the grace period"),
            _ => {}
        }
        for task in self.background {
            task.abort();
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await??;
        info!("store flushed");
        if self.store.erasure_pending()? {
            // Every handle must be gone before the database can be rewritten.
            drop(self.store);
            drop(self.ops);
            drop(self.pusher);
            let (dir, cfg) = (
                self.config.node.data_dir.join("db"),
                self.config.store.clone(),
            );
            let rewrite = tokio::task::spawn_blocking(move || {
                chat_store::rewrite_if_pending(&dir, &cfg, ERASURE_LOCK_WAIT)
            });
            match rewrite.await? {
                Ok(_) => {}
                Err(e) => warn!(
                    error = %e,
                    "rewriting the database after an account deletion failed; it is retried on the next start"
                ),
            }
        }
        info!("bye");
        Ok(())
    }
}

/// How long a clean stop waits for the last store handles to go before it rewrites the
/// database (after an account deletion); past that, the next start does it.
const ERASURE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the store; if an account deletion left its data in old log segments (the last stop
/// was not clean), first rewrites the database so that it is gone from the disk.
fn open_store(dir: &std::path::Path, cfg: &chat_store::StoreConfig) -> Result<Store, NodeError> {
    let store = Store::open(dir, cfg)?;
    if !store.erasure_pending()? {
        return Ok(store);
    }
    drop(store);
    info!("an account deletion is not yet erased from the disk: rewriting the database");
    chat_store::rewrite_if_pending(dir, cfg, Duration::from_secs(2))?;
    Ok(Store::open(dir, cfg)?)
}

/// While draining, the node is considered settled once nothing has moved for this long.
const SETTLE_QUIET: Duration = Duration::from_millis(100);

/// Picks the HTTPS certificate: the operator's files, the node's own server certificate, or none.
fn http_tls_config(
    config: &Config,
    authority: &Authority,
) -> Result<Option<Arc<rustls::ServerConfig>>, NodeError> {
    let http = &config.http;
    match (&http.tls_cert, &http.tls_key) {
        (Some(cert), Some(key)) => http::load_tls_config(cert, key)
            .map(Some)
            .map_err(|e| NodeError::HttpTls(format!("{e:#}"))),
        _ if http.tls_from_node_cert => Ok(Some(authority.server_tls_config(false)?)),
        _ => Ok(None),
    }
}

/// How often the storage watch looks at the store, and then probes the data directory.
const STORAGE_WATCH_EVERY: Duration = Duration::from_millis(250);
const STORAGE_PROBE_EVERY: Duration = Duration::from_secs(1);
/// The probe writes and syncs this much, so that a disk with just a few free blocks does not
/// count as recovered.
const STORAGE_PROBE_BYTES: usize = 8 << 20;

/// Waits for the store to fail, then probes `dir` until a write of [`STORAGE_PROBE_BYTES`]
/// succeeds and reports it on `recovered`.
async fn watch_storage(store: Store, dir: PathBuf, recovered: watch::Sender<bool>) {
    let mut every = tokio::time::interval(STORAGE_WATCH_EVERY);
    while !store.storage_failed() {
        every.tick().await;
    }
    tracing::error!(
        dir = %dir.display(),
        "storage failed (disk full, read-only or I/O error): answering `unavailable` until a write succeeds again"
    );
    let probe = dir.join(".chatd-space-probe");
    loop {
        tokio::time::sleep(STORAGE_PROBE_EVERY).await;
        let path = probe.clone();
        let result = tokio::task::spawn_blocking(move || write_probe(&path)).await;
        let _ = std::fs::remove_file(&probe);
        match result {
            Ok(Ok(())) => break,
            Ok(Err(e)) => tracing::debug!(error = %e, "storage probe failed"),
            Err(e) => tracing::warn!(error = %e, "storage probe task failed"),
        }
    }
    info!("the data directory takes writes again; restarting to reopen the store");
    let _ = recovered.send(true);
}

fn write_probe(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(&vec![0u8; STORAGE_PROBE_BYTES])?;
    file.sync_all()
}

/// Deletes expired sessions once an hour.
async fn purge_sessions(store: Store) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.purge_expired_sessions()).await {
            Ok(Ok(n)) if n > 0 => info!(purged = n, "expired sessions removed"),
            Ok(Err(e)) => warn!(error = %e, "session purge failed"),
            _ => {}
        }
    }
}
