//! Security: no user can reach another user's traffic, and no client can disturb the rest of
//! the node. Every refusal in this file and in `security_packets.rs` also checks that the
//! victim's connection stays up and got nothing, and that two bystanders (carol and dave,
//! `chat_tests::chat::Bystanders`) still exchange a message: "refused" never means "refused by
//! breaking something".
//!
//! # Index: every item of the list, and the tests that cover it
//!
//! "(here)" is this file; other files are in `tests/tests/`.
//!
//! **Every way one user might reach another's traffic**
//! - Subscribe to another user's topics: `isolation.rs`
//!   `foreign_filters_get_failure_and_connection_survives`,
//!   `mixed_subscribe_gets_per_filter_codes` (one SUBSCRIBE with own and foreign filters),
//!   `mqtt5_is_confined_too` (0x87 in MQTT 5); on the plaintext listener: `robustness.rs`
//!   `plaintext_login_with_session_token`.
//! - Publish to another user's topics: `isolation.rs` `foreign_publish_closes_publisher_only`
//!   (the victim gets nothing and stays connected), `mqtt5_is_confined_too`.
//! - Wildcards (`#`, `/tenants/+/in`, `/tenants/#`, `$share/...`, `$SYS/#`, and wildcards in a
//!   topic name, written by hand): `isolation.rs`
//!   `foreign_filters_get_failure_and_connection_survives`, `foreign_publish_closes_publisher_only`;
//!   in a Last Will: `last_will_on_another_users_topic_is_refused_and_never_published` (here).
//! - Client id colliding with another user's device (the device id, or `user.device`, rumqttd's
//!   internal id): refused, the owner is not taken over, and two users' same-named devices on
//!   one router stay side by side:
//!   `another_users_device_id_as_client_id_is_refused_and_the_owner_stays` (here); another
//!   device of the same user: `isolation.rs` `client_id_must_match_certificate_cn`.
//! - Last Will on another prefix: refused at CONNECT (MQTT 3.1.1 and 5); a will on the own
//!   prefix, published when the connection dies abruptly, reaches the own user only, without
//!   its MQTT 5 properties: `last_will_on_another_users_topic_is_refused_and_never_published`
//!   (here). A revoked device's or disabled user's will is not published at all:
//!   `a_will_is_not_published_for_a_revoked_device_or_disabled_user` (here).
//! - Response topics: MQTT 5 response topic, correlation data and user properties naming another
//!   user, on a request and on a plain publish: nothing is published there, and the properties
//!   do not travel to the recipient: `mqtt5_response_topics_never_route_to_another_user` (here).
//! - Group ids of groups one is not in (`send` with text or media, `receipt`, `history` over
//!   MQTT and HTTP, `group_info`, `group_add`, `group_remove`, `group_leave`, `typing`):
//!   `forbidden`, word for word the answer a group that does not exist gets, and the members
//!   hear nothing: `groups_of_others_cannot_be_reached_or_told_apart_from_missing_ones` (here);
//!   a removed member: `groups.rs` `a_group_from_creation_to_removal_and_leaving`; what members
//!   added later and former members may read (history, sync, media, receipts): `group_history.rs`.
//!   1:1 conversations one is not in: `bad_input.rs` (`receipt`, `history`) and
//!   `sync_history.rs` (members only, MQTT and HTTP).
//! - Media ids of another user's media, in `send` (1:1 and group) and in HTTP downloads (whole,
//!   ranges, malformed ids): the `not_found`/404 of a file that does not exist, no size leaked:
//!   `media_of_others_cannot_be_sent_or_downloaded` (here); who may download after a send:
//!   `media.rs` `only_the_uploader_and_readers_of_a_message_that_carried_it_may_download`.
//!
//! **Certificates**
//! - Expired, foreign-CA (right identity) and missing client certificates: `tls.rs`
//!   `expired_certificate_is_refused`, `certificate_from_another_ca_is_refused`,
//!   `no_client_certificate_is_refused` (each followed by a good device connecting).
//! - Revoked: `revocation.rs` `revoked_device_is_kicked_and_kept_out` (the user's other device
//!   stays up), `revocation_is_per_user_and_device`, `revoked_device_cannot_log_in_on_plaintext`;
//!   a revocation racing the device's connect:
//!   `a_revocation_racing_a_connect_never_leaves_the_device_connected` (here).
//!
//! **Oversized and malformed packets** (`security_packets.rs`)
//! - Oversized: the header alone past `mqtt.max_packet_size`, a whole packet one byte past it, an
//!   oversized CONNECT; exactly at the limit is accepted:
//!   `oversized_packets_close_only_the_offender`. Payloads under the packet limit but over the
//!   request limit: `bad_input.rs` (`too_large`).
//! - Malformed, after CONNECT (bad remaining length, QoS 3, topic not UTF-8, with a NUL, past the
//!   packet or empty, packet id 0, empty or malformed SUBSCRIBE, packet types 0 and 15,
//!   server-only packets, acknowledgements of nothing; MQTT 5 server-only packets, topic alias,
//!   subscription identifiers, bad properties) and malformed CONNECTs (protocol name, 3.1, reserved flag, will
//!   QoS 3, client id not UTF-8 or past the packet, missing username, MQTT 5 properties):
//!   `malformed_packets_close_only_the_offender`. Garbage instead of TLS or MQTT, a second
//!   CONNECT, a first packet that is not CONNECT: `robustness.rs`
//!   `garbage_is_closed_without_side_effects`, `bad_first_packets_are_closed`.
//! - No panic in the request parser and validator: the properties in
//!   `proto/src/tests/validator.rs` and the `cargo fuzz` target in `fuzz/` (`docs/TESTING.md`).
//!
//! **A flood of half-open connections** (`security_packets.rs`)
//! - 1,500 silent TCP sockets, 200 partial TLS ClientHellos and 200 TLS handshakes without
//!   CONNECT while a pair of devices keeps talking with bounded latency; a new device connects
//!   during the flood and after it; the node closes every half-open socket by its timeouts:
//!   `a_flood_of_half_open_connections_does_not_disturb_the_node`. Smaller cases (50 silent
//!   sockets, no CONNECT after the handshake, silent sessions): `robustness.rs`.

