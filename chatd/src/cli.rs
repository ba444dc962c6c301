//! The `chatd` command line: `chatd [serve]` runs a node until SIGINT/SIGTERM, `chatd config`
//! prints the effective settings, `chatd fill` writes messages for benchmarks
//! ([`crate::fill`]). After a storage failure that has cleared (disk full, then space freed)
//! `serve` re-executes the program on the same addresses to reopen the store. Kept in the
//! library so that the end-to-end tests can build the very same program as a binary of their
//! own.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Config, Node, Overrides};
use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "chatd",
    version,
    about = "A WhatsApp-class chat node: MQTT over TLS for devices, an HTTP API for accounts and enrolment, durable storage in sled.",
    after_long_help = concat!("Settings (TOML file, CHATD__SECTION__KEY variables, or the flags above):\n\n", include_str!("../../chatd.example.toml"))
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (see the settings below).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (node.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API listen address (http.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    http: Option<String>,
    /// MQTT-over-TLS listen address (mqtt.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    mqtt: Option<String>,
    /// Enable the plaintext MQTT development listener on ADDR (mqtt.plaintext_listen).
    #[arg(long, global = true, value_name = "ADDR")]
    mqtt_plaintext: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (the default).
    Serve,
    /// Print the effective configuration as TOML and exit.
    Config,
    /// Write N 1:1 messages into the data directory, as the node stores them (for
    /// benchmarks: disk use per message, restart time). The node must not be running. Prints
    /// one JSON line.
    Fill(FillArgs),
}

/// `chatd fill` flags.
#[derive(clap::Args)]
struct FillArgs {
    /// Messages to add.
    #[arg(long, value_name = "N")]
    messages: u64,
    /// Users (PREFIX0 .. PREFIX{U-1}), created if missing.
    #[arg(long, default_value_t = 10_000, value_name = "U")]
    users: u32,
    /// 1:1 conversations (fixed pairs of users; default 5 per user).
    #[arg(long, value_name = "C")]
    convs: Option<u32>,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    body_size: usize,
    /// User id prefix.
    #[arg(long, default_value = "f")]
    prefix: String,
    /// Password of the users.
    #[arg(long, default_value = "fill-password-1")]
    password: String,
    /// Seed of the random choices (conversation, sender, words).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Parses the command line and runs `chatd`: what the `chatd` binary's `main` does.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        http: cli.http.clone(),
        mqtt: cli.mqtt.clone(),
        mqtt_plaintext: cli.mqtt_plaintext.clone(),
    };
    let config = match Config::load(cli.config.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatd: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Command::Fill(args) => run_fill(&config, &args),
        Command::Serve => {
            init_logging(&config);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("chatd: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config, cli.config)) {
                Ok(Ended::Stopped) => ExitCode::SUCCESS,
                Ok(Ended::Restart(args)) => restart(args),
                Err(e) => {
                    eprintln!("chatd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `chatd fill`: opens the store the node would open and fills it; prints one JSON line.
fn run_fill(config: &Config, args: &FillArgs) -> ExitCode {
    let opts = crate::fill::FillOptions {
        messages: args.messages,
        users: args.users,
        convs: args
            .convs
            .unwrap_or_else(|| args.users.saturating_mul(5).max(1)),
        body_size: args.body_size,
        prefix: args.prefix.clone(),
        password: args.password.clone(),
        seed: args.seed,
        node_id: config.node.node_id,
    };
    let db = config.node.data_dir.join("db");
    let result = std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("creating {}", config.node.data_dir.display()))
        .and_then(|()| {
            chat_store::Store::open(&db, &config.store)
                .with_context(|| format!("opening the store in {}", db.display()))
        })
        .and_then(|store| {
            let report = crate::fill::fill(&store, &opts)?;
            drop(store);
            Ok(report)
        });
    match result {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatd fill: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.node.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.node.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// How [`serve`] ended.
enum Ended {
    /// Stopped by a signal, after a clean shutdown.
    Stopped,
    /// The store failed and the disk takes writes again: run again with these arguments.
    Restart(Vec<std::ffi::OsString>),
}

async fn serve(config: Config, config_file: Option<PathBuf>) -> anyhow::Result<Ended> {
    let node = Node::start(config).await.context("starting the node")?;
    print_banner(&node);
    tokio::select! {
        r = wait_for_signal() => r?,
        () = node.storage_recovered() => return Ok(Ended::Restart(restart_args(&node, config_file))),
    }
    node.shutdown().await.context("shutting down")?;
    Ok(Ended::Stopped)
}

/// The arguments that start this node again as it runs now: the same configuration file and
/// data directory, and the addresses it actually listens on (so a port chosen by the system
/// with port 0 stays the same). The environment is inherited as it is.
fn restart_args(node: &Node, config_file: Option<PathBuf>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["serve".into()];
    if let Some(file) = config_file {
        args.extend(["--config".into(), file.into_os_string()]);
    }
    args.extend([
        "--data-dir".into(),
        node.config().node.data_dir.clone().into_os_string(),
        "--http".into(),
        node.http_addr().to_string().into(),
        "--mqtt".into(),
        node.mqtt_addr().to_string().into(),
    ]);
    if let Some(plain) = node.mqtt_plaintext_addr() {
        args.extend(["--mqtt-plaintext".into(), plain.to_string().into()]);
    }
    args
}

/// Replaces this process with a fresh `chatd` (same pid, stdout and stderr; every other file
/// and socket is closed on exec, which releases the store's lock and the listening ports).
/// Returns only if that fails: exit code 75 (EX_TEMPFAIL) tells a supervisor to start it again.
#[cfg(unix)]
fn restart(args: Vec<std::ffi::OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).args(&args).exec(),
        Err(e) => e,
    };
    eprintln!("chatd: cannot restart after the storage failure: {error}");
    ExitCode::from(75)
}

#[cfg(not(unix))]
fn restart(_args: Vec<std::ffi::OsString>) -> ExitCode {
    eprintln!("chatd: the storage failed; exiting so that a supervisor restarts the node");
    ExitCode::from(75)
}

fn print_banner(node: &Node) {
    let scheme = if node.http_is_tls() { "https" } else { "http" };
    let http = format!("{scheme}://{}", node.http_addr());
    let mqtt = node.mqtt_addr();
    let ca = node.ca_path();
    println!("chatd {} is running", env!("CARGO_PKG_VERSION"));
    println!("  data dir     {}", node.config().node.data_dir.display());
    println!("  HTTP API     {http}");
    println!("  MQTT (TLS)   {mqtt}   CA certificate: {}", ca.display());
    if let Some(plain) = node.mqtt_plaintext_addr() {
        println!("  MQTT (plain) {plain}   UNENCRYPTED: development only");
    }
    if node.config().admin.enabled() {
        println!("  Dashboard    {http}/dashboard   (log in with admin.token)");
    }
    println!();
    println!("Try it:");
    println!("  curl -s -XPOST {http}/v1/users -d '{{\"user_id\":\"alice\",\"password\":\"wonderland\"}}' -H 'content-type: application/json'");
    println!("  TOKEN=$(curl -s -XPOST {http}/v1/sessions -d '{{\"user_id\":\"alice\",\"password\":\"wonderland\"}}' -H 'content-type: application/json' | sed 's/.*\"token\":\"\\([0-9a-f]*\\)\".*/\\1/')");
    println!("  curl -s -XPOST {http}/v1/devices -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"device_id\":\"laptop\"}}' > laptop.json");
    println!("  (save cert_pem and key_pem from laptop.json, then)");
    println!("  mosquitto_sub -h {} -p {} --cafile {} --cert laptop.crt --key laptop.key -i laptop -q 1 -t /tenants/alice/in -v", mqtt.ip(), mqtt.port(), ca.display());
    println!("The README has the whole walk-through. Stop with Ctrl-C.");
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
