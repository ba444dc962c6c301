//! The crash suite in short: `scripts/crash-suite` runs `chat-bench` (1:1 and group traffic,
//! `--verify`) against the real `chatd` binary, SIGKILLs the node three times at random
//! moments and restarts it on the same data directory and addresses. The bench's clients must
//! ride through every restart (they reconnect and retry unanswered sends with the same ids),
//! and the audit afterwards must find every acknowledged message stored exactly once, at the
//! `seq` its `sent` named, with gapless seqs and gapless inboxes. The test runs the very script
//! of the full 20-kill run, so the kill-and-restart loop exists once.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chat_tests::{bench_binary, chatd_binary};
use serde_json::Value;
use tokio::process::Command;

/// The whole run must finish within this (it takes about 20-30 s).
const LIMIT: Duration = Duration::from_secs(110);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/crash-suite")
        .canonicalize()
        .expect("scripts/crash-suite is missing")
}

// Three SIGKILLs 0.5-2 s apart while 12 users send 1:1 and to groups of 4 (half each), 32 in
// flight; then the audit. Everything acknowledged is stored once and in place; the clients
// noticed the restarts (their connections dropped and came back); the node shuts down cleanly
// at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_node_under_chat_bench_loses_and_duplicates_nothing() {
    if !bash_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (chatd, bench) = (chatd_binary(), bench_binary());
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .args(["--kills", "3", "--min-delay", "0.5", "--max-delay", "2"])
        .args(["--users", "12", "--group-size", "4", "--group-share", "0.5"])
        .args(["--window", "32", "--drain", "30"])
        .arg("--chatd")
        .arg(&chatd)
        .arg("--bench")
        .arg(&bench)
        .arg("--work-dir")
        .arg(work.path().join("run"))
        .arg("--keep")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can take chatd and chat-bench down with it.
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    let out = match tokio::time::timeout(LIMIT, child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!(
                "the crash suite did not finish within {LIMIT:?}; bench log:\n{}",
                std::fs::read_to_string(work.path().join("run/bench.err")).unwrap_or_default()
            );
        }
    };
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stderr}{stdout}took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "the crash suite failed");
    for k in 1..=3 {
        assert!(
            stderr.contains(&format!("kill {k}/3 after")),
            "kill {k} missing"
        );
    }
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("crash-suite: 3 kills"))
        .unwrap_or_else(|| panic!("no suite summary in {stdout}"));
    assert!(summary.contains("lost 0, duplicated 0"), "{summary}");

    let last = stdout.lines().last().unwrap_or_default();
    let r: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{last:?}: {e}"));
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    let v = &r["verify"];
    assert!(n(v, "acknowledged") > 0, "{r}");
    assert_eq!(n(v, "acknowledged"), n(&r, "acked"), "{r}");
    assert_eq!(
        (
            n(v, "lost"),
            n(v, "duplicated"),
            n(v, "out_of_order"),
            n(v, "gaps")
        ),
        (0, 0, 0, 0),
        "{r}"
    );
    // Live deliveries too: every recipient got each message once, across the restarts.
    assert_eq!((n(&r, "lost"), n(&r, "dup")), (0, 0), "{r}");
    // Every send was answered in the end, none refused.
    assert_eq!((n(&r, "failed"), n(&r, "unanswered")), (0, 0), "{r}");
    // Both kinds of traffic, and the audit read what it should.
    assert!(
        n(&v["history"], "conversations") > 3,
        "1:1 conversations and the 3 groups: {r}"
    );
    assert_eq!(n(&v["inbox"], "users"), 12, "{r}");
    assert!(
        n(&v["inbox"], "events") >= 2 * n(v, "acknowledged"),
        "a sent and at least one msg per message: {r}"
    );
    // The kills reached the clients: every user's connection dropped and came back at least
    // once (a kill that comes while a client is still waiting to reconnect does not count
    // again, so not necessarily 3 times each).
    assert!(n(&r, "reconnects") >= 12, "{r}");
}

/// Whether bash runs: skipped with a notice when it does not, a failure when
/// `CHATD_REQUIRE_ALL=1`.
fn bash_available() -> bool {
    let found = std::process::Command::new("bash")
        .args(["-c", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CHATD_REQUIRE_ALL").as_deref() != Ok("1"),
            "bash is not installed and CHATD_REQUIRE_ALL=1"
        );
        eprintln!("skipping: bash is not installed");
    }
    found
}
