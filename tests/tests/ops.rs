//! Operations on a real node: `/metrics` is valid Prometheus text whose counters move with
//! traffic, the admin API refuses requests without the token, disabling a user or revoking a
//! device through it closes their connections and keeps them out, `/readyz` turns 503 while
//! the node drains, and a drain answers every request it read before closing connections.

use std::time::{Duration, Instant};

use chat_tests::chat::{send_windowed, ChatDevice};
use chat_tests::{ConnectError, Scrape, TestClient, TestNode, TEST_PASSWORD};
use reqwest::{Method, StatusCode};
use rumqttc::ConnectReturnCode;
use serde_json::Value;

const MESSAGES: usize = 40;

/// Polls `check` (every 20 ms, up to 5 s) until it returns true.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delta(after: &Scrape, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

// alice sends 40 messages to bob and one request that does not parse: the scrape after is
// valid Prometheus text in which messages stored, send requests, send->sent observations,
// publishes and the bad_request error moved by exactly what happened; connections, online
// users, flushes and disk use are there too. The stats JSON agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_counters_move_with_traffic() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    node.wait_online(2, chat_tests::WAIT).await;
    let before = node.metrics().await;
    assert_eq!(before.value("chatd_mqtt_connections", &[]), 2.0);
    assert_eq!(before.value("chatd_online_users", &[]), 2.0);
    assert_eq!(before.value("chatd_ready", &[]), 1.0);
    assert_eq!(before.value("chatd_push_enabled", &[]), 0.0);
    assert_eq!(before.types["chatd_send_to_sent_seconds"], "histogram");

    let ids = (0..MESSAGES).map(|i| format!("m{i}"));
    let run = send_windowed(&mut alice, "bob", ids, 8, |id| format!("body {id}")).await;
    assert_eq!(run.acked.len(), MESSAGES, "every send answered");
    // bob's `msg` events are written by his own connection, which may lag behind alice's:
    // counted once he has them all.
    bob.wait_for("bob's last msg", chat_tests::WAIT, |r| {
        r.event["type"] == "msg" && r.event["n"] == MESSAGES as u64
    })
    .await;
    alice.publish_raw("this is not JSON").await;
    alice.expect_user_event("error").await;

    let after = node.metrics().await;
    let sent = MESSAGES as f64;
    assert_eq!(
        delta(&after, &before, "chatd_messages_stored_total", &[]),
        sent
    );
    assert_eq!(
        delta(&after, &before, "chatd_requests_total", &[("type", "send")]),
        sent
    );
    assert_eq!(
        delta(
            &after,
            &before,
            "chatd_requests_total",
            &[("type", "invalid")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            &after,
            &before,
            "chatd_errors_total",
            &[("code", "bad_request")]
        ),
        1.0
    );
    assert_eq!(
        delta(&after, &before, "chatd_send_to_sent_seconds_count", &[]),
        sent
    );
    assert!(delta(&after, &before, "chatd_store_flush_seconds_count", &[]) >= 1.0);
    assert!(delta(&after, &before, "chatd_mqtt_publishes_received_total", &[]) >= sent + 1.0);
    // alice's `sent` and bob's `msg` for each message.
    assert!(delta(&after, &before, "chatd_mqtt_publishes_sent_total", &[]) >= 2.0 * sent);
    assert!(after.value("chatd_store_disk_bytes", &[]) > 0.0);
    assert_eq!(
        after.value("chatd_shard_queue_depth", &[("shard", "0")]),
        0.0
    );
    assert!(
        after.value(
            "chatd_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ) >= 1.0
    );

    let stats = node.admin(Method::GET, "/admin/v1/stats").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let s = &stats.body;
    assert_eq!(s["messages_stored"], MESSAGES as u64);
    assert_eq!(s["connections"], 2);
    assert_eq!(s["online_users"], 2);
    assert_eq!(s["requests"]["send"], MESSAGES as u64);
    assert_eq!(s["latency"]["send_to_sent"]["count"], MESSAGES as u64);
    assert!(s["latency"]["send_to_sent"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        s["shards"].as_array().unwrap().len(),
        4,
        "TestNode's shards"
    );
    // The sampler records the burst as messages per second within a couple of seconds.
    eventually("a sample with messages per second", async || {
        let s = node.admin(Method::GET, "/admin/v1/stats").await.body;
        s["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|x| x["messages_per_sec"].as_f64() > Some(0.0)))
    })
    .await;
    node.stop().await;
}

// Without the token (or with a wrong one, or a user's session token) the admin API and
// /metrics answer 401 with the API's JSON error; /readyz and /healthz need none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_requests_without_the_token() {
    let node = TestNode::start().await;
    node.register("alice", TEST_PASSWORD).await;
    let user_token = node.login("alice", TEST_PASSWORD).await;
    for (method, path) in [
        (Method::GET, "/metrics"),
        (Method::GET, "/admin/v1/stats"),
        (Method::GET, "/admin/v1/users/alice"),
        (Method::POST, "/admin/v1/users/alice/disable"),
        (Method::DELETE, "/admin/v1/users/alice/devices/laptop"),
        (Method::GET, "/admin/v1/push/dead-letters"),
    ] {
        for token in [None, Some("not-the-admin-token"), Some(user_token.as_str())] {
            let r = node.request(method.clone(), path, token, None).await;
            r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    assert!(!node.node().store().user("alice").unwrap().unwrap().disabled);
    let r = node.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (r.status, r.body),
        (StatusCode::OK, serde_json::json!({"ready": true}))
    );
    node.stop().await;
}

// Disabling alice closes her live connection at once; her certificate and her session token
// are then refused (CONNACK not authorized, plaintext bad credentials, HTTP 403), and the
// lookup shows her disabled. Enabling her lets her back in. Revoking bob's phone through the
// admin API closes it and keeps it out; the lookup shows it revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_revoke_through_the_admin_api_close_connections() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    let (_, phone) = node.user_with_device("bob", "phone").await;
    let mut a = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    a.subscribe("/tenants/alice/in").await.unwrap();
    let mut b = TestClient::connect_tls(&node, &phone, "phone")
        .await
        .unwrap();
    b.subscribe("/tenants/bob/in").await.unwrap();
    node.wait_online(2, chat_tests::WAIT).await;

    let lookup = node.admin(Method::GET, "/admin/v1/users/alice").await;
    assert_eq!(lookup.status, StatusCode::OK, "{}", lookup.text);
    assert_eq!(lookup.body["online"], true);
    assert_eq!(lookup.body["devices"][0]["device_id"], "laptop");
    assert_eq!(lookup.body["devices"][0]["connected"], true);

    let r = node
        .admin(Method::POST, "/admin/v1/users/alice/disable")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["connections_closed"], 1);
    assert!(
        a.wait_disconnected(Duration::from_secs(2)).await,
        "alice's connection stayed open"
    );
    let again = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .err();
    assert_eq!(
        again,
        Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized))
    );
    let plain = TestClient::connect_plain(&node, "alice", &token, "laptop")
        .await
        .err();
    assert_eq!(
        plain,
        Some(ConnectError::Refused(
            ConnectReturnCode::BadUserNamePassword
        ))
    );
    node.try_login("alice", TEST_PASSWORD)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    node.try_enrol(&token, "tablet", None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let lookup = node.admin(Method::GET, "/admin/v1/users/alice").await;
    assert_eq!(lookup.body["disabled"], true);
    assert_eq!(lookup.body["online"], false);
    assert!(
        lookup.body["last_seen"].as_u64().is_some(),
        "{}",
        lookup.text
    );
    assert!(b.ended().is_none(), "bob was disconnected too");

    let r = node
        .admin(Method::POST, "/admin/v1/users/alice/enable")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .expect("enabled again, alice connects");

    let r = node
        .admin(Method::DELETE, "/admin/v1/users/bob/devices/phone")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        b.wait_disconnected(Duration::from_secs(2)).await,
        "bob's revoked phone stayed connected"
    );
    let again = TestClient::connect_tls(&node, &phone, "phone").await.err();
    assert_eq!(
        again,
        Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized))
    );
    let lookup = node.admin(Method::GET, "/admin/v1/users/bob").await;
    assert!(lookup.body["devices"][0]["revoked_at"].as_u64().is_some());
    let dead = node.admin(Method::GET, "/admin/v1/push/dead-letters").await;
    assert_eq!(dead.body["dead_letters"], Value::Array(vec![]));
    node.stop().await;
}

