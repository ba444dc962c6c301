//! The dashboard in a real browser: headless Chromium (the distribution's `chromium` and
//! `chromium-driver` packages) driven over WebDriver logs in with the admin token, watches the
//! live figures change while a client sends messages, looks a user up and revokes a device,
//! and saves a screenshot under `target/test-output/`.
//!
//! Without Chromium the test prints a skip notice, unless `CHATD_REQUIRE_ALL=1` (CI), which
//! turns the skip into a failure.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_tests::chat::{send_windowed, ChatDevice};
use chat_tests::{Browser, BrowserError, TestClient, TestNode, TEST_ADMIN_TOKEN};

/// How long the page may take to show something (it polls every second).
const PAGE_WAIT: Duration = Duration::from_secs(15);

/// `target/test-output/` (next to the `debug`/`release` directory the test runs from).
fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("test-output"))
        .expect("test executable not in target/PROFILE/deps")
}

fn number(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

// Log in with the admin token; the connection count shows the three connected devices; while
// alice sends messages to bob in small bursts, "messages stored" is seen to grow at least
// twice and messages per second to go above 0; a lookup of bob shows his two devices
// connected; revoking the tablet (two clicks) shows it revoked and closes its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_figures_and_revokes_a_device() {
    let browser = match Browser::start().await {
        Ok(b) => b,
        Err(BrowserError::Missing(what)) => {
            assert!(
                std::env::var("CHATD_REQUIRE_ALL").as_deref() != Ok("1"),
                "{what} is not installed and CHATD_REQUIRE_ALL=1 \
                 (install the chromium and chromium-driver packages)"
            );
            eprintln!("SKIPPED: {what} not found (install chromium and chromium-driver)");
            return;
        }
        Err(e) => panic!("starting headless Chromium failed: {e}"),
    };
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (bob_token, bob_e) = node.user_with_device("bob", "phone").await;
    let tablet_e = node.enrol(&bob_token, "tablet").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let _bob = ChatDevice::connect_node(&node, &bob_e).await;
    let mut tablet = TestClient::connect_tls(&node, &tablet_e, "tablet")
        .await
        .unwrap();
    tablet.subscribe("/tenants/bob/in").await.unwrap();

    browser.goto(&node.url("/dashboard")).await.unwrap();
    browser.type_into("#token", TEST_ADMIN_TOKEN).await.unwrap();
    browser.click("#login-button").await.unwrap();
    browser
        .wait_text("#connections", PAGE_WAIT, |t| t == "3")
        .await
        .expect("the dashboard shows the three connections");
    browser
        .wait_text("#online-users", PAGE_WAIT, |t| t == "2")
        .await
        .unwrap();

    // alice sends in bursts of 10 every 150 ms until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut sent = 0usize;
            for burst in 0..200 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ids = (0..10).map(|i| format!("b{burst}-{i}"));
                let run = send_windowed(&mut alice, "bob", ids, 10, |id| format!("hi {id}")).await;
                assert_eq!(run.acked.len(), 10, "a burst was not answered");
                sent += 10;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            sent
        }
    });
    let first = browser
        .wait_text("#stored", PAGE_WAIT, |t| number(t) > 0)
        .await
        .expect("messages stored never moved");
    let second = browser
        .wait_text("#stored", PAGE_WAIT, |t| number(t) > number(&first))
        .await
        .expect("messages stored stopped moving");
    browser
        .wait_text("#rate", PAGE_WAIT, |t| {
            t.parse::<f64>().is_ok_and(|r| r > 0.0)
        })
        .await
        .expect("messages per second stayed 0");
    browser
        .wait_text("#lat-send-n", PAGE_WAIT, |t| number(t) > 0)
        .await
        .expect("no send->sent latency shown");
    eprintln!("dashboard saw messages stored go {first} -> {second}");

    browser.type_into("#lookup-user", "bob").await.unwrap();
    browser.click("#lookup-button").await.unwrap();
    browser
        .wait_text("#device-tablet", PAGE_WAIT, |t| t.contains("connected"))
        .await
        .expect("the lookup shows bob's tablet connected");
    browser
        .wait_text("#device-phone", PAGE_WAIT, |t| t.contains("connected"))
        .await
        .unwrap();
    browser.click("#revoke-tablet").await.unwrap();
    browser.click("#revoke-tablet").await.unwrap();
    browser
        .wait_text("#device-tablet", PAGE_WAIT, |t| t.contains("revoked"))
        .await
        .expect("the tablet is not shown revoked");
    browser
        .wait_text("#action-status", PAGE_WAIT, |t| t.contains("revoked"))
        .await
        .unwrap();
    assert!(
        tablet.wait_disconnected(Duration::from_secs(2)).await,
        "the revoked tablet stayed connected"
    );
    assert!(!node.node().store().device_active("bob", "tablet").unwrap());
    browser
        .wait_text("#connections", PAGE_WAIT, |t| t == "2")
        .await
        .expect("the connection count did not drop");

    stop.store(true, Ordering::Relaxed);
    let sent = tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .expect("the sender did not stop")
        .unwrap();
    assert!(sent >= 20);
    let shot = output_dir().join("dashboard.png");
    browser.screenshot(&shot).await.unwrap();
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "tiny screenshot"
    );
    eprintln!("screenshot: {}", shot.display());
    browser.close().await;
    node.stop().await;
}
