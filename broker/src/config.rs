//! Settings of the MQTT front end (the `[mqtt]` section of the node's configuration).

use serde::{Deserialize, Serialize};

/// MQTT front end settings. Every field has a default, so an empty section is valid.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Address of the MQTT-over-TLS listener. Clients authenticate with a device certificate.
    pub listen: String,
    /// Address of the plaintext development listener, off unless set. Clients authenticate with
    /// username = user id and password = a session token. Traffic is unencrypted: keep it on loopback.
    pub plaintext_listen: Option<String>,
    /// Number of rumqttd routers users are spread over (by a hash of the user id), 1..=64;
    /// each is a router thread (with a bridge link on it). Default twice the CPUs, 2..=16
    /// ([`default_partitions`]). With the patched router (third_party/README.md) a device's
    /// topics are looked up, not matched against every filter, so partitions no longer buy
    /// connect-storm speed; more threads than cores only cost throughput
    /// (docs/BENCHMARKS-HISTORY.md).
    pub partitions: usize,
    /// Most simultaneous device connections (including those still handshaking). Extra
    /// connections are closed at once. Each needs a file descriptor: raise `ulimit -n` to match.
    pub max_connections: usize,
    /// Time a client gets to finish the TLS handshake, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Time a client gets to send CONNECT after the handshake, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Largest MQTT packet accepted, in bytes (a 64 KiB message body plus its JSON envelope fits the default with room to spare).
    pub max_packet_size: usize,
    /// Keep-alive used for clients that ask for none (0) or for more than this, in seconds.
    /// A connection silent for 1.5 times its keep-alive is closed.
    pub max_keep_alive_secs: u16,
    /// Size of one rumqttd commit-log segment, in KiB. rumqttd keeps routed messages in memory
    /// per topic filter; small segments bound that memory.
    pub segment_size_kib: usize,
    /// Number of commit-log segments rumqttd keeps per filter before dropping the oldest.
    pub segment_count: usize,
    /// Most QoS 1 messages in flight to one device before rumqttd waits for acknowledgements.
    pub max_inflight: u64,
    /// Most QoS 1 publishes (requests) one connection may have unacknowledged. At this many
    /// the front end stops reading the connection's socket until acknowledgements catch up,
    /// so one client cannot queue unbounded work; MQTT 5 clients are told it as Receive
    /// Maximum. 1-65535.
    pub max_inflight_in: u16,
}

/// Default router partition count: twice the CPUs the process may use, at least 2, at most 16.
pub fn default_partitions() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cpus * 2).clamp(2, 16)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:8883".to_owned(),
            plaintext_listen: None,
            partitions: default_partitions(),
            max_connections: 20_000,
            handshake_timeout_ms: 10_000,
            connect_timeout_ms: 10_000,
            max_packet_size: 1024 * 1024,
            max_keep_alive_secs: 600,
            segment_size_kib: 256,
            segment_count: 4,
            max_inflight: 200,
            max_inflight_in: 128,
        }
    }
}

impl BrokerConfig {
    /// Checks ranges and addresses; the message names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("mqtt.listen {:?}: {e}", self.listen))?;
        if let Some(addr) = &self.plaintext_listen {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("mqtt.plaintext_listen {addr:?}: {e}"))?;
        }
        if !(1..=64).contains(&self.partitions) {
            return Err("mqtt.partitions must be between 1 and 64".into());
        }
        if self.max_connections == 0 {
            return Err("mqtt.max_connections must be at least 1".into());
        }
        if self.max_packet_size < 1024 || self.max_packet_size > 256 * 1024 * 1024 {
            return Err("mqtt.max_packet_size must be between 1 KiB and 256 MiB".into());
        }
        if self.handshake_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(
                "mqtt.handshake_timeout_ms and mqtt.connect_timeout_ms must be positive".into(),
            );
        }
        if self.max_keep_alive_secs == 0 {
            return Err("mqtt.max_keep_alive_secs must be positive".into());
        }
        if self.max_inflight_in == 0 {
            return Err("mqtt.max_inflight_in must be between 1 and 65535".into());
        }
        if self.segment_size_kib == 0 || self.segment_count == 0 || self.max_inflight == 0 {
            return Err(
                "mqtt.segment_size_kib, segment_count and max_inflight must be positive".into(),
            );
        }
        Ok(())
    }
}