use std::time::Duration;

use chat_tests::chat::{keys_of, str_of, u64_of, Bystanders, ChatDevice, QUIET};
use chat_tests::{
    tls_options, v5, ConnectError, Enrolment, TestClient, TestClientV5, TestNode, WAIT,
};
use reqwest::{Method, StatusCode};
use rumqttc::{ConnectReturnCode, LastWill, QoS};
use serde_json::{json, Value};

/// A user whose id hashes to the same router partition as `user`: rumqttd keys its links by
/// client id within one router, so that is where a collision would bite.
fn same_partition_as(node: &TestNode, user: &str) -> String {
    let partitions = node.node().config().mqtt.partitions;
    let want = chat_broker::partition_of(user, partitions);
    (0..)
        .map(|i| format!("bob{i}"))
        .find(|b| chat_broker::partition_of(b, partitions) == want)
        .expect("some bobN shares the partition")
}

// alice's certificate with a client id naming bob's device is refused ("identifier rejected")
// and bob's live connection is not taken over; the same holds on the plaintext listener. Two
// users with a device of the same name, on the same router, are connected side by side and
// each gets only their own events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_device_id_as_client_id_is_refused_and_the_owner_stays() {
    let node = TestNode::start().await;
    let mut others = Bystanders::new(&node).await;
    let bob = same_partition_as(&node, "alice");
    let (alice_token, alice_laptop) = node.user_with_device("alice", "laptop").await;
    let (_, bob_phone) = node.user_with_device(&bob, "phone").await;
    let mut bob_dev = ChatDevice::connect_node(&node, &bob_phone).await;
    let mut alice = ChatDevice::connect_node(&node, &alice_laptop).await;

    let internal = format!("{bob}.phone");
    for id in ["phone", internal.as_str(), bob.as_str()] {
        let err = TestClient::connect_tls(&node, &alice_laptop, id)
            .await
            .err();
        assert_eq!(
            err,
            Some(ConnectError::Refused(ConnectReturnCode::BadClientId)),
            "alice's certificate with client id {id:?}"
        );
    }
    // Plaintext: alice's own token, bob's device id (alice has no such device).
    let err = TestClient::connect_plain(&node, "alice", &alice_token, "phone")
        .await
        .err();
    assert_eq!(
        err,
        Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized))
    );
    bob_dev.untouched().await;

    // alice gets a "phone" of her own: both phones stay connected, each hears only its user.
    let alice_phone = node.enrol(&alice_token, "phone").await;
    let mut alice_ph = ChatDevice::connect_node(&node, &alice_phone).await;
    let mut alice_plain = TestClient::connect_plain(&node, "alice", &alice_token, "phone")
        .await
        .expect("alice's phone id on the plaintext listener");
    // That plaintext login took over alice's phone (same device), never bob's.
    assert!(alice_ph.client.wait_disconnected(WAIT).await);
    alice_plain.alive("/tenants/alice/in").await.unwrap();
    let mut alice_ph = ChatDevice::connect_node(&node, &alice_phone).await;
    assert!(alice_plain.wait_disconnected(WAIT).await);

    alice.send("a1", &bob, "hi bob").await;
    let msg = bob_dev.expect_user_event("msg").await;
    assert_eq!(
        (str_of(&msg, "from"), str_of(&msg, "body")),
        ("alice", "hi bob")
    );
    assert_eq!(
        str_of(&alice_ph.expect_user_event("sent").await, "id"),
        "a1"
    );
    bob_dev.send("b1", "alice", "hi alice").await;
    assert_eq!(
        str_of(&alice_ph.expect_user_event("msg").await, "body"),
        "hi alice"
    );
    assert_eq!(str_of(&bob_dev.expect_user_event("sent").await, "id"), "b1");
    bob_dev.untouched().await;
    alice.wait_user_event("sent").await;
    alice.wait_user_event("msg").await;
    alice.untouched().await;
    others.still_talk().await;
    node.stop().await;
}

