//! Revoking a device over HTTP ends its MQTT connection at once and keeps it out, without
//! touching the user's other devices.

use std::time::{Duration, Instant};

use chat_tests::{ConnectError, TestClient, TestNode};
use rumqttc::ConnectReturnCode;

// DELETE /v1/devices/{id} disconnects the live device within 2 s; its still-valid certificate
// is then refused with "not authorized"; the user's other device stays connected and working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_is_kicked_and_kept_out() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    let phone = node.enrol(&token, "phone").await;
    let mut l = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    let mut p = TestClient::connect_tls(&node, &phone, "phone")
        .await
        .unwrap();
    l.subscribe("/tenants/alice/in").await.unwrap();
    p.subscribe("/tenants/alice/in").await.unwrap();

    let started = Instant::now();
    assert_eq!(
        node.revoke(&token, "laptop").await,
        reqwest::StatusCode::NO_CONTENT
    );
    assert!(
        l.wait_disconnected(Duration::from_secs(2)).await,
        "revoked device still connected 2 s after DELETE"
    );
    eprintln!(
        "revoked device disconnected {:?} after DELETE was sent",
        started.elapsed()
    );

    assert!(
        laptop.expires_at > chat_tests::now_secs(),
        "certificate must still be valid"
    );
    let again = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .err();
    assert_eq!(
        again,
        Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized))
    );

    assert!(
        p.ended().is_none(),
        "the other device was disconnected: {:?}",
        p.ended()
    );
    p.alive("/tenants/alice/in/phone")
        .await
        .expect("other device unusable");
    node.stop().await;
}

// Revoking a device that is not connected still keeps it out, and revoking one device of a
// user does not touch a same-named device of another user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_per_user_and_device() {
    let node = TestNode::start().await;
    let (alice, alice_phone) = node.user_with_device("alice", "phone").await;
    let (_bob, bob_phone) = node.user_with_device("bob", "phone").await;
    let mut b = TestClient::connect_tls(&node, &bob_phone, "phone")
        .await
        .unwrap();
    b.subscribe("/tenants/bob/in").await.unwrap();

    assert_eq!(
        node.revoke(&alice, "phone").await,
        reqwest::StatusCode::NO_CONTENT
    );
    let err = TestClient::connect_tls(&node, &alice_phone, "phone")
        .await
        .err();
    assert_eq!(
        err,
        Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized))
    );

    // bob's "phone" is another device: still connected, still served.
    assert!(b.ended().is_none());
    b.alive("/tenants/bob/in/phone").await.unwrap();
    node.stop().await;
}

// The plaintext listener obeys revocation too: a session token cannot bring a revoked device id
// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_cannot_log_in_on_plaintext() {
    let node = TestNode::start().await;
    let (token, _laptop) = node.user_with_device("alice", "laptop").await;
    let mut c = TestClient::connect_plain(&node, "alice", &token, "laptop")
        .await
        .unwrap();
    assert_eq!(
        node.revoke(&token, "laptop").await,
        reqwest::StatusCode::NO_CONTENT
    );
    assert!(
        c.wait_disconnected(Duration::from_secs(2)).await,
        "plaintext connection not kicked"
    );
    let err = TestClient::connect_plain(&node, "alice", &token, "laptop")
        .await
        .err();
    assert_eq!(
        err,
        Some(ConnectError::Refused(ConnectReturnCode::NotAuthorized))
    );
    node.stop().await;
}
