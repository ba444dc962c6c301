//! The MQTT front end of the chat node, over embedded rumqttd routers.
//!
//! rumqttd's own listener stalls every TLS client behind one silent socket, accepts slowly and
//! never sets TCP_NODELAY, so this crate accepts connections itself and keeps rumqttd for what it
//! does well: the MQTT codec (`rumqttd::protocol`) and the routers. Each connection runs in its
//! own task: TLS handshake and CONNECT under timeouts, the user from the client certificate's O
//! and the device from its CN (or a session-token login on the optional plaintext listener),
//! then one rumqttd link with `tenant_id = user` on the router that owns the user's partition.
//! Topic rules are enforced here (SUBACK failure for a foreign filter, disconnect for a foreign
//! publish) and again by rumqttd's tenant prefix. The crate knows nothing of chat: who may
//! connect is asked of an [`Authorizer`], and lifecycle [`ConnectionEvent`]s go to the caller.
//!
//! Entry point: [`Broker::start`].
//!
//! Layout:
//! - `server.rs`: listeners, accept loops, the connection registry, [`Broker`], [`Authorizer`]
//! - `connection.rs`: one connection: handshake, CONNECT, link, packet pump, Last Will
//! - `codec.rs`: framing with rumqttd's v4/v5 codecs
//! - `rules.rs`: the per-user topic rules
//! - `routers.rs`: the rumqttd routers, one per partition
//! - `identity.rs`: user and device from a client certificate
//! - `stats.rs`: [`BrokerStats`], the front end's meters
//! - `config.rs`: [`BrokerConfig`]

pub mod codec;
mod config;
mod connection;
pub mod identity;
mod routers;
pub mod rules;
mod server;
pub mod stats;

pub use config::{default_partitions, BrokerConfig};
pub use routers::partition_of;
pub use rumqttd::local::{LinkRx, LinkTx};
pub use rumqttd::protocol::{Packet, Publish};
pub use rumqttd::Notification;
pub use server::{Authorizer, Broker, BrokerHandle, ConnectionEvent, DisconnectReason};
pub use stats::BrokerStats;

/// Errors starting or using the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("i/o: {0}")]
    Io(std::io::Error),
    #[error("router link: {0}")]
    Link(String),
}
