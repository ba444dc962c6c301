//! Misbehaving clients (silent sockets, garbage, half-finished sessions) cannot hold up or
//! disturb real devices; the plaintext development listener authenticates with session tokens.

use std::time::{Duration, Instant};

use chat_tests::{
    mqtt_connect_packet, read_some, silent_tcp, tls_handshake, tls_mqtt_connect, wait_closed,
    ConnectError, TestClient, TestNode, WAIT,
};
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use tokio::io::AsyncWriteExt;

const GARBAGE: &[u8] = b"\x16\x03\x01\xff\xffGET / HTTP/1.1\r\n\r\n\x00\x01\x02\xfe\xff garbage";
/// A CONNACK accepting the connection (MQTT 3.1.1).
const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

// 50 silent TCP connections on the TLS port do not delay a real device: connect + subscribe
// takes under 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_delay_devices() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(silent_tcp(node.mqtt).await);
    }
    let started = Instant::now();
    let mut c = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    let codes = c.subscribe("/tenants/alice/in").await.unwrap();
    let took = started.elapsed();
    eprintln!("with 50 silent connections open: connect + subscribe took {took:.2?}");
    assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    assert!(
        took < Duration::from_secs(2),
        "connect + subscribe took {took:?}"
    );
    drop(silent);
    node.stop().await;
}

// Connections that send garbage are closed, and so is a session that sends garbage after a
// valid CONNECT; a connected device notices nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_closed_without_side_effects() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    let phone = node.enrol(&token, "phone").await;
    let mut l = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    l.subscribe("/tenants/alice/in").await.unwrap();

    // 50 garbage senders on the TLS port and 10 on the plaintext port, all at once.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let addr = if i < 50 { node.mqtt } else { node.mqtt_plain };
        tasks.push(tokio::spawn(async move {
            let mut s = silent_tcp(addr).await;
            s.write_all(GARBAGE).await.unwrap();
            wait_closed(&mut s, WAIT).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert!(t.await.unwrap(), "garbage connection {i} was not closed");
    }

    // TLS + valid CONNECT (accepted), then garbage: closed.
    let (mut s, answer) = tls_mqtt_connect(node.mqtt, phone.tls_config(), "phone")
        .await
        .unwrap();
    assert_eq!(answer, CONNACK_OK);
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02])
        .await
        .unwrap();
    s.flush().await.unwrap();
    assert!(
        wait_closed(&mut s, WAIT).await,
        "CONNECT-then-garbage not closed"
    );

    // Plaintext: CONNECT with a session token, then garbage: closed.
    let mut s = silent_tcp(node.mqtt_plain).await;
    s.write_all(&mqtt_connect_packet("phone", 30, Some(("alice", &token))))
        .await
        .unwrap();
    assert_eq!(read_some(&mut s, WAIT).await.unwrap(), CONNACK_OK);
    s.write_all(b"\x30\xff\xff\xff\xff\x7f garbage")
        .await
        .unwrap();
    assert!(
        wait_closed(&mut s, WAIT).await,
        "plaintext CONNECT-then-garbage not closed"
    );

    // A second CONNECT on a live session is a protocol violation too.
    let (mut s, answer) = tls_mqtt_connect(node.mqtt, phone.tls_config(), "phone")
        .await
        .unwrap();
    assert_eq!(answer, CONNACK_OK);
    s.write_all(&mqtt_connect_packet("phone", 30, None))
        .await
        .unwrap();
    assert!(wait_closed(&mut s, WAIT).await, "second CONNECT not closed");

    assert!(
        l.ended().is_none(),
        "the device was disconnected: {:?}",
        l.ended()
    );
    l.alive("/tenants/alice/in/laptop").await.unwrap();
    node.stop().await;
}

// A first packet that is not CONNECT, or a CONNECT with an unknown protocol level, is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_first_packets_are_closed() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    // PINGREQ first.
    let mut s = tls_handshake(node.mqtt, laptop.tls_config()).await.unwrap();
    s.write_all(&[0xc0, 0x00]).await.unwrap();
    assert!(wait_closed(&mut s, WAIT).await, "PINGREQ-first not closed");
    // Protocol level 9.
    let mut connect = mqtt_connect_packet("laptop", 30, None);
    connect[8] = 9;
    let mut s = tls_handshake(node.mqtt, laptop.tls_config()).await.unwrap();
    s.write_all(&connect).await.unwrap();
    let answer = read_some(&mut s, WAIT).await;
    // Either a CONNACK refusing the version (0x01) or a plain close is acceptable.
    if let Ok(bytes) = &answer {
        assert_eq!(bytes.get(3), Some(&0x01), "answer to level 9: {bytes:02x?}");
    }
    assert!(wait_closed(&mut s, WAIT).await);
    TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    node.stop().await;
}

