//! The `chat-bench` program: a load generator for a chat node, or for any MQTT broker with
//! `--raw`.
//!
//! Entry point: [`main`]. A run has four phases: set-up (chat mode: parallel enrolment of U
//! users, D devices each; raw mode: nothing), the connect storm (every device's connection
//! connected, subscribed and, in chat mode, synced), the workload (1:1 between random pairs or
//! to random groups, or a mix, at a fixed rate or as fast as a bounded in-flight window allows,
//! for a duration or a count), and a drain (waiting for the last deliveries); with `--verify`
//! an audit of what the node stored follows. With `--hold` the connections are first held idle
//! while the node's memory is sampled. `--sync-backlog` is a run of its own: an offline
//! device's catch-up. Then a human summary and one JSON line go to stdout. The SDK clients
//! reconnect and retry unanswered sends by themselves, so a run survives restarts of the node
//! (the crash suite, `scripts/crash-suite`, relies on it).
//!
//! Layout:
//! - `mod.rs`: the command line ([`Args`]) and the run
//! - `fleet.rs`: the users' connections: SDK clients (chat mode) or bare rumqttc connections
//!   with PUBACK tracking (raw mode)
//! - `workload.rs`: the send loop (rate, window, duration, count) and message bodies
//! - `hold.rs`: `--hold`: idle connections held, the node's memory per connection
//! - `backlog.rs`: `--sync-backlog`: an offline device's catch-up of N messages
//! - `report.rs`: counters, latency percentiles, RSS, the summary and the JSON line
//! - `verify.rs`: `--verify`, the audit of the node's histories and inboxes after the run

mod backlog;
mod fleet;
mod hold;
mod report;
mod verify;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

pub use report::{Percentiles, Report};
pub use verify::{HistoryAudit, InboxAudit, Verification};

/// Most devices per user (--devices-per-user).
pub const MAX_DEVICES_PER_USER: usize = 64;

