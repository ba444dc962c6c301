//! End-to-end test harness for the chat node: every suite in `tests/tests/*.rs` starts a real
//! [`chatd::Node`] on free loopback ports (or the real `chatd` binary) and talks to it the way
//! clients do, over real sockets: HTTP with reqwest, MQTT over TLS with rumqttc, raw TLS and
//! TCP for handshake-level and misbehaving clients, and the mosquitto command-line clients.
//!
//! Entry point: [`TestNode::start`] (or [`TestNode::start_with`] to adjust the
//! [`chatd::Config`]), then [`TestNode::user_with_device`] and [`TestClient::connect_tls`]:
//!
//! ```ignore
//! let node = TestNode::start().await;
//! let (_token, laptop) = node.user_with_device("alice", "laptop").await;
//! let mut client = TestClient::connect_tls(&node, &laptop, "laptop").await.unwrap();
//! client.subscribe("/tenants/alice/in").await.unwrap();
//! node.stop().await;
//! ```
//!
//! Every wait has a timeout, so a broken server makes a test fail fast instead of hanging;
//! nothing sleeps where an event can be awaited.
//!
//! Layout:
//! - `node.rs`: [`TestNode`] (a node in a temp dir, fast password hashing) and the HTTP helpers
//!   ([`TestNode::register`], [`TestNode::login`], [`TestNode::enrol`], ...), [`Enrolment`],
//!   [`ApiResponse`]
//! - `mqtt.rs`: rustls client configurations ([`client_tls_config`]), [`TestClient`] (MQTT
//!   3.1.1 over rumqttc: connect, subscribe, publish, receive, disconnection), [`ConnectError`],
//!   and [`TestClientV5`]
//! - `net.rs`: raw sockets: [`tls_handshake`], [`mqtt_connect_packet`], [`silent_tcp`],
//!   [`wait_closed`]
//! - `process.rs`: the `chatd` binary as a child process ([`ChatdProcess`])
//! - `prom.rs`: a strict reader of the Prometheus text format ([`parse_prometheus`])
//! - `webdriver.rs`: a minimal WebDriver client for chromedriver ([`Browser`])

#![allow(clippy::unwrap_used)]

pub mod chat;
pub mod fake_push;
pub mod fake_s3;
mod mqtt;
mod net;
mod node;
mod process;
mod prom;
mod webdriver;

use std::time::Duration;

pub use mqtt::{
    client_tls_config, roots_from, tls_options, v5, ConnectError, TestClient, TestClientV5,
    V5Message, WaitError,
};
pub use net::{
    free_port, mqtt5_connect_packet, mqtt_connect_packet, mqtt_frame, mqtt_publish_packet,
    mqtt_str, read_some, silent_tcp, tls_handshake, tls_mqtt_connect, wait_closed,
};
pub use node::{ApiResponse, Enrolment, TestNode, TEST_ADMIN_TOKEN, TEST_PASSWORD};
pub use process::{bench_binary, chatd_binary, ChatdProcess};
pub use prom::{parse_prometheus, PromSample, Scrape};
pub use webdriver::{Browser, BrowserError};

/// How long a helper waits for something that should happen at once (a CONNACK, a SUBACK, a
/// message) before it reports a failure.
pub const WAIT: Duration = Duration::from_secs(5);

/// Unix time now, in seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
