//! Privacy against a real node: who sees whose online state and last seen (contacts, the
//! `online` and `last_seen` settings), the `privacy` request, and group invites for users
//! whose `groups` setting does not let the adder add them.

use std::time::Duration;

use chat_tests::chat::{array_of, str_of, u64_of, ChatDevice};
use chat_tests::TestNode;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(300);

async fn app(node: &TestNode, user: &str, device: &str) -> ChatDevice {
    let (_, enrolment) = node.user_with_device(user, device).await;
    ChatDevice::connect_app(node, &enrolment).await
}

/// `from` sends `to` a message and both see it through.
async fn write(from: &mut ChatDevice, to: &mut ChatDevice, id: &str) {
    let to_user = to.user.clone();
    from.send(id, &to_user, "hi").await;
    from.wait_user_event("sent").await;
    to.wait_user_event("msg").await;
}

/// The `presence` events that answer a `presence_sub` (everything before its `ok`).
async fn watch(dev: &mut ChatDevice, req: &str, users: &[&str]) -> Vec<Value> {
    let request = json!({"type": "presence_sub", "req": req, "device": dev.device, "users": users});
    dev.request(&request).await;
    let mut states = Vec::new();
    loop {
        let r = dev.expect("presence answer").await;
        assert_eq!(r.topic, dev.device_topic(), "{}", r.event);
        match r.kind() {
            "presence" => states.push(r.event),
            "ok" if r.event["req"] == req => return states,
            _ => panic!("unexpected answer to presence_sub: {}", r.event),
        }
    }
}

/// A `privacy` request (`settings` merged in) answered by a `privacy` event; returns it.
async fn privacy(dev: &mut ChatDevice, req: &str, settings: Value) -> Value {
    let mut request = json!({"type": "privacy", "id": format!("id-{req}")});
    if let (Value::Object(request), Value::Object(settings)) = (&mut request, settings) {
        request.extend(settings);
    }
    let answer = dev.ask(req, request).await;
    assert_eq!(answer["type"], "privacy", "{answer}");
    answer
}

fn state(user: &str, online: bool) -> Value {
    let state = if online { "online" } else { "offline" };
    json!({"type": "presence", "user": user, "state": state})
}

async fn next_presence(dev: &mut ChatDevice) -> Value {
    dev.wait_for("presence", chat_tests::WAIT, |r| r.kind() == "presence")
        .await
        .event
}

// Contacts are the people you wrote to. amy writes to bob once: bob sees amy (she wrote to
// him), amy does not see bob (he never wrote to her) until he answers. A contact sees the
// last seen; a stranger who wrote once sees nothing, not even when bob goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_only_contacts_see_online_state_and_last_seen() {
    let node = TestNode::start().await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    let mut cat = app(&node, "cat", "phone").await;
    write(&mut amy, &mut bob, "m1").await;
    write(&mut cat, &mut bob, "m1").await;

    assert_eq!(watch(&mut amy, "p1", &["bob"]).await, Vec::<Value>::new());
    assert_eq!(watch(&mut cat, "p1", &["bob"]).await, Vec::<Value>::new());
    assert_eq!(
        watch(&mut bob, "p1", &["amy"]).await,
        vec![state("amy", true)]
    );

    write(&mut bob, &mut amy, "r1").await;
    assert_eq!(
        watch(&mut amy, "p2", &["bob"]).await,
        vec![state("bob", true)]
    );

    drop(bob);
    let offline = next_presence(&mut amy).await;
    assert_eq!(
        (offline["user"].as_str(), offline["state"].as_str()),
        (Some("bob"), Some("offline"))
    );
    assert!(u64_of(&offline, "last_seen") > 0, "{offline}");
    cat.expect_quiet(QUIET).await;
    node.stop().await;
}

// bob shows his online state to everyone (even cat, who never talked to him) and his last
// seen to nobody: watchers see him go without a time. amy hides her online state: bob's
// watch is told she is offline at once, and hears nothing when she comes and goes. dan hides
// his own last seen, so he sees nobody's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_and_nobody_and_your_own_last_seen() {
    let node = TestNode::start().await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    let mut cat = app(&node, "cat", "phone").await;
    let mut dan = app(&node, "dan", "phone").await;
    write(&mut amy, &mut bob, "m1").await;
    write(&mut bob, &mut amy, "m2").await;
    write(&mut bob, &mut dan, "m3").await;

    privacy(
        &mut bob,
        "s1",
        json!({"online": "everyone", "last_seen": "nobody"}),
    )
    .await;
    assert_eq!(
        watch(&mut cat, "p1", &["bob"]).await,
        vec![state("bob", true)]
    );
    assert_eq!(
        watch(&mut amy, "p1", &["bob"]).await,
        vec![state("bob", true)]
    );

    assert_eq!(
        watch(&mut bob, "p2", &["amy"]).await,
        vec![state("amy", true)]
    );
    privacy(&mut amy, "s2", json!({"online": "nobody"})).await;
    // bob's own last seen is hidden, so he sees no one's: nothing of amy is left for him.
    assert_eq!(watch(&mut bob, "p3", &["amy"]).await, Vec::<Value>::new());

    // dan (bob wrote to him) has a last seen of bob only while dan shows his own. The change
    // re-sends cat what he may see of bob: still only the online state.
    privacy(&mut bob, "s3", json!({"last_seen": "contacts"})).await;
    assert_eq!(next_presence(&mut cat).await, state("bob", true));
    privacy(&mut dan, "s4", json!({"last_seen": "nobody"})).await;
    assert_eq!(
        watch(&mut dan, "p4", &["bob"]).await,
        vec![state("bob", true)]
    );

    drop(amy);
    bob.expect_quiet(QUIET).await;
    drop(bob);
    for dev in [&mut cat, &mut dan] {
        assert_eq!(
            next_presence(dev).await,
            state("bob", false),
            "{}",
            dev.user
        );
    }
    node.stop().await;
}

