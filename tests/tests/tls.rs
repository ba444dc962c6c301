//! The TLS listener only lets in clients with a current certificate from the node's CA; every
//! refusal leaves the node serving good devices.

use std::time::Duration;

use chat_certs::{Authority, CertsConfig};
use chat_tests::{
    client_tls_config, tls_handshake, tls_mqtt_connect, ConnectError, Enrolment, TestClient,
    TestNode,
};
use time::OffsetDateTime;

/// Asserts that `device` connects and routes a message right now.
async fn good_device_works(node: &TestNode, device: &Enrolment) {
    let mut c = TestClient::connect_tls(node, device, &device.device_id)
        .await
        .expect("a good device could not connect after a refused one");
    c.alive(&format!("/tenants/{}/in", device.user))
        .await
        .expect("a good device's round trip failed");
}

/// Asserts that a TLS client with `tls` gets no MQTT session: the handshake, or the first read
/// after sending CONNECT, fails. Returns what failed, for the log.
async fn refused_at_tls(
    node: &TestNode,
    tls: std::sync::Arc<rustls::ClientConfig>,
    id: &str,
) -> String {
    match tls_mqtt_connect(node.mqtt, tls.clone(), id).await {
        Ok((_, bytes)) => panic!("server answered {bytes:02x?} to a client it should refuse"),
        Err(e) => {
            // rumqttc sees the same thing.
            let err = TestClient::connect_tls_with(node.mqtt, tls, id).await.err();
            assert!(
                matches!(err, Some(ConnectError::Transport(_))),
                "rumqttc: expected a transport failure, got {err:?}"
            );
            e.to_string()
        }
    }
}

// A client without a certificate fails in the handshake or at the first read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let why = refused_at_tls(&node, client_tls_config(&node.ca_pem, None), "laptop").await;
    eprintln!("no client certificate: {why}");
    good_device_works(&node, &laptop).await;
    node.stop().await;
}

// An expired certificate of the node's own CA, for an enrolled device, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    node.enrol(&token, "phone").await; // enrolled and active: only expiry can refuse it
    let authority =
        Authority::load_or_create(&node.dir.path().join("certs"), &CertsConfig::default()).unwrap();
    assert_eq!(authority.ca_pem(), node.ca_pem, "not the node's CA");
    let now = OffsetDateTime::now_utc();
    let expired = authority
        .issue_with_validity(
            "alice",
            "phone",
            now - time::Duration::days(2),
            now - time::Duration::hours(1),
        )
        .unwrap();
    let tls = client_tls_config(
        &node.ca_pem,
        Some((&expired.cert_pem, expired.key_pem.as_deref().unwrap())),
    );
    let why = refused_at_tls(&node, tls, "phone").await;
    eprintln!("expired certificate: {why}");
    // A current certificate with the same identity is accepted (the refusal was the expiry).
    let fresh = authority
        .issue_with_validity(
            "alice",
            "phone",
            now - time::Duration::minutes(5),
            now + time::Duration::hours(1),
        )
        .unwrap();
    let tls = client_tls_config(
        &node.ca_pem,
        Some((&fresh.cert_pem, fresh.key_pem.as_deref().unwrap())),
    );
    TestClient::connect_tls_with(node.mqtt, tls, "phone")
        .await
        .unwrap();
    good_device_works(&node, &laptop).await;
    node.stop().await;
}

// A certificate with the right identity but from another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    node.enrol(&token, "phone").await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = Authority::load_or_create(other_dir.path(), &CertsConfig::default()).unwrap();
    assert_ne!(other.ca_pem(), node.ca_pem);
    let forged = other.issue("alice", "phone").unwrap();
    let tls = client_tls_config(
        &node.ca_pem, // the client trusts the real server
        Some((&forged.cert_pem, forged.key_pem.as_deref().unwrap())),
    );
    let why = refused_at_tls(&node, tls, "phone").await;
    eprintln!("certificate from another CA: {why}");
    good_device_works(&node, &laptop).await;
    node.stop().await;
}

// A client that does not trust the node's CA stops at the handshake (the server certificate
// chains to the node's CA, which is what clients are told to trust).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_chains_to_the_node_ca() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    // Trusting the node CA: the handshake completes.
    let stream = tls_handshake(node.mqtt, laptop.tls_config()).await;
    assert!(
        stream.is_ok(),
        "handshake with the node CA failed: {:?}",
        stream.err()
    );
    // Trusting only another CA: the client refuses the server.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Authority::load_or_create(other_dir.path(), &CertsConfig::default()).unwrap();
    let tls = client_tls_config(other.ca_pem(), Some((&laptop.cert_pem, &laptop.key_pem)));
    let Err(err) = tls_handshake(node.mqtt, tls).await else {
        panic!("handshake succeeded with a client that trusts another CA");
    };
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    tokio::time::timeout(Duration::from_secs(5), good_device_works(&node, &laptop))
        .await
        .unwrap();
    node.stop().await;
}
