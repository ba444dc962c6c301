//! `--hold SECS`: every connection of the storm stays open and idle while the node's memory is
//! sampled once a second; the growth since just before the storm, divided by the connections,
//! is the node's memory per idle connection.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::fleet::Fleet;
use super::report::{memory_of, round3, Report};
use super::Args;

/// What a hold measured. Memory in KiB (VmRSS from /proc/PID/status).
#[derive(Debug, Clone, Serialize)]
pub struct HoldReport {
    /// Seconds held.
    pub secs: f64,
    /// Connections held.
    pub connections: usize,
    /// Connections still online at the end (chat mode: connected, subscribed, caught up).
    pub online_at_end: Option<usize>,
    /// The node's memory just before the storm (after enrolment).
    pub rss_before_kib: Option<u64>,
    /// The node's memory at the end of the hold.
    pub rss_held_kib: Option<u64>,
    /// The highest sample during the hold.
    pub rss_held_max_kib: Option<u64>,
    /// `(rss_held_kib - rss_before_kib) / connections`.
    pub rss_per_conn_kib: Option<f64>,
    /// This process's memory at the end of the hold.
    pub bench_rss_kib: Option<u64>,
    /// This process's growth per connection since just before the storm.
    pub bench_rss_per_conn_kib: Option<f64>,
}

/// Holds the fleet's connections idle for `secs`, sampling the node (`--pid`) every second.
pub(crate) async fn hold(
    fleet: &Fleet,
    secs: Duration,
    args: &Args,
    report: &Report,
) -> HoldReport {
    let connections = args.connections();
    eprintln!(
        "holding {connections} connections idle for {:.0} s...",
        secs.as_secs_f64()
    );
    let end = Instant::now() + secs;
    let (mut last, mut max) = (None, None);
    loop {
        if let Some(pid) = args.pid {
            last = memory_of(pid).0;
            max = max.max(last);
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::time::sleep((end - now).min(Duration::from_secs(1))).await;
    }
    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if connections > 0 => {
            Some(round3((a as f64 - b as f64) / connections as f64))
        }
        _ => None,
    };
    let bench = memory_of(std::process::id()).0;
    HoldReport {
        secs: secs.as_secs_f64(),
        connections,
        online_at_end: fleet.online().map(|(online, _)| online),
        rss_before_kib: report.rss_before_connect_kib,
        rss_held_kib: last,
        rss_held_max_kib: max,
        rss_per_conn_kib: per_conn(report.rss_before_connect_kib, last),
        bench_rss_kib: bench,
        bench_rss_per_conn_kib: per_conn(report.bench_rss_before_connect_kib, bench),
    }
}

impl HoldReport {
    /// Summary lines.
    pub(crate) fn summary(&self) -> String {
        let mut s = String::new();
        let kib = |v: Option<u64>| v.map_or("?".to_owned(), |v| format!("{} MiB", v / 1024));
        let per = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.1} KiB"));
        let online = self
            .online_at_end
            .map_or(String::new(), |n| format!(", {n} online at the end"));
        let _ = writeln!(
            s,
            "  idle hold       {:.0} s, {} connections{online}",
            self.secs, self.connections
        );
        let _ = writeln!(
            s,
            "  node memory     {} before the storm, {} held (max {}): {} per connection",
            kib(self.rss_before_kib),
            kib(self.rss_held_kib),
            kib(self.rss_held_max_kib),
            per(self.rss_per_conn_kib)
        );
        let _ = writeln!(
            s,
            "  bench memory    {}: {} per connection",
            kib(self.bench_rss_kib),
            per(self.bench_rss_per_conn_kib)
        );
        s
    }
}
