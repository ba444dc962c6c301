//! What a run measures ([`Tracker`], shared by every task) and what it reports ([`Report`]:
//! a human summary and one JSON line).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::verify::Verification;
use super::Args;
use chat_proto::{Conv, SentEvent};

/// Counters and latency samples of a run. Cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct Tracker(Arc<Inner>);

struct Inner {
    /// This run's id, in every body.
    run: u32,
    /// Time zero: message bodies carry microseconds since it.
    start: Instant,
    attempted: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
    dup: AtomicU64,
    /// Connections lost after they had come up (each user counts once per node restart).
    reconnects: AtomicU64,
    /// Deliveries that arrived, by (message seq, recipient index).
    seen: Mutex<HashSet<(u64, u32)>>,
    /// Deliveries owed for acknowledged messages: (seq, recipient index).
    owed: Mutex<Vec<(u64, u32)>>,
    /// Acknowledged sends with what their `sent` said (chat mode), for `--verify`.
    acks: Mutex<Vec<Acked>>,
    ack_us: Mutex<Vec<u32>>,
    delivery_us: Mutex<Vec<u32>>,
    first_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker(Arc::new(Inner {
            run: rand::random(),
            start: Instant::now(),
            attempted: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dup: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            seen: Mutex::new(HashSet::new()),
            owed: Mutex::new(Vec::new()),
            acks: Mutex::new(Vec::new()),
            ack_us: Mutex::new(Vec::new()),
            delivery_us: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
        }))
    }

    /// This run's id (bodies of other runs are ignored).
    pub(crate) fn run(&self) -> u32 {
        self.0.run
    }

    /// Microseconds since time zero (what a body carries).
    pub(crate) fn now_us(&self) -> u64 {
        self.0.start.elapsed().as_micros() as u64
    }

    pub(crate) fn attempted(&self) {
        self.0.attempted.fetch_add(1, Ordering::Relaxed);
    }

    /// Send `seq` from `from` was acknowledged after `latency` (with its `sent` event in chat
    /// mode); `recipients` each owe a delivery.
    pub(crate) fn acked(
        &self,
        seq: u64,
        from: u32,
        recipients: Vec<u32>,
        latency: Duration,
        sent: Option<&SentEvent>,
    ) {
        self.0.acked.fetch_add(1, Ordering::Relaxed);
        lock(&self.0.ack_us).push(micros(latency));
        lock(&self.0.owed).extend(recipients.iter().map(|r| (seq, *r)));
        if let Some(sent) = sent {
            lock(&self.0.acks).push(Acked {
                bench_seq: seq,
                from,
                recipients,
                conv: sent.conv.clone(),
                seq: sent.seq,
                msg_id: sent.msg_id,
            });
        }
    }

    /// A connection that had come up was lost.
    pub(crate) fn connection_lost(&self) {
        self.0.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Every acknowledged send so far (chat mode).
    pub(crate) fn acks(&self) -> Vec<Acked> {
        lock(&self.0.acks).clone()
    }

    pub(crate) fn failed(&self, error: String) {
        self.0.failed.fetch_add(1, Ordering::Relaxed);
        lock(&self.0.first_error).get_or_insert(error);
    }

    /// `recipient` received a body; its send time is in the body.
    pub(crate) fn received(&self, recipient: u32, body: &[u8]) {
        let Some((run, seq, sent_us)) = super::workload::parse_body(body) else {
            return;
        };
        if run != self.0.run {
            return;
        }
        let now = self.now_us();
        self.0.received.fetch_add(1, Ordering::Relaxed);
        if !lock(&self.0.seen).insert((seq, recipient)) {
            self.0.dup.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let latency = now.saturating_sub(sent_us);
        lock(&self.0.delivery_us).push(u32::try_from(latency).unwrap_or(u32::MAX));
    }

    fn missing(&self) -> u64 {
        let seen = lock(&self.0.seen);
        lock(&self.0.owed)
            .iter()
            .filter(|k| !seen.contains(k))
            .count() as u64
    }

    /// Waits until every acknowledged message has reached its recipients, at most `wait`.
    pub(crate) async fn drain(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && self.missing() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An acknowledged send, as its `sent` event described it.
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    /// The bench's number for the send (in its body).
    pub(crate) bench_seq: u64,
    /// The sender, by index.
    pub(crate) from: u32,
    /// Who must get it, by index.
    pub(crate) recipients: Vec<u32>,
    /// Where the node stored it.
    pub(crate) conv: Conv,
    /// At which `seq`.
    pub(crate) seq: u64,
    /// Under which message id.
    pub(crate) msg_id: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    pub(crate) fn of(mut samples: Vec<u32>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            f64::from(samples[i]) / 1000.0
        };
        Percentiles {
            n: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms  ({} samples)",
            self.p50, self.p90, self.p99, self.p999, self.max, self.n
        )
    }
}

/// The result of a run; [`Report::json`] is its one-line JSON form.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `chat` (the full stack through the SDK) or `raw` (bare MQTT).
    pub mode: &'static str,
    /// Users.
    pub users: usize,
    /// Devices per user, each with its own connection.
    pub devices_per_user: usize,
    /// Connections (users x devices per user).
    pub connections: usize,
    /// Group size, when sending to groups.
    pub group_size: Option<usize>,
    /// The share of sends that went to groups (with a group size; the rest are 1:1).
    pub group_share: Option<f64>,
    /// Body size in bytes.
    pub msg_size: usize,
    /// In-flight window.
    pub window: usize,
    /// Target rate, if any (sends per second).
    pub rate: Option<f64>,
    /// Whether recipients sent receipts.
    pub receipts: bool,
    /// Seconds to enrol every user (chat mode; 0 in raw mode).
    pub enrol_s: f64,
    /// Seconds from the first connection attempt until every user was connected,
    /// subscribed and (chat mode) synced.
    pub connect_s: f64,
    /// Of `connect_s`: seconds this process took to start every SDK client (chat mode).
    pub clients_started_s: f64,
    /// Seconds of workload.
    pub duration_s: f64,
    /// Sends started.
    pub attempted: u64,
    /// Sends acknowledged (`sent` in chat mode, PUBACK in raw mode).
    pub acked: u64,
    /// Sends that failed (refused or connection lost, raw mode).
    pub failed: u64,
    /// Sends with neither acknowledgement nor failure at the end of the drain.
    pub unanswered: u64,
    /// Connections that were lost after they had come up, and re-established by the SDK
    /// (chat mode; a restart of the node counts once per user).
    pub reconnects: u64,
    /// Acknowledged sends per second of workload.
    pub acked_per_s: f64,
    /// Deliveries received (duplicates included).
    pub received: u64,
    /// Deliveries owed for acknowledged sends that never arrived (after the drain).
    pub lost: u64,
    /// Deliveries received more than once.
    pub dup: u64,
    /// Send -> acknowledgement (`sent`, or PUBACK in raw mode).
    pub ack_ms: Percentiles,
    /// Send -> the recipient's `msg` (or PUBLISH in raw mode).
    pub delivery_ms: Percentiles,
    /// The node's resident memory at the end, KiB (with --pid).
    pub rss_kib: Option<u64>,
    /// The node's peak resident memory, KiB (with --pid).
    pub rss_peak_kib: Option<u64>,
    /// The node's resident memory just before the connect storm, after enrolment, KiB
    /// (chat mode, with --pid).
    pub rss_before_connect_kib: Option<u64>,
    /// This process's resident memory just before the connect storm, KiB (chat mode).
    pub bench_rss_before_connect_kib: Option<u64>,
    /// The idle hold (--hold).
    pub hold: Option<super::hold::HoldReport>,
    /// The sync of a backlog (--sync-backlog).
    pub sync: Option<super::backlog::SyncReport>,
    /// The first failure seen, if any.
    pub first_error: Option<String>,
    /// The audit of the node's histories and inboxes (with `--verify`).
    pub verify: Option<Verification>,
}

