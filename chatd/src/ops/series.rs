//! The once-a-second sampler: messages stored per second, connections and online users for
//! the last [`HISTORY_SECS`] seconds (the dashboard's chart), and histogram snapshots for
//! latency percentiles over the last [`LATENCY_WINDOW_SECS`] seconds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chat_telemetry::HistogramSnapshot;
use serde::Serialize;

use super::Ops;

/// Seconds of history kept for the dashboard's chart.
pub const HISTORY_SECS: usize = 300;
/// Latency percentiles cover this many recent seconds.
pub const LATENCY_WINDOW_SECS: usize = 60;
/// The database size is read every this many samples.
const DISK_EVERY: u64 = 5;

/// One second of the node's life.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken, unix milliseconds.
    pub t: u64,
    /// Messages stored per second since the sample before.
    pub messages_per_sec: f64,
    /// Open MQTT connections (past CONNECT).
    pub connections: u64,
    /// Users with a device online.
    pub online_users: u64,
}

/// The samples and histogram snapshots, newest last.
#[derive(Debug, Default)]
pub(super) struct Series {
    pub(super) samples: VecDeque<Sample>,
    last_stored: Option<(Instant, u64)>,
    /// (send -> sent, flush) snapshots, one per sample, at most a window's worth.
    latency: VecDeque<(HistogramSnapshot, HistogramSnapshot)>,
    ticks: u64,
}

impl Series {
    /// The messages/s averaged over the last `secs` samples (0 without samples).
    pub(super) fn recent_rate(&self, secs: usize) -> f64 {
        let recent: Vec<f64> = self
            .samples
            .iter()
            .rev()
            .take(secs)
            .map(|s| s.messages_per_sec)
            .collect();
        if recent.is_empty() {
            0.0
        } else {
            recent.iter().sum::<f64>() / recent.len() as f64
        }
    }

    /// The oldest kept latency snapshots (the start of the window).
    pub(super) fn window_start(&self) -> Option<&(HistogramSnapshot, HistogramSnapshot)> {
        self.latency.front()
    }
}

impl Ops {
    /// Takes one sample (and every few seconds re-reads the database size).
    pub(crate) fn sample(&self) {
        let Some(live) = self.live() else {
            return;
        };
        let now = Instant::now();
        let stored = live.bridge.messages_stored.get();
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut series = self.series();
        let rate = match series.last_stored {
            Some((at, before)) => {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    stored.saturating_sub(before) as f64 / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        series.last_stored = Some((now, stored));
        series.samples.push_back(Sample {
            t,
            messages_per_sec: (rate * 10.0).round() / 10.0,
            connections: live.broker.connection_count() as u64,
            online_users: live.presence.online_users() as u64,
        });
        while series.samples.len() > HISTORY_SECS {
            series.samples.pop_front();
        }
        series.latency.push_back((
            live.bridge.send_latency.snapshot(),
            live.bridge.flush_latency.snapshot(),
        ));
        while series.latency.len() > LATENCY_WINDOW_SECS {
            series.latency.pop_front();
        }
        series.ticks += 1;
    }

    /// Whether the database size is due for a re-read (every [`DISK_EVERY`] samples).
    fn disk_due(&self) -> bool {
        self.series().ticks % DISK_EVERY == 1
    }
}

/// Samples `ops` once a second until the task is aborted.
pub async fn run_sampler(ops: Arc<Ops>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        ops.sample();
        if ops.disk_due() {
            let ops = ops.clone();
            let _ = tokio::task::spawn_blocking(move || ops.refresh_disk_bytes()).await;
        }
    }
}
