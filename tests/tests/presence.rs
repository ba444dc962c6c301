//! Presence basics: the node knows which users have a device online (from connections, and from
//! `online`/`offline` on `/tenants/{u}/status`), publishes live events only to those, and
//! stores last-seen when a user's last device goes.

use std::time::{Duration, Instant};

use chat_tests::chat::{str_of, u64_of, ChatDevice};
use chat_tests::TestNode;
use serde_json::json;

/// Waits up to 5 s for the stored last-seen of `user`; panics if none appears.
async fn wait_last_seen(node: &TestNode, user: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(ts) = node
            .node()
            .store()
            .last_seen(user)
            .expect("reading last-seen")
        {
            return ts;
        }
        assert!(Instant::now() < deadline, "no last-seen stored for {user}");
        // Polling the store: last-seen is written by a background task with no event to await.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes a status for the device and makes sure the node handled it: a `sync` sent after
/// it on the same connection is answered only after the status was processed.
async fn say_status(dev: &mut ChatDevice, kind: &str) {
    let topic = format!("/tenants/{}/status", dev.user);
    let device = dev.device.clone();
    dev.client
        .publish(&topic, &json!({"type": kind, "device": device}).to_string())
        .await
        .expect("publishing a status");
    dev.sync(&format!("after-{kind}"), 0, Some(1)).await;
}

// bob says `offline` while staying connected: last-seen is stored, alice's message is stored
// (alice gets `sent`) but not pushed to bob; he finds it with `sync`. After `online`, the next
// message is pushed live again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_away_device_gets_no_live_events_until_it_is_back() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    node.wait_online(2, chat_tests::WAIT).await;
    assert_eq!(node.node().store().last_seen("bob").unwrap(), None);

    let before = chat_tests::chat::now_ms();
    say_status(&mut bob, "offline").await;
    let seen = wait_last_seen(&node, "bob").await;
    assert!(seen >= before, "last-seen {seen} is older than the status");
    assert_eq!(node.node().online_users(), 1, "only alice is online");

    alice.send("a1", "bob", "while away").await;
    assert_eq!(u64_of(&alice.expect_user_event("sent").await, "n"), 1);
    bob.expect_quiet(Duration::from_millis(300)).await;
    let page = bob.sync("catch-up", 0, None).await;
    assert_eq!(page["events"][0]["body"], json!("while away"));
    assert_eq!(page["last"], json!(1));

    say_status(&mut bob, "online").await;
    node.wait_online(2, chat_tests::WAIT).await;
    alice.send("a2", "bob", "back again").await;
    let msg = bob.expect_user_event("msg").await;
    assert_eq!((str_of(&msg, "body"), u64_of(&msg, "n")), ("back again", 2));

    // A malformed status gets an error event like any bad request (on the device's topic, as
    // it names the device).
    bob.client
        .publish(
            "/tenants/bob/status",
            r#"{"type":"away","device":"phone","req":"st"}"#,
        )
        .await
        .unwrap();
    let err = bob.expect_device_event("error").await;
    assert_eq!(
        (str_of(&err, "code"), str_of(&err, "req")),
        ("bad_request", "st")
    );
    node.stop().await;
}

// Last-seen is stored when the user's last connection ends, not before: alice closing one of
// two devices leaves her online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_is_stored_when_the_last_device_disconnects() {
    let node = TestNode::start().await;
    let (token, laptop_e) = node.user_with_device("alice", "laptop").await;
    let phone_e = node.enrol(&token, "phone").await;
    let laptop = ChatDevice::connect_node(&node, &laptop_e).await;
    let mut phone = ChatDevice::connect_node(&node, &phone_e).await;
    node.wait_online(1, chat_tests::WAIT).await;

    laptop.client.disconnect().await;
    // The phone still gets live events: a sync round trip shows the node saw the laptop go
    // (the disconnect is handled before this request is answered, or not at all yet).
    phone.sync("s", 0, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.node().store().last_seen("alice").unwrap(), None);
    assert_eq!(node.node().online_users(), 1);

    let before = chat_tests::chat::now_ms();
    phone.client.disconnect().await;
    let seen = wait_last_seen(&node, "alice").await;
    assert!(seen >= before && seen <= chat_tests::chat::now_ms());
    assert_eq!(node.node().online_users(), 0);
    node.stop().await;
}