impl Report {
    pub(crate) fn new(args: &Args) -> Report {
        Report {
            mode: if args.raw { "raw" } else { "chat" },
            users: args.users,
            devices_per_user: args.devices_per_user,
            connections: args.connections(),
            group_size: args.group_size,
            group_share: args.group_size.map(|_| args.group_share),
            msg_size: args.msg_size,
            window: args.window,
            rate: args.rate,
            receipts: args.receipts,
            enrol_s: 0.0,
            connect_s: 0.0,
            clients_started_s: 0.0,
            duration_s: 0.0,
            attempted: 0,
            acked: 0,
            failed: 0,
            unanswered: 0,
            reconnects: 0,
            acked_per_s: 0.0,
            received: 0,
            lost: 0,
            dup: 0,
            ack_ms: Percentiles::default(),
            delivery_ms: Percentiles::default(),
            rss_kib: None,
            rss_peak_kib: None,
            rss_before_connect_kib: None,
            bench_rss_before_connect_kib: None,
            hold: None,
            sync: None,
            first_error: None,
            verify: None,
        }
    }

    /// Fills in the counters after the drain.
    pub(crate) fn finish(&mut self, t: &Tracker, workload: Duration, pid: Option<u32>) {
        let i = &t.0;
        self.duration_s = round3(workload.as_secs_f64());
        self.attempted = i.attempted.load(Ordering::Relaxed);
        self.acked = i.acked.load(Ordering::Relaxed);
        self.failed = i.failed.load(Ordering::Relaxed);
        self.unanswered = self.attempted.saturating_sub(self.acked + self.failed);
        self.reconnects = i.reconnects.load(Ordering::Relaxed);
        self.acked_per_s = if workload.is_zero() {
            0.0
        } else {
            round3(self.acked as f64 / workload.as_secs_f64())
        };
        self.received = i.received.load(Ordering::Relaxed);
        self.dup = i.dup.load(Ordering::Relaxed);
        self.lost = t.missing();
        self.ack_ms = Percentiles::of(std::mem::take(&mut *lock(&i.ack_us)));
        self.delivery_ms = Percentiles::of(std::mem::take(&mut *lock(&i.delivery_us)));
        self.first_error = lock(&i.first_error).clone();
        if let Some(pid) = pid {
            let (rss, peak) = memory_of(pid);
            self.rss_kib = rss;
            self.rss_peak_kib = peak;
        }
    }

