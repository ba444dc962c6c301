//! Durability at the edges: no read shows what is not on disk yet, and the store's flush is a
//! power-loss-safe sync that happens before any `sent` leaves the node.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chat_tests::chat::{direct_conv, http_history, ChatDevice};
use chat_tests::{TestNode, WAIT};
use reqwest::StatusCode;
use serde_json::json;

/// A flush hook that holds every flush until [`Gate::release`], then fails it (as if the node
/// had died before the flush): what was held back never reaches the disk through these flushes.
#[derive(Default)]
struct Gate {
    /// (flushes that entered the hook, released)
    state: Mutex<(u64, bool)>,
    changed: Condvar,
}

impl Gate {
    fn hook(self: &Arc<Self>) -> chat_bridge::FlushHook {
        let gate = self.clone();
        Arc::new(move || {
            let mut state = gate.state.lock().unwrap();
            state.0 += 1;
            gate.changed.notify_all();
            while !state.1 {
                state = gate.changed.wait(state).unwrap();
            }
            Err("simulated crash before the flush".to_owned())
        })
    }

    /// Waits (blocking) until `n` flushes have entered the hook.
    fn wait_entered(&self, n: u64) {
        let state = self.state.lock().unwrap();
        let (_state, timeout) = self
            .changed
            .wait_timeout_while(state, WAIT, |s| s.0 < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "no flush reached the hook within {WAIT:?}"
        );
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

// alice's message to bob is applied to the store but its flush is held (and will fail, like a
// crash before it). bob asks for `sync`, MQTT `history` and HTTP history meanwhile: none of them
// may answer with the message, which is not on disk (today's reads answered at once with it,
// so bob would have kept `n = 1` for a message a crash takes back). Each read waits for a flush
// of its own after the read; when the flushes fail, every read is answered `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_answer_with_writes_that_are_not_on_disk() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (bob_token, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    let flusher = node.node().flusher();
    let gate = Arc::new(Gate::default());
    flusher.set_hook(Some(gate.hook()));

    alice.send("held-1", "bob", "not on disk yet").await;
    let waiting = gate.clone();
    tokio::task::spawn_blocking(move || waiting.wait_entered(1))
        .await
        .unwrap();
    let asked_before = flusher.requests();

    let conv = direct_conv("alice", "bob");
    bob.request(&json!({"type": "sync", "req": "s1", "device": "phone", "after": 0}))
        .await;
    bob.request(&json!({"type": "history", "req": "h1", "device": "phone", "conv": conv}))
        .await;
    let http = {
        let (client, base, token, conv) = (
            node.client.clone(),
            node.http.clone(),
            bob_token.clone(),
            conv.clone(),
        );
        tokio::spawn(async move { http_history(&client, &base, Some(&token), &conv, "").await })
    };

    // All three reads are done reading and wait for their flush; nothing was answered.
    let deadline = Instant::now() + WAIT;
    while flusher.requests() < asked_before + 3 {
        if let Some(early) = bob.next(Duration::from_millis(20)).await {
            panic!("bob was answered before the flush: {}", early.event);
        }
        assert!(
            !http.is_finished(),
            "HTTP history answered before the flush"
        );
        assert!(
            Instant::now() < deadline,
            "the reads never asked for a flush ({} asked)",
            flusher.requests() - asked_before
        );
    }
    assert!(
        !http.is_finished(),
        "HTTP history answered before the flush"
    );

    gate.release();
    for req in ["s1", "h1"] {
        let answer = bob
            .wait_for(&format!("answer to {req}"), WAIT, |r| r.event["req"] == req)
            .await;
        assert_eq!(
            (answer.event["type"].as_str(), answer.event["code"].as_str()),
            (Some("error"), Some("unavailable")),
            "{req} answered with what is not on disk: {}",
            answer.event
        );
    }
    let (status, body) = http.await.unwrap();
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "HTTP history: {body}"
    );
    let refused = alice
        .wait_for("alice's unavailable", WAIT, |r| r.event["id"] == "held-1")
        .await;
    assert_eq!(refused.event["code"], "unavailable", "{}", refused.event);

    // Once flushes work again, the same reads answer (the retried send is stored once).
    flusher.set_hook(None);
    alice.send("held-1", "bob", "not on disk yet").await;
    alice
        .wait_for("alice's sent", WAIT, |r| {
            r.event["type"] == "sent" && r.event["id"] == "held-1"
        })
        .await;
    let answer = bob.sync("s2", 0, None).await;
    let bodies: Vec<&str> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["body"].as_str())
        .collect();
    assert_eq!(bodies, ["not on disk yet"]);
    node.stop().await;
}

/// True if `strace` can be run. When it cannot: fails if `CHATD_REQUIRE_ALL=1`, else prints a
/// skip notice.
fn strace_available() -> bool {
    let found = std::process::Command::new("strace")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CHATD_REQUIRE_ALL").as_deref() != Ok("1"),
            "strace is not installed and CHATD_REQUIRE_ALL=1 (install the strace package)"
        );
        eprintln!("SKIPPED: strace not found (install strace)");
    }
    found
}

/// What the system-call trace of one acknowledged send shows.
struct SendTrace {
    /// `fdatasync` calls that returned 0 between reading the request and writing its `sent`.
    fdatasyncs_between: usize,
    /// `sync_file_range` calls that returned 0 in the same window.
    ranges_between: usize,
}