/// Connects `device` with a Last Will on `topic`; `Err` is the refusal.
async fn connect_with_will(
    node: &TestNode,
    device: &Enrolment,
    topic: &str,
    payload: &str,
) -> Result<TestClient, ConnectError> {
    let mut o = tls_options(node.mqtt, device.tls_config(), &device.device_id);
    o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, false));
    TestClient::connect(o, WAIT).await
}

// A Last Will on another user's topics (their inbox, their request topic, their status) or with
// wildcards is refused at CONNECT with "not authorized", in MQTT 3.1.1 and 5; a will on the own
// prefix, published when the connection dies without DISCONNECT, reaches the own user only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_on_another_users_topic_is_refused_and_never_published() {
    let node = TestNode::start().await;
    let mut others = Bystanders::new(&node).await;
    let (alice_token, laptop) = node.user_with_device("alice", "laptop").await;
    let tablet = node.enrol(&alice_token, "tablet").await;
    let (_, bob_phone) = node.user_with_device("bob", "phone").await;
    let mut bob = ChatDevice::connect_node(&node, &bob_phone).await;
    // Everything under bob's prefix, whatever it is.
    let mut bob_all = TestClient::connect_tls(
        &node,
        &node
            .enrol(&node.login("bob", chat_tests::TEST_PASSWORD).await, "watch")
            .await,
        "watch",
    )
    .await
    .unwrap();
    bob_all.subscribe("/tenants/bob/#").await.unwrap();
    let mut alice = ChatDevice::connect_node(&node, &laptop).await;

    let impersonation = json!({"type": "send", "id": "w1", "to": "carol", "body": "from bob?"});
    let fake_msg = json!({"type": "msg", "from": "carol", "body": "fake"});
    let offline = json!({"type": "offline", "device": "phone"});
    let cases = [
        ("/tenants/bob/in", fake_msg.to_string()),
        ("/tenants/bob/in/phone", fake_msg.to_string()),
        ("/tenants/bob/out", impersonation.to_string()),
        ("/tenants/bob/status", offline.to_string()),
        ("/tenants/+/in", fake_msg.to_string()),
        ("/tenants/#", fake_msg.to_string()),
        ("#", fake_msg.to_string()),
        ("/tenants/alice/#", fake_msg.to_string()),
        ("/tenants/alicex/in", fake_msg.to_string()),
        ("/tenants/bob/../alice/in", fake_msg.to_string()),
    ];
    for (topic, payload) in &cases {
        let err = connect_with_will(&node, &tablet, topic, payload)
            .await
            .err();
        assert_eq!(
            err,
            Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized)),
            "a will on {topic}"
        );
    }
    // MQTT 5 too, with will properties that name bob as well.
    let mut o = TestClientV5::tls_options(&node, &tablet, "tablet");
    let will = v5::LastWill::new(
        "/tenants/bob/in",
        fake_msg.to_string(),
        v5::QoS::AtLeastOnce,
        false,
        None,
    );
    o.set_last_will(will);
    let err = TestClientV5::connect(o)
        .await
        .err()
        .expect("a v5 will on bob's inbox was accepted");
    assert!(format!("{err}").contains("NotAuthorized"), "{err}");

    // A will on alice's own inbox, with (v5) a response topic and correlation data for bob:
    // when the connection dies, alice's laptop gets the will, without the properties.
    let own_will = json!({"type": "will", "device": "tablet"}).to_string();
    let dead = connect_with_will(&node, &tablet, "/tenants/alice/in", &own_will)
        .await
        .unwrap();
    drop(dead); // the socket closes without DISCONNECT
    let got = alice
        .wait_for("tablet's will", WAIT, |r| r.kind() == "will")
        .await;
    assert_eq!(got.topic, "/tenants/alice/in");
    let mut o = TestClientV5::tls_options(&node, &tablet, "tablet");
    let props = v5::LastWillProperties {
        delay_interval: None,
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: Some("/tenants/bob/in".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"for bob")),
        user_properties: vec![("reply-to".into(), "/tenants/bob/in".into())],
    };
    o.set_last_will(v5::LastWill::new(
        "/tenants/alice/in",
        own_will.clone(),
        v5::QoS::AtLeastOnce,
        false,
        Some(props),
    ));
    let mut alice_v5 = TestClientV5::connect(TestClientV5::tls_options(&node, &laptop, "laptop"))
        .await
        .unwrap();
    alice_v5
        .subscribe_many(&["/tenants/alice/in"])
        .await
        .unwrap();
    let dead = TestClientV5::connect(o).await.unwrap();
    drop(dead);
    let will = alice_v5.next_message(WAIT).await.expect("v5 will");
    assert_eq!(
        (will.topic.as_str(), will.payload.as_str()),
        ("/tenants/alice/in", own_will.as_str())
    );
    let response_topic = will.properties.and_then(|p| p.response_topic);
    assert_eq!(response_topic, None, "the will's response topic travelled");

    assert_eq!(
        bob_all.next_publish(QUIET).await,
        None,
        "something reached bob's prefix"
    );
    bob.untouched().await;
    others.still_talk().await;
    // carol never got the impersonating send.
    others.dave.expect_quiet(Duration::ZERO).await;
    others.carol.expect_quiet(Duration::ZERO).await;
    node.stop().await;
}

