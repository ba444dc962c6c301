//! The seam between operations and push delivery. Push delivery is not part of this node yet:
//! [`NoPush`] stands in, reporting no queue, no outcomes and no dead letters, and the metrics
//! say so (`chatd_push_enabled 0`). The push worker plugs in by implementing [`PushMonitor`].

use serde::Serialize;

/// Push outcomes counted in `chatd_push_outcomes_total{outcome}`.
pub const PUSH_OUTCOMES: &[&str] = &["delivered", "retried", "failed", "dead_lettered"];

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
