//! Self-tests of the harness itself.

use chat_tests::{silent_tcp, TestClient, TestNode};

// A node dropped without `stop` (as a failing test does) neither hangs nor panics, even with
// live MQTT connections and half-open sockets; its data directory is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_node_is_clean() {
    let node = TestNode::start().await;
    let (_, laptop) = node.user_with_device("alice", "laptop").await;
    let client = TestClient::connect_tls(&node, &laptop, "laptop")
        .await
        .unwrap();
    let silent = silent_tcp(node.mqtt).await;
    let dir = node.dir.path().to_path_buf();
    drop(node);
    assert!(!dir.exists(), "temp dir left behind");
    drop((client, silent));
}
