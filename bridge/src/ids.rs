//! Snowflake message ids: 41 bits of milliseconds since 2024-01-01T00:00:00Z, 10 bits of node id,
//! 12 bits of sequence. Ids from one node are unique and strictly increasing, even if the wall
//! clock steps backwards or more than 4,096 ids are asked for in one millisecond (the generator
//! then borrows from the next millisecond).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds from the unix epoch to 2024-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;

/// A lock-free generator shared by every shard worker of a node.
#[derive(Debug)]
pub struct Snowflake {
    node: u64,
    /// Last issued (ms since EPOCH_MS) << SEQ_BITS | sequence.
    last: AtomicU64,
}

impl Snowflake {
    /// `node` must be below 1024 (the config checks it); higher bits are masked off.
    pub fn new(node: u16) -> Snowflake {
        Snowflake {
            node: u64::from(node) & ((1 << NODE_BITS) - 1),
            last: AtomicU64::new(0),
        }
    }

    /// The next id at the current wall-clock time.
    pub fn next_id(&self) -> u64 {
        self.next_at(now_ms())
    }

    /// The next id as if the wall clock read `unix_ms`.
    pub fn next_at(&self, unix_ms: u64) -> u64 {
        let floor = unix_ms.saturating_sub(EPOCH_MS) << SEQ_BITS;
        let prev = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |prev| {
                Some((prev + 1).max(floor))
            })
            .unwrap_or_else(|p| p);
        let state = (prev + 1).max(floor);
        let ms = state >> SEQ_BITS;
        let seq = state & ((1 << SEQ_BITS) - 1);
        (ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq
    }
}

/// Splits an id into (unix ms, node, sequence).
pub fn parts(id: u64) -> (u64, u16, u16) {
    let ms = (id >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS;
    let node = ((id >> SEQ_BITS) & ((1 << NODE_BITS) - 1)) as u16;
    let seq = (id & ((1 << SEQ_BITS) - 1)) as u16;
    (ms, node, seq)
}

/// Wall-clock unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_time_node_and_sequence() {
        let g = Snowflake::new(7);
        let t = EPOCH_MS + 1_000;
        let a = g.next_at(t);
        let b = g.next_at(t);
        assert_eq!(parts(a), (t, 7, 0));
        assert_eq!(parts(b), (t, 7, 1));
    }

    #[test]
    fn clock_going_backwards_never_repeats_or_decreases() {
        let g = Snowflake::new(1);
        let a = g.next_at(EPOCH_MS + 5_000);
        let b = g.next_at(EPOCH_MS + 4_000);
        assert!(b > a);
        assert_eq!(parts(b).0, EPOCH_MS + 5_000);
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let g = Snowflake::new(0);
        let t = EPOCH_MS + 10;
        let ids: Vec<u64> = (0..5000).map(|_| g.next_at(t)).collect();
        assert!(ids.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(parts(ids[4095]).0, t);
        assert_eq!(parts(ids[4096]), (t + 1, 0, 0));
    }

    #[test]
    fn concurrent_generation_is_unique() {
        let g = std::sync::Arc::new(Snowflake::new(3));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..10_000).map(|_| g.next_id()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
