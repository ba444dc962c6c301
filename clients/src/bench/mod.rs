//! The `chat-bench` program: a load generator for a chat node, or for any MQTT broker with
//! `--raw`.
//!
//! Entry point: [`main`]. A run has four phases: set-up (chat mode: parallel enrolment of U
//! users; raw mode: nothing), the connect storm (every user's connection connected,
//! subscribed and, in chat mode, synced), the workload (1:1 between random pairs or to
//! random groups, or a mix, at a fixed rate or as fast as a bounded in-flight window allows,
//! for a duration or a count), and a drain (waiting for the last deliveries); with `--verify`
//! an audit of what the node stored follows. Then a human summary and one JSON line go to
//! stdout. The SDK clients reconnect and retry unanswered sends by themselves, so a run
//! survives restarts of the node (the crash suite, `scripts/crash-suite`, relies on it).
//!
//! Layout:
//! - `mod.rs`: the command line ([`Args`]) and the run
//! - `fleet.rs`: the users' connections: SDK clients (chat mode) or bare rumqttc connections
//!   with PUBACK tracking (raw mode)
//! - `workload.rs`: the send loop (rate, window, duration, count) and message bodies
//! - `report.rs`: counters, latency percentiles, RSS, the summary and the JSON line
//! - `verify.rs`: `--verify`, the audit of the node's histories and inboxes after the run

mod fleet;
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
        if let Some(p) = &self.prefix {
            let longest = format!("{p}{}", self.users);
            if !chat_proto::valid_id(&longest) {
                bail!("--prefix {p:?}: user ids must be 1-32 characters of a-z and 0-9");
            }
        }
        Ok(())
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

/// One whole run: set-up, connect storm, workload, drain, report.
pub async fn run(args: Args) -> Result<Report> {
    args.validate()?;
    let prefix = args.prefix.clone().unwrap_or_else(random_prefix);
    let names: Vec<String> = (0..args.users).map(|i| format!("{prefix}{i}")).collect();
    let tracker = report::Tracker::new();
    let mut report = Report::new(&args);

    let fleet = if args.raw {
        fleet::Fleet::raw(&args, &names, &tracker, &mut report).await?
    } else {
        fleet::Fleet::chat(&args, &names, &tracker, &mut report).await?
    };
    let groups = match args.group_size {
        Some(size) => fleet.make_groups(size).await?,
        None => Vec::new(),
    };
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"workload\n")
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    eprintln!("running the workload...");
    let elapsed = workload::drive(&args, &fleet, &groups, &tracker).await;
    eprintln!("draining...");
    tracker.drain(Duration::from_secs_f64(args.drain)).await;
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
