//! The message service: turns device requests into stored, numbered events.
//!
//! The bridge holds one in-process rumqttd link per router partition. It reads every publish on
//! `/tenants/+/out` and `/tenants/+/status`, takes the user from the topic (never from the
//! payload), parses the request with `chat-proto`, and dispatches it: `send` and `receipt` to the
//! worker that owns the conversation's shard (one writer per shard gives one order per
//! conversation), `sync` and `history` to the blocking pool (reads). Events go back out on the
//! link of the recipient's partition, queued there by whoever produced them. Bad input is
//! answered with an `error` event to the device that sent it and never reaches anyone else.
//!
//! Entry point: [`Bridge::start`]. Other services of the node ask it for work through a
//! [`BridgeHandle`] ([`Bridge::handle`]).
//!
//! Layout:
//! - `intake.rs`: reading requests from the routers, rate limits, dispatching
//! - `worker.rs`: conversation shard workers: send, receipts, 1:1 fan-out, recovery
//! - `groups.rs`: group membership changes (run by the group's shard worker)
//! - `fanout.rs`: group fan-out queues, one thread per shard
//! - `social.rs`: presence subscriptions, typing, blocks
//! - `privacy.rs`: privacy settings and who sees whose presence
//! - `invites.rs`: group invites for users whose settings refuse to be added
//! - `limits.rs`: per-user token buckets
//! - `reads.rs`: `sync`, `history` and `group_info` answers (history also serves HTTP)
//! - `events.rs`: stored records to wire events
//! - `flusher.rs`: group commit (the only code that flushes the store)
//! - `publisher.rs`: publishing on the bridge's links, batched per router notification
//! - `presence.rs`: the online table and last-seen
//! - `ids.rs`: Snowflake message ids
//! - `stats.rs`: [`BridgeStats`], the meters the node exports

mod events;
mod fanout;
mod flusher;
mod groups;
pub mod ids;
mod intake;
mod invites;
pub mod limits;
mod presence;
mod privacy;
mod publisher;
pub mod reads;
mod social;
pub mod stats;
mod worker;

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use chat_broker::{Broker, ConnectionEvent};
use chat_proto::ErrorCode;
use chat_store::Store;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use flusher::{FlushHook, Flusher};
pub use groups::{DEFAULT_MAX_MEMBERS, MAX_MEMBERS_CAP};
pub use limits::Rate;
pub use presence::{Presence, MAX_WATCHED_PER_DEVICE};
pub use publisher::Publisher;
pub use stats::BridgeStats;

/// The bridge's settings (the node's `[limits]` section).
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// Most members of a group, creator included (at most [`MAX_MEMBERS_CAP`]).
    pub max_group_members: usize,
    /// Every request of one user (`per_sec` 0: unlimited).
    pub requests: Rate,
    /// `send` requests of one user, on top of `requests` (`per_sec` 0: unlimited).
    pub sends: Rate,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            max_group_members: DEFAULT_MAX_MEMBERS,
            requests: Rate {
                per_sec: 200.0,
                burst: 1000.0,
            },
            sends: Rate {
                per_sec: 100.0,
                burst: 500.0,
            },
        }
    }
}

use crate::ids::Snowflake;
use crate::worker::{Job, Origin};

/// Errors starting the bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("store: {0}")]
    Store(#[from] chat_store::StoreError),
    #[error("broker link: {0}")]
    Broker(#[from] chat_broker::BrokerError),
    #[error("thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What every part of the bridge shares.
pub(crate) struct Services {
    pub(crate) store: Store,
    pub(crate) publisher: Publisher,
    pub(crate) presence: Presence,
    /// The front end's connection events, applied to `presence` in order.
    pub(crate) connections: presence::Feed,
    pub(crate) flusher: Flusher,
    pub(crate) ids: Snowflake,
    pub(crate) config: BridgeConfig,
    pub(crate) stats: Arc<BridgeStats>,
    /// Push notifications for offline recipients (`None`: push is off).
    pub(crate) push: Option<chat_push::PushQueue>,
}

impl Services {
    /// Applies the connection events queued so far to the online table. Called before a
    /// round's events are published to the users found online: a device that got its CONNACK
    /// before this point is counted, so it gets the live event, and one that connects later
    /// subscribes and syncs after the entry was written, so `sync` gives it the entry.
    pub(crate) fn catch_up_presence(self: &Arc<Self>) {
        self.connections.catch_up(self);
    }

    /// A stored message reached `user`'s inbox: wake them with a push if no device of theirs
    /// is online. (Blocked senders never get here: their messages skip the blocker's inbox.)
    pub(crate) fn push_if_offline(&self, user: &str, msg: &chat_store::StoredMessage) {
        let Some(push) = &self.push else { return };
        if self.presence.is_online(user) || events::is_system(msg) {
            return;
        }
        let body = msg.content.get("body").and_then(serde_json::Value::as_str);
        push.message(user, &msg.conv, &msg.from, body);
    }
}

impl Services {
    /// Sends an `error` event to the device that made the request (or all the user's devices).
    pub(crate) fn error(&self, origin: &Origin, id: Option<&str>, code: ErrorCode, message: &str) {
        self.stats.errors.inc(code.as_str());
        let payload = events::error(origin.req.as_deref(), id, code, message);
        self.publisher
            .to_device(&origin.user, origin.device.as_deref(), payload);
    }
}

/// The running message service.
pub struct Bridge {
    services: Arc<Services>,
    shards: Vec<Sender<Job>>,
    /// The dispatcher the intake tasks share; [`BridgeHandle`]s hold it weakly, so that
    /// dropping it at shutdown closes the shard queues.
    dispatch: Arc<intake::Dispatch>,
    workers: Vec<JoinHandle<()>>,
    tasks: JoinSet<()>,
}

/// A cheap, cloneable handle through which the node's other services (the HTTP API) ask the
/// bridge for what a device would ask over MQTT. It does not keep the bridge alive: once the
/// bridge has shut down, every request answers [`HandleError::Stopped`].
#[derive(Clone)]
pub struct BridgeHandle {
    dispatch: Weak<intake::Dispatch>,
}

impl std::fmt::Debug for BridgeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeHandle").finish_non_exhaustive()
    }
}

