//! MQTT over TLS: a device is confined to `/tenants/{its user}/` for subscriptions and
//! publishes, and its client id must be its certificate's CN.

use chat_tests::{
    mqtt_publish_packet, tls_mqtt_connect, v5, wait_closed, ConnectError, TestClient, TestClientV5,
    TestNode, WAIT,
};
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use tokio::io::AsyncWriteExt;

const GRANTED: SubscribeReasonCode = SubscribeReasonCode::Success(QoS::AtLeastOnce);

// A device may subscribe to its user's topics (QoS 1 granted) and receives what another device
// of the same user publishes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_topics_are_granted_and_delivered() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    let phone = node.enrol_csr(&token, "alice", "phone").await;
    let mut l = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    let mut p = TestClient::connect_tls(&node, &phone, "phone")
        .await
        .unwrap();
    assert_eq!(
        l.subscribe("/tenants/alice/in").await.unwrap(),
        vec![GRANTED]
    );
    assert_eq!(
        p.subscribe("/tenants/alice/in/phone").await.unwrap(),
        vec![GRANTED]
    );
    assert_eq!(
        l.subscribe_many(&["/tenants/alice/in/laptop", "/tenants/alice/#"])
            .await
            .unwrap(),
        vec![GRANTED, GRANTED]
    );

    p.publish("/tenants/alice/in", r#"{"type":"msg","body":"hi"}"#)
        .await
        .unwrap();
    let got = l.next_publish(WAIT).await.expect("laptop got nothing");
    assert_eq!(
        got,
        (
            "/tenants/alice/in".to_owned(),
            r#"{"type":"msg","body":"hi"}"#.to_owned()
        )
    );
    // The per-device topic reaches only that device's subscription.
    l.publish("/tenants/alice/in/phone", "for the phone")
        .await
        .unwrap();
    assert_eq!(
        p.next_publish(WAIT).await,
        Some((
            "/tenants/alice/in/phone".to_owned(),
            "for the phone".to_owned()
        ))
    );
    node.stop().await;
}

// Filters outside the user's prefix get the failure code 0x80 and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_filters_get_failure_and_connection_survives() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let (_, _bob) = node.user_with_device("bob", "phone").await;
    let mut l = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    for filter in [
        "/tenants/bob/in",
        "#",
        "/tenants/+/in",
        "/tenants/#",
        "+/tenants/alice/in",
        "/tenants/alicex/in",
        "/tenants/alice",
        "$share/g/tenants/alice/in",
        "$SYS/#",
    ] {
        assert_eq!(
            l.subscribe(filter).await.unwrap(),
            vec![SubscribeReasonCode::Failure],
            "filter {filter}"
        );
    }
    assert!(l.ended().is_none());
    assert_eq!(
        l.subscribe("/tenants/alice/in").await.unwrap(),
        vec![GRANTED]
    );
    l.round_trip("/tenants/alice/in")
        .await
        .expect("connection unusable after refusals");
    node.stop().await;
}

// One SUBSCRIBE with an own and a foreign filter gets [QoS 1, Failure], in order, and only the
// own filter is active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_subscribe_gets_per_filter_codes() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let (_, bob) = node.user_with_device("bob", "phone").await;
    let mut l = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    let mut b = TestClient::connect_tls(&node, &bob, "phone").await.unwrap();
    assert_eq!(
        l.subscribe_many(&["/tenants/alice/in", "/tenants/bob/in"])
            .await
            .unwrap(),
        vec![GRANTED, SubscribeReasonCode::Failure]
    );
    assert_eq!(
        l.subscribe_many(&["/tenants/bob/out", "/tenants/alice/in/laptop", "#"])
            .await
            .unwrap(),
        vec![
            SubscribeReasonCode::Failure,
            GRANTED,
            SubscribeReasonCode::Failure
        ]
    );
    b.subscribe("/tenants/bob/in").await.unwrap();
    b.publish("/tenants/bob/in", "bob only").await.unwrap();
    assert_eq!(b.next_publish(WAIT).await.unwrap().1, "bob only");
    l.publish("/tenants/alice/in", "alice only").await.unwrap();
    // If bob's message had leaked to alice, it would come first.
    assert_eq!(l.next_publish(WAIT).await.unwrap().1, "alice only");
    node.stop().await;
}

