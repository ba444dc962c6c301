//! The front end's own meters: sockets accepted, connections refused (by stage), connections
//! ended (by [`DisconnectReason`]), and publishes in each direction.
//!
//! rumqttd 0.20's router meters (`RouterMeter`) are only pushed on an event that its own
//! `Broker` timer sends, and that event type is not exported, so routers spawned with
//! `Router::spawn` (as here) never report them; these meters cover the same ground from the
//! front end, which sees every packet.

use chat_telemetry::{Counter, LabeledCounter};

use crate::DisconnectReason;

/// Why a connection was refused before it was linked, as counted in
/// [`BrokerStats::refused`].
pub const REFUSED_STAGES: &[&str] = &["limit", "handshake", "connect", "auth", "router"];

/// Every [`DisconnectReason`] as counted in [`BrokerStats::disconnects`].
pub const DISCONNECT_REASONS: &[&str] = &[
    "clean",
    "lost",
    "keep_alive_timeout",
    "violation",
    "kicked",
    "replaced",
    "shutdown",
];

impl DisconnectReason {
    /// The reason's label in the metrics (`clean`, `lost`, `keep_alive_timeout` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Clean => "clean",
            DisconnectReason::Lost => "lost",
            DisconnectReason::KeepAliveTimeout => "keep_alive_timeout",
            DisconnectReason::Violation => "violation",
            DisconnectReason::Kicked => "kicked",
            DisconnectReason::Replaced => "replaced",
            DisconnectReason::Shutdown => "shutdown",
        }
    }
}

/// The front end's counters (shared, relaxed atomics).
#[derive(Debug)]
pub struct BrokerStats {
    /// Sockets accepted on either listener.
    pub accepted: Counter,
    /// Connections refused before linking: `limit` (connection cap), `handshake` (TLS failed
    /// or timed out, or no valid identity in the certificate), `connect` (no valid CONNECT in
    /// time), `auth` (CONNACK refusal: unknown, revoked or disabled device, bad login, bad
    /// client id or Last Will), `router` (the router refused the link).
    pub refused: LabeledCounter,
    /// Connections that completed CONNECT.
    pub connected: Counter,
    /// Linked connections that ended, by reason ([`DISCONNECT_REASONS`]).
    pub disconnects: LabeledCounter,
    /// PUBLISH packets from devices passed to the routers.
    pub publishes_in: Counter,
    /// PUBLISH packets written to devices.
    pub publishes_out: Counter,
}

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats {
            accepted: Counter::default(),
            refused: LabeledCounter::new(REFUSED_STAGES),
            connected: Counter::default(),
            disconnects: LabeledCounter::new(DISCONNECT_REASONS),
            publishes_in: Counter::default(),
            publishes_out: Counter::default(),
        }
    }
}
