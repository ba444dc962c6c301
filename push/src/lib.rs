//! `chat-push`: wakes devices that are not connected. The bridge queues a job per registered
//! device of an offline recipient ([`PushQueue::message`]); jobs live in sled (see
//! `chat_store::PushJob`), collapsed per device and conversation, so they survive restarts and
//! a burst of messages is one notification, updated. [`Pusher::start`] runs the sender: it
//! takes due jobs, sends them to FCM (HTTP v1, OAuth2 token from a service-account JWT) or
//! APNs (HTTP/2, ES256 provider token), retries with exponential backoff and jitter on 5xx,
//! 429 and network errors (honouring `Retry-After`), removes tokens the provider calls invalid,
//! and moves jobs that used up their attempts to the dead letters.
//!
//! Layout:
//! - `config.rs`: [`PushConfig`] (`[push]` section)
//! - `fcm.rs`: FCM HTTP v1 and its OAuth2 token
//! - `apns.rs`: APNs with token-based authentication
//! - `sender.rs`: the worker loop, outcomes, backoff, counters ([`PushStats`])

mod apns;
mod config;
mod fcm;
mod sender;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chat_store::Store;
use tokio::sync::Notify;

pub use config::{ApnsConfig, FcmConfig, PushConfig};
pub use sender::{OnlineCheck, PushStats, Pusher};

/// Errors setting the sender up (unreadable keys or credentials).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push configuration: {0}")]
    Config(String),
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Longest text preview put in a notification, in characters.
pub const PREVIEW_CHARS: usize = 100;

/// The bridge's handle: queue a notification for an offline recipient.
#[derive(Clone)]
pub struct PushQueue {
    store: Store,
    wake: Arc<Notify>,
    preview: bool,
    collapse_ms: u64,
}

impl PushQueue {
    /// A queue on `store`; `wake` is shared with the [`Pusher`].
    pub fn new(store: Store, config: &PushConfig, wake: Arc<Notify>) -> PushQueue {
        PushQueue {
            store,
            wake,
            preview: config.preview,
            collapse_ms: config.collapse_ms,
        }
    }

    /// A message for `user` (who has no online device) in `conv` from `from`: one job per
    /// registered device, or an update of the waiting one. The text goes in only when
    /// previews are on. Blocking (sled); call from worker threads.
    pub fn message(&self, user: &str, conv: &str, from: &str, body: Option<&str>) {
        let preview: Option<String> = if self.preview {
            body.map(|b| b.chars().take(PREVIEW_CHARS).collect())
        } else {
            None
        };
        let now = now_ms();
        match self.store.enqueue_push(
            user,
            conv,
            from,
            preview.as_deref(),
            now,
            now + self.collapse_ms,
        ) {
            Ok(0) => {}
            Ok(_) => self.wake.notify_one(),
            Err(e) => tracing::error!(error = %e, user, "queueing a push failed"),
        }
    }
}
