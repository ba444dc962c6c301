//! Presence subscriptions, typing indicators and blocking against a real node.

use std::time::Duration;

use chat_tests::chat::{array_of, direct_conv, now_ms, str_of, u64_of, ChatDevice};
use chat_tests::TestNode;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(300);

async fn app(node: &TestNode, user: &str, device: &str) -> ChatDevice {
    let (_, enrolment) = node.user_with_device(user, device).await;
    ChatDevice::connect_app(node, &enrolment).await
}

/// `from` sends `to` a message and both see it through: now they share a conversation.
async fn talk(from: &mut ChatDevice, to: &mut ChatDevice, id: &str) {
    let to_user = to.user.clone();
    from.send(id, &to_user, "hi").await;
    from.wait_user_event("sent").await;
    to.wait_user_event("msg").await;
}

/// The answer to a `presence_sub`: the `presence` events before the `ok` with `req`.
async fn presence_sub(dev: &mut ChatDevice, req: &str, users: &[&str]) -> Vec<Value> {
    let request = json!({"type": "presence_sub", "req": req, "device": dev.device, "users": users});
    dev.request(&request).await;
    let topic = dev.device_topic();
    let mut states = Vec::new();
    loop {
        let r = dev.expect("presence answer").await;
        assert_eq!(r.topic, topic, "{}", r.event);
        match r.kind() {
            "presence" => states.push(r.event),
            "ok" if r.event["req"] == req => return states,
            _ => panic!("unexpected answer to presence_sub: {}", r.event),
        }
    }
}

// amy watches bob (he wrote to her, so she is his contact): she hears he is online, then
// offline with last_seen when his socket dies without DISCONNECT (his Last Will), then online
// again. Strangers and users who do not exist produce nothing at all. last_seen survives a
// restart of the node. (The privacy settings themselves: `privacy.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_pushed_to_contacts_only() {
    let node = TestNode::start().await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    let carl = app(&node, "carl", "phone").await;
    talk(&mut amy, &mut bob, "m1").await;
    talk(&mut bob, &mut amy, "m2").await;

    let states = presence_sub(&mut amy, "p1", &["bob", "carl", "ghost"]).await;
    assert_eq!(
        states,
        vec![json!({"type": "presence", "user": "bob", "state": "online"})]
    );

    // bob's phone loses its connection: no DISCONNECT.
    let before = now_ms();
    drop(bob);
    let offline = amy
        .wait_for("bob offline", chat_tests::WAIT, |r| r.kind() == "presence")
        .await;
    assert_eq!(offline.topic, amy.device_topic());
    assert_eq!(offline.event["state"], "offline");
    let last_seen = u64_of(&offline.event, "last_seen");
    assert!(last_seen >= before && last_seen <= now_ms(), "{last_seen}");

    // carl is no business of amy's: his comings and goings stay private.
    drop(carl);
    amy.expect_quiet(QUIET).await;

    let bob_token = node.login("bob", chat_tests::TEST_PASSWORD).await;
    let bob_laptop = ChatDevice::connect_app(&node, &node.enrol(&bob_token, "laptop").await).await;
    let online = amy
        .wait_for("bob online", chat_tests::WAIT, |r| r.kind() == "presence")
        .await;
    assert_eq!(
        online.event,
        json!({"type": "presence", "user": "bob", "state": "online"})
    );

    // A watcher that is not allowed gets nothing, and no error that tells why.
    let mut dave = app(&node, "dave", "phone").await;
    let states = presence_sub(&mut dave, "p2", &["bob", "amy"]).await;
    assert!(states.is_empty(), "{states:?}");

    drop(bob_laptop);
    amy.wait_for("bob offline again", chat_tests::WAIT, |r| {
        r.kind() == "presence"
    })
    .await;
    let stored = node
        .node()
        .store()
        .last_seen("bob")
        .unwrap()
        .expect("last seen stored");
    drop(amy);
    let node = node.restart().await;
    assert_eq!(node.node().store().last_seen("bob").unwrap(), Some(stored));
    let mut amy = ChatDevice::connect_app(
        &node,
        &node
            .enrol(
                &node.login("amy", chat_tests::TEST_PASSWORD).await,
                "phone2",
            )
            .await,
    )
    .await;
    let states = presence_sub(&mut amy, "p3", &["bob"]).await;
    assert_eq!(
        states,
        vec![json!({"type": "presence", "user": "bob", "state": "offline", "last_seen": stored})]
    );
    node.stop().await;
}