// A device's Last Will is the device speaking; once the node has revoked the device (or an
// operator disabled the user) it no longer speaks: its will is not published. A will that is a
// chat request would otherwise send one more message in the user's name after the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_is_not_published_for_a_revoked_device_or_disabled_user() {
    let node = TestNode::start().await;
    let mut others = Bystanders::new(&node).await;
    let (alice_token, laptop) = node.user_with_device("alice", "laptop").await;
    let tablet = node.enrol(&alice_token, "tablet").await;
    let (_, eve_phone) = node.user_with_device("eve", "phone").await;
    let (_, bob_phone) = node.user_with_device("bob", "phone").await;
    let mut bob = ChatDevice::connect_node(&node, &bob_phone).await;
    let mut alice = ChatDevice::connect_node(&node, &laptop).await;
    let will = |id: &str| {
        json!({"type": "send", "id": id, "to": "bob", "body": format!("will {id}")}).to_string()
    };

    // Control: a connection that is lost does publish its will (a send, here).
    let dead = connect_with_will(&node, &tablet, "/tenants/alice/out", &will("w0"))
        .await
        .unwrap();
    drop(dead);
    assert_eq!(str_of(&bob.wait_user_event("msg").await, "body"), "will w0");
    assert_eq!(str_of(&alice.wait_user_event("sent").await, "id"), "w0");

    // Revoked: kicked, and the will is not carried out.
    let mut c = connect_with_will(&node, &tablet, "/tenants/alice/out", &will("w1"))
        .await
        .unwrap();
    assert_eq!(
        node.revoke(&alice_token, "tablet").await,
        StatusCode::NO_CONTENT
    );
    assert!(
        c.wait_disconnected(WAIT).await,
        "revoked tablet still connected"
    );
    // Disabled by an operator: the same.
    let mut c = connect_with_will(&node, &eve_phone, "/tenants/eve/out", &will("w2"))
        .await
        .unwrap();
    let r = node
        .admin(Method::POST, "/admin/v1/users/eve/disable")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        c.wait_disconnected(WAIT).await,
        "disabled user still connected"
    );

    bob.untouched().await;
    alice.untouched().await;
    others.still_talk().await;
    node.stop().await;
}

