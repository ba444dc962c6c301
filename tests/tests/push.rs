//! Push notifications end to end: the node sends to fake FCM and APNs servers on 127.0.0.1
//! (`chat_tests::fake_push`), which check the OAuth2 grant, the provider tokens, the headers
//! and the payloads as the real services would, and answer from a script.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chat_tests::chat::{direct_conv, send_windowed, ChatDevice};
use chat_tests::fake_push::{Answer, FakePush};
use chat_tests::TestNode;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(400);
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    node: TestNode,
    fake: FakePush,
    amy: ChatDevice,
    _conf: tempfile::TempDir,
}

/// A node wired to a fresh fake; `adjust` may change the push settings. amy is online; bob
/// registered `phone` for FCM (token `fcm-bob-phone`) and `tablet` for APNs (`apnsbobtablet`),
/// then went offline.
async fn setup(adjust: impl FnOnce(&mut chatd::PushConfig)) -> Setup {
    let fake = FakePush::start().await;
    let conf = tempfile::tempdir().expect("temp dir");
    let (f, dir) = (fake.clone(), conf.path().to_path_buf());
    let node = TestNode::start_with(move |cfg| {
        f.configure(&mut cfg.push, &dir);
        adjust(&mut cfg.push);
    })
    .await;
    let (_, amy_e) = node.user_with_device("amy", "laptop").await;
    let amy = ChatDevice::connect_node(&node, &amy_e).await;
    let (token, phone_e) = node.user_with_device("bob", "phone").await;
    let tablet_e = node.enrol(&token, "tablet").await;
    let mut devices = Vec::new();
    for (e, platform, push_token) in [
        (&phone_e, "fcm", "fcm-bob-phone"),
        (&tablet_e, "apns", "apnsbobtablet"),
    ] {
        let mut dev = ChatDevice::connect_node(&node, e).await;
        let request = json!({"type": "push_register", "platform": platform, "token": push_token});
        dev.ask_ok("reg", request).await;
        devices.push(dev);
    }
    // Both devices go; bob is offline once his last-seen is stored after that.
    let gone = chat_tests::chat::now_ms();
    drop(devices);
    let deadline = Instant::now() + WAIT;
    while node
        .node()
        .store()
        .last_seen("bob")
        .expect("reading last-seen")
        .is_none_or(|t| t < gone)
    {
        assert!(Instant::now() < deadline, "bob never went offline");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.wait_online(1, WAIT).await;
    Setup {
        node,
        fake,
        amy,
        _conf: conf,
    }
}

async fn send(amy: &mut ChatDevice, id: &str, to: &str, body: &str) {
    amy.send(id, to, body).await;
    amy.wait_user_event("sent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_gets_one_push_per_device_with_valid_auth() {
    let mut s = setup(|_| {}).await;
    send(&mut s.amy, "m1", "bob", "a secret text").await;
    let seen = s.fake.wait_for(2, WAIT).await;
    let conv = direct_conv("amy", "bob");
    let fcm = seen
        .iter()
        .find(|r| r.provider == "fcm")
        .expect("an FCM request");
    assert_eq!(fcm.token, "fcm-bob-phone");
    let m = &fcm.body["message"];
    assert_eq!(m["android"]["collapse_key"], conv);
    assert_eq!(m["data"]["conv"], conv);
    assert_eq!(m["notification"]["title"], "New message");
    let apns = seen
        .iter()
        .find(|r| r.provider == "apns")
        .expect("an APNs request");
    assert_eq!(apns.token, "apnsbobtablet");
    assert_eq!(apns.headers["apns-collapse-id"], conv.as_str());
    assert_eq!(apns.body["aps"]["alert"]["title"], "New message");
    // Previews are off by default: neither the text nor the sender's name leaves the node.
    for r in &seen {
        let text = r.body.to_string();
        assert!(!text.contains("secret"), "{text}");
    }
    assert_eq!(m["notification"]["body"], "You have a new message");
    assert_eq!(apns.body["aps"]["alert"]["body"], "You have a new message");
    assert_eq!(s.fake.token_grants(), 1, "one OAuth2 grant, then cached");
    send(&mut s.amy, "m2", "bob", "again").await;
    s.fake.wait_for(4, WAIT).await;
    assert_eq!(s.fake.token_grants(), 1, "the access token is reused");
    // The fake records a request before the node has its answer and counts the send.
    let stats = s.node.node().push_stats();
    let deadline = Instant::now() + WAIT;
    while stats.sent.load(Ordering::Relaxed) < 4 {
        assert!(Instant::now() < deadline, "the sends were never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        stats.sent.load(Ordering::Relaxed),
        4,
        "one send per device and message"
    );
    s.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_can_be_turned_on() {
    let mut s = setup(|p| p.preview = true).await;
    send(&mut s.amy, "m1", "bob", "see you at 8").await;
    let seen = s.fake.wait_for(2, WAIT).await;
    let fcm = seen.iter().find(|r| r.provider == "fcm").unwrap();
    assert_eq!(fcm.body["message"]["notification"]["title"], "amy");
    assert_eq!(fcm.body["message"]["notification"]["body"], "see you at 8");
    s.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_push_while_online_or_from_a_blocked_sender() {
    let mut s = setup(|_| {}).await;
    // bob online: no push.
    let (_, e) = (
        0,
        s.node
            .enrol(
                &s.node.login("bob", chat_tests::TEST_PASSWORD).await,
                "desk",
            )
            .await,
    );
    let mut desk = ChatDevice::connect_node(&s.node, &e).await;
    send(&mut s.amy, "m1", "bob", "live").await;
    desk.wait_user_event("msg").await;
    tokio::time::sleep(QUIET).await;
    assert!(s.fake.seen().is_empty(), "pushed to an online user");
    // bob blocks amy and goes offline: amy's messages wake nobody; cat's do.
    desk.ask_ok("b", json!({"type": "block", "user": "amy"}))
        .await;
    drop(desk);
    s.node.wait_online(1, WAIT).await;
    send(&mut s.amy, "m2", "bob", "blocked").await;
    tokio::time::sleep(QUIET).await;
    assert!(
        s.fake.seen().is_empty(),
        "pushed a blocked sender's message"
    );
    let (_, cat_e) = s.node.user_with_device("cat", "phone").await;
    let mut cat = ChatDevice::connect_node(&s.node, &cat_e).await;
    send(&mut cat, "c1", "bob", "hi").await;
    let seen = s.fake.wait_for(2, WAIT).await;
    assert!(seen
        .iter()
        .all(|r| r.body.to_string().contains(&direct_conv("bob", "cat"))));
    s.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_one_notification_per_device() {
    let mut s = setup(|p| p.collapse_ms = 1_500).await;
    let ids = (0..50).map(|i| format!("b{i}"));
    let run = send_windowed(&mut s.amy, "bob", ids, 10, |_| "x".into()).await;
    assert!(run.unacked().is_empty());
    let seen = s.fake.wait_for(2, WAIT).await;
    tokio::time::sleep(QUIET).await;
    let seen_after = s.fake.seen();
    assert_eq!(seen_after.len(), 2, "one per device, not 50: {seen:?}");
    let fcm = seen_after.iter().find(|r| r.provider == "fcm").unwrap();
    assert_eq!(fcm.body["message"]["data"]["count"], "50");
    assert_eq!(
        fcm.body["message"]["notification"]["body"],
        "50 new messages"
    );
    let apns = seen_after.iter().find(|r| r.provider == "apns").unwrap();
    assert_eq!(apns.body["count"], 50);
    s.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_retried_with_backoff_and_retry_after() {
    let mut s = setup(|_| {}).await;
    s.fake.script_fcm([
        Answer::status(503, json!({"error": {"status": "UNAVAILABLE"}})),
        Answer {
            status: 429,
            retry_after: Some(1),
            body: json!({"error": {"status": "RESOURCE_EXHAUSTED"}}),
        },
    ]);
    s.fake.script_apns([Answer::status(
        500,
        json!({"reason": "InternalServerError"}),
    )]);
    send(&mut s.amy, "m1", "bob", "retry me").await;
    let seen = s.fake.wait_for(5, WAIT).await;
    let fcm: Vec<_> = seen.iter().filter(|r| r.provider == "fcm").collect();
    assert_eq!(
        fcm.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![503, 429, 200]
    );
    let waited = fcm[2].at - fcm[1].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured ({waited:?})"
    );
    let apns: Vec<_> = seen
        .iter()
        .filter(|r| r.provider == "apns")
        .map(|r| r.answered)
        .collect();
    assert_eq!(apns, vec![500, 200]);
    // The fake has answered the last send; the pusher counts it once it has read the answer.
    let stats = s.node.node().push_stats();
    let deadline = std::time::Instant::now() + WAIT;
    while stats.sent.load(Ordering::Relaxed) < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.retried.load(Ordering::Relaxed), 3);
    assert_eq!(stats.sent.load(Ordering::Relaxed), 2);
    s.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_are_removed() {
    let mut s = setup(|_| {}).await;
    s.fake.script_fcm([Answer::status(
        404,
        json!({"error": {"status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}),
    )]);
    s.fake
        .script_apns([Answer::status(410, json!({"reason": "Unregistered"}))]);
    send(&mut s.amy, "m1", "bob", "anyone?").await;
    s.fake.wait_for(2, WAIT).await;
    let deadline = Instant::now() + WAIT;
    while !s.node.node().store().push_tokens("bob").unwrap().is_empty() {
        assert!(Instant::now() < deadline, "tokens not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(&mut s.amy, "m2", "bob", "still?").await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(s.fake.seen().len(), 2, "no more pushes to removed tokens");
    assert_eq!(
        s.node.node().push_stats().dropped.load(Ordering::Relaxed),
        2
    );
    s.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_ends_in_the_dead_letters() {
    let mut s = setup(|p| p.max_attempts = 3).await;
    let failing = (0..3).map(|_| Answer::status(500, json!({"reason": "InternalServerError"})));
    s.fake.script_apns(failing);
    send(&mut s.amy, "m1", "bob", "doomed").await;
    let seen = s.fake.wait_for(4, WAIT).await; // 1 FCM + 3 APNs
    assert_eq!(seen.iter().filter(|r| r.provider == "apns").count(), 3);
    let deadline = Instant::now() + WAIT;
    let dead = loop {
        let dead = s.node.node().store().push_dead_letters().unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].device.as_str(), dead[0].attempts), ("tablet", 3));
    assert_eq!(
        s.node
            .node()
            .push_stats()
            .dead_lettered
            .load(Ordering::Relaxed),
        1
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(s.fake.seen().len(), 4, "no attempt after the last");
    // Operators see it in the metrics and the admin API, and can put it back; it goes out.
    let scrape = s.node.metrics().await;
    assert_eq!(scrape.value("chatd_push_enabled", &[]), 1.0);
    assert_eq!(scrape.value("chatd_push_dead_letters", &[]), 1.0);
    let delivered = [("outcome", "delivered")];
    assert_eq!(scrape.value("chatd_push_outcomes_total", &delivered), 1.0);
    let listed = s
        .node
        .admin(reqwest::Method::GET, "/admin/v1/push/dead-letters")
        .await;
    let id = dead[0].id();
    assert_eq!(
        listed.body["dead_letters"][0]["id"],
        id.as_str(),
        "{}",
        listed.text
    );
    assert_eq!(listed.body["dead_letters"][0]["attempts"], 3);
    let path = format!("/admin/v1/push/dead-letters/{id}/retry");
    let retried = s.node.admin(reqwest::Method::POST, &path).await;
    assert_eq!(retried.status, reqwest::StatusCode::OK, "{}", retried.text);
    s.fake.wait_for(5, WAIT).await;
    assert!(s
        .node
        .node()
        .store()
        .push_dead_letters()
        .unwrap()
        .is_empty());
    s.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_before_a_restart_is_sent_after_it() {
    let mut s = setup(|p| p.collapse_ms = 2_000).await;
    send(&mut s.amy, "m1", "bob", "survive").await;
    assert_eq!(s.node.node().store().push_queue_len(), 2);
    drop(s.amy);
    let node = s.node.restart().await;
    let seen = s.fake.wait_for(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_loses_its_token_and_unregister_works() {
    let mut s = setup(|_| {}).await;
    let token = s.node.login("bob", chat_tests::TEST_PASSWORD).await;
    assert_eq!(
        s.node.revoke(&token, "phone").await,
        reqwest::StatusCode::NO_CONTENT
    );
    let devices: Vec<String> = s
        .node
        .node()
        .store()
        .push_tokens("bob")
        .unwrap()
        .into_iter()
        .map(|t| t.device)
        .collect();
    assert_eq!(devices, vec!["tablet"]);
    // push_unregister from the tablet itself.
    let tablet = s.node.enrol(&token, "tablet").await;
    let mut dev = ChatDevice::connect_node(&s.node, &tablet).await;
    dev.ask_ok("u", json!({"type": "push_unregister"})).await;
    assert!(s.node.node().store().push_tokens("bob").unwrap().is_empty());
    // A device that is not enrolled cannot be registered.
    let request = json!({"type": "push_register", "device": "ghost", "req": "g", "platform": "fcm", "token": "t"});
    // (Answers go to the device the request names; listen there.)
    dev.client.subscribe("/tenants/bob/in/ghost").await.unwrap();
    dev.request(&request).await;
    let err = dev
        .wait_for("error for ghost", chat_tests::WAIT, |r| {
            r.topic == "/tenants/bob/in/ghost"
        })
        .await;
    assert_eq!(err.event["code"], "not_found");
    drop(dev);
    send(&mut s.amy, "m1", "bob", "nobody to wake").await;
    tokio::time::sleep(QUIET).await;
    assert!(s.fake.seen().is_empty());
    s.node.stop().await;
}

// bob is offline when amy writes, so a job is queued, due after the collapse window; bob
// connects before it is due. When due, the sender asks again whether bob is online and sends
// nothing (today it asked only when queueing, so both of bob's devices got a notification for
// a message his connected device already had).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_not_sent_when_the_user_came_online_before_it_was_due() {
    let mut s = setup(|p| p.collapse_ms = 1_500).await;
    let token = s.node.login("bob", chat_tests::TEST_PASSWORD).await;
    let desk_e = s.node.enrol(&token, "desk").await;
    send(&mut s.amy, "m1", "bob", "while you were away").await;
    let _desk = ChatDevice::connect_node(&s.node, &desk_e).await;
    s.node.wait_online(2, WAIT).await;
    let stats = s.node.node().push_stats();
    let deadline = Instant::now() + WAIT;
    // Both jobs (one per registered device) are decided: skipped, or (the failure) sent.
    while stats.skipped_online.load(Ordering::Relaxed) + (s.fake.seen().len() as u64) < 2 {
        assert!(Instant::now() < deadline, "the due jobs were never decided");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        s.fake.seen().is_empty(),
        "sent to an online user: {:?}",
        s.fake.seen().len()
    );
    assert_eq!(stats.sent.load(Ordering::Relaxed), 0);
    assert_eq!(
        s.node.node().store().push_queue_len(),
        0,
        "the jobs are finished"
    );
    s.node.stop().await;
}
