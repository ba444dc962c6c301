//! The real `chatd` binary: SIGTERM and SIGINT stop it cleanly (exit status 0, connections
//! closed), a restart on the same data directory keeps users and the CA, and a SIGTERM in the
//! middle of traffic loses no message that was answered with `sent`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_tests::chat::{
    account, http_history_all, login, send_windowed, str_of, u64_of, ChatDevice,
};
use chat_tests::{client_tls_config, ChatdProcess, TestClient};

/// Sends `signal`, asserts exit status 0 within 10 s and that `device` saw its connection end.
async fn stop_with(chatd: &mut ChatdProcess, signal: &str, device: &mut TestClient) {
    let started = Instant::now();
    chatd.signal(signal);
    let status = chatd.wait_exit(Duration::from_secs(10)).await;
    let took = started.elapsed();
    let Some(status) = status else {
        panic!(
            "chatd still running 10 s after SIG{signal}; log:\n{}",
            chatd.log_text()
        );
    };
    eprintln!("chatd exited {status} {took:.2?} after SIG{signal}");
    assert!(
        status.success(),
        "exit status {status} after SIG{signal}; log:\n{}",
        chatd.log_text()
    );
    assert!(
        device.wait_disconnected(Duration::from_secs(2)).await,
        "the device did not see its connection close after SIG{signal}"
    );
}

// SIGTERM: exit 0 within 10 s, the connected device is disconnected; a restart on the same
// data dir keeps the user and the CA file (same bytes); then SIGINT stops it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_cleanly_and_state_survives() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut chatd = ChatdProcess::start(&data, &dir.path().join("chatd-1.log")).await;
    let ca_before = std::fs::read(&chatd.ca_path).unwrap();
    assert_eq!(chatd.ca_path, data.join("certs").join("ca.pem"));
    let (_token, laptop) = account(&chatd.http, "alice", "laptop").await;
    assert_eq!(laptop.ca_pem.as_bytes(), ca_before.as_slice());
    let mut device = TestClient::connect_tls_with(chatd.mqtt, laptop.tls_config(), "laptop")
        .await
        .unwrap();
    device.subscribe("/tenants/alice/in").await.unwrap();
    stop_with(&mut chatd, "TERM", &mut device).await;

    // Restart on the same data directory.
    let mut chatd = ChatdProcess::start(&data, &dir.path().join("chatd-2.log")).await;
    assert_eq!(
        std::fs::read(&chatd.ca_path).unwrap(),
        ca_before,
        "CA file changed on restart"
    );
    // Panics unless alice can still log in.
    login(&chatd.http, "alice").await;
    // The certificate issued before the restart still works.
    let tls = client_tls_config(
        &String::from_utf8(ca_before.clone()).unwrap(),
        Some((&laptop.cert_pem, &laptop.key_pem)),
    );
    let mut device = TestClient::connect_tls_with(chatd.mqtt, tls, "laptop")
        .await
        .unwrap();
    device.subscribe("/tenants/alice/in").await.unwrap();
    stop_with(&mut chatd, "INT", &mut device).await;
    assert_eq!(
        std::fs::read(data.join("certs").join("ca.pem")).unwrap(),
        ca_before
    );
}

// SIGTERM while alice sends as fast as she can (64 in flight): chatd exits 0, and after a
// restart on the same data directory every message that got `sent` is in the history exactly
// once, at the seq and with the msg_id its `sent` named; seqs are gapless and no client id is
// stored twice. (Sends that got no `sent` may or may not be stored: the client retries them.)
// The first run logs JSON (`node.log_format = "json"`): every log line is a JSON object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_sends_loses_no_sent_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let json_logs = [("CHATD__NODE__LOG_FORMAT", "json")];
    let log = dir.path().join("chatd-1.log");
    let mut chatd = ChatdProcess::start_with_env(&data, &log, &json_logs).await;
    let (token, alice) = account(&chatd.http, "alice", "laptop").await;
    account(&chatd.http, "bob", "phone").await;
    let mut dev = ChatDevice::connect(chatd.mqtt, &alice).await;
    let ids = (0..100_000).map(|i| format!("t{i}"));
    let (run, ()) = tokio::join!(
        send_windowed(&mut dev, "bob", ids, 64, |id| format!("term {id}")),
        async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            chatd.signal("TERM");
        }
    );
    let status = chatd.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?} after SIGTERM; log:\n{}",
        chatd.log_text()
    );
    let log_text = chatd.log_text();
    for line in log_text.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"].is_object(),
            "{line}"
        );
    }
    for step in ["draining", "store flushed"] {
        assert!(
            log_text.contains(step),
            "no {step:?} in the log:\n{log_text}"
        );
    }
    assert!(
        run.ended.is_some(),
        "the sender did not see the connection end"
    );
    assert!(run.unexpected_sent.is_empty(), "{:?}", run.unexpected_sent);
    assert!(!run.acked.is_empty(), "nothing was answered before SIGTERM");
    drop(dev);

    let chatd = ChatdProcess::start(&data, &dir.path().join("chatd-2.log")).await;
    let http = reqwest::Client::new();
    // The session survives the restart too (sessions are stored).
    let history = http_history_all(&http, &chatd.http, &token, "d.alice.bob").await;
    let mut by_id: HashMap<String, (u64, String)> = HashMap::new();
    for (i, m) in history.iter().enumerate() {
        assert_eq!(u64_of(m, "seq"), i as u64 + 1, "seqs are not gapless");
        let id = str_of(m, "body")
            .strip_prefix("term ")
            .expect("unexpected body")
            .to_owned();
        let entry = (u64_of(m, "seq"), str_of(m, "msg_id").to_owned());
        if let Some(prev) = by_id.insert(id.clone(), entry) {
            panic!(
                "{id} stored twice (seq {} and {})",
                prev.0,
                u64_of(m, "seq")
            );
        }
    }
    for r in &run.acked {
        assert_eq!(
            by_id.get(&r.id),
            Some(&(r.seq, r.msg_id.clone())),
            "{} got sent (seq {}) but is not in the history after restart",
            r.id,
            r.seq
        );
    }
    eprintln!(
        "SIGTERM after {} sent; {} stored in all ({} stored without a sent reaching the client)",
        run.acked.len(),
        history.len(),
        history.len() - run.acked.len()
    );
    let mut chatd = chatd;
    chatd.signal("TERM");
    let status = chatd.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
