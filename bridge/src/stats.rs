//! The bridge's meters, read by the node for `/metrics` and the admin API: requests by type,
//! errors by code, messages stored, `send` -> `sent` latency, group-commit flush latency, and
//! the depth of every shard's work queue and group fan-out queue.

use chat_proto::ErrorCode;
use chat_telemetry::{Counter, Gauge, Histogram, LabeledCounter};

/// Request `type`s as counted: every request of the protocol, `status` for `online`/`offline`
/// on the status topic, and `invalid` for a payload that did not parse.
pub const REQUEST_TYPES: &[&str] = &[
    "send",
    "receipt",
    "sync",
    "history",
    "group_create",
    "group_add",
    "group_remove",
    "group_leave",
    "group_info",
    "presence_sub",
    "typing",
    "block",
    "unblock",
    "push_register",
    "push_unregister",
    "status",
    "invalid",
];

/// The bridge's meters (shared, updated with relaxed atomics).
#[derive(Debug)]
pub struct BridgeStats {
    /// Requests read from devices, by type ([`REQUEST_TYPES`]).
    pub requests: LabeledCounter,
    /// `error` events sent to devices, by code.
    pub errors: LabeledCounter,
    /// Messages stored and flushed (each counted once, retries not at all).
    pub messages_stored: Counter,
    /// From reading a `send` to publishing its `sent` (newly stored messages).
    pub send_latency: Histogram,
    /// One group-commit flush of the store.
    pub flush_latency: Histogram,
    /// Jobs queued for each conversation shard's worker or in its current batch (a job leaves
    /// once answered).
    pub shard_queue: Vec<Gauge>,
    /// Group entries queued for each shard's fan-out thread or being fanned out.
    pub fanout_queue: Vec<Gauge>,
}

impl BridgeStats {
    /// Whether every shard's worker and fan-out queue is empty (nothing queued or in hand).
    pub fn queues_empty(&self) -> bool {
        self.shard_queue
            .iter()
            .chain(&self.fanout_queue)
            .all(|g| g.get() <= 0)
    }

    /// Zeroed meters for `shards` shards.
    pub fn new(shards: usize) -> BridgeStats {
        BridgeStats {
            requests: LabeledCounter::new(REQUEST_TYPES),
            errors: LabeledCounter::new(ErrorCode::NAMES),
            messages_stored: Counter::default(),
            send_latency: Histogram::default(),
            flush_latency: Histogram::default(),
            shard_queue: (0..shards).map(|_| Gauge::default()).collect(),
            fanout_queue: (0..shards).map(|_| Gauge::default()).collect(),
        }
    }

    pub(crate) fn shard_queue(&self, shard: usize) -> Option<&Gauge> {
        self.shard_queue.get(shard)
    }

    pub(crate) fn fanout_queue(&self, shard: usize) -> Option<&Gauge> {
        self.fanout_queue.get(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_own_counter() {
        let stats = BridgeStats::new(2);
        for code in ErrorCode::NAMES {
            stats.errors.inc(code);
            assert_eq!(stats.errors.get(code), 1, "{code}");
        }
        assert_eq!(stats.errors.get("other"), 0);
        assert_eq!(stats.shard_queue.len(), 2);
    }
}
