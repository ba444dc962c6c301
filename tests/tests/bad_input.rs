//! Bad requests on `/tenants/{u}/out`: each gets an `error` event with the right code (echoing
//! `req` and, for `send`, `id`) on the right topic; nothing is stored or delivered, the
//! connection stays usable and nobody else notices.

use std::time::Duration;

use chat_tests::chat::{keys_of, str_of, u64_of, ChatDevice};
use chat_tests::TestNode;
use serde_json::{json, Value};

/// A bad request: payload, topic of its error, code, echoed `req`, echoed `id`.
type Case<'a> = (String, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

/// Publishes `payload` and returns the `error` event it causes, asserting it comes on `topic`
/// with exactly the fields `type`, `code`, `message` (non-empty) and, when given, `req`/`id`.
async fn error_for(
    dev: &mut ChatDevice,
    payload: &str,
    topic: &str,
    code: &str,
    req: Option<&str>,
    id: Option<&str>,
) -> Value {
    dev.publish_raw(payload).await;
    let shown: String = payload.chars().take(80).collect();
    let r = dev.expect(&format!("the error for {shown}")).await;
    assert_eq!(
        (r.topic.as_str(), r.kind()),
        (topic, "error"),
        "answer to {shown}: {}",
        r.event
    );
    let e = r.event;
    assert_eq!(str_of(&e, "code"), code, "code for {shown}: {e}");
    assert!(!str_of(&e, "message").is_empty(), "{e}");
    let mut keys = vec!["code", "message", "type"];
    if let Some(req) = req {
        assert_eq!(str_of(&e, "req"), req, "{e}");
        keys.push("req");
    }
    if let Some(id) = id {
        assert_eq!(str_of(&e, "id"), id, "{e}");
        keys.push("id");
    }
    keys.sort();
    assert_eq!(keys_of(&e), keys, "fields of the error for {shown}: {e}");
    e
}

