//! The seam between operations and push delivery: [`PushMonitor`]. [`StorePush`] reports the
//! node's push queue and dead letters (kept in sled) and the sender's counters; [`NoPush`]
//! stands in where there is no push delivery (unit tests).

use serde::Serialize;

/// Push outcomes counted in `chatd_push_outcomes_total{outcome}`.
pub const PUSH_OUTCOMES: &[&str] = &["delivered", "retried", "dropped", "dead_lettered"];

/// What push delivery reports to operators.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PushStats {
    /// Push jobs waiting to be sent (retries included).
    pub queue_depth: u64,
    /// Jobs that ran out of retries and wait for an operator.
    pub dead_letters: u64,
    /// Jobs finished so far, by outcome ([`PUSH_OUTCOMES`]).
    pub outcomes: Vec<(&'static str, u64)>,
}

/// A push that gave up, kept for an operator to retry or drop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Identifies the dead letter in the admin API.
    pub id: String,
    /// The user and device the push was for.
    pub user: String,
    pub device: String,
    /// `fcm` or `apns`.
    pub platform: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The last error from the push service.
    pub last_error: String,
    /// When it was given up, unix milliseconds.
    pub failed_at: u64,
}

/// Push delivery as the admin API and the metrics see it. Implementations must be quick
/// (they are called on the async runtime, once a second by the dashboard).
pub trait PushMonitor: Send + Sync {
    /// Whether push delivery is running on this node.
    fn enabled(&self) -> bool;
    /// Queue depth, dead letters and outcomes.
    fn stats(&self) -> PushStats;
    /// Up to `limit` dead letters, oldest first.
    fn dead_letters(&self, limit: usize) -> Vec<DeadLetter>;
    /// Queues a dead letter again; false if there is none with this id.
    fn retry_dead_letter(&self, id: &str) -> bool;
    /// Deletes a dead letter; false if there is none with this id.
    fn drop_dead_letter(&self, id: &str) -> bool;
}

/// Stands in while the node has no push delivery: nothing queued, nothing dead.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPush;

impl PushMonitor for NoPush {
    fn enabled(&self) -> bool {
        false
    }

    fn stats(&self) -> PushStats {
        PushStats {
            outcomes: PUSH_OUTCOMES.iter().map(|o| (*o, 0)).collect(),
            ..PushStats::default()
        }
    }

    fn dead_letters(&self, _limit: usize) -> Vec<DeadLetter> {
        Vec::new()
    }

    fn retry_dead_letter(&self, _id: &str) -> bool {
        false
    }

    fn drop_dead_letter(&self, _id: &str) -> bool {
        false
    }
}

/// The node's push delivery as operators see it: the queue and dead letters from the store,
/// the outcomes from the sender's counters.
pub struct StorePush {
    /// Whether a provider is configured (otherwise nothing is queued).
    pub enabled: bool,
    /// The store holding the queue.
    pub store: chat_store::Store,
    /// The sender's counters.
    pub stats: std::sync::Arc<chat_push::PushStats>,
}

impl PushMonitor for StorePush {
    fn enabled(&self) -> bool {
        self.enabled
    }

    fn stats(&self) -> PushStats {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        PushStats {
            queue_depth: self.store.push_queue_len() as u64,
            dead_letters: self.store.push_dead_len() as u64,
            outcomes: vec![
                ("delivered", s.sent.load(Relaxed)),
                ("retried", s.retried.load(Relaxed)),
                ("dropped", s.dropped.load(Relaxed)),
                ("dead_lettered", s.dead_lettered.load(Relaxed)),
            ],
        }
    }

    fn dead_letters(&self, limit: usize) -> Vec<DeadLetter> {
        let jobs = self.store.push_dead_letters().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading push dead letters failed");
            Vec::new()
        });
        jobs.into_iter()
            .take(limit)
            .map(|job| DeadLetter {
                id: job.id(),
                user: job.user,
                device: job.device,
                platform: job.platform,
                attempts: job.attempts,
                last_error: job.last_error.unwrap_or_default(),
                failed_at: job.next_at,
            })
            .collect()
    }

    fn retry_dead_letter(&self, id: &str) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.store.retry_dead_letter(id, now).unwrap_or(false)
    }

    fn drop_dead_letter(&self, id: &str) -> bool {
        self.store.drop_dead_letter(id).unwrap_or(false)
    }
}