// MQTT 5 response topics and correlation data are the client's business, not routing: a request
// whose response topic is bob's inbox is answered on alice's own topics only; a message to bob
// reaches him without alice's properties; a plain publish with bob as response topic reaches
// alice's subscribers only. Nothing at all appears under bob's prefix except his `msg`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_response_topics_never_route_to_another_user() {
    let node = TestNode::start().await;
    let mut others = Bystanders::new(&node).await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let (_, bob_phone) = node.user_with_device("bob", "phone").await;
    let mut alice = TestClientV5::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    alice
        .subscribe_many(&["/tenants/alice/in", "/tenants/alice/in/laptop"])
        .await
        .unwrap();
    let mut bob = TestClientV5::connect_tls(&node, &bob_phone, "phone")
        .await
        .unwrap();
    bob.subscribe_many(&["/tenants/bob/#"]).await.unwrap();
    let pointing_at = |topic: &str| v5::PublishProperties {
        response_topic: Some(topic.to_owned()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr-123")),
        user_properties: vec![("reply-to".into(), topic.to_owned())],
        ..Default::default()
    };

    // A request: its answer comes on alice's device topic, and only there.
    let sync = json!({"type": "sync", "req": "s1", "device": "laptop"}).to_string();
    alice
        .publish_with("/tenants/alice/out", &sync, pointing_at("/tenants/bob/in"))
        .await
        .unwrap();
    let answer = alice.next_message(WAIT).await.expect("the sync answer");
    assert_eq!(answer.topic, "/tenants/alice/in/laptop");
    let event: Value = serde_json::from_str(&answer.payload).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["req"].as_str()),
        (Some("sync"), Some("s1"))
    );
    assert!(
        answer
            .properties
            .as_ref()
            .is_none_or(|p| p.correlation_data.is_none()),
        "{:?}",
        answer.properties
    );

    // A message to bob: bob gets the msg, without alice's response topic or correlation data.
    let send = json!({"type": "send", "id": "m1", "to": "bob", "body": "hi"}).to_string();
    alice
        .publish_with(
            "/tenants/alice/out",
            &send,
            pointing_at("/tenants/bob/in/phone"),
        )
        .await
        .unwrap();
    let msg = bob.next_message(WAIT).await.expect("bob's msg");
    assert_eq!(msg.topic, "/tenants/bob/in");
    let event: Value = serde_json::from_str(&msg.payload).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["body"].as_str()),
        (Some("msg"), Some("hi"))
    );
    let props = msg.properties.unwrap_or_default();
    assert_eq!(
        (props.response_topic, props.correlation_data),
        (None, None),
        "alice's properties reached bob"
    );
    assert!(
        props.user_properties.is_empty(),
        "{:?}",
        props.user_properties
    );
    let sent = alice.next_message(WAIT).await.expect("alice's sent");
    assert!(sent.payload.contains("\"sent\""), "{}", sent.payload);

    // A plain publish on alice's own inbox naming bob: it reaches alice's subscriber only.
    alice
        .publish_with(
            "/tenants/alice/in",
            "{\"type\":\"note\"}",
            pointing_at("/tenants/bob/in"),
        )
        .await
        .unwrap();
    let note = alice.next_message(WAIT).await.expect("alice's own note");
    assert_eq!(note.topic, "/tenants/alice/in");

    assert_eq!(bob.next_message(QUIET).await, None, "more reached bob");
    assert!(alice.wait_disconnected(Duration::ZERO).await.is_none());
    assert!(bob.wait_disconnected(Duration::ZERO).await.is_none());
    others.still_talk().await;
    node.stop().await;
}