// A change of settings applies to watches made before it: amy watches bob (a contact); bob
// hides his online state from everyone: amy's watch is told he is offline, and from then on
// hears only his new last seen when he goes, not his coming back; then he hides that too and
// she hears nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_change_reaches_existing_watches() {
    let node = TestNode::start().await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    write(&mut bob, &mut amy, "m1").await;
    assert_eq!(
        watch(&mut amy, "p1", &["bob"]).await,
        vec![state("bob", true)]
    );

    // Without `device`, the answer goes to all of bob's devices on his user topic.
    bob.request(&json!({"type": "privacy", "req": "s1", "id": "c1", "online": "nobody"}))
        .await;
    assert_eq!(bob.wait_user_event("privacy").await["online"], "nobody");
    assert_eq!(next_presence(&mut amy).await, state("bob", false));
    drop(bob);
    let gone = next_presence(&mut amy).await;
    assert_eq!(gone["state"], "offline");
    assert!(u64_of(&gone, "last_seen") > 0, "{gone}");
    let bob_token = node.login("bob", chat_tests::TEST_PASSWORD).await;
    let mut laptop = ChatDevice::connect_app(&node, &node.enrol(&bob_token, "laptop").await).await;
    amy.expect_quiet(QUIET).await;

    privacy(&mut laptop, "s2", json!({"last_seen": "nobody"})).await;
    drop(laptop);
    amy.expect_quiet(QUIET).await;
    node.stop().await;
}

// `privacy` reads and changes the settings: fields left out stay, the answer goes to the
// asking device and, after a change, to the user's other devices; bad values are errors
// that change nothing. The settings survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privacy_request_reads_and_changes_settings_on_every_device() {
    let node = TestNode::start().await;
    let mut phone = app(&node, "amy", "phone").await;
    let token = node.login("amy", chat_tests::TEST_PASSWORD).await;
    let mut laptop = ChatDevice::connect_app(&node, &node.enrol(&token, "laptop").await).await;

    let read = privacy(&mut phone, "r1", json!({})).await;
    assert_eq!(
        read,
        json!({"type": "privacy", "req": "r1", "id": "id-r1", "last_seen": "contacts", "online": "contacts", "groups": "everyone"})
    );
    laptop.expect_quiet(QUIET).await;

    let changed = privacy(
        &mut phone,
        "r2",
        json!({"last_seen": "nobody", "groups": "contacts"}),
    )
    .await;
    let expected = json!({"type": "privacy", "req": "r2", "id": "id-r2", "last_seen": "nobody", "online": "contacts", "groups": "contacts"});
    assert_eq!(changed, expected);
    assert_eq!(laptop.expect_device_event("privacy").await, expected);

    let changed = privacy(&mut laptop, "r3", json!({"online": "everyone"})).await;
    assert_eq!(
        (
            changed["last_seen"].as_str(),
            changed["online"].as_str(),
            changed["groups"].as_str()
        ),
        (Some("nobody"), Some("everyone"), Some("contacts"))
    );
    assert_eq!(phone.expect_device_event("privacy").await, changed);

    for (req, bad) in [
        (
            "e1",
            json!({"type": "privacy", "id": "x", "online": "friends"}),
        ),
        ("e2", json!({"type": "privacy", "id": "x", "groups": 3})),
        ("e3", json!({"type": "privacy", "last_seen": "nobody"})),
    ] {
        let err = phone.ask_error(req, bad, "bad_request").await;
        assert!(!str_of(&err, "message").is_empty(), "{err}");
    }
    laptop.expect_quiet(QUIET).await;

    drop((phone, laptop));
    let node = node.restart().await;
    let settings = node.node().store().privacy("amy").unwrap();
    assert_eq!(
        (settings.last_seen, settings.online, settings.groups),
        (
            chat_store::Audience::Nobody,
            chat_store::Audience::Everyone,
            chat_store::Audience::Contacts
        )
    );
    node.stop().await;
}

/// `group_create` by `dev`; returns the `ok`.
async fn create(dev: &mut ChatDevice, req: &str, members: &[&str]) -> Value {
    let request = json!({"type": "group_create", "name": "Team", "members": members});
    dev.ask_ok(req, request).await
}