/// The `chat-bench` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load generator for a chatd node (or, with --raw, any MQTT broker)"
)]
pub struct Args {
    /// HTTP API of the node (chat mode).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub server: String,
    /// MQTT broker, host:port.
    #[arg(long, default_value = "127.0.0.1:8883", value_name = "ADDR")]
    pub mqtt: String,
    /// Number of users (one connection each).
    #[arg(long, short = 'u', default_value_t = 100)]
    pub users: usize,
    /// Run the workload for this many seconds (default 10 unless --count is given).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Stop after this many sends.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Sends per second in all (default: as fast as the window allows).
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Most sends without their acknowledgement at any time, over all users.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Message body size in bytes (at least 40: the body carries sequence, sender and time).
    #[arg(long, default_value_t = 100)]
    pub msg_size: usize,
    /// Send to groups of this many users instead of 1:1 (chat mode; needs group support).
    #[arg(long, value_name = "G")]
    pub group_size: Option<usize>,
    /// With --group-size: the share of sends that go to a group, the rest 1:1 (0 to 1).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub group_share: f64,
    /// Recipients send a `delivered` receipt for every message (chat mode).
    #[arg(long)]
    pub receipts: bool,
    /// Process id of the node, to report its memory (VmRSS, VmHWM from /proc).
    #[arg(long)]
    pub pid: Option<u32>,
    /// User ids are PREFIX0, PREFIX1 ... (default: `b` and 5 random characters, so runs
    /// against one node do not collide; reuse a prefix to reuse accounts).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Password of the bench users.
    #[arg(long, default_value = "bench-password-1")]
    pub password: String,
    /// Enrolments in progress at once (chat mode).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// After the workload, wait at most this long for outstanding acknowledgements, and then
    /// as long again for outstanding deliveries.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub drain: f64,
    /// Chat mode: after the drain, check what the node stored: every conversation's whole
    /// history (each acknowledged message once, at the `seq` its `sent` named, seqs gapless)
    /// and every user's inbox from `n` 0 (gapless, each acknowledged message once). Exits
    /// non-zero on any loss, duplicate, gap or misplaced message, and on sends still
    /// unanswered after the drain.
    #[arg(long)]
    pub verify: bool,
    /// Create this file when the workload starts (after enrolment, the connect storm and the
    /// groups), for a script that disturbs the node only from then on.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// End the workload as soon as this file exists (checked every 100 ms), even before
    /// --duration or --count.
    #[arg(long, value_name = "FILE")]
    pub stop_file: Option<PathBuf>,
    /// Raw mode: drive any MQTT broker with the same connections and message sizes,
    /// publishing straight to the recipient's topic (`TOPIC_PREFIX/USER`).
    #[arg(long)]
    pub raw: bool,
    /// Raw mode: topic prefix.
    #[arg(long, default_value = "bench", value_name = "PREFIX")]
    pub topic_prefix: String,
    /// Raw mode: connect with TLS, trusting this CA (PEM); plain TCP otherwise.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Raw mode: MQTT username (`{user}` is replaced by the user id).
    #[arg(long)]
    pub username: Option<String>,
    /// Raw mode: MQTT password.
    #[arg(long)]
    pub mqtt_password: Option<String>,
    /// Devices per user (chat mode): each one enrolled with its own key and certificate
    /// (`bench`, `bench1`, ...) and its own TLS connection. The first device of each user
    /// sends and counts deliveries; the others only hold their connection and read.
    #[arg(long, default_value_t = 1, value_name = "D")]
    pub devices_per_user: usize,
    /// After the connect storm, hold every connection idle for this long while sampling the
    /// node's memory (needs --pid): reports its growth per connection since just before the
    /// storm. The workload then runs only if --count or --duration is given.
    #[arg(long, value_name = "SECS")]
    pub hold: Option<f64>,
    /// Sync mode (chat mode): user 1 sends N messages to user 0 while user 0 is offline, then
    /// user 0's device connects and syncs them all; reports the time from its connect to the
    /// last message and per-page figures. Uses 2 users; no other workload.
    #[arg(long, value_name = "N")]
    pub sync_backlog: Option<u64>,
    /// Sync mode: events per `sync` page the device asks for (the server gives at most 1000).
    #[arg(long, default_value_t = 500, value_name = "EVENTS")]
    pub sync_page: usize,
}

impl Args {
    fn validate(&self) -> Result<()> {
        if self.users < 2 {
            bail!("--users must be at least 2");
        }
        if self.window == 0 {
            bail!("--window must be at least 1");
        }
        if self.msg_size < workload::MIN_BODY || self.msg_size > chat_proto::MAX_BODY_LEN {
            bail!(
                "--msg-size must be between {} and {}",
                workload::MIN_BODY,
                chat_proto::MAX_BODY_LEN
            );
        }
        if let Some(g) = self.group_size {
            if self.raw {
                bail!("--group-size is for chat mode only");
            }
            if g < 2 || g > self.users {
                bail!("--group-size must be between 2 and --users");
            }
        }
        if !(0.0..=1.0).contains(&self.group_share) {
            bail!("--group-share must be between 0 and 1");
        }
        if self.receipts && self.raw {
            bail!("--receipts is for chat mode only");
        }
        if self.verify && self.raw {
            bail!("--verify is for chat mode only");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--rate must be a positive number");
        }
        if self.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
            bail!("--duration must be a positive number of seconds");
        }
        if !(self.drain >= 0.0 && self.drain.is_finite()) {
            bail!("--drain must be a number of seconds");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.devices_per_user == 0 || self.devices_per_user > MAX_DEVICES_PER_USER {
            bail!("--devices-per-user must be between 1 and {MAX_DEVICES_PER_USER}");
        }
        if self.raw && self.devices_per_user > 1 {
            bail!("--devices-per-user is for chat mode only");
        }
        if self.hold.is_some_and(|h| !(h > 0.0 && h.is_finite())) {
            bail!("--hold must be a positive number of seconds");
        }
        if self.hold.is_some() && self.pid.is_none() {
            bail!("--hold needs --pid (the node's process id) to measure its memory");
        }
        if let Some(n) = self.sync_backlog {
            if self.raw || self.group_size.is_some() || self.hold.is_some() {
                bail!("--sync-backlog is for chat mode, without --group-size and --hold");
            }
            if n == 0 {
                bail!("--sync-backlog must be at least 1");
            }
        }
        if self.sync_page == 0 {
            bail!("--sync-page must be at least 1");
        }
        if let Some(p) = &self.prefix {
            let longest = format!("{p}{}", self.users);
            if !chat_proto::valid_id(&longest) {
                bail!("--prefix {p:?}: user ids must be 1-32 characters of a-z and 0-9");
            }
        }
        Ok(())
    }

