//! The `chat` command-line client end to end: the real program (built as `chat-under-test`)
//! against a real node: register, login (enrolment with a local key), whoami, send, listen
//! (with sent and delivered/read ticks), read, history; and a clear one-line message with a
//! non-zero exit status for every failure.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chat_tests::{TestNode, TEST_PASSWORD};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `target/PROFILE/chat-under-test`, which cargo builds with this package's tests.
fn chat_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(format!("chat-under-test{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Asserts success and returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "chat failed ({}): {}{}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts a failure reported as one `chat: ...` line containing `needle`.
    #[track_caller]
    fn fails_with(&self, needle: &str) {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit status 1; stdout {:?} stderr {:?}",
            self.stdout,
            self.stderr
        );
        let line = self.stderr.trim_end();
        assert!(
            line.starts_with("chat: ") && !line.contains('\n'),
            "not one clear line: {line:?}"
        );
        assert!(line.contains(needle), "{line:?} does not say {needle:?}");
        assert!(!line.contains("panicked"), "{line}");
    }
}

/// A `chat` command for a node and a state file, with nothing from the environment.
fn command(http: &str, mqtt: &str, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(chat_binary());
    c.args(["--server", http, "--mqtt", mqtt, "--state"])
        .arg(state);
    if !args.contains(&"--wait") {
        c.args(["--wait", "5"]);
    }
    c.args(args)
        .env_remove("CHAT_SERVER")
        .env_remove("CHAT_MQTT")
        .env_remove("CHAT_STATE")
        .env_remove("CHAT_PASSWORD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn finish(child: Child) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("chat did not finish within 30 s")
        .unwrap();
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn run(http: &str, mqtt: &str, state: &Path, args: &[&str]) -> Output {
    finish(command(http, mqtt, state, args).spawn().unwrap()).await
}

struct Cli {
    node: TestNode,
    dir: tempfile::TempDir,
}

impl Cli {
    async fn new() -> Cli {
        Cli {
            node: TestNode::start().await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self, user: &str) -> PathBuf {
        self.dir.path().join(format!("{user}.json"))
    }

    async fn chat(&self, user: &str, args: &[&str]) -> Output {
        let mqtt = self.node.mqtt.to_string();
        run(&self.node.http, &mqtt, &self.state(user), args).await
    }

    /// Registers `user` and logs in as `device`.
    async fn account(&self, user: &str, device: &str) {
        let out = self
            .chat(user, &["register", user, "--password", TEST_PASSWORD])
            .await;
        assert!(out.ok().contains(&format!("registered {user}")));
        let args = [
            "login",
            user,
            "--device",
            device,
            "--password",
            TEST_PASSWORD,
        ];
        let out = self.chat(user, &args).await;
        assert!(
            out.ok()
                .contains(&format!("logged in as {user}, device {device}")),
            "{}",
            out.stdout
        );
    }

    /// Starts `chat listen` for `user` and waits until it says it is listening (online).
    async fn listen(&self, user: &str, args: &[&str]) -> Child {
        let mqtt = self.node.mqtt.to_string();
        let mut all = vec!["listen"];
        all.extend_from_slice(args);
        let mut child = command(&self.node.http, &mqtt, &self.state(user), &all)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .expect("chat listen did not start")
            .unwrap()
            .unwrap_or_default();
        assert!(first.starts_with("listening as"), "{first}");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        child
    }
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

// The whole walk-through: two users enrol with the CLI; bob listens while alice sends two
// messages (alice sees ✓ sent with the seq); bob's listener prints both and acknowledges them
// (delivered receipts), which alice's listener shows as ✓✓ ticks; bob marks them read, and
// alice's next listen shows only that new receipt (the last inbox number was saved); history
// shows the conversation oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_send_listen_read_history() {
    let cli = Cli::new().await;
    cli.account("alice", "laptop").await;
    cli.account("bob", "phone").await;
    let who = cli.chat("alice", &["whoami"]).await;
    let who = who.ok();
    assert!(
        who.contains("user      alice") && who.contains("device    laptop"),
        "{who}"
    );
    assert!(who.contains("0 unsent"), "{who}");

    let listener = cli
        .listen("bob", &["--json", "--count", "2", "--timeout", "20"])
        .await;
    let first = cli.chat("alice", &["send", "bob", "hello", "bob"]).await;
    assert!(
        first.ok().contains("✓ sent d.alice.bob #1"),
        "{}",
        first.stdout
    );
    let second = cli.chat("alice", &["send", "bob", "again"]).await;
    assert!(
        second.ok().contains("✓ sent d.alice.bob #2"),
        "{}",
        second.stdout
    );

    let heard = finish(listener).await;
    let events = json_lines(heard.ok());
    let msgs: Vec<(&str, &str, u64)> = events
        .iter()
        .filter(|e| e["type"] == "msg")
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["body"].as_str().unwrap(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(msgs, [("msg", "hello bob", 1), ("msg", "again", 2)]);

    // Alice catches up: her sent messages (✓) and bob's delivered receipts (✓✓).
    let out = cli.chat("alice", &["listen", "--timeout", "2"]).await;
    let text = out.ok();
    assert!(text.contains("you -> bob #1: hello bob ✓"), "{text}");
    assert!(text.contains("you -> bob #2: again ✓"), "{text}");
    assert!(
        text.contains("d.alice.bob up to #2 ✓✓ delivered to bob"),
        "{text}"
    );

    let read = cli.chat("bob", &["read", "alice", "2"]).await;
    assert!(read.ok().contains("marked d.alice.bob read up to #2"));
    let out = cli
        .chat("alice", &["listen", "--json", "--timeout", "2"])
        .await;
    let events = json_lines(out.ok());
    assert_eq!(events.len(), 1, "only the new event: {events:?}");
    assert_eq!(
        (
            &events[0]["type"],
            &events[0]["by"],
            &events[0]["status"],
            &events[0]["seq"]
        ),
        (&"receipt".into(), &"bob".into(), &"read".into(), &2.into())
    );

    let history = cli.chat("alice", &["history", "bob"]).await;
    let lines: Vec<&str> = history.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("#1 ") && lines[0].ends_with(" you: hello bob"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("#2 ") && lines[1].ends_with(" you: again"),
        "{lines:?}"
    );
    let history = cli
        .chat("bob", &["history", "alice", "--json", "--limit", "1"])
        .await;
    let page = json_lines(history.ok());
    assert_eq!(page.len(), 1);
    assert_eq!(
        (&page[0]["from"], &page[0]["seq"]),
        (&"alice".into(), &2.into())
    );
    cli.node.stop().await;
}

// Every failure is one `chat: ...` line with exit status 1 that says what is wrong: not
// logged in, invalid ids, a taken user id, a wrong password, an unreachable API or broker, a
// refused send, nothing to send, a bad seq, a corrupt state file. Usage errors exit with 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_one_clear_line() {
    let cli = Cli::new().await;
    cli.chat("nobody", &["send", "bob", "hi"])
        .await
        .fails_with("not logged in");
    cli.chat("x", &["register", "Alice!", "--password", TEST_PASSWORD])
        .await
        .fails_with("user id \"Alice!\" is not valid");
    cli.account("alice", "laptop").await;
    cli.account("bob", "phone").await;
    cli.chat("x", &["register", "alice", "--password", TEST_PASSWORD])
        .await
        .fails_with("(conflict, HTTP 409)");
    cli.chat("x", &["login", "alice", "--password", "wrong password"])
        .await
        .fails_with("(unauthorized, HTTP 401)");
    let dead = format!("127.0.0.1:{}", chat_tests::free_port());
    let state = cli.state("alice");
    run("http://127.0.0.1:1", &dead, &state, &["history", "bob"])
        .await
        .fails_with("cannot reach the HTTP API at http://127.0.0.1:1");
    run(
        "localhost:8080",
        &dead,
        &state,
        &["register", "x", "--password", "p"],
    )
    .await
    .fails_with("must start with http:// or https://");
    let started = std::time::Instant::now();
    run(
        &cli.node.http,
        &dead,
        &state,
        &["--wait", "2", "send", "bob", "hi"],
    )
    .await
    .fails_with("cannot connect to the MQTT broker");
    assert!(started.elapsed() < Duration::from_secs(10));
    cli.chat("alice", &["send", "nobody", "hi"])
        .await
        .fails_with("the server refused the send");
    cli.chat("alice", &["send", "bob"])
        .await
        .fails_with("nothing to send");
    cli.chat("alice", &["send", "alice", "to myself"])
        .await
        .fails_with("bad_request");
    cli.chat("alice", &["read", "bob", "twelve"])
        .await
        .fails_with("\"twelve\" is not a seq");
    cli.chat("alice", &["history", "Bob"])
        .await
        .fails_with("history: not a conversation id");
    cli.chat("alice", &["download", "not-hex"])
        .await
        .fails_with("is not a hex SHA-256");
    std::fs::write(cli.state("broken"), "{not json").unwrap();
    cli.chat("broken", &["whoami"])
        .await
        .fails_with("not a chat state file");
    let usage = cli.chat("alice", &["frobnicate"]).await;
    assert_eq!(usage.status.code(), Some(2), "{}", usage.stderr);
    // Nothing above left a message in the outbox.
    assert!(cli
        .chat("alice", &["whoami"])
        .await
        .ok()
        .contains("0 unsent"));
    cli.node.stop().await;
}

// Groups and uploads from the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_media_from_the_command_line() {
    let cli = Cli::new().await;
    cli.account("alice", "laptop").await;
    cli.account("bob", "phone").await;
    let created = cli.chat("alice", &["group", "create", "team", "bob"]).await;
    let group = created.ok().trim().to_owned();
    let info = cli.chat("alice", &["group", "info", &group]).await;
    let info = info.ok();
    assert!(info.contains("team") && info.contains("bob"), "{info}");
    let sent = cli
        .chat("alice", &["send", "--group", &group, "hi team"])
        .await;
    // seq 1 of a group is its creation.
    assert!(sent.ok().contains(&format!("✓ sent g.{group} #2")));
    cli.chat("bob", &["group", "add", &group, "alice"])
        .await
        .fails_with("forbidden");
    let file = cli.dir.path().join("note.txt");
    std::fs::write(&file, "hello file").unwrap();
    let uploaded = cli.chat("alice", &["upload", file.to_str().unwrap()]).await;
    let media: Value = serde_json::from_str(uploaded.ok().trim()).unwrap();
    assert_eq!(media["size"], 10);
    assert_eq!(media["mime"], "text/plain");
    cli.node.stop().await;
}