// bob lets only contacts add him. amy, whom he never wrote to (being put into her group does
// not change that), can only invite him: a stored `group_invite` (also in sync); he is not a
// member until `group_join`, which adds him like an admin would. `group_decline` drops an
// invite. Once bob writes in a group with amy, she is his contact and adds him directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_who_allow_only_contacts_are_invited_instead_of_added() {
    let node = TestNode::start().await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    let mut cat = app(&node, "cat", "phone").await;

    // bob is put into amy's first group while he still lets everyone add him.
    let first = str_of(&create(&mut amy, "c0", &["bob"]).await, "group").to_owned();
    for dev in [&mut amy, &mut bob] {
        dev.wait_user_event("group").await;
    }
    privacy(&mut bob, "s1", json!({"groups": "contacts"})).await;

    let ok = create(&mut amy, "c1", &["bob", "cat"]).await;
    let group = str_of(&ok, "group").to_owned();
    assert_eq!(ok["invited"], json!(["bob"]), "{ok}");
    amy.wait_user_event("group").await;
    let created = cat.wait_user_event("group").await;
    assert_eq!(
        created["members"],
        json!([{"user": "amy", "role": "admin"}, {"user": "cat", "role": "member"}])
    );
    let invite = bob.wait_user_event("group_invite").await;
    assert_eq!(
        (
            invite["group"].as_str(),
            invite["name"].as_str(),
            invite["by"].as_str()
        ),
        (Some(group.as_str()), Some("Team"), Some("amy"))
    );
    let n = u64_of(&invite, "n");
    let inbox = bob.sync_all(0, 100).await;
    assert!(inbox.contains(&invite), "{inbox:?}");
    assert_eq!(u64_of(inbox.last().unwrap(), "n"), n);

    let info = json!({"type": "group_info", "group": group});
    bob.ask_error("i1", info.clone(), "forbidden").await;
    bob.send_group("g1", &group, "let me in").await;
    assert_eq!(bob.wait_user_event("error").await["code"], "forbidden");

    bob.ask_ok("j1", json!({"type": "group_join", "group": group}))
        .await;
    for dev in [&mut amy, &mut bob, &mut cat] {
        let added = dev.wait_user_event("group").await;
        assert_eq!(
            (added["event"].as_str(), added["by"].as_str()),
            (Some("added"), Some("bob")),
            "{added}"
        );
        assert_eq!(added["members"], json!([{"user": "bob", "role": "member"}]));
    }
    assert_eq!(array_of(&bob.ask("i2", info).await, "members").len(), 3);
    bob.ask_error(
        "j2",
        json!({"type": "group_join", "group": group}),
        "forbidden",
    )
    .await;

    // A group_add by amy invites him too; he declines; the invite is gone.
    let third = str_of(&create(&mut amy, "c2", &[]).await, "group").to_owned();
    amy.wait_user_event("group").await;
    let add = json!({"type": "group_add", "group": third, "members": ["bob"]});
    let ok = amy.ask_ok("a1", add).await;
    assert_eq!(ok["invited"], json!(["bob"]), "{ok}");
    assert_eq!(
        bob.wait_user_event("group_invite").await["group"],
        third.as_str()
    );
    let decline = json!({"type": "group_decline", "group": third});
    bob.ask_ok("d1", decline.clone()).await;
    bob.ask_error("d2", decline, "not_found").await;
    bob.ask_error(
        "j3",
        json!({"type": "group_join", "group": third}),
        "forbidden",
    )
    .await;
    amy.expect_quiet(QUIET).await;

    // bob writes in the first group: amy is his contact now and adds him directly.
    bob.send_group("g2", &first, "hello").await;
    bob.wait_user_event("sent").await;
    let add = json!({"type": "group_add", "group": third, "members": ["bob"]});
    let ok = amy.ask_ok("a2", add).await;
    assert!(ok.get("invited").is_none(), "{ok}");
    node.stop().await;
}

// `groups: nobody`: even a contact only invites; an invite into a group that filled up in the
// meantime is refused with `too_large` when accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_means_always_invited_and_a_full_group_refuses_the_join() {
    let node = TestNode::start_with(|cfg| cfg.limits.max_group_members = 2).await;
    let mut amy = app(&node, "amy", "phone").await;
    let mut bob = app(&node, "bob", "phone").await;
    node.user_with_device("cat", "phone").await;
    write(&mut bob, &mut amy, "m1").await;
    privacy(&mut bob, "s1", json!({"groups": "nobody"})).await;

    let ok = create(&mut amy, "c1", &["bob"]).await;
    assert_eq!(ok["invited"], json!(["bob"]), "{ok}");
    let group = str_of(&ok, "group").to_owned();
    bob.wait_user_event("group_invite").await;
    let add = json!({"type": "group_add", "group": group, "members": ["cat"]});
    amy.ask_ok("a1", add).await;
    let join = json!({"type": "group_join", "group": group});
    bob.ask_error("j1", join, "too_large").await;
    node.stop().await;
}
