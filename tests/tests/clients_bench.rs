//! `chat-bench` (built as `chat-bench-under-test`) in short runs: against a real node in chat
//! mode (duration-bound and count-bound with receipts), and in raw mode against mosquitto.
//! Each run must print its summary and one parseable JSON line with sane numbers: messages
//! acknowledged, none lost, none duplicated, latency percentiles in order. The benchmark modes
//! of issue 8 too: `--hold` with several devices per user (every device a real TLS connection
//! the node counts, memory per connection reported) and `--sync-backlog` (an offline device
//! catches up with every message, in the expected number of pages), and the early refusal
//! when the open-files limit is too low for the connections asked for.

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

/// Runs a bench that must succeed; returns its JSON report (the last stdout line) and the
/// summary.
async fn run_ok(args: &[String]) -> (Value, String) {
    let (code, stdout, stderr) = bench(args).await;
    assert_eq!(code, Some(0), "chat-bench failed: {stdout}{stderr}");
    assert!(stdout.contains("connect storm"), "no summary: {stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let r: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{last:?}: {e}"));
    (r, stdout)
}

/// Runs a bench that must succeed; returns its JSON report (the last stdout line), after
/// checking what every report with a workload must satisfy.
async fn report(args: &[String]) -> Value {
    let (r, _) = run_ok(args).await;
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
        (&["--hold", "5"][..], "--hold needs --pid"),
        (
            &["--devices-per-user", "0"][..],
            "--devices-per-user must be between",
        ),
        (
            &["--sync-backlog", "10", "--raw"][..],
            "--sync-backlog is for chat mode",
        ),
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

// 10 users with 2 devices each, held idle for 2 s: the node counts 20 MQTT connections (each
// device enrolled with its own certificate), the report has memory before and during the hold
// and a per-connection figure, all 20 are still online at the end, and no workload ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_reports_memory_per_connection_of_every_device() {
    let node = TestNode::start().await;
    let (mqtt, pid) = (node.mqtt.to_string(), std::process::id().to_string());
    let flags = args(&[
        "--server",
        &node.http,
        "--mqtt",
        &mqtt,
        "--users",
        "10",
        "--devices-per-user",
        "2",
        "--hold",
        "2",
        "--pid",
        &pid,
    ]);
    let running = tokio::spawn(async move { run_ok(&flags).await });
    // While it holds, the node sees every device's connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut most = 0.0_f64;
    while !running.is_finished() && std::time::Instant::now() < deadline {
        let scrape = node.metrics().await;
        most = most.max(scrape.get("chatd_mqtt_connections", &[]).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (r, summary) = running.await.unwrap();
    assert_eq!(most, 20.0, "connections the node held: {r}");
    assert!(
        summary.contains("idle hold") && summary.contains("per connection"),
        "{summary}"
    );
    assert_eq!(
        (r["users"].as_u64(), r["connections"].as_u64()),
        (Some(10), Some(20)),
        "{r}"
    );
    assert_eq!(
        r["attempted"].as_u64(),
        Some(0),
        "no workload after --hold: {r}"
    );
    let h = &r["hold"];
    assert_eq!(
        (h["connections"].as_u64(), h["online_at_end"].as_u64()),
        (Some(20), Some(20)),
        "{r}"
    );
    let kib = |k: &str| h[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(
        kib("rss_before_kib") > 1024 && kib("rss_held_kib") > 1024,
        "{r}"
    );
    assert!(kib("rss_held_max_kib") >= kib("rss_held_kib"), "{r}");
    let per_conn = h["rss_per_conn_kib"].as_f64().unwrap();
    let expected = (kib("rss_held_kib") as f64 - kib("rss_before_kib") as f64) / 20.0;
    assert!(
        (per_conn - expected).abs() < 0.01,
        "{per_conn} vs {expected}: {r}"
    );
    assert!(h["bench_rss_kib"].as_u64().unwrap() > 0, "{r}");
    node.stop().await;
}

// 200 messages to an offline reader, synced in pages of 50: all 200 arrive once, in 4 pages,
// with the times in order (subscribed, first, last) and every send acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_backlog_reports_the_catch_up() {
    let node = TestNode::start().await;
    let mqtt = node.mqtt.to_string();
    let (r, summary) = run_ok(&args(&[
        "--server",
        &node.http,
        "--mqtt",
        &mqtt,
        "--sync-backlog",
        "200",
        "--sync-page",
        "50",
        "--window",
        "32",
    ]))
    .await;
    assert!(summary.contains("sync pages"), "{summary}");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!(
        (n("attempted"), n("acked"), n("received")),
        (200, 200, 200),
        "{r}"
    );
    assert_eq!((n("lost"), n("dup"), n("failed")), (0, 0, 0), "{r}");
    let s = &r["sync"];
    assert_eq!(
        (s["backlog"].as_u64(), s["received"].as_u64()),
        (Some(200), Some(200)),
        "{r}"
    );
    assert_eq!(
        (s["page"].as_u64(), s["pages"].as_u64()),
        (Some(50), Some(4)),
        "{r}"
    );
    assert_eq!(s["page_ms"]["n"].as_u64(), Some(4), "{r}");
    let ms = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(
        0.0 < ms("connect_ms") && ms("connect_ms") <= ms("first_ms"),
        "{r}"
    );
    assert!(
        ms("first_ms") <= ms("sync_ms") && ms("sync_ms") < 60_000.0,
        "{r}"
    );
    assert!(
        ms("online_ms") > ms("connect_ms") && ms("msgs_per_s") > 0.0,
        "{r}"
    );
    assert!(
        s["page_ms"]["max"].as_f64().unwrap() <= ms("sync_ms"),
        "{r}"
    );
    node.stop().await;
}

// Asking for more connections than `ulimit -n` allows fails at once, saying what to do,
// before any enrolment.
#[tokio::test]
async fn too_many_connections_for_the_open_files_limit_are_refused() {
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" --users 300 --server http://127.0.0.1:1"#)
        .arg(bench_binary())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("may open 256") && stderr.contains("ulimit -n"),
        "{stderr}"
    );
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