// mallory knows the id of amy's group (ids travel in events and links): every request on it is
// `forbidden`, with exactly the answer a group that does not exist gets, over MQTT and HTTP; the
// members hear nothing of it and the group is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_others_cannot_be_reached_or_told_apart_from_missing_ones() {
    let node = TestNode::start().await;
    let mut others = Bystanders::new(&node).await;
    let mut devices = Vec::new();
    for user in ["amy", "bob", "mallory"] {
        let (_, e) = node.user_with_device(user, "phone").await;
        devices.push(ChatDevice::connect_node(&node, &e).await);
    }
    let [mut amy, mut bob, mut mallory] = <[ChatDevice; 3]>::try_from(devices).ok().unwrap();
    let create = json!({"type": "group_create", "name": "Secret", "members": ["bob"]});
    let group = str_of(&amy.ask_ok("c", create).await, "group").to_owned();
    amy.send_group("m1", &group, "the plan").await;
    amy.wait_user_event("sent").await;
    for dev in [&mut amy, &mut bob] {
        dev.wait_for("the creation", WAIT, |r| r.kind() == "group")
            .await;
    }
    bob.wait_user_event("msg").await;

    let requests = |g: &str| {
        let conv = format!("g.{g}");
        vec![
            json!({"type": "send", "id": "x1", "group": g, "body": "let me in"}),
            json!({"type": "send", "id": "x2", "group": g, "media": {"media_id": "0".repeat(64), "mime": "image/png", "size": 1}}),
            json!({"type": "receipt", "conv": conv, "status": "read", "seq": 2}),
            json!({"type": "history", "conv": conv}),
            json!({"type": "group_info", "group": g}),
            json!({"type": "group_add", "group": g, "members": ["mallory"]}),
            json!({"type": "group_remove", "group": g, "members": ["bob"]}),
            json!({"type": "group_leave", "group": g}),
            json!({"type": "typing", "group": g, "state": "start"}),
        ]
    };
    for (i, (real, missing)) in requests(&group)
        .into_iter()
        .zip(requests("nosuchgroup"))
        .enumerate()
    {
        let what = real["type"].clone();
        let a = mallory.ask_error(&format!("r{i}"), real, "forbidden").await;
        let b = mallory
            .ask_error(&format!("m{i}"), missing, "forbidden")
            .await;
        assert_eq!(
            a["message"], b["message"],
            "{what}: the answers tell the groups apart"
        );
        assert_eq!(keys_of(&a), keys_of(&b), "{what}");
    }
    let mallory_token = node.login("mallory", chat_tests::TEST_PASSWORD).await;
    let real = node
        .request(
            Method::GET,
            &format!("/v1/conversations/g.{group}/messages"),
            Some(&mallory_token),
            None,
        )
        .await;
    let missing = node
        .request(
            Method::GET,
            "/v1/conversations/g.nosuchgroup/messages",
            Some(&mallory_token),
            None,
        )
        .await;
    real.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(real.body, missing.body);
    assert_eq!(real.status, missing.status);

    // The members heard nothing, and nothing was stored: the next message is seq 3.
    amy.untouched().await;
    bob.untouched().await;
    let info = amy
        .ask("i", json!({"type": "group_info", "group": group}))
        .await;
    assert_eq!(
        info["members"],
        json!([{"user": "amy", "role": "admin"}, {"user": "bob", "role": "member"}])
    );
    amy.send_group("m2", &group, "still private").await;
    assert_eq!(u64_of(&amy.wait_user_event("sent").await, "seq"), 3);
    assert_eq!(u64_of(&bob.wait_user_event("msg").await, "seq"), 3);
    mallory.untouched().await;
    others.still_talk().await;
    node.stop().await;
}