// Typing goes at once to the other member(s), carries no `n`, and is never in `sync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_forwarded_and_never_stored() {
    let node = TestNode::start().await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    let mut cat = app(&node, "cat", "phone").await;
    amy.request(&json!({"type": "typing", "to": "bob", "state": "start"}))
        .await;
    let typing = bob.wait_user_event("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "from": "amy", "conv": direct_conv("amy", "bob"), "state": "start"})
    );
    cat.expect_quiet(QUIET).await;

    let create = json!({"type": "group_create", "name": "G", "members": ["bob", "cat"]});
    let group = str_of(&amy.ask_ok("c", create).await, "group").to_owned();
    bob.request(&json!({"type": "typing", "group": group, "state": "stop"}))
        .await;
    for dev in [&mut amy, &mut cat] {
        let t = dev.wait_user_event("typing").await;
        assert_eq!(
            (t["from"].as_str(), t["state"].as_str()),
            (Some("bob"), Some("stop"))
        );
        assert_eq!(t["conv"], format!("g.{group}"));
    }
    // Outsiders may not type into a group; typing to nobody is an error.
    let mut dan = app(&node, "dan", "phone").await;
    dan.request(&json!({"type": "typing", "group": group, "state": "start"}))
        .await;
    assert_eq!(dan.wait_user_event("error").await["code"], "forbidden");
    dan.request(&json!({"type": "typing", "to": "ghost", "state": "start"}))
        .await;
    assert_eq!(dan.wait_user_event("error").await["code"], "not_found");

    for dev in [&mut amy, &mut bob, &mut cat] {
        let events = dev.sync_all(0, 100).await;
        assert!(
            events.iter().all(|e| e["type"] != "typing"),
            "{}: typing in sync: {events:?}",
            dev.user
        );
    }
    node.stop().await;
}

// bob blocks amy. amy's messages are stored for her (`sent`) but never reach bob: not live,
// not in his sync, not in his history; amy's own history has them. bob cannot write to amy
// while he blocks her, and no presence or typing flows either way. In a group, bob does not
// get amy's messages but cat does. After unblocking, new messages flow again; the ones sent
// during the block stay hidden from bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_stops_everything_between_two_users_in_both_directions() {
    let node = TestNode::start().await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    let mut cat = app(&node, "cat", "phone").await;
    talk(&mut amy, &mut bob, "before").await;
    talk(&mut bob, &mut amy, "back").await;
    let create = json!({"type": "group_create", "name": "G", "members": ["bob", "cat"]});
    let group = str_of(&amy.ask_ok("c", create).await, "group").to_owned();
    for dev in [&mut amy, &mut bob, &mut cat] {
        dev.wait_user_event("group").await;
    }

    bob.ask_ok("b1", json!({"type": "block", "user": "amy"}))
        .await;

    amy.send("during", "bob", "can you hear me?").await;
    let sent = amy.wait_user_event("sent").await;
    let hidden_seq = u64_of(&sent, "seq");
    bob.expect_quiet(QUIET).await;

    // The other direction: bob may not write to amy while he blocks her.
    bob.send("reply", "amy", "no").await;
    let err = bob.wait_user_event("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("forbidden"), Some("reply"))
    );

    // No typing either way.
    amy.request(&json!({"type": "typing", "to": "bob", "state": "start"}))
        .await;
    bob.request(&json!({"type": "typing", "to": "amy", "state": "start"}))
        .await;
    bob.expect_quiet(QUIET).await;
    amy.expect_quiet(QUIET).await;

    // No presence either way.
    assert!(presence_sub(&mut amy, "p1", &["bob"]).await.is_empty());
    assert!(presence_sub(&mut bob, "p2", &["amy"]).await.is_empty());

    // In the group: cat gets amy's message, bob does not.
    amy.send_group("g1", &group, "to the group").await;
    amy.wait_user_event("sent").await;
    assert_eq!(cat.wait_user_event("msg").await["body"], "to the group");
    bob.expect_quiet(QUIET).await;

    // Nothing of it in bob's sync or history; amy's history has it.
    let bob_inbox = bob.sync_all(0, 100).await;
    assert!(
        bob_inbox
            .iter()
            .all(|e| e["from"] != "amy" || e["body"] == "hi"),
        "bob's inbox has a message from amy sent during the block: {bob_inbox:?}"
    );
    let conv = direct_conv("amy", "bob");
    let bob_page = bob.history("h1", &conv, None, None).await;
    let bob_seqs: Vec<u64> = array_of(&bob_page, "messages")
        .iter()
        .map(|m| u64_of(m, "seq"))
        .collect();
    assert!(!bob_seqs.contains(&hidden_seq), "{bob_page}");
    let amy_page = amy.history("h2", &conv, None, None).await;
    let amy_seqs: Vec<u64> = array_of(&amy_page, "messages")
        .iter()
        .map(|m| u64_of(m, "seq"))
        .collect();
    assert!(amy_seqs.contains(&hidden_seq), "{amy_page}");
    let group_page = bob.history("h3", &format!("g.{group}"), None, None).await;
    assert!(
        array_of(&group_page, "messages")
            .iter()
            .all(|m| m["body"] != "to the group"),
        "{group_page}"
    );

    // Unblock: new messages flow; the hidden one stays hidden.
    bob.ask_ok("u1", json!({"type": "unblock", "user": "amy"}))
        .await;
    amy.send("after", "bob", "better now?").await;
    assert_eq!(bob.wait_user_event("msg").await["body"], "better now?");
    let bob_page = bob.history("h4", &conv, None, None).await;
    let bob_seqs: Vec<u64> = array_of(&bob_page, "messages")
        .iter()
        .map(|m| u64_of(m, "seq"))
        .collect();
    assert!(!bob_seqs.contains(&hidden_seq), "{bob_page}");
    bob.send("reply2", "amy", "yes").await;
    bob.wait_user_event("sent").await;
    assert_eq!(amy.wait_user_event("msg").await["body"], "yes");

    // Blocking yourself makes no sense.
    bob.ask_error("b2", json!({"type": "block", "user": "bob"}), "bad_request")
        .await;
    node.stop().await;
}
