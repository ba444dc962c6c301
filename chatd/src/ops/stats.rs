//! [`Stats`]: the node at a glance, as `GET /admin/v1/stats` answers it (the dashboard polls
//! it every second).

use std::collections::BTreeMap;

use chat_telemetry::HistogramSnapshot;
use serde::Serialize;

use super::series::{Sample, LATENCY_WINDOW_SECS};
use super::{Ops, PushStats};

/// The answer of `GET /admin/v1/stats`. Figures of the broker and bridge read 0 on a node
/// without them (router tests).
#[derive(Debug, Serialize)]
pub struct Stats {
    /// The chatd version.
    pub version: &'static str,
    /// This node's id (0-1023).
    pub node_id: u16,
    /// Start time, unix seconds.
    pub started_at: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// False while draining (shutdown started).
    pub ready: bool,
    /// MQTT connections past CONNECT.
    pub connections: u64,
    /// Sockets open on the MQTT listeners (handshaking ones included).
    pub open_sockets: u64,
    /// Users with a connected device that is not away.
    pub online_users: u64,
    /// Messages stored since start.
    pub messages_stored: u64,
    /// Messages stored per second, averaged over the last 10 seconds.
    pub messages_per_sec: f64,
    /// Up to the last 300 seconds, one sample a second, oldest first.
    pub history: Vec<Sample>,
    /// Latency percentiles over the last minute.
    pub latency: LatencyStats,
    /// Per conversation shard: jobs waiting for the worker, group entries waiting for fan-out.
    pub shards: Vec<ShardQueues>,
    /// Push delivery (all zero while the node has none: `enabled` false).
    pub push: PushSection,
    /// Bytes the database uses on disk.
    pub disk_bytes: u64,
    /// Requests from devices since start, by type.
    pub requests: BTreeMap<&'static str, u64>,
    /// `error` events sent to devices since start, by code.
    pub errors: BTreeMap<&'static str, u64>,
}

/// Percentiles of one latency, milliseconds (`null` without observations in the window).
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// Observations in the window.
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The two latencies the node measures.
#[derive(Debug, Serialize)]
pub struct LatencyStats {
    /// Seconds the percentiles cover.
    pub window_secs: usize,
    /// From reading a `send` to publishing its `sent`.
    pub send_to_sent: Percentiles,
    /// One group-commit flush.
    pub store_flush: Percentiles,
}

/// One shard's queues.
#[derive(Debug, Serialize)]
pub struct ShardQueues {
    pub shard: usize,
    /// Requests queued for the shard's worker or in its current batch.
    pub queued: i64,
    /// Group entries queued for the shard's fan-out thread or being fanned out.
    pub fanout: i64,
}

/// Push delivery as the dashboard shows it.
#[derive(Debug, Serialize)]
pub struct PushSection {
    /// Whether this node delivers pushes at all.
    pub enabled: bool,
    pub queue_depth: u64,
    pub dead_letters: u64,
    pub outcomes: BTreeMap<&'static str, u64>,
}

impl From<(bool, PushStats)> for PushSection {
    fn from((enabled, stats): (bool, PushStats)) -> Self {
        PushSection {
            enabled,
            queue_depth: stats.queue_depth,
            dead_letters: stats.dead_letters,
            outcomes: stats.outcomes.into_iter().collect(),
        }
    }
}

fn percentiles(window: Option<HistogramSnapshot>) -> Percentiles {
    let ms = |q: f64, h: &HistogramSnapshot| h.quantile(q).map(|s| (s * 1e5).round() / 100.0);
    match window {
        Some(h) => Percentiles {
            count: h.count,
            p50_ms: ms(0.5, &h),
            p90_ms: ms(0.9, &h),
            p99_ms: ms(0.99, &h),
        },
        None => Percentiles {
            count: 0,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
        },
    }
}

impl Ops {
    /// The node at a glance.
    pub fn stats(&self) -> Stats {
        let (history, rate, window) = {
            let series = self.series();
            (
                series.samples.iter().copied().collect::<Vec<_>>(),
                (series.recent_rate(10) * 10.0).round() / 10.0,
                series.window_start().cloned(),
            )
        };
        let live = self.live();
        let (send_window, flush_window) = match (live, window) {
            (Some(l), Some((send0, flush0))) => (
                Some(l.bridge.send_latency.snapshot().since(&send0)),
                Some(l.bridge.flush_latency.snapshot().since(&flush0)),
            ),
            (Some(l), None) => (
                Some(l.bridge.send_latency.snapshot()),
                Some(l.bridge.flush_latency.snapshot()),
            ),
            (None, _) => (None, None),
        };
        let shards = live.map_or_else(Vec::new, |l| {
            l.bridge
                .shard_queue
                .iter()
                .zip(&l.bridge.fanout_queue)
                .enumerate()
                .map(|(shard, (q, f))| ShardQueues {
                    shard,
                    queued: q.get(),
                    fanout: f.get(),
                })
                .collect()
        });
        Stats {
            version: env!("CARGO_PKG_VERSION"),
            node_id: self.node_id,
            started_at: self.started_unix,
            uptime_secs: self.uptime_secs(),
            ready: self.is_ready(),
            connections: live.map_or(0, |l| l.broker.connection_count() as u64),
            open_sockets: live.map_or(0, |l| l.broker.open_sockets() as u64),
            online_users: live.map_or(0, |l| l.presence.online_users() as u64),
            messages_stored: live.map_or(0, |l| l.bridge.messages_stored.get()),
            messages_per_sec: rate,
            history,
            latency: LatencyStats {
                window_secs: LATENCY_WINDOW_SECS,
                send_to_sent: percentiles(send_window),
                store_flush: percentiles(flush_window),
            },
            shards,
            push: (self.push.enabled(), self.push.stats()).into(),
            disk_bytes: self.disk_bytes(),
            requests: live.map_or_else(BTreeMap::new, |l| {
                l.bridge.requests.snapshot().into_iter().collect()
            }),
            errors: live.map_or_else(BTreeMap::new, |l| {
                l.bridge.errors.snapshot().into_iter().collect()
            }),
        }
    }
}
