//! The README walk-through with the real mosquitto command-line clients: enrol two devices,
//! subscribe with one and publish with the other, over TLS and over the plaintext listener.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use chat_tests::{TestNode, TEST_PASSWORD};
use tokio::process::{Child, Command};

/// True if both clients can be run. When they cannot: fails if `CHATD_REQUIRE_ALL=1`, else
/// prints a skip notice.
fn mosquitto_available() -> bool {
    let found = ["mosquitto_sub", "mosquitto_pub"].iter().all(|bin| {
        std::process::Command::new(bin)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !found {
        assert!(
            std::env::var("CHATD_REQUIRE_ALL").as_deref() != Ok("1"),
            "mosquitto_sub/mosquitto_pub are not installed and CHATD_REQUIRE_ALL=1 \
             (install the mosquitto-clients package)"
        );
        eprintln!("SKIPPED: mosquitto_sub/mosquitto_pub not found (install mosquitto-clients)");
    }
    found
}

/// TLS arguments for a device whose files are `DIR/{device}.crt` and `DIR/{device}.key`.
fn tls_args(dir: &Path, port: u16, device: &str) -> Vec<String> {
    let p = |name: String| dir.join(name).display().to_string();
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "--cafile".into(),
        p("ca.pem".into()),
        "--cert".into(),
        p(format!("{device}.crt")),
        "--key".into(),
        p(format!("{device}.key")),
        "-i".into(),
        device.into(),
    ]
}

fn plain_args(port: u16, user: &str, token: &str, device: &str) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-u",
        user,
        "-P",
        token,
        "-i",
        device,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts `mosquitto_sub ARGS -q 1 -t TOPIC -C 1 -W 10` with its output captured.
fn start_sub(args: &[String], topic: &str) -> Child {
    Command::new("mosquitto_sub")
        .args(args)
        .args(["-q", "1", "-t", topic, "-C", "1", "-W", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning mosquitto_sub")
}

/// Publishes `message` with mosquitto_pub until the subscriber exits (it exits after its first
/// message; until it has subscribed, publishes are not delivered to it), at most 10 s.
/// Returns the subscriber's output.
async fn publish_until_received(
    mut sub: Child,
    pub_args: &[String],
    topic: &str,
    message: &str,
) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_pub = None;
    loop {
        if sub.try_wait().expect("polling mosquitto_sub").is_some() || Instant::now() > deadline {
            break;
        }
        let out = Command::new("mosquitto_pub")
            .args(pub_args)
            .args(["-q", "1", "-t", topic, "-m", message])
            .output()
            .await
            .expect("running mosquitto_pub");
        if !out.status.success() {
            last_pub = Some(out);
        }
        // Polling an external process: give the subscriber a moment to exit.
        if tokio::time::timeout(Duration::from_millis(200), sub.wait())
            .await
            .is_ok()
        {
            break;
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(12), sub.wait_with_output())
        .await
        .expect("mosquitto_sub did not exit")
        .expect("collecting mosquitto_sub's output");
    if let Some(p) = last_pub {
        eprintln!(
            "last failed mosquitto_pub: {} {}",
            String::from_utf8_lossy(&p.stdout),
            String::from_utf8_lossy(&p.stderr)
        );
    }
    out
}

// The README walk-through: alice's laptop subscribes with mosquitto_sub, her phone publishes
// "hello" with mosquitto_pub, the laptop prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walk_through_with_mosquitto() {
    if !mosquitto_available() {
        return;
    }
    let node = TestNode::start().await;
    node.register("alice", TEST_PASSWORD).await;
    let token = node.login("alice", TEST_PASSWORD).await;
    let files = tempfile::tempdir().unwrap();
    for device in ["laptop", "phone"] {
        let e = node.enrol(&token, device).await;
        std::fs::write(files.path().join(format!("{device}.crt")), &e.cert_pem).unwrap();
        std::fs::write(files.path().join(format!("{device}.key")), &e.key_pem).unwrap();
        std::fs::write(files.path().join("ca.pem"), &e.ca_pem).unwrap();
    }
    let port = node.mqtt.port();
    let sub = start_sub(&tls_args(files.path(), port, "laptop"), "/tenants/alice/in");
    let out = publish_until_received(
        sub,
        &tls_args(files.path(), port, "phone"),
        "/tenants/alice/in",
        "hello",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "hello",
        "mosquitto_sub printed {stdout:?}, stderr {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mosquitto_sub: {}", out.status);
    node.stop().await;
}

// mosquitto_sub on another user's topic reports that all subscriptions were denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_foreign_subscription_is_denied() {
    if !mosquitto_available() {
        return;
    }
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("laptop.crt"), &laptop.cert_pem).unwrap();
    std::fs::write(files.path().join("laptop.key"), &laptop.key_pem).unwrap();
    std::fs::write(files.path().join("ca.pem"), &laptop.ca_pem).unwrap();
    let sub = start_sub(
        &tls_args(files.path(), node.mqtt.port(), "laptop"),
        "/tenants/bob/in",
    );
    let out = tokio::time::timeout(Duration::from_secs(15), sub.wait_with_output())
        .await
        .expect("mosquitto_sub did not exit")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("All subscription requests were denied"),
        "mosquitto_sub said {text:?} ({})",
        out.status
    );
    node.stop().await;
}

// The plaintext development listener: username = user, password = session token; a pub/sub round
// trip works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_plaintext_round_trip() {
    if !mosquitto_available() {
        return;
    }
    let node = TestNode::start().await;
    let (token, _) = node.user_with_device("alice", "laptop").await;
    node.enrol(&token, "phone").await;
    let port = node.mqtt_plain.port();
    let sub = start_sub(
        &plain_args(port, "alice", &token, "laptop"),
        "/tenants/alice/in",
    );
    let out = publish_until_received(
        sub,
        &plain_args(port, "alice", &token, "phone"),
        "/tenants/alice/in",
        "hello over plaintext",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "hello over plaintext",
        "stderr {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong token is refused.
    let out = Command::new("mosquitto_pub")
        .args(plain_args(port, "alice", &"0".repeat(64), "phone"))
        .args(["-q", "1", "-t", "/tenants/alice/in", "-m", "x"])
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "mosquitto_pub with a wrong token succeeded"
    );
    node.stop().await;
}
