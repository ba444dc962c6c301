//! Per-user rate limits: past the send budget (or the request budget) a user gets
//! `rate_limited` errors that echo the refused ids, the refused messages are not stored, the
//! budget refills with time, and other users are not affected at all.

use std::collections::HashSet;
use std::time::Duration;

use chat_tests::chat::{str_of, ChatDevice};
use chat_tests::TestNode;
use serde_json::json;

async fn device(node: &TestNode, user: &str) -> ChatDevice {
    let (_, enrolment) = node.user_with_device(user, "phone").await;
    ChatDevice::connect_node(node, &enrolment).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_sender_is_limited_and_nobody_else_is() {
    const BURST: usize = 10;
    const FLOOD: usize = 40;
    let node = TestNode::start_with(|cfg| {
        cfg.limits.sends_per_sec = 2.0;
        cfg.limits.sends_burst = BURST as f64;
        cfg.limits.requests_per_sec = 1000.0;
        cfg.limits.requests_burst = 1000.0;
    })
    .await;
    let mut amy = device(&node, "amy").await;
    let mut bob = device(&node, "bob").await;
    let mut cat = device(&node, "cat").await;

    for i in 0..FLOOD {
        let send = json!({"type": "send", "id": format!("f{i}"), "to": "bob", "body": "spam"});
        amy.publish_nowait(&send).await.expect("publishing");
    }
    // cat, meanwhile, is not slowed down by amy's flood.
    for i in 0..BURST {
        cat.send(&format!("c{i}"), "bob", "normal").await;
    }
    let (mut sent, mut limited) = (HashSet::new(), HashSet::new());
    while sent.len() + limited.len() < FLOOD {
        let r = amy.expect("an answer to every send").await;
        let id = str_of(&r.event, "id").to_owned();
        match r.kind() {
            "sent" => assert!(sent.insert(id)),
            "error" => {
                assert_eq!(r.event["code"], "rate_limited", "{}", r.event);
                assert!(limited.insert(id));
            }
            other => panic!("unexpected {other}: {}", r.event),
        }
    }
    assert!(
        (BURST..BURST + 3).contains(&sent.len()),
        "about the burst gets through: {} sent, {} limited",
        sent.len(),
        limited.len()
    );
    for i in 0..BURST {
        let s = cat.wait_user_event("sent").await;
        assert_eq!(s["id"], format!("c{i}"), "cat is never limited");
    }
    // bob got exactly what was accepted, nothing that was refused.
    let conv = chat_tests::chat::direct_conv("amy", "bob");
    let last = node.node().store().last_seq(&conv).unwrap();
    assert_eq!(last as usize, sent.len(), "refused sends were not stored");
    let inbox = bob.sync_all(0, 1000).await;
    assert_eq!(inbox.len(), sent.len() + BURST);

    // The budget refills: half a second later one more send goes through, retried by id.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let retry = limited
        .iter()
        .next()
        .expect("something was limited")
        .clone();
    amy.request(&json!({"type": "send", "id": retry, "to": "bob", "body": "spam"}))
        .await;
    let ok = amy.wait_user_event("sent").await;
    assert_eq!(ok["id"], retry);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_counts_against_the_request_budget() {
    const BURST: usize = 20;
    let node = TestNode::start_with(|cfg| {
        cfg.limits.requests_per_sec = 1.0;
        cfg.limits.requests_burst = BURST as f64;
    })
    .await;
    let mut amy = device(&node, "amy").await;
    let mut bob = device(&node, "bob").await;
    for i in 0..BURST * 2 {
        let sync = json!({"type": "sync", "req": format!("s{i}"), "device": "phone", "after": 0});
        amy.publish_nowait(&sync).await.expect("publishing");
    }
    let (mut answered, mut limited) = (0, 0);
    while answered + limited < BURST * 2 {
        let r = amy.expect("an answer to every sync").await;
        assert!(r.event["req"].as_str().is_some_and(|q| q.starts_with('s')));
        match (r.kind(), r.event["code"].as_str()) {
            ("sync", _) => answered += 1,
            ("error", Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected {}", r.event),
        }
    }
    assert!(
        (BURST..BURST + 3).contains(&answered),
        "{answered} answered"
    );
    // bob's budget is his own.
    let answer = bob.sync("b", 0, None).await;
    assert_eq!(answer["type"], "sync");
    node.stop().await;
}

// A connection may have only `mqtt.max_inflight_in` requests unacknowledged: MQTT 5 clients
// are told so in CONNACK, and a 3.1.1 client that pushes far more at once is slowed down to
// that pace (the node stops reading its socket), not cut off: every request is still carried out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_has_a_bounded_number_of_requests_in_flight() {
    const BURST: usize = 300;
    let node = TestNode::start_with(|cfg| cfg.mqtt.max_inflight_in = 4).await;
    let (_, amy_e) = node.user_with_device("amy", "phone").await;
    node.user_with_device("bob", "phone").await;
    let v5 = chat_tests::TestClientV5::connect_tls(&node, &amy_e, "phone")
        .await
        .expect("MQTT 5 connect");
    assert_eq!(v5.receive_max, Some(4), "Receive Maximum in CONNACK");
    drop(v5);

    let mut amy = ChatDevice::connect_node(&node, &amy_e).await;
    let out = amy.out_topic();
    let sends = (0..BURST).map(|i| {
        json!({"type": "send", "id": format!("b{i}"), "to": "bob", "body": "x"}).to_string()
    });
    amy.client
        .publish_burst(&out, sends)
        .await
        .expect("every request is acknowledged");
    let mut ids = HashSet::new();
    while ids.len() < BURST {
        let sent = amy.wait_user_event("sent").await;
        ids.insert(str_of(&sent, "id").to_owned());
    }
    node.stop().await;
}
