//! `chat-bench` (built as `chat-bench-under-test`) in short runs: against a real node in chat
//! mode (duration-bound and count-bound with receipts), and in raw mode against mosquitto.
//! Each run must print its summary and one parseable JSON line with sane numbers: messages
//! acknowledged, none lost, none duplicated, latency percentiles in order.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use chat_tests::{bench_binary, TestNode};
use serde_json::Value;
use tokio::process::Command;

/// Runs chat-bench with `args`; returns (exit code, stdout, stderr).
async fn bench(args: &[String]) -> (Option<i32>, String, String) {
    let child = Command::new(bench_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("chat-bench did not finish within 120 s")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a bench that must succeed; returns its JSON report (the last stdout line), after
/// checking what every report must satisfy.
async fn report(args: &[String]) -> Value {
    let (code, stdout, stderr) = bench(args).await;
    assert_eq!(code, Some(0), "chat-bench failed: {stdout}{stderr}");
    assert!(stdout.contains("connect storm"), "no summary: {stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let r: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{last:?}: {e}"));
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(n("acked") > 0, "{r}");
    assert_eq!((n("lost"), n("dup"), n("failed")), (0, 0, 0), "{r}");
    assert!(n("attempted") >= n("acked"), "{r}");
    assert_eq!(r["ack_ms"]["n"], r["acked"], "{r}");
    assert_eq!(r["delivery_ms"]["n"], r["received"], "{r}");
    for which in ["ack_ms", "delivery_ms"] {
        let p = |q: &str| r[which][q].as_f64().unwrap();
        assert!(
            0.0 < p("p50") && p("p50") <= p("p90") && p("p90") <= p("p99"),
            "{which}: {r}"
        );
        assert!(
            p("p99") <= p("p999") && p("p999") <= p("max"),
            "{which}: {r}"
        );
    }
    assert!(r["connect_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["acked_per_s"].as_f64().unwrap() > 0.0, "{r}");
    r
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

// 8 users, 1:1 between random pairs, 16 in flight, for 2 seconds, against a node in this
// process (so --pid is this process): every acknowledged message reaches its recipient once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_mode_short_run_reports_sane_numbers() {
    let node = TestNode::start().await;
    let (mqtt, pid) = (node.mqtt.to_string(), std::process::id().to_string());
    let r = report(&args(&[
        "--server",
        &node.http,
        "--mqtt",
        &mqtt,
        "--users",
        "8",
        "--duration",
        "2",
        "--window",
        "16",
        "--msg-size",
        "200",
        "--pid",
        &pid,
    ]))
    .await;
    assert_eq!(
        (r["mode"].as_str(), r["users"].as_u64()),
        (Some("chat"), Some(8))
    );
    assert_eq!(
        r["received"], r["acked"],
        "1:1: one delivery per message: {r}"
    );
    assert!(r["enrol_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["rss_kib"].as_u64().unwrap() > 0, "{r}");
    assert!(r["rss_peak_kib"].as_u64() >= r["rss_kib"].as_u64(), "{r}");
    node.stop().await;
}

// A count-bound run with receipts and a fixed rate: exactly that many sends, all answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_mode_count_run_with_receipts() {
    let node = TestNode::start().await;
    let mqtt = node.mqtt.to_string();
    let r = report(&args(&[
        "--server",
        &node.http,
        "--mqtt",
        &mqtt,
        "--users",
        "4",
        "--count",
        "60",
        "--rate",
        "200",
        "--receipts",
        "--prefix",
        "rc",
    ]))
    .await;
    assert_eq!(
        (r["attempted"].as_u64(), r["acked"].as_u64()),
        (Some(60), Some(60)),
        "{r}"
    );
    assert_eq!(r["received"].as_u64(), Some(60), "{r}");
    assert_eq!(r["receipts"], true);
    // The same prefix again reuses the accounts (registration answers 409).
    let again = report(&args(&[
        "--server", &node.http, "--mqtt", &mqtt, "--users", "4", "--count", "10", "--prefix", "rc",
    ]))
    .await;
    assert_eq!(again["acked"].as_u64(), Some(10), "{again}");
    node.stop().await;
}

// Raw mode against a bare mosquitto broker on a free port: the same connections and message
// sizes, published straight to the recipient's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mode_against_mosquitto() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n"),
    )
    .unwrap();
    let _broker = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "mosquitto did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = report(&args(&[
        "--raw", "--mqtt", &addr, "--users", "8", "--count", "400", "--window", "32",
    ]))
    .await;
    assert_eq!(r["mode"], "raw");
    assert_eq!(
        (r["acked"].as_u64(), r["received"].as_u64()),
        (Some(400), Some(400)),
        "{r}"
    );
}

// Bad flags are refused with one line before anything connects.
#[tokio::test]
async fn bad_flags_are_refused_clearly() {
    for (flags, says) in [
        (&["--users", "1"][..], "--users must be at least 2"),
        (&["--msg-size", "5"][..], "--msg-size must be between"),
        (
            &["--raw", "--group-size", "3"][..],
            "--group-size is for chat mode only",
        ),
        (&["--rate", "0"][..], "--rate must be a positive number"),
        (&["--prefix", "Bad"][..], "user ids must be"),
    ] {
        let (code, _, stderr) = bench(&args(flags)).await;
        assert_eq!(code, Some(1), "{flags:?}: {stderr}");
        assert!(
            stderr.trim_end().starts_with("chat-bench: ") && stderr.contains(says),
            "{flags:?}: {stderr}"
        );
    }
    let (code, _, stderr) = bench(&args(&["--server", "http://127.0.0.1:1", "--users", "2"])).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot reach the HTTP API"), "{stderr}");
}

/// Whether the mosquitto broker can be run: skipped with a notice when it is missing, a
/// failure when `CHATD_REQUIRE_ALL=1` (CI installs it).
fn mosquitto_available() -> bool {
    let found = std::process::Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CHATD_REQUIRE_ALL").as_deref() != Ok("1"),
            "the mosquitto broker is not installed and CHATD_REQUIRE_ALL=1"
        );
        eprintln!("skipping: the mosquitto broker is not installed (apt-get install mosquitto)");
    }
    found
}