    /// The human summary (several lines).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let what = match (self.mode, self.group_size) {
            ("raw", _) => "raw MQTT, publish to the recipient's topic".to_owned(),
            (_, Some(g)) => match self.group_share {
                Some(share) if share < 1.0 => format!(
                    "chat, {:.0}% to groups of {g}, the rest 1:1 random pairs",
                    share * 100.0
                ),
                _ => format!("chat, groups of {g}"),
            },
            _ => "chat, 1:1 random pairs".to_owned(),
        };
        let devices = if self.devices_per_user > 1 {
            format!(" x {} devices", self.devices_per_user)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "chat-bench: {} users{devices}, {what}, {} B bodies, window {}{}",
            self.users,
            self.msg_size,
            self.window,
            self.rate
                .map(|r| format!(", rate {r}/s"))
                .unwrap_or_default()
        );
        if self.mode == "chat" {
            let _ = writeln!(s, "  enrolment       {:.2} s", self.enrol_s);
        }
        let _ = writeln!(
            s,
            "  connect storm   {:.2} s (all connected, subscribed{})",
            self.connect_s,
            if self.mode == "chat" { ", synced" } else { "" }
        );
        if let Some(h) = &self.hold {
            let _ = write!(s, "{}", h.summary());
        }
        if let Some(sync) = &self.sync {
            let _ = write!(s, "{}", sync.summary());
        }
        let _ = writeln!(
            s,
            "  workload        {:.2} s: {} sent, {} acknowledged ({:.0}/s), {} failed",
            self.duration_s, self.attempted, self.acked, self.acked_per_s, self.failed
        );
        if self.unanswered > 0 {
            let _ = writeln!(
                s,
                "  unanswered      {} sends had no answer at the end",
                self.unanswered
            );
        }
        if self.reconnects > 0 {
            let _ = writeln!(
                s,
                "  reconnects      {} connections lost and re-established",
                self.reconnects
            );
        }
        let _ = writeln!(
            s,
            "  deliveries      {} received, {} lost, {} duplicated",
            self.received, self.lost, self.dup
        );
        let (ack, delivery) = if self.mode == "chat" {
            ("send -> sent", "send -> msg ")
        } else {
            ("pub -> puback", "pub -> recv ")
        };
        let _ = writeln!(s, "  {ack:<15} {}", self.ack_ms.line());
        let _ = writeln!(s, "  {delivery:<15} {}", self.delivery_ms.line());
        if let (Some(rss), Some(peak)) = (self.rss_kib, self.rss_peak_kib) {
            let _ = writeln!(
                s,
                "  node memory     {} MiB resident, {} MiB peak",
                rss / 1024,
                peak / 1024
            );
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "  first error     {e}");
        }
        if let Some(v) = &self.verify {
            s.push_str(&v.summary());
        }
        s
    }

    /// What makes a verified run fail (empty without `--verify`): anything the audit found,
    /// live deliveries lost or duplicated, and sends still unanswered after the drain.
    pub fn problems(&self) -> Vec<String> {
        let Some(v) = &self.verify else {
            return Vec::new();
        };
        let mut p = v.problems();
        if self.lost > 0 {
            p.push(format!("{} live deliveries lost", self.lost));
        }
        if self.dup > 0 {
            p.push(format!("{} live deliveries duplicated", self.dup));
        }
        if self.unanswered > 0 {
            p.push(format!("{} sends unanswered", self.unanswered));
        }
        p
    }

    /// The report as one line of JSON.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// VmRSS and VmHWM of a process, in KiB, from /proc/{pid}/status.