// Publishing outside the prefix closes the publisher's connection; the other user's device gets
// nothing and stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_publish_closes_publisher_only() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let (bob_token, bob_phone) = node.user_with_device("bob", "phone").await;
    let bob_tablet = node.enrol(&bob_token, "tablet").await;
    let mut b = TestClient::connect_tls(&node, &bob_phone, "phone")
        .await
        .unwrap();
    b.subscribe("/tenants/bob/in").await.unwrap();
    let mut bt = TestClient::connect_tls(&node, &bob_tablet, "tablet")
        .await
        .unwrap();

    let mut l = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    let r = l
        .publish("/tenants/bob/in", r#"{"type":"msg","body":"spoofed"}"#)
        .await;
    assert!(r.is_err(), "a foreign publish was acknowledged");
    assert!(l.wait_disconnected(WAIT).await, "publisher still connected");

    // Another user's look-alike prefix and a topic outside /tenants, each on a fresh connection.
    for topic in ["/tenants/alicex/in", "out"] {
        let mut c = TestClient::connect_tls(&node, &laptop, "laptop")
            .await
            .unwrap();
        let _ = c.publish(topic, "x").await;
        assert!(
            c.wait_disconnected(WAIT).await,
            "publish to {topic:?} did not close"
        );
    }
    // Wildcards in a topic name, even under the own prefix (client libraries refuse to send
    // these, so the PUBLISH is written by hand).
    for topic in ["/tenants/alice/+", "/tenants/alice/#", "/tenants/+/in"] {
        let (mut stream, connack) = tls_mqtt_connect(node.mqtt, laptop.tls_config(), "laptop")
            .await
            .unwrap();
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK");
        stream
            .write_all(&mqtt_publish_packet(topic, b"x"))
            .await
            .unwrap();
        assert!(
            wait_closed(&mut stream, WAIT).await,
            "publish to {topic:?} did not close"
        );
    }

    bt.publish("/tenants/bob/in", "later").await.unwrap();
    // The spoofed message, had it been routed, would arrive before "later".
    assert_eq!(
        b.next_publish(WAIT).await,
        Some(("/tenants/bob/in".to_owned(), "later".to_owned()))
    );
    assert!(b.ended().is_none(), "bob's device was disconnected");
    node.stop().await;
}

// The client id must be the certificate's CN: another id is refused (identifier rejected),
// even the id of another enrolled device of the same user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_must_match_certificate_cn() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    let phone = node.enrol(&token, "phone").await;
    let mut p = TestClient::connect_tls(&node, &phone, "phone")
        .await
        .unwrap();
    for id in ["phone", "desktop", "LAPTOP"] {
        let err = TestClient::connect_tls(&node, &laptop, id).await.err();
        assert_eq!(
            err,
            Some(ConnectError::Refused(ConnectReturnCode::BadClientId)),
            "client id {id}"
        );
    }
    // The real phone was not kicked by the impostor attempts.
    p.subscribe("/tenants/alice/in/phone").await.unwrap();
    p.round_trip("/tenants/alice/in/phone").await.unwrap();
    TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    node.stop().await;
}

// MQTT 5 clients connect, get QoS 1 for their own filters and "not authorized" (0x87) for
// foreign ones, and a foreign publish ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_is_confined_too() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let mut c = TestClientV5::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    let codes = c
        .subscribe_many(&["/tenants/alice/in", "/tenants/bob/in", "#"])
        .await
        .unwrap();
    assert_eq!(
        codes,
        vec![
            v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce),
            v5::SubscribeReasonCode::NotAuthorized,
            v5::SubscribeReasonCode::NotAuthorized,
        ]
    );
    c.publish("/tenants/alice/in", "v5 hello").await.unwrap();
    assert_eq!(
        c.next_publish(WAIT).await,
        Some(("/tenants/alice/in".to_owned(), "v5 hello".to_owned()))
    );
    let _ = c.publish("/tenants/bob/in", "nope").await;
    let closed = c.wait_disconnected(WAIT).await;
    assert!(
        closed.is_some(),
        "v5 publisher still connected after a foreign publish"
    );
    node.stop().await;
}