// Every kind of bad input from alice's laptop, each answered with its code. Errors for requests
// without a `device` go to /tenants/alice/in, with one to /tenants/alice/in/laptop. Afterwards
// the same connection sends a good message: its seq and both users' n are 1, so none of the bad
// requests stored anything, and bob received nothing but that message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_error_and_the_connection_stays_usable() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    node.user_with_device("carol", "tablet").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    let user = "/tenants/alice/in";
    let device = "/tenants/alice/in/laptop";
    let big = "x".repeat(65_537);
    let exactly_max = "y".repeat(65_536);

    // (payload, topic of the error, code, echoed req, echoed id)
    let cases: Vec<Case> = vec![
        // Not JSON, not an object, no or unknown type.
        ("hello?".into(), user, "bad_request", None, None),
        ("{\"type\":\"send\"".into(), user, "bad_request", None, None),
        ("[1,2,3]".into(), user, "bad_request", None, None),
        ("\"send\"".into(), user, "bad_request", None, None),
        (r#"{"req":"r1"}"#.into(), user, "bad_request", Some("r1"), None),
        (r#"{"type":"launch","req":"r2"}"#.into(), user, "bad_request", Some("r2"), None),
        (r#"{"type":7,"req":"r3"}"#.into(), user, "bad_request", Some("r3"), None),
        // Wrong field types.
        (r#"{"type":"send","req":"r4","id":"m1","to":5,"body":"x"}"#.into(), user, "bad_request", Some("r4"), Some("m1")),
        (r#"{"type":"send","req":"r5","id":"m2","to":"bob","body":["x"]}"#.into(), user, "bad_request", Some("r5"), Some("m2")),
        (r#"{"type":"send","req":"r6","id":17,"to":"bob","body":"x"}"#.into(), user, "bad_request", Some("r6"), None),
        (r#"{"type":"receipt","req":"r7","conv":"d.alice.bob","status":"read","seq":"1"}"#.into(), user, "bad_request", Some("r7"), None),
        (r#"{"type":"sync","req":"r8","device":"laptop","after":-1}"#.into(), device, "bad_request", Some("r8"), None),
        (r#"{"type":"history","req":"r9","device":"laptop","conv":42}"#.into(), device, "bad_request", Some("r9"), None),
        // Missing or invalid fields.
        (r#"{"type":"send","req":"r10","id":"m3","to":"bob"}"#.into(), user, "bad_request", Some("r10"), Some("m3")),
        (r#"{"type":"send","req":"r11","id":"m4","to":"bob","body":""}"#.into(), user, "bad_request", Some("r11"), Some("m4")),
        (r#"{"type":"send","req":"r12","to":"bob","body":"x"}"#.into(), user, "bad_request", Some("r12"), None),
        (r#"{"type":"send","req":"r13","id":"m5","to":"alice","body":"me"}"#.into(), user, "bad_request", Some("r13"), Some("m5")),
        (r#"{"type":"send","req":"r14","id":"m6","to":"Not An Id","body":"x"}"#.into(), user, "bad_request", Some("r14"), Some("m6")),
        (r#"{"type":"sync","req":"r15","after":0}"#.into(), user, "bad_request", Some("r15"), None),
        (r#"{"type":"history","req":"r16","conv":"d.alice.bob"}"#.into(), user, "bad_request", Some("r16"), None),
        (r#"{"type":"receipt","req":"r17","conv":"d.alice.bob","status":"seen","seq":1}"#.into(), user, "bad_request", Some("r17"), None),
        // Too large.
        (json!({"type":"send","req":"r18","id":"m7","to":"bob","body":big}).to_string(), user, "too_large", Some("r18"), Some("m7")),
        (json!({"type":"send","req":"r19","id":"m8","to":"bob","body":"x","pad":"z".repeat(300 * 1024)}).to_string(), user, "too_large", None, None),
        // Nobody there, nothing there, not yours.
        (r#"{"type":"send","req":"r20","id":"m9","to":"nobody","body":"x"}"#.into(), user, "not_found", Some("r20"), Some("m9")),
        (r#"{"type":"receipt","req":"r21","conv":"d.alice.bob","status":"read","seq":1}"#.into(), user, "not_found", Some("r21"), None),
        (r#"{"type":"receipt","req":"r22","conv":"d.bob.carol","status":"read","seq":1}"#.into(), user, "forbidden", Some("r22"), None),
        (r#"{"type":"history","req":"r23","device":"laptop","conv":"d.bob.carol"}"#.into(), device, "forbidden", Some("r23"), None),
    ];
    for (payload, topic, code, req, id) in &cases {
        error_for(&mut alice, payload, topic, code, *req, *id).await;
    }

    // The connection still works, and the bad requests left no trace: the first message has
    // seq 1 and n 1 on both sides. A body of exactly 64 KiB is fine.
    alice
        .request(&json!({"type": "send", "id": "ok", "to": "bob", "body": exactly_max}))
        .await;
    let sent = alice.expect_user_event("sent").await;
    assert_eq!(
        (u64_of(&sent, "seq"), u64_of(&sent, "n")),
        (1, 1),
        "{}",
        sent["seq"]
    );
    let msg = bob.expect_user_event("msg").await;
    assert_eq!((u64_of(&msg, "seq"), u64_of(&msg, "n")), (1, 1));
    assert_eq!(msg["body"].as_str().map(str::len), Some(65_536));
    bob.expect_quiet(Duration::from_millis(200)).await;
    node.stop().await;
}

// A flood of garbage from one user does not hold up another: while alice publishes 500 bad
// requests without waiting, bob's send to carol is answered promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_user_does_not_delay_another() {
    let node = TestNode::start().await;
    let (_, alice_e) = node.user_with_device("alice", "laptop").await;
    let (_, bob_e) = node.user_with_device("bob", "phone").await;
    let (_, carol_e) = node.user_with_device("carol", "tablet").await;
    let mut alice = ChatDevice::connect_node(&node, &alice_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    let mut carol = ChatDevice::connect_node(&node, &carol_e).await;

    for i in 0..500 {
        let bad = json!({"type": "send", "req": format!("g{i}"), "id": format!("g{i}"), "to": "nobody", "body": "x"});
        alice.publish_nowait(&bad).await.expect("alice's publish");
    }
    let started = std::time::Instant::now();
    bob.send("b1", "carol", "still here").await;
    let sent = bob.expect_user_event("sent").await;
    let took = started.elapsed();
    eprintln!("bob's send->sent during alice's garbage flood: {took:.2?}");
    assert_eq!(u64_of(&sent, "seq"), 1);
    let msg = carol.expect_user_event("msg").await;
    assert_eq!(msg["body"], json!("still here"));

    // alice gets all 500 errors, in order, and nothing else.
    for i in 0..500 {
        let r = alice.expect("an error for the flood").await;
        assert_eq!(r.kind(), "error", "{}", r.event);
        assert_eq!(
            (str_of(&r.event, "code"), str_of(&r.event, "req")),
            ("not_found", format!("g{i}").as_str())
        );
    }
    alice.expect_quiet(Duration::from_millis(200)).await;
    node.stop().await;
}
