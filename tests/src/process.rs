//! The real `chatd` binary as a child process: start it on free ports, read the ports from its
//! banner, signal it, wait for its exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `chatd` program to run: `CHATD_BIN` if set, else `chatd-under-test`, this package's
/// build of the `chatd` command line, which cargo builds fresh (in `target/PROFILE/`) before it
/// runs the integration tests.
pub fn chatd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CHATD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable not in target/PROFILE/deps");
    let bin = dir.join(format!("chatd-under-test{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the suites with `cargo test -p chat-tests`, which builds it",
        bin.display()
    );
    bin
}

/// The `chat-bench` program built by this package as `chat-bench-under-test` (like
/// [`chatd_binary`], fresh in `target/PROFILE/` before the integration tests run).
pub fn bench_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable not in target/PROFILE/deps");
    let bin = dir.join(format!(
        "chat-bench-under-test{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// A running `chatd` child (killed when dropped).
pub struct ChatdProcess {
    pub child: Child,
    /// Base URL of the HTTP API from the banner.
    pub http: String,
    /// The MQTT-over-TLS address from the banner.
    pub mqtt: SocketAddr,
    /// The CA certificate path from the banner.
    pub ca_path: PathBuf,
    /// Where the child's stderr (its log) goes.
    pub log: PathBuf,
}

impl ChatdProcess {
    /// Runs `chatd --data-dir DATA --http 127.0.0.1:0 --mqtt 127.0.0.1:0` with cheap password
    /// hashing, its log going to `log`, and reads the listening addresses from the banner
    /// (within 30 s).
    pub async fn start(data_dir: &Path, log: &Path) -> ChatdProcess {
        ChatdProcess::start_with_env(data_dir, log, &[]).await
    }

    /// [`ChatdProcess::start`] with extra environment variables (e.g.
    /// `CHATD__NODE__LOG_FORMAT=json`), set after the defaults so they can override them.
    pub async fn start_with_env(data_dir: &Path, log: &Path, env: &[(&str, &str)]) -> ChatdProcess {
        let log_file = std::fs::File::create(log).expect("creating the log file");
        let mut child = Command::new(chatd_binary())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
            .env("CHATD__STORE__PASSWORD_MEMORY_KIB", "256")
            .env("CHATD__STORE__PASSWORD_ITERATIONS", "1")
            .env("CHATD__LIMITS__REQUESTS_PER_SEC", "0")
            .env("CHATD__LIMITS__SENDS_PER_SEC", "0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("spawning chatd");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut http, mut mqtt) = (None, None);
        let read_banner = async {
            while let Some(line) = lines.next_line().await.expect("reading chatd's stdout") {
                if let Some(rest) = line.trim_start().strip_prefix("HTTP API") {
                    http = Some(rest.trim().to_owned());
                } else if let Some(rest) = line.trim_start().strip_prefix("MQTT (TLS)") {
                    let (addr, ca) = rest
                        .split_once("CA certificate:")
                        .unwrap_or_else(|| panic!("unexpected banner line {line:?}"));
                    let addr: SocketAddr = addr
                        .trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("bad MQTT address in {line:?}: {e}"));
                    mqtt = Some((addr, PathBuf::from(ca.trim())));
                }
                if http.is_some() && mqtt.is_some() {
                    return;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), read_banner)
            .await
            .is_err()
        {
            panic!(
                "chatd printed no banner within 30 s; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let (Some(http), Some((mqtt, ca_path))) = (http, mqtt) else {
            panic!(
                "chatd exited before printing its banner; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        // Keep draining stdout so the child can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ChatdProcess {
            child,
            http,
            mqtt,
            ca_path,
            log: log.to_path_buf(),
        }
    }

    /// Sends a signal with `kill -SIG PID` (e.g. `"TERM"`, `"INT"`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("chatd already reaped");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits up to `wait` for the child to exit.
    pub async fn wait_exit(&mut self, wait: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(wait, self.child.wait())
            .await
            .ok()
            .map(|r| r.expect("waiting for chatd"))
    }

    /// The child's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
