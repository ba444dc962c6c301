//! What operators see and steer: the node's live figures (read from the broker's and the
//! bridge's meters), a per-second history for the dashboard, readiness while draining, HTTP
//! request counts, and the seam to push delivery.
//!
//! [`Ops`] is shared by the HTTP handlers (`/metrics`, `/readyz`, the admin API) and the node,
//! which starts [`run_sampler`] and clears readiness when it begins to shut down.
//!
//! Layout:
//! - `series.rs`: the once-a-second sampler and its history (messages/s, latency windows)
//! - `stats.rs`: [`Stats`], the JSON of `GET /admin/v1/stats`
//! - `metrics.rs`: the Prometheus text of `GET /metrics`
//! - `push.rs`: [`PushMonitor`], the seam to push delivery: [`StorePush`] and [`NoPush`]

mod metrics;
mod push;
mod series;
mod stats;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_bridge::{BridgeStats, Presence};
use chat_broker::BrokerHandle;
use chat_store::Store;

pub use push::{DeadLetter, NoPush, PushMonitor, PushStats, StorePush, PUSH_OUTCOMES};
pub use series::{run_sampler, Sample, HISTORY_SECS, LATENCY_WINDOW_SECS};
pub use stats::Stats;

use series::Series;

/// The running parts of a node that operations read and act on.
#[derive(Clone)]
pub struct Live {
    /// Connection counts, the front end's meters, closing connections.
    pub broker: BrokerHandle,
    /// Who is online, per device.
    pub presence: Presence,
    /// The message service's meters.
    pub bridge: Arc<BridgeStats>,
}

/// Operations state of one node (shared by the HTTP handlers and the node).
pub struct Ops {
    started: Instant,
    started_unix: u64,
    node_id: u16,
    ready: AtomicBool,
    store: Store,
    live: Option<Live>,
    push: Arc<dyn PushMonitor>,
    series: Mutex<Series>,
    disk_bytes: AtomicU64,
    /// HTTP answers by (route, status).
    http: Mutex<BTreeMap<(String, u16), u64>>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("node_id", &self.node_id)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Ops {
    /// Operations state for a node whose parts are `live` (`None` for an HTTP API without a
    /// broker and bridge, as in router tests: live figures then read 0). Starts ready.
    pub fn new(node_id: u16, store: Store, live: Option<Live>, push: Arc<dyn PushMonitor>) -> Ops {
        let disk = store.size_on_disk().unwrap_or(0);
        Ops {
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            node_id,
            ready: AtomicBool::new(true),
            store,
            live,
            push,
            series: Mutex::new(Series::default()),
            disk_bytes: AtomicU64::new(disk),
            http: Mutex::new(BTreeMap::new()),
        }
    }

    /// False once the node has begun to drain (shutdown started), and while its storage has
    /// failed (disk full, read-only, I/O error: see [`crate::Node::storage_recovered`]).
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why the node is not ready: `"draining"` or `"storage unavailable"`.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.ready.load(Ordering::Relaxed) {
            Some("draining")
        } else if self.store.storage_failed() {
            Some("storage unavailable")
        } else {
            None
        }
    }

    /// Marks the node as draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }

    /// The running parts, if any.
    pub fn live(&self) -> Option<&Live> {
        self.live.as_ref()
    }

    /// Push delivery (or [`NoPush`]).
    pub fn push(&self) -> &dyn PushMonitor {
        self.push.as_ref()
    }

    /// Seconds since the node started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Closes every connection of `user`; returns how many.
    pub fn disconnect_user(&self, user: &str) -> usize {
        self.live
            .as_ref()
            .map_or(0, |l| l.broker.disconnect_user(user))
    }

    /// Connected devices of `user` with their away flag.
    pub fn connected_devices(&self, user: &str) -> Vec<(String, bool)> {
        self.live
            .as_ref()
            .map_or_else(Vec::new, |l| l.presence.devices(user))
    }

    /// Whether `user` has a connected device that is not away.
    pub fn is_online(&self, user: &str) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| l.presence.is_online(user))
    }

    /// Bytes the database uses on disk (refreshed every few seconds by the sampler).
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    /// Re-reads the database's size on disk (walks its files: call off the runtime).
    pub(crate) fn refresh_disk_bytes(&self) {
        match self.store.size_on_disk() {
            Ok(bytes) => self.disk_bytes.store(bytes, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "reading the database size failed"),
        }
    }

    /// Counts one HTTP answer.
    pub(crate) fn count_http(&self, route: &str, status: u16) {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        *http.entry((route.to_owned(), status)).or_default() += 1;
    }

    fn http_counts(&self) -> Vec<(Vec<String>, u64)> {
        let http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        http.iter()
            .map(|((route, status), n)| (vec![route.clone(), status.to_string()], *n))
            .collect()
    }

    /// Waits until the message service has nothing queued or in hand and nothing has moved
    /// (requests read, publishes in either direction) for `quiet`, or until `max` has passed.
    /// True if it settled. For draining: call it once the front end has stopped reading.
    pub async fn wait_settled(&self, quiet: Duration, max: Duration) -> bool {
        let Some(live) = self.live() else {
            return true;
        };
        let broker = live.broker.stats();
        let activity = || {
            live.bridge.requests.total() + broker.publishes_in.get() + broker.publishes_out.get()
        };
        let started = Instant::now();
        let (mut last, mut since) = (activity(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = activity();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if live.bridge.queues_empty() && since.elapsed() >= quiet {
                return true;
            }
            if started.elapsed() >= max {
                return false;
            }
        }
    }

    fn series(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}
