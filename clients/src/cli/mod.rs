//! The `chat` program: a command-line chat client on the SDK.
//!
//! Entry point: [`main`]. Each subcommand is one function in `commands.rs`; printing of
//! events (with sent / delivered / read ticks) is in `print.rs`. Every failure ends the
//! program with one line on stderr (`chat: ...`) and exit status 1; usage errors exit with 2.

mod commands;
mod print;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The `chat` command line.
#[derive(Debug, Parser)]
#[command(
    name = "chat",
    version,
    about = "Command-line client for a chatd server",
    after_help = "The state file (the device key and certificate, the session token, the last \
                  inbox number and unsent messages) is $CHAT_HOME/state.json, else \
                  ~/.config/chat/state.json, unless --state names another."
)]
pub struct Cli {
    /// HTTP API of the server (default: the one `chat login` used, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "CHAT_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// MQTT broker, host:port (default: the one `chat login` used, else 127.0.0.1:8883).
    #[arg(long, global = true, env = "CHAT_MQTT", value_name = "ADDR")]
    pub mqtt: Option<String>,
    /// The state file of this device.
    #[arg(long, global = true, env = "CHAT_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// An extra CA certificate (PEM) to trust for an HTTPS API.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// How long to wait for the connection and for answers, in seconds.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS")]
    pub wait: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account.
    Register {
        /// The user id: 1-32 characters of a-z and 0-9.
        user: String,
        #[command(flatten)]
        password: Password,
    },
    /// Log in and enrol this machine as a device (a key made here, a certificate from the
    /// server); saves the state file.
    Login {
        /// The user id.
        user: String,
        /// The device id for this machine (default: `cli` and 6 random characters).
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        password: Password,
    },
    /// Show who this device is, its certificate's expiry and unsent messages.
    Whoami,
    /// Send a message to a user (`chat send bob hello`) or a group (`chat send --group g1 hi`).
    Send {
        /// Send to this group instead of a user.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Attach a file (uploaded first).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The msg_id this message answers.
        #[arg(long, value_name = "MSG_ID")]
        reply_to: Option<String>,
        /// The recipient (unless --group) and then the text.
        #[arg(value_name = "USER TEXT", num_args = 0..)]
        words: Vec<String>,
    },
    /// Print incoming events as they arrive, with ticks for your messages: ✓ sent, ✓✓
    /// delivered, ✓✓ read.
    Listen {
        /// One JSON event per line instead of text.
        #[arg(long)]
        json: bool,
        /// Stop after this many incoming messages.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after this many seconds (exit status 1 if --count was not reached).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Do not send `delivered` receipts for incoming messages.
        #[arg(long)]
        no_receipts: bool,
    },
    /// Mark a conversation read up to a seq (`chat read bob 12`, `chat read --group g1 3`).
    Read {
        /// The group, instead of a user.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// The other user (unless --group) and then the seq.
        #[arg(value_name = "USER SEQ", num_args = 1..=2)]
        args: Vec<String>,
    },
    /// Show a conversation's messages, oldest first (over HTTP).
    History {
        /// The other user.
        #[arg(required_unless_present = "group", conflicts_with = "group")]
        user: Option<String>,
        /// A group instead of a user.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// At most this many messages (the newest ones).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only messages before this seq.
        #[arg(long, value_name = "SEQ")]
        before: Option<u64>,
        /// One JSON message per line.
        #[arg(long)]
        json: bool,
    },
    /// Groups: create, add, remove, leave, info.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Upload a file; prints the media reference to attach.
    Upload {
        /// The file.
        file: PathBuf,
        /// Its content type (default: guessed from the extension).
        #[arg(long)]
        mime: Option<String>,
    },
    /// Download a file by media id.
    Download {
        /// The media id (hex SHA-256).
        media_id: String,
        /// Where to write it (default: stdout).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Stop receiving messages from a user.
    Block {
        /// The user.
        user: String,
    },
    /// Receive messages from a user again.
    Unblock {
        /// The user.
        user: String,
    },
}

/// Group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (you are its admin); prints its id.
    Create {
        /// The name.
        name: String,
        /// Initial members besides you.
        members: Vec<String>,
    },
    /// Add members (admins only).
    Add {
        /// The group id.
        group: String,
        /// The users to add.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members (admins only).
    Remove {
        /// The group id.
        group: String,
        /// The users to remove.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// The group id.
        group: String,
    },
    /// Show a group's name and members.
    Info {
        /// The group id.
        group: String,
    },
}

/// Where the password comes from.
#[derive(Debug, Args)]
pub struct Password {
    /// The password (else $CHAT_PASSWORD, else one line read from stdin).
    #[arg(long, env = "CHAT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// Runs the `chat` program with the process's arguments; the exit status to return.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chat: {e:#}");
            ExitCode::FAILURE
        }
    }
}
