//! The listeners and the handle the node holds: accept loops, the connection registry, shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttd::local::{LinkRx, LinkTx};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::connection;
use crate::routers::Routers;
use crate::{BrokerConfig, BrokerError, BrokerStats};

/// Decides who may connect. The node implements it on top of its store; the broker itself
/// knows nothing of accounts.
pub trait Authorizer: Send + Sync + 'static {
    /// Called for every connection after the TLS handshake (with the certificate's O and CN)
    /// and after a plaintext login. False refuses the connection (CONNACK "not authorized").
    /// Runs on the async runtime: it must be quick (a key lookup, no password hashing).
    fn device_allowed(&self, user: &str, device: &str) -> bool;
    /// Plaintext listener only: is `password` a valid session token of `user`?
    fn login(&self, user: &str, password: &str) -> bool;
}

/// Why a connection ended, as reported in [`ConnectionEvent::Disconnected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    Clean,
    /// The socket closed or failed without DISCONNECT (the Last Will was published).
    Lost,
    /// Nothing arrived within 1.5 times the keep-alive.
    KeepAliveTimeout,
    /// The client broke the protocol or the topic rules.
    Violation,
    /// The node closed it: device revoked or user disabled. Its Last Will is not published.
    Kicked,
    /// A newer connection of the same device took over (or the router dropped the link).
    Replaced,
    /// The broker is shutting down.
    Shutdown,
}

/// Connection lifecycle events, in order per connection, for presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A device finished CONNECT and is linked to its router.
    Connected {
        user: String,
        device: String,
        conn: u64,
    },
    /// That connection ended.
    Disconnected {
        user: String,
        device: String,
        conn: u64,
        reason: DisconnectReason,
    },
}

/// Open connections by (user, device), so the node can close them.
/// (user, device) -> the open connections of that device, each with its kick signal.
type ConnectionMap = HashMap<(String, String), Vec<(u64, Arc<Notify>)>>;

#[derive(Default)]
pub(crate) struct Registry {
    map: Mutex<ConnectionMap>,
}

impl Registry {
    pub(crate) fn insert(&self, user: &str, device: &str, conn: u64, kick: Arc<Notify>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((user.to_owned(), device.to_owned()))
            .or_default()
            .push((conn, kick));
    }

    pub(crate) fn remove(&self, user: &str, device: &str, conn: u64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_owned(), device.to_owned());
        if let Some(list) = map.get_mut(&key) {
            list.retain(|(id, _)| *id != conn);
            if list.is_empty() {
                map.remove(&key);
            }
        }
    }

    fn kick(&self, matches: impl Fn(&str, &str) -> bool) -> usize {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for ((user, device), list) in map.iter() {
            if matches(user, device) {
                for (_, kick) in list {
                    kick.notify_one();
                    n += 1;
                }
            }
        }
        n
    }
}

/// State shared by the accept loops and every connection task.
pub(crate) struct Shared {
    pub(crate) cfg: BrokerConfig,
    pub(crate) routers: Routers,
    pub(crate) auth: Arc<dyn Authorizer>,
    pub(crate) events: mpsc::UnboundedSender<ConnectionEvent>,
    pub(crate) registry: Registry,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// True once the front end stops accepting and stops reading from clients (draining).
    pub(crate) quiet: watch::Receiver<bool>,
    pub(crate) next_conn: AtomicU64,
    /// Sockets accepted and not yet closed (handshaking ones included).
    pub(crate) open: AtomicUsize,
    /// Connections past CONNECT.
    pub(crate) linked: AtomicUsize,
    /// Counters for the node's metrics.
    pub(crate) stats: Arc<BrokerStats>,
}

