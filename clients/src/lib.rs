//! `chat-client`: the Rust SDK for chatd, plus the `chat` command-line client and the
//! `chat-bench` load generator built on it.
//!
//! A device enrols once over HTTP ([`Api::register`], [`Api::enrol`]: a key made here, a CSR,
//! a short-lived certificate), keeps its [`Session`] in a small state file, and connects with
//! [`Client::start`] (or [`Client::open`] from the file). The client then keeps itself
//! connected: MQTT over TLS with the device certificate, a clean session, the `offline` Last
//! Will, `online` on connect, `sync` from the last inbox `n` on every (re)connect, reconnects
//! with exponential backoff and jitter, and certificate renewal before expiry.
//! [`Client::send`] returns once the server's `sent` says the message is on disk; until then
//! it sits in an outbox that survives reconnects and restarts and is retried with the same id.
//! Events arrive as typed [`chat_proto::Event`]s, each stored one once and in inbox order.
//!
//! ```no_run
//! use chat_client::{Api, Client, ConnState, Options, StateStore, Target};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), chat_client::Error> {
//! // Once: register and enrol this device; the state file keeps the key and certificate.
//! let api = Api::new("http://127.0.0.1:8080", None)?;
//! api.register("alice", "wonderland!").await?;
//! let session = api.enrol("127.0.0.1:8883", "alice", "wonderland!", "laptop").await?;
//! let store = StateStore::File("alice.json".into());
//! store.save(&session)?;
//!
//! // Every run: connect from the state file, send, and read events.
//! let (client, mut events) = Client::open(store, Options::default())?;
//! client.wait_online(Duration::from_secs(10)).await?;
//! let sent = client.send(Target::To("bob".into()), "hi bob").await?;
//! println!("stored as {} #{}", sent.conv, sent.seq);
//! while let Some(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! assert_eq!(*client.state().borrow(), ConnState::Closed);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `api.rs`: [`Api`], the HTTP API (accounts, enrolment and renewal, history pages, media)
//! - `client.rs`: [`Client`] (one method per request), [`Options`], [`ConnState`], [`Events`]
//! - `conn/`: the connection task that owns the session and the MQTT connection: connect,
//!   subscribe, outbox, reconnect, timers (`mod.rs`); incoming events, answers matched to
//!   requests, `sync` pages (`incoming.rs`)
//! - `order.rs`: `Inbox`, exactly-once delivery of stored events in `n` order
//! - `state.rs`: [`Session`], [`StateStore`] (the state file, written atomically)
//! - `tls/`: keys, CSRs and the rustls client configuration (`mod.rs`); the check of the
//!   node's certificate, remembering the chains it accepted (`verified.rs`)
//! - `backoff.rs`: reconnect delays
//! - `cli/` and `bench/` (feature `tools`, on by default): the `chat` and `chat-bench` programs

mod api;
mod backoff;
mod client;
mod conn;
mod error;
mod order;
mod state;
pub mod tls;

#[cfg(feature = "tools")]
pub mod bench;
#[cfg(feature = "tools")]
pub mod cli;

/// The wire types (`chat-proto`), for requests and events beyond the re-exports below.
pub use chat_proto as proto;

pub use api::{Api, DeviceCert, HistoryPage, Login};
pub use chat_proto::{Conv, Event, Media, ReceiptStatus, SentEvent, Target};
pub use client::{Client, ConnState, Events, Options};
pub use error::{Error, Result};
pub use state::{OutboxEntry, Session, StateStore};

/// Unix time now, in seconds.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