// The plaintext listener logs in with username = user and password = session token; a wrong
// token, another user's token or no credentials get "bad user name or password".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_login_with_session_token() {
    let node = TestNode::start().await;
    let (token, _) = node.user_with_device("alice", "laptop").await;
    let (bob_token, _) = node.user_with_device("bob", "laptop").await;
    let mut c = TestClient::connect_plain(&node, "alice", &token, "laptop")
        .await
        .unwrap();
    assert_eq!(
        c.subscribe_many(&["/tenants/alice/in", "/tenants/bob/in"])
            .await
            .unwrap(),
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ]
    );
    c.alive("/tenants/alice/in/laptop").await.unwrap();

    let bad = ConnectError::Refused(ConnectReturnCode::BadUserNamePassword);
    let wrong = "0".repeat(token.len());
    for (user, password) in [
        ("alice", wrong.as_str()),
        ("alice", bob_token.as_str()),
        ("bob", token.as_str()),
        ("alice", ""),
    ] {
        let err = TestClient::connect_plain(&node, user, password, "laptop")
            .await
            .err();
        assert_eq!(
            err.as_ref(),
            Some(&bad),
            "user {user} password {password:?}"
        );
    }
    // No credentials at all.
    let o = rumqttc::MqttOptions::new("laptop", "127.0.0.1", node.mqtt_plain.port());
    let err = TestClient::connect(o, WAIT).await.err();
    assert_eq!(err, Some(bad));
    // A good token for a device id that was never enrolled: not authorized.
    let err = TestClient::connect_plain(&node, "alice", &token, "ghost")
        .await
        .err();
    assert_eq!(
        err,
        Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized))
    );
    // The good session is still there.
    c.alive("/tenants/alice/in/laptop").await.unwrap();
    node.stop().await;
}

// A client that finishes the TLS handshake but never sends CONNECT is closed after
// mqtt.connect_timeout_ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connect_after_handshake_is_closed() {
    let node = TestNode::start_with(|cfg| cfg.mqtt.connect_timeout_ms = 500).await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let mut s = tls_handshake(node.mqtt, laptop.tls_config()).await.unwrap();
    let started = Instant::now();
    assert!(
        wait_closed(&mut s, Duration::from_secs(4)).await,
        "not closed"
    );
    eprintln!(
        "handshake without CONNECT closed after {:?}",
        started.elapsed()
    );
    node.stop().await;
}

// A connected client that goes silent is closed after 1.5 x the keep-alive (capped by
// mqtt.max_keep_alive_secs), not before the keep-alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_session_is_closed_after_keep_alive() {
    let node = TestNode::start_with(|cfg| cfg.mqtt.max_keep_alive_secs = 1).await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    // Keep-alive 0 ("none") is replaced by the maximum, 1 s.
    let mut connect = mqtt_connect_packet("laptop", 0, None);
    let mut s = tls_handshake(node.mqtt, laptop.tls_config()).await.unwrap();
    s.write_all(&connect).await.unwrap();
    assert_eq!(read_some(&mut s, WAIT).await.unwrap(), CONNACK_OK);
    let started = Instant::now();
    assert!(
        wait_closed(&mut s, Duration::from_secs(5)).await,
        "silent session not closed"
    );
    let after = started.elapsed();
    eprintln!("silent session closed after {after:?} (keep-alive 1 s)");
    assert!(
        after >= Duration::from_millis(900),
        "closed too early: {after:?}"
    );
    // Asking for 600 s is capped to 1 s too.
    connect = mqtt_connect_packet("laptop", 600, None);
    let mut s = tls_handshake(node.mqtt, laptop.tls_config()).await.unwrap();
    s.write_all(&connect).await.unwrap();
    assert_eq!(read_some(&mut s, WAIT).await.unwrap(), CONNACK_OK);
    assert!(
        wait_closed(&mut s, Duration::from_secs(5)).await,
        "keep-alive not capped"
    );
    node.stop().await;
}

// Shutdown is not held up by sockets that never started their TLS handshake: the node stops
// within 2 s (its grace period is 5 s, the handshake timeout 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_silent_sockets() {
    let node = TestNode::start().await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(silent_tcp(node.mqtt).await);
    }
    let started = Instant::now();
    node.stop().await;
    let took = started.elapsed();
    eprintln!("shutdown with 5 silent sockets took {took:.2?}");
    assert!(
        took < Duration::from_secs(2),
        "shutdown waited {took:?} for silent sockets"
    );
    drop(silent);
}