// A revocation that lands while the device is connecting (after its authorization, before it
// is registered for kicking) must not leave it connected: 60 connects each race a revocation
// fired at a slightly different moment; every one ends refused or disconnected within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_racing_a_connect_never_leaves_the_device_connected() {
    let node = std::sync::Arc::new(TestNode::start().await);
    let mut others = Bystanders::new(&node).await;
    let (token, _) = node.user_with_device("alice", "laptop").await;
    let (mut refused, mut kicked) = (0, 0);
    for i in 0..60u64 {
        let device = node.enrol(&token, &format!("d{i}")).await;
        let connecting = {
            let node = node.clone();
            tokio::spawn(
                async move { TestClient::connect_tls(&node, &device, &device.device_id).await },
            )
        };
        // From "at once" to "a few milliseconds into the connect", in 100 µs steps.
        tokio::time::sleep(Duration::from_micros(100 * (i % 40))).await;
        assert_eq!(
            node.revoke(&token, &format!("d{i}")).await,
            StatusCode::NO_CONTENT
        );
        match connecting.await.unwrap() {
            Err(ConnectError::Refused(ConnectReturnCode::NotAuthorized)) => refused += 1,
            Err(e) => panic!("d{i}: {e}"),
            Ok(mut c) => {
                assert!(
                    c.wait_disconnected(Duration::from_secs(2)).await,
                    "d{i} is still connected 2 s after its revocation"
                );
                kicked += 1;
            }
        }
    }
    eprintln!("revocations racing connects: {refused} refused at CONNECT, {kicked} kicked after");
    others.still_talk().await;
}

/// A small "PNG": the real signature followed by `n` bytes.
fn png(n: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend((0..n).map(|i| (i as u8).wrapping_mul(17)));
    b
}

