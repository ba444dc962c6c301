//! Groups against a real node: creation, messages to every member, membership changes as
//! stored `group` events (also in history), admins, the member limit, removal and leaving,
//! group receipts, and a 256-member group delivered to every online member.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_tests::chat::{array_of, str_of, u64_of, ChatDevice};
use chat_tests::TestNode;
use serde_json::{json, Value};

/// Registers, enrols and connects `user` with device `phone`.
async fn member(node: &TestNode, user: &str) -> ChatDevice {
    let (_, enrolment) = node.user_with_device(user, "phone").await;
    ChatDevice::connect_node(node, &enrolment).await
}

/// `group_create` by `dev`; returns the new group id.
async fn create(dev: &mut ChatDevice, name: &str, members: &[&str]) -> String {
    let request = json!({"type": "group_create", "name": name, "members": members});
    let ok = dev.ask_ok("create", request).await;
    assert_eq!(ok["request"], "group_create", "{ok}");
    str_of(&ok, "group").to_owned()
}

/// The next `group` event of `dev`, which must be about `group` and say `event`.
async fn group_event(dev: &mut ChatDevice, group: &str, event: &str) -> Value {
    let ev = dev.wait_user_event("group").await;
    assert_eq!(
        (ev["group"].as_str(), ev["event"].as_str()),
        (Some(group), Some(event)),
        "{}: {ev}",
        dev.user
    );
    ev
}