// With a drain delay, shutting down first turns /readyz to 503 while the node still serves
// (HTTP answers, the MQTT connection stays up), then stops within the delay plus a little.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_draining() {
    let mut node = TestNode::start_with(|cfg| cfg.node.drain_delay_ms = 1500).await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let mut a = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    a.subscribe("/tenants/alice/in").await.unwrap();
    let r = node.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);

    let running = node.node.take().expect("running");
    let started = Instant::now();
    let stopping = tokio::spawn(running.shutdown());
    eventually("readyz 503", async || {
        node.request(Method::GET, "/readyz", None, None)
            .await
            .status
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let r = node.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        r.body,
        serde_json::json!({"ready": false, "reason": "draining"})
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "503 came too late"
    );
    assert!(
        a.ended().is_none(),
        "MQTT closed before the drain delay ended"
    );
    a.alive("/tenants/alice/in")
        .await
        .expect("still serving while draining");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown took more than 10 s")
        .unwrap()
        .expect("shutdown failed");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(a.wait_disconnected(Duration::from_secs(2)).await);
}

// A shutdown in the middle of alice's sends (64 in flight) answers every request it read
// before closing: after the restart, every stored message is one whose `sent` reached her,
// and every `sent` she got is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_answers_every_request_it_read() {
    let node = TestNode::start().await;
    let (token, alice_e) = node.user_with_device("alice", "laptop").await;
    node.user_with_device("bob", "phone").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let ids = (0..100_000).map(|i| format!("d{i}"));
    let (run, node) = tokio::join!(
        send_windowed(&mut alice, "bob", ids, 64, |id| format!("drain {id}")),
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            node.restart().await
        }
    );
    assert!(run.ended.is_some(), "the connection did not end");
    assert!(
        !run.acked.is_empty(),
        "nothing answered before the shutdown"
    );
    let history =
        chat_tests::chat::http_history_all(&node.client, &node.http, &token, "d.alice.bob").await;
    let stored: std::collections::HashSet<&str> = history
        .iter()
        .map(|m| chat_tests::chat::str_of(m, "body").trim_start_matches("drain "))
        .collect();
    let acked: std::collections::HashSet<&str> = run.acked.iter().map(|r| r.id.as_str()).collect();
    let unanswered: Vec<&&str> = stored.difference(&acked).collect();
    assert!(
        unanswered.is_empty(),
        "{} of {} stored messages never got their sent: {:?}",
        unanswered.len(),
        stored.len(),
        unanswered.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(stored.len(), acked.len(), "a sent message is missing");
    eprintln!("drain: {} messages sent and stored", acked.len());
    node.stop().await;
}