/// A running MQTT front end. Dropping it does not stop it: call [`Broker::shutdown`].
pub struct Broker {
    shared: Arc<Shared>,
    tls_addr: SocketAddr,
    plain_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    quiet: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Broker {
    /// Binds the listeners, spawns the routers and starts accepting. Connection events arrive
    /// on the returned receiver; the caller must keep draining it.
    pub async fn start(
        cfg: BrokerConfig,
        tls: Arc<rustls::ServerConfig>,
        auth: Arc<dyn Authorizer>,
    ) -> Result<(Broker, mpsc::UnboundedReceiver<ConnectionEvent>), BrokerError> {
        cfg.validate().map_err(BrokerError::Config)?;
        let tls_listener = bind(&cfg.listen).await?;
        let tls_addr = tls_listener.local_addr().map_err(BrokerError::Io)?;
        let plain_listener = match &cfg.plaintext_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let plain_addr = match &plain_listener {
            Some(l) => Some(l.local_addr().map_err(BrokerError::Io)?),
            None => None,
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (stop, shutdown) = watch::channel(false);
        let (quiet_tx, quiet) = watch::channel(false);
        let routers = Routers::start(&cfg);
        let shared = Arc::new(Shared {
            cfg,
            routers,
            auth,
            events: events_tx,
            registry: Registry::default(),
            shutdown,
            quiet,
            next_conn: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            linked: AtomicUsize::new(0),
            stats: Arc::default(),
        });
        let mut tasks = JoinSet::new();
        let acceptor = TlsAcceptor::from(tls);
        tasks.spawn(accept_loop(shared.clone(), tls_listener, Some(acceptor)));
        info!(addr = %tls_addr, partitions = shared.routers.len(), "MQTT over TLS listening");
        if let (Some(listener), Some(addr)) = (plain_listener, plain_addr) {
            warn!(addr = %addr, "plaintext MQTT listener enabled: traffic is NOT encrypted");
            tasks.spawn(accept_loop(shared.clone(), listener, None));
        }
        let broker = Broker {
            shared,
            tls_addr,
            plain_addr,
            stop,
            quiet: quiet_tx,
            tasks,
        };
        Ok((broker, events_rx))
    }

    /// Where the TLS listener is bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// Where the plaintext listener is bound, if enabled.
    pub fn plaintext_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// A cheap, cloneable handle for closing connections and reading counts.
    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Number of router partitions.
    pub fn partitions(&self) -> usize {
        self.shared.routers.len()
    }

    /// The partition whose router holds `user`'s topics.
    pub fn partition_of(&self, user: &str) -> usize {
        self.shared.routers.partition_of(user)
    }

    /// An in-process link on one router partition, with no tenant restriction: for the
    /// node's own services (the bridge). `client_id` must be unique per partition.
    pub async fn local_link(
        &self,
        partition: usize,
        client_id: &str,
    ) -> Result<(LinkTx, LinkRx), BrokerError> {
        self.shared
            .routers
            .build_link(partition, client_id, None)
            .await
            .map_err(BrokerError::Link)
    }

    /// The first step of a graceful stop: stops accepting and stops reading from the open
    /// connections (so no new request comes in), while everything the routers send to clients
    /// still goes out: answers to the requests already read reach their devices. Keep-alive
    /// timeouts are suspended. Follow with [`Broker::shutdown`].
    pub fn stop_reading(&self) {
        let _ = self.quiet.send(true);
    }

    /// Stops accepting, closes every connection and waits (up to `grace`) for them to end.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        info!(
            left = self.shared.open.load(Ordering::Relaxed),
            "MQTT front end stopped"
        );
    }
}

/// What the rest of the node may do to live connections.
#[derive(Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

impl BrokerHandle {
    /// Connections that completed CONNECT and are open now.
    pub fn connection_count(&self) -> usize {
        self.shared.linked.load(Ordering::Relaxed)
    }

    /// Sockets open now, including those still in their TLS handshake or CONNECT.
    pub fn open_sockets(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// The front end's counters.
    pub fn stats(&self) -> Arc<BrokerStats> {
        self.shared.stats.clone()
    }

    /// Closes every open connection of one device; returns how many were closed.
    pub fn disconnect_device(&self, user: &str, device: &str) -> usize {
        self.shared.registry.kick(|u, d| u == user && d == device)
    }

    /// Closes every open connection of a user.
    pub fn disconnect_user(&self, user: &str) -> usize {
        self.shared.registry.kick(|u, _| u == user)
    }
}

async fn bind(addr: &str) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::Bind(addr.to_owned(), e))
}

/// Accepts sockets and hands each to its own task at once: nothing a client does (or fails to
/// do) can hold up the loop.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let mut shutdown = shared.shutdown.clone();
    let mut quiet = shared.quiet.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
            _ = quiet.wait_for(|q| *q) => return,
        };
        let (stream, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        shared.stats.accepted.inc();
        let open = shared.open.fetch_add(1, Ordering::AcqRel) + 1;
        if open > shared.cfg.max_connections {
            shared.open.fetch_sub(1, Ordering::AcqRel);
            shared.stats.refused.inc("limit");
            debug!(%peer, "connection limit reached; closing");
            drop(stream);
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "set_nodelay failed");
        }
        tokio::spawn(run_connection(shared.clone(), stream, peer, tls.clone()));
    }
}

async fn run_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    connection::handle(&shared, stream, peer, tls).await;
    shared.open.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod task_size {
    /// The size of the future an async fn of four arguments returns.
    fn future_size<A, B, C, D, Fut, F: Fn(A, B, C, D) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every open connection is one task that holds this future, at its full size, for as long
    /// as the connection lives. It was 8.5 KiB (a third of an idle TLS device's memory) before
    /// the packet-sized and stream-sized locals were moved out of it (docs/BENCHMARKS-HISTORY.md).
    #[test]
    fn a_connection_task_stays_under_3_kib() {
        let size = future_size(&super::run_connection);
        assert!(size <= 3 * 1024, "a connection task is {size} bytes");
    }
}
