//! Bare rumqttd, for comparisons with `chat-bench --raw`: rumqttd's own broker and its own
//! plaintext MQTT 3.1.1 listener, no TLS, no authentication, no storage, with the router
//! settings of rumqttd's sample configuration. Not part of chatd.
//!
//! `cargo run --release -p chat-broker --example bare_rumqttd -- 127.0.0.1:1884`

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1884".to_owned())
        .parse()?;
    let server = ServerSettings {
        name: "v4-1".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 20_480,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    println!("bare rumqttd listening on {listen} (MQTT 3.1.1, plaintext)");
    Broker::new(config).start()?;
    Ok(())
}