fn members(list: &[(&str, &str)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(user, role)| json!({"user": user, "role": role}))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_from_creation_to_removal_and_leaving() {
    let node = TestNode::start().await;
    let mut amy = member(&node, "amy").await;
    let mut bob = member(&node, "bob").await;
    let mut cat = member(&node, "cat").await;
    let mut dan = member(&node, "dan").await;

    let group = create(&mut amy, "Team", &["bob", "cat"]).await;
    let conv = format!("g.{group}");
    for dev in [&mut amy, &mut bob, &mut cat] {
        let ev = group_event(dev, &group, "created").await;
        assert_eq!(ev["name"], "Team");
        assert_eq!(ev["by"], "amy");
        assert_eq!((u64_of(&ev, "seq"), u64_of(&ev, "n")), (1, 1));
        assert_eq!(
            ev["members"],
            members(&[("amy", "admin"), ("bob", "member"), ("cat", "member")])
        );
    }

    // A message is stored once and reaches every other member.
    amy.send_group("m1", &group, "hello team").await;
    let sent = amy.wait_user_event("sent").await;
    assert_eq!(
        (sent["group"].as_str(), sent["conv"].as_str()),
        (Some(group.as_str()), Some(conv.as_str()))
    );
    assert_eq!((u64_of(&sent, "seq"), u64_of(&sent, "n")), (2, 2));
    for dev in [&mut bob, &mut cat] {
        let msg = dev.wait_user_event("msg").await;
        assert_eq!(msg["from"], "amy");
        assert_eq!(msg["group"].as_str(), Some(group.as_str()));
        assert_eq!(msg["body"], "hello team");
        assert_eq!(msg["msg_id"], sent["msg_id"]);
        assert_eq!((u64_of(&msg, "seq"), u64_of(&msg, "n")), (2, 2));
    }

    // Outsiders: no sending, no info, and a group that does not exist looks the same.
    dan.send_group("d1", &group, "let me in").await;
    let err = dan.wait_user_event("error").await;
    assert_eq!(
        (err["code"].as_str(), err["id"].as_str()),
        (Some("forbidden"), Some("d1"))
    );
    let info = json!({"type": "group_info", "group": group});
    let refused = dan.ask_error("i1", info.clone(), "forbidden").await;
    let missing = json!({"type": "group_info", "group": "nosuchgroup"});
    let refused_too = dan.ask_error("i2", missing, "forbidden").await;
    assert_eq!(refused["message"], refused_too["message"]);

    // Only admins add and remove.
    let add_dan = json!({"type": "group_add", "group": group, "members": ["dan"]});
    bob.ask_error("a1", add_dan.clone(), "forbidden").await;
    amy.ask_ok("a2", add_dan.clone()).await;
    for dev in [&mut amy, &mut bob, &mut cat, &mut dan] {
        let ev = group_event(dev, &group, "added").await;
        assert_eq!(ev["members"], members(&[("dan", "member")]));
        assert_eq!(u64_of(&ev, "seq"), 3);
    }
    amy.ask_error("a3", add_dan, "conflict").await;
    let ghost = json!({"type": "group_add", "group": group, "members": ["ghost"]});
    amy.ask_error("a4", ghost, "not_found").await;

    // Removal: the removed member hears it, then nothing more.
    let remove_cat = json!({"type": "group_remove", "group": group, "members": ["cat"]});
    amy.ask_ok("r1", remove_cat).await;
    for dev in [&mut amy, &mut bob, &mut cat, &mut dan] {
        let ev = group_event(dev, &group, "removed").await;
        assert_eq!(ev["members"], members(&[("cat", "member")]));
        assert_eq!(u64_of(&ev, "seq"), 4);
    }
    amy.send_group("m2", &group, "without cat").await;
    assert_eq!(u64_of(&amy.wait_user_event("sent").await, "seq"), 5);
    for dev in [&mut bob, &mut dan] {
        let msg = dev.wait_user_event("msg").await;
        assert_eq!(
            (msg["body"].as_str(), u64_of(&msg, "seq")),
            (Some("without cat"), 5)
        );
    }
    cat.expect_quiet(Duration::from_millis(300)).await;
    let cat_inbox = cat.sync_all(0, 100).await;
    let kinds: Vec<(&str, u64)> = cat_inbox
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or(""), u64_of(e, "seq")))
        .collect();
    assert_eq!(
        kinds,
        vec![("group", 1), ("msg", 2), ("group", 3), ("group", 4)],
        "cat's inbox ends with her removal"
    );
    cat.send_group("c1", &group, "still here?").await;
    assert_eq!(cat.wait_user_event("error").await["code"], "forbidden");
    // She still reads what was sent while she was a member, up to her removal.
    let page = cat.history("h0", &conv, None, None).await;
    let seqs: Vec<u64> = array_of(&page, "messages")
        .iter()
        .map(|e| u64_of(e, "seq"))
        .collect();
    assert_eq!(seqs, vec![4, 3, 2, 1], "{page}");

    // Leaving.
    bob.ask_ok("l1", json!({"type": "group_leave", "group": group}))
        .await;
    for dev in [&mut amy, &mut bob, &mut dan] {
        let ev = group_event(dev, &group, "left").await;
        assert_eq!(ev["by"], "bob");
        assert_eq!(ev["members"], members(&[("bob", "member")]));
        assert_eq!(u64_of(&ev, "seq"), 6);
    }
    let info = amy.ask("i3", info).await;
    assert_eq!(info["type"], "group_info", "{info}");
    assert_eq!(
        (info["group"].as_str(), info["name"].as_str()),
        (Some(group.as_str()), Some("Team"))
    );
    assert_eq!(
        info["members"],
        members(&[("amy", "admin"), ("dan", "member")])
    );

    // History: messages and membership changes in one order, over MQTT and HTTP.
    let page = amy.history("h1", &conv, None, None).await;
    let entries: Vec<(String, u64)> = array_of(&page, "messages")
        .iter()
        .map(|e| (str_of(e, "type").to_owned(), u64_of(e, "seq")))
        .collect();
    let expected: Vec<(String, u64)> = [
        ("group", 6),
        ("msg", 5),
        ("group", 4),
        ("group", 3),
        ("msg", 2),
        ("group", 1),
    ]
    .iter()
    .map(|(t, s)| (t.to_string(), *s))
    .collect();
    assert_eq!(entries, expected);
    assert!(array_of(&page, "messages")
        .iter()
        .all(|e| e.get("n").is_none()));
    let dan_token = node.login("dan", chat_tests::TEST_PASSWORD).await;
    let http =
        chat_tests::chat::http_history_all(&node.client, &node.http, &dan_token, &conv).await;
    let seqs: Vec<u64> = http.iter().map(|e| u64_of(e, "seq")).collect();
    assert_eq!(
        seqs,
        vec![3, 4, 5, 6],
        "dan reads over HTTP from the entry that added him"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_leaving_hands_the_group_on() {
    let node = TestNode::start().await;
    let mut amy = member(&node, "amy").await;
    let mut bob = member(&node, "bob").await;
    let mut cat = member(&node, "cat").await;
    let group = create(&mut amy, "Club", &["bob", "cat"]).await;
    for dev in [&mut amy, &mut bob, &mut cat] {
        group_event(dev, &group, "created").await;
    }
    amy.ask_ok("l", json!({"type": "group_leave", "group": group}))
        .await;
    let ev = group_event(&mut bob, &group, "left").await;
    assert_eq!(
        ev["members"],
        members(&[("amy", "admin"), ("bob", "admin")])
    );
    // bob, the longest-standing member, may now remove.
    let remove = json!({"type": "group_remove", "group": group, "members": ["cat"]});
    bob.ask_ok("r", remove).await;
    group_event(&mut cat, &group, "left").await;
    group_event(&mut cat, &group, "removed").await;
    // amy is gone: she may not do anything.
    let info = json!({"type": "group_info", "group": group});
    amy.ask_error("i", info, "forbidden").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_limit_is_enforced_with_a_clear_error() {
    let node = TestNode::start_with(|cfg| cfg.limits.max_group_members = 3).await;
    let mut amy = member(&node, "amy").await;
    for user in ["bob", "cat", "dan"] {
        node.user_with_device(user, "phone").await;
    }
    let too_many = json!({"type": "group_create", "name": "Big", "members": ["bob", "cat", "dan"]});
    let err = amy.ask_error("c1", too_many, "too_large").await;
    let message = str_of(&err, "message");
    assert!(message.contains("at most 3 members"), "{message}");
    let group = create(&mut amy, "Small", &["bob", "cat"]).await;
    let add = json!({"type": "group_add", "group": group, "members": ["dan"]});
    amy.ask_error("a1", add.clone(), "too_large").await;
    let remove = json!({"type": "group_remove", "group": group, "members": ["cat"]});
    amy.ask_ok("r1", remove).await;
    amy.ask_ok("a2", add).await;
    node.stop().await;
}

// Receipts in a group: each member's watermark is stored, and the author of every message a
// receipt covers gets one `receipt` event per member (nobody else does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_receipts_reach_the_authors_of_the_covered_messages() {
    let node = TestNode::start().await;
    let mut amy = member(&node, "amy").await;
    let mut bob = member(&node, "bob").await;
    let mut cat = member(&node, "cat").await;
    let group = create(&mut amy, "Readers", &["bob", "cat"]).await;
    let conv = format!("g.{group}");
    for dev in [&mut amy, &mut bob, &mut cat] {
        group_event(dev, &group, "created").await;
    }
    amy.send_group("a1", &group, "from amy").await; // seq 2
    amy.wait_user_event("sent").await;
    bob.send_group("b1", &group, "from bob").await; // seq 3
    bob.wait_user_event("sent").await;
    for _ in 0..2 {
        cat.wait_user_event("msg").await;
    }
    bob.wait_user_event("msg").await;
    amy.wait_user_event("msg").await;

    // cat has read everything: both authors hear it.
    cat.request(&json!({"type": "receipt", "conv": conv, "status": "read", "seq": 3}))
        .await;
    for dev in [&mut amy, &mut bob, &mut cat] {
        let r = dev.wait_user_event("receipt").await;
        assert_eq!(
            (r["by"].as_str(), r["status"].as_str(), u64_of(&r, "seq")),
            (Some("cat"), Some("read"), 3),
            "{}: {r}",
            dev.user
        );
    }
    // bob got up to seq 2 (amy's message; seq 1 is the creation): only amy and bob hear it.
    bob.request(&json!({"type": "receipt", "conv": conv, "status": "delivered", "seq": 2}))
        .await;
    for dev in [&mut amy, &mut bob] {
        let r = dev.wait_user_event("receipt").await;
        assert_eq!((r["by"].as_str(), u64_of(&r, "seq")), (Some("bob"), 2));
    }
    cat.expect_quiet(Duration::from_millis(300)).await;
    let store = node.node().store();
    assert_eq!(store.receipt(&conv, "cat").unwrap().read, 3);
    assert_eq!(store.receipt(&conv, "bob").unwrap().delivered, 2);
    // Outsiders cannot post receipts.
    let (_, dan_e) = node.user_with_device("dan", "phone").await;
    let mut dan = ChatDevice::connect_node(&node, &dan_e).await;
    dan.request(&json!({"type": "receipt", "conv": conv, "status": "read", "seq": 3}))
        .await;
    assert_eq!(dan.wait_user_event("error").await["code"], "forbidden");
    node.stop().await;
}

// 256 members, all online: one message reaches every member's device, in order, and the
// sender's `sent` does not wait for the fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_member_group_message_reaches_every_online_member() {
    const MEMBERS: usize = 256;
    const MESSAGES: usize = 3;
    let node = TestNode::start().await;
    let mut devices = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        devices.push(member(&node, &format!("m{i}")).await);
    }
    let others: Vec<String> = (1..MEMBERS).map(|i| format!("m{i}")).collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let group = create(&mut devices[0], "Everyone", &others).await;
    for dev in devices.iter_mut() {
        group_event(dev, &group, "created").await;
    }
    let mut sent_at = HashMap::new();
    let mut sent_latency = Vec::new();
    for k in 0..MESSAGES {
        let id = format!("k{k}");
        let start = Instant::now();
        devices[0]
            .send_group(&id, &group, &format!("hello {k}"))
            .await;
        let sent = devices[0].wait_user_event("sent").await;
        sent_latency.push(start.elapsed());
        assert_eq!(u64_of(&sent, "seq"), 2 + k as u64);
        sent_at.insert(2 + k as u64, start);
    }
    let mut delivery = Vec::new();
    for dev in devices.iter_mut().skip(1) {
        for k in 0..MESSAGES {
            let msg = dev.wait_user_event("msg").await;
            let seq = u64_of(&msg, "seq");
            assert_eq!(seq, 2 + k as u64, "{}: messages in order", dev.user);
            assert_eq!(msg["body"], format!("hello {k}"));
            delivery.push(sent_at[&seq].elapsed());
        }
    }
    assert_eq!(delivery.len(), (MEMBERS - 1) * MESSAGES);
    delivery.sort();
    let q = |p: f64| delivery[((delivery.len() - 1) as f64 * p) as usize];
    println!(
        "256-member group: send->sent {:?}; send->msg on every member (upper bound, read one \
         device after another): p50 {:?} p99 {:?} max {:?}",
        sent_latency,
        q(0.5),
        q(0.99),
        q(1.0)
    );
    // Every member's inbox has the messages exactly once.
    let last = &mut devices[MEMBERS - 1];
    let events = last.sync_all(0, 100).await;
    assert_eq!(events.len(), 1 + MESSAGES, "created + the messages");
    node.stop().await;
}

