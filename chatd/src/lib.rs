//! The chat node: one process that is a whole deployment of the messaging backend.
//!
//! [`Node::start`] opens the sled store, loads or creates the certificate authority, starts the
//! MQTT front end (`chat-broker`) and the HTTP API, and [`Node::shutdown`] stops them in order.
//! The `chatd` binary (`main.rs`) only parses the command line, loads the [`Config`], installs
//! logging and waits for a signal.
//!
//! Layout:
//! - `alloc.rs`: one malloc arena per core, set first in `main`
//! - `config.rs`: [`Config`], layered from defaults, TOML, `CHATD__SECTION__KEY` and flags
//! - `fill.rs`: `chatd fill`, messages written straight into a data directory (benchmarks)
//! - `node.rs`: [`Node`]: wiring and lifecycle (draining, graceful shutdown)
//! - `http/`: the HTTP API (accounts, sessions, device enrolment, the admin API, `/metrics`,
//!   `/readyz` and the dashboard), served by axum
//! - `ops/`: [`ops::Ops`]: live figures, readiness, the sampler, the push seam

pub mod alloc;
pub mod cli;
pub mod config;
pub mod fill;
pub mod http;
mod node;
pub mod ops;

/// `[push]` settings, from the push crate.
pub use chat_push::PushConfig;
pub use config::{Config, ConfigError, NodeConfig, Overrides};
pub use node::{Node, NodeError};