    /// Connections in all.
    pub fn connections(&self) -> usize {
        self.users * self.devices_per_user
    }

    /// Whether a workload runs: always, except after --hold when neither --count nor
    /// --duration asks for one.
    fn has_workload(&self) -> bool {
        self.hold.is_none() || self.count.is_some() || self.duration.is_some()
    }

    /// The workload's length: the duration, if any (10 s when neither it nor --count is given).
    fn run_for(&self) -> Option<Duration> {
        match (self.duration, self.count) {
            (Some(d), _) => Some(Duration::from_secs_f64(d)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }
}

/// Runs `chat-bench` with the process's arguments; the exit status to return.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            print!("{}", report.summary());
            println!("{}", report.json());
            let problems = report.problems();
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("chat-bench: verification failed: {}", problems.join(", "));
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One whole run: set-up, connect storm, hold, workload, drain, report (or, with
/// --sync-backlog, the sync run).
pub async fn run(args: Args) -> Result<Report> {
    args.validate()?;
    let prefix = args.prefix.clone().unwrap_or_else(random_prefix);
    let tracker = report::Tracker::new();
    let mut report = Report::new(&args);
    if args.sync_backlog.is_some() {
        backlog::run(&args, &prefix, &tracker, &mut report).await?;
        return Ok(report);
    }
    fleet::check_open_files(args.connections() + args.concurrency)?;
    let names: Vec<String> = (0..args.users).map(|i| format!("{prefix}{i}")).collect();

    let fleet = if args.raw {
        fleet::Fleet::raw(&args, &names, &tracker, &mut report).await?
    } else {
        fleet::Fleet::chat(&args, &names, &tracker, &mut report).await?
    };
    if let Some(secs) = args.hold {
        report.hold = Some(hold::hold(&fleet, Duration::from_secs_f64(secs), &args, &report).await);
    }
    let groups = match args.group_size {
        Some(size) => fleet.make_groups(size).await?,
        None => Vec::new(),
    };
    let elapsed = if args.has_workload() {
        if let Some(path) = &args.ready_file {
            std::fs::write(path, b"workload\n")
                .with_context(|| format!("writing --ready-file {}", path.display()))?;
        }
        eprintln!("running the workload...");
        let elapsed = workload::drive(&args, &fleet, &groups, &tracker).await;
        eprintln!("draining...");
        tracker.drain(Duration::from_secs_f64(args.drain)).await;
        elapsed
    } else {
        Duration::ZERO
    };
    report.finish(&tracker, elapsed, args.pid);
    if args.verify {
        eprintln!("verifying what the node stored...");
        report.verify = Some(verify::run(&fleet, &groups, &tracker).await?);
    }
    fleet.close().await;
    Ok(report)
}

fn random_prefix() -> String {
    let s: String = (0..5)
        .map(|_| {
            let c = rand::random::<u8>() % 26;
            char::from(b'a' + c)
        })
        .collect();
    format!("b{s}")
}