/// Why a [`BridgeHandle`] request was not done.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The bridge has stopped (the node is shutting down).
    #[error("the message service has stopped")]
    Stopped,
    /// The bridge refused, with the protocol error code it would have sent a device.
    #[error("{code:?}: {message}")]
    Refused {
        /// The protocol error code.
        code: ErrorCode,
        /// The message a device would have got.
        message: String,
    },
}

impl BridgeHandle {
    /// `user` leaves `group`, as with their own `group_leave` request: the group's shard worker
    /// stores a `left` entry that the other members receive (an admin leaving last hands the
    /// group to the longest-standing member). Resolves once the change is stored and flushed
    /// (its fan-out follows) with `true`, or with `false` if `user` was not a member.
    pub async fn leave_group(&self, user: &str, group: &str) -> Result<bool, HandleError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.dispatch.upgrade() {
            Some(dispatch) => dispatch.leave_for(user, group, tx),
            None => return Err(HandleError::Stopped),
        }
        match rx.await {
            Ok(Ok(())) => Ok(true),
            Ok(Err((ErrorCode::Forbidden, _))) => Ok(false),
            Ok(Err((code, message))) => Err(HandleError::Refused { code, message }),
            // The worker stopped before it answered.
            Err(_) => Err(HandleError::Stopped),
        }
    }
}

impl Bridge {
    /// Links to every router partition of `broker`, recovers interrupted fan-outs, starts the
    /// shard workers and begins reading requests. `events` are the broker's connection events.
    pub async fn start(
        node_id: u16,
        config: BridgeConfig,
        push: Option<chat_push::PushQueue>,
        store: Store,
        broker: &Broker,
        events: UnboundedReceiver<ConnectionEvent>,
    ) -> Result<Bridge, BridgeError> {
        let mut txs = Vec::new();
        let mut rxs = Vec::new();
        for partition in 0..broker.partitions() {
            let (mut tx, rx) = broker
                .local_link(partition, &format!("bridge{partition}"))
                .await?;
            for filter in ["/tenants/+/out", "/tenants/+/status"] {
                tx.subscribe(filter)
                    .map_err(|e| chat_broker::BrokerError::Link(e.to_string()))?;
            }
            txs.push(tx);
            rxs.push(rx);
        }
        let presence = Presence::default();
        let stats = Arc::new(BridgeStats::new(store.config().shards));
        let services = Arc::new(Services {
            store: store.clone(),
            publisher: Publisher::new(txs),
            presence: presence.clone(),
            connections: presence::Feed::new(events),
            flusher: Flusher::new(store.clone(), stats.clone()),
            ids: Snowflake::open(node_id, &store)?,
            config,
            push,
            stats,
        });
        let mut shards = Vec::new();
        let mut workers = Vec::new();
        for shard in 0..store.config().shards {
            let writer = store.conv_writer(shard)?;
            let (tx, rx) = channel();
            let (fanout_tx, fanout_rx) = channel();
            let fanout_services = services.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("chat-fanout-{shard}"))
                    .spawn(move || fanout::run(fanout_rx, fanout_services, shard))?,
            );
            let services = services.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("chat-shard-{shard}"))
                    .spawn(move || worker::run(writer, rx, services, fanout_tx))?,
            );
            shards.push(tx);
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(presence::track(services.clone()));
        let dispatch = Arc::new(intake::Dispatch::new(services.clone(), shards.clone()));
        for rx in rxs {
            tasks.spawn(intake::run(rx, dispatch.clone()));
        }
        info!(shards = shards.len(), "bridge started");
        Ok(Bridge {
            services,
            shards,
            dispatch,
            workers,
            tasks,
        })
    }

    /// A handle for the node's other services ([`BridgeHandle`]).
    pub fn handle(&self) -> BridgeHandle {
        BridgeHandle {
            dispatch: Arc::downgrade(&self.dispatch),
        }
    }

    /// Users with at least one connected device.
    pub fn online_users(&self) -> usize {
        self.services.presence.online_users()
    }

    /// The online table (a shared handle).
    pub fn presence(&self) -> Presence {
        self.services.presence.clone()
    }

    /// The bridge's meters (a shared handle that outlives the bridge).
    pub fn stats(&self) -> Arc<BridgeStats> {
        self.services.stats.clone()
    }

    /// The group-commit flusher: the only way to flush the store while the bridge runs (reads
    /// served elsewhere, like HTTP history, flush through it before they answer).
    pub fn flusher(&self) -> Flusher {
        self.services.flusher.clone()
    }

    /// Stops reading requests, lets the workers finish what is queued, and waits for them.
    /// Call after the broker has stopped accepting.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        drop(self.shards);
        drop(self.dispatch);
        let workers = std::mem::take(&mut self.workers);
        let joined = tokio::task::spawn_blocking(move || {
            for worker in workers {
                if worker.join().is_err() {
                    warn!("a shard worker panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            warn!("waiting for shard workers failed");
        }
        info!("bridge stopped");
    }
}