// amy's file, sent to bob: mallory, who knows its id, can neither download it (whole, a range,
// a range past its end: always the 404 of a file that does not exist, no size in any header) nor
// send it (1:1 or in her own group: the `not_found` of a file that does not exist), and her
// attempts grant her nothing and reach nobody. Malformed ids get the same 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_of_others_cannot_be_sent_or_downloaded() {
    let node = TestNode::start().await;
    let mut others = Bystanders::new(&node).await;
    let (amy_t, amy_e) = node.user_with_device("amy", "phone").await;
    let (bob_t, bob_e) = node.user_with_device("bob", "phone").await;
    let (mallory_t, mallory_e) = node.user_with_device("mallory", "phone").await;
    let mut amy = ChatDevice::connect_node(&node, &amy_e).await;
    let mut bob = ChatDevice::connect_node(&node, &bob_e).await;
    let mut mallory = ChatDevice::connect_node(&node, &mallory_e).await;
    let bytes = png(2000);
    let r = node
        .client
        .post(node.url("/v1/media"))
        .bearer_auth(&amy_t)
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = str_of(&r.json::<Value>().await.unwrap(), "media_id").to_owned();
    let media = json!({"media_id": id, "mime": "image/png", "size": bytes.len()});
    amy.request(&json!({"type": "send", "id": "p1", "to": "bob", "media": media}))
        .await;
    amy.wait_user_event("sent").await;
    bob.wait_user_event("msg").await;
    assert_eq!(
        node.download_media(&bob_t, &id, None).await.status(),
        StatusCode::OK
    );

    let nothing = node.download_media(&mallory_t, &"0".repeat(64), None).await;
    assert_eq!(nothing.status(), StatusCode::NOT_FOUND);
    let nothing_body = nothing.text().await.unwrap();
    let ranges = [
        None,
        Some("bytes=0-3"),
        Some("bytes=5000-"),
        Some("bytes=-1"),
    ];
    for range in ranges {
        let r = node.download_media(&mallory_t, &id, range).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "range {range:?}");
        assert!(
            r.headers().get("content-range").is_none(),
            "range {range:?}"
        );
        assert_eq!(r.text().await.unwrap(), nothing_body, "range {range:?}");
    }
    for odd in [
        &id.to_uppercase(),
        &format!("{id}0"),
        &id[..63],
        "..%2F..%2Fdb",
        "x%00",
    ] {
        let r = node.download_media(&mallory_t, odd, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "media id {odd:?}");
        assert_eq!(r.text().await.unwrap(), nothing_body, "media id {odd:?}");
    }

    // Sending it: 1:1 to bob (who has it) and to amy, and in mallory's own group with bob.
    let fake = json!({"media_id": "1".repeat(64), "mime": "image/png", "size": bytes.len()});
    let create = json!({"type": "group_create", "name": "Mine", "members": ["bob"]});
    let group = str_of(&mallory.ask_ok("g", create).await, "group").to_owned();
    bob.wait_for("the group's creation", WAIT, |r| r.kind() == "group")
        .await;
    mallory
        .wait_for("the group's creation", WAIT, |r| r.kind() == "group")
        .await;
    let targets = [
        json!({"to": "bob"}),
        json!({"to": "amy"}),
        json!({"group": group}),
    ];
    for (i, target) in targets.iter().enumerate() {
        let mut stolen = json!({"type": "send", "id": format!("s{i}"), "media": media});
        let mut made_up = json!({"type": "send", "id": format!("f{i}"), "media": fake});
        for (k, v) in target.as_object().unwrap() {
            stolen[k] = v.clone();
            made_up[k] = v.clone();
        }
        let a = mallory
            .ask_error(&format!("s{i}"), stolen, "not_found")
            .await;
        let b = mallory
            .ask_error(&format!("f{i}"), made_up, "not_found")
            .await;
        assert_eq!(
            a["message"], b["message"],
            "{target}: a real id is told apart"
        );
    }
    let r = node.download_media(&mallory_t, &id, None).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "a refused send granted access"
    );

    amy.untouched().await;
    bob.untouched().await;
    assert_eq!(
        node.download_media(&amy_t, &id, None).await.status(),
        StatusCode::OK
    );
    others.still_talk().await;
    node.stop().await;
}