pub(crate) fn memory_of(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let p = Percentiles::of((1..=1000).map(|i| i * 1000).collect());
        assert_eq!(p.n, 1000);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p999, p.max),
            (500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(Percentiles::of(vec![]).n, 0);
        assert_eq!(Percentiles::of(vec![7000]).p999, 7.0);
    }

    #[test]
    fn own_memory_is_readable() {
        let (rss, peak) = memory_of(std::process::id());
        assert!(
            rss.is_some_and(|r| r > 0) && peak >= rss,
            "{rss:?} {peak:?}"
        );
        assert_eq!(memory_of(u32::MAX), (None, None));
    }

    #[tokio::test]
    async fn duplicates_and_losses_are_counted() {
        let t = Tracker::new();
        let body = super::super::workload::body(t.run(), 7, 1, t.now_us(), 60);
        let other_run = super::super::workload::body(t.run().wrapping_add(1), 8, 1, 0, 60);
        t.acked(7, 1, vec![2], Duration::from_millis(1), None);
        t.acked(8, 1, vec![2, 3], Duration::from_millis(1), None);
        t.received(2, &body);
        t.received(2, &body);
        t.received(2, b"not a bench body");
        t.received(2, &other_run);
        let mut r = Report::new(&<Args as clap::Parser>::parse_from(["chat-bench"]));
        r.finish(&t, Duration::from_secs(1), None);
        assert_eq!((r.acked, r.received, r.dup, r.lost), (2, 2, 1, 2));
        assert_eq!(r.delivery_ms.n, 1);
        let json: serde_json::Value = serde_json::from_str(&r.json()).unwrap_or_default();
        assert_eq!(json["lost"], 2);
    }
}
