//! Message routing through the MQTT front end and its rumqttd routers: QoS 1 messages arrive
//! complete and in order, and routing never takes a router partition down.

use std::time::Duration;

use chat_tests::{ConnectError, TestClient, TestNode, WAIT};

// Many round trips on one connection (a device receiving what its user publishes, the normal
// chat pattern) leave the router partition alive: new devices of the user still connect and
// are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_partition_survives_routing() {
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    let phone = node.enrol(&token, "phone").await;
    let mut l = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    l.subscribe("/tenants/alice/in").await.unwrap();
    for i in 0..20 {
        l.round_trip("/tenants/alice/in")
            .await
            .unwrap_or_else(|e| panic!("round trip {i}: {e}"));
    }
    // A fresh connection on the same partition (same user) must still be accepted.
    let p = TestClient::connect_tls(&node, &phone, "phone").await;
    assert!(
        !matches!(p, Err(ConnectError::Refused(_))),
        "the user's router partition refuses new devices after routing: {:?}",
        p.err()
    );
    let mut p = p.unwrap();
    p.subscribe("/tenants/alice/in").await.unwrap();
    p.round_trip("/tenants/alice/in").await.unwrap();
    node.stop().await;
}

// A burst of 1,000 QoS 1 messages from one device reaches another device of the same user
// complete and in order, and the publisher gets every PUBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_burst_arrives_complete_and_in_order() {
    const N: usize = 1000;
    let node = TestNode::start().await;
    let (token, laptop) = node.user_with_device("alice", "laptop").await;
    let phone = node.enrol(&token, "phone").await;
    let mut sub = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    sub.subscribe("/tenants/alice/in/laptop").await.unwrap();
    let mut publisher = TestClient::connect_tls(&node, &phone, "phone")
        .await
        .unwrap();
    publisher.wait = Duration::from_secs(20);
    let burst =
        publisher.publish_burst("/tenants/alice/in/laptop", (0..N).map(|i| format!("m{i}")));
    let receive = async {
        let mut got = Vec::with_capacity(N);
        while got.len() < N {
            match sub.next_publish(WAIT).await {
                Some((_, payload)) => got.push(payload),
                None => break,
            }
        }
        got
    };
    let (published, got) = tokio::join!(burst, receive);
    let first_gap = got
        .iter()
        .enumerate()
        .find(|(i, p)| **p != format!("m{i}"))
        .map(|(i, p)| format!("position {i} holds {p}"));
    assert_eq!(
        got.len(),
        N,
        "received {} of {N} messages (first difference: {first_gap:?}; subscriber ended: {:?})",
        got.len(),
        sub.ended()
    );
    assert_eq!(first_gap, None, "messages out of order or missing");
    published.expect("not every publish was acknowledged");
    node.stop().await;
}