// A group message whose fan-out was cut short (stored with its pending marker, nobody's inbox
// written: what a crash right after the write leaves) is finished on the next start: the
// sender's own copy and every recipient's copy, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_group_fan_out_is_finished_on_start() {
    let node = TestNode::start().await;
    let mut amy = member(&node, "amy").await;
    let mut bob = member(&node, "bob").await;
    let mut cat = member(&node, "cat").await;
    let group = create(&mut amy, "Crash", &["bob", "cat"]).await;
    for dev in [&mut amy, &mut bob, &mut cat] {
        group_event(dev, &group, "created").await;
    }
    drop((amy, bob, cat));
    let conv = format!("g.{group}");
    let node = node
        .restart_with(|cfg| {
            let store = chat_store::Store::open(&cfg.node.data_dir.join("db"), &cfg.store)
                .expect("opening the stopped node's store");
            let mut writer = store.conv_writer(store.conv_shard(&conv)).unwrap();
            let msg = chat_store::NewMessage {
                msg_id: 1,
                conv: conv.clone(),
                from: "amy".into(),
                client_id: "cut".into(),
                ts: chat_tests::chat::now_ms(),
                content: json!({"group": group, "body": "half way"}),
            };
            let recipients = vec!["bob".to_owned(), "cat".to_owned()];
            writer.append_fanout(vec![(msg, recipients)]).unwrap();
            drop(writer);
            store.flush().unwrap();
        })
        .await;
    for user in ["amy", "bob", "cat"] {
        let token = node.login(user, chat_tests::TEST_PASSWORD).await;
        let enrolment = node.enrol(&token, "tablet").await;
        let mut dev = ChatDevice::connect_node(&node, &enrolment).await;
        let events = dev.sync_all(0, 100).await;
        let kinds: Vec<&str> = events.iter().map(|e| str_of(e, "type")).collect();
        let expected = if user == "amy" { "sent" } else { "msg" };
        assert_eq!(kinds, vec!["group", expected], "{user}: {events:?}");
        assert_eq!(events[1]["body"], "half way");
        assert_eq!(u64_of(&events[1], "seq"), 2);
    }
    node.stop().await;
}
