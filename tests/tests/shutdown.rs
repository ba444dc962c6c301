//! The real `chatd` binary: SIGTERM and SIGINT stop it cleanly (exit status 0, connections
//! closed), and a restart on the same data directory keeps users and the CA.

use std::time::{Duration, Instant};

use chat_tests::chat::{account, login};
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