/// Runs the real `chatd` binary with `durability`, attaches `strace -f` to it, sends one message
/// over the plaintext listener (so the payloads are readable in the trace) and reads the trace:
/// which syncs completed after the node read the request and before it wrote the `sent`.
async fn trace_one_send(durability: &str) -> SendTrace {
    use chat_tests::{free_port, ChatdProcess, TestClient};

    let dir = tempfile::tempdir().unwrap();
    let plain = format!("127.0.0.1:{}", free_port());
    let env = [
        ("CHATD__MQTT__PLAINTEXT_LISTEN", plain.as_str()),
        ("CHATD__STORE__DURABILITY", durability),
    ];
    let mut chatd =
        ChatdProcess::start_with_env(&dir.path().join("data"), &dir.path().join("log"), &env).await;
    let http = reqwest::Client::new();
    for user in ["alice", "bob"] {
        let body = json!({"user_id": user, "password": chat_tests::TEST_PASSWORD});
        let resp = http
            .post(format!("{}/v1/users", chatd.http))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let login = json!({"user_id": "alice", "password": chat_tests::TEST_PASSWORD});
    let session: serde_json::Value = http
        .post(format!("{}/v1/sessions", chatd.http))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap();
    // The plaintext listener takes enrolled devices only (the client id is the device id).
    let enrolled = http
        .post(format!("{}/v1/devices", chatd.http))
        .bearer_auth(token)
        .json(&json!({"device_id": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), StatusCode::CREATED);
    let port = plain.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut options = rumqttc::MqttOptions::new("laptop", "127.0.0.1", port);
    options.set_credentials("alice", token);
    let mut alice = TestClient::connect(options, WAIT).await.unwrap();
    alice.subscribe("/tenants/alice/in").await.unwrap();

    let trace = dir.path().join("trace");
    let mut strace = tokio::process::Command::new("strace")
        .args(["-f", "-s", "512", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=fdatasync,fsync,sync_file_range,read,recvfrom,readv,recvmsg,write,writev,sendto,sendmsg",
            "-p",
        ])
        .arg(chatd.child.id().unwrap().to_string())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("running strace");
    // Attached once the node's reading of an HTTP request shows in the trace.
    let deadline = Instant::now() + WAIT;
    loop {
        http.get(format!("{}/healthz?attached", chatd.http))
            .send()
            .await
            .unwrap();
        if std::fs::read_to_string(&trace).is_ok_and(|t| t.contains("healthz?attached")) {
            break;
        }
        assert!(Instant::now() < deadline, "strace did not attach");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let request = json!({"type": "send", "id": "probe-7f3a", "to": "bob", "body": "durable?"});
    alice
        .publish("/tenants/alice/out", &request.to_string())
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, payload) = alice
            .next_publish(WAIT)
            .await
            .expect("no answer to the send");
        if payload.contains("probe-7f3a") {
            assert!(payload.contains("\"sent\""), "not sent: {payload}");
            break;
        }
        assert!(Instant::now() < deadline, "no sent");
    }
    // Detach (SIGINT) and let strace write the rest of its output.
    let pid = strace.id().unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(WAIT, strace.wait())
        .await
        .unwrap()
        .unwrap();
    chatd.signal("TERM");
    chatd.wait_exit(WAIT).await;

    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let is_read = |l: &str| {
        ["read(", "recvfrom(", "readv(", "recvmsg("]
            .iter()
            .any(|c| l.contains(c))
    };
    let is_write = |l: &str| {
        ["write(", "writev(", "sendto(", "sendmsg("]
            .iter()
            .any(|c| l.contains(c))
    };
    let got = lines
        .iter()
        .position(|l| is_read(l) && l.contains("probe-7f3a"))
        .unwrap_or_else(|| panic!("the request is not in the trace:\n{text}"));
    let answered = lines
        .iter()
        .position(|l| is_write(l) && l.contains("probe-7f3a") && l.contains("sent"))
        .unwrap_or_else(|| panic!("the sent is not in the trace:\n{text}"));
    assert!(got < answered, "sent written before the request was read?");
    // A completed call: `fdatasync(9) = 0` or `<... fdatasync resumed>) = 0`.
    let completed = |l: &&&str, call: &str| l.contains(call) && l.trim_end().ends_with("= 0");
    let window = &lines[got..answered];
    SendTrace {
        fdatasyncs_between: window.iter().filter(|l| completed(l, "fdatasync")).count(),
        ranges_between: window
            .iter()
            .filter(|l| completed(l, "sync_file_range"))
            .count(),
    }
}

// The default (`store.durability = "power_loss"`): between reading a send and writing its
// `sent`, the node completes an fdatasync of the store (today it only called sync_file_range,
// which neither flushes the disk's write cache nor the file's metadata). With
// `process_crash`, the old behaviour: sync_file_range and no fdatasync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_follows_an_fdatasync_of_the_store() {
    if !strace_available() {
        return;
    }
    let power = trace_one_send("power_loss").await;
    assert!(
        power.fdatasyncs_between >= 1,
        "no fdatasync completed before the sent went out"
    );
    let crash = trace_one_send("process_crash").await;
    assert_eq!(crash.fdatasyncs_between, 0, "process_crash synced data");
    assert!(
        crash.ranges_between >= 1,
        "process_crash did not sync the range"
    );
}
