//! Snowflake message ids: 41 bits of milliseconds since 2024-01-01T00:00:00Z, 10 bits of node id,
//! 12 bits of sequence. Ids from one node are unique and strictly increasing, even if the wall
//! clock steps backwards or more than 4,096 ids are asked for in one millisecond (the generator
//! then borrows from the next millisecond), and across restarts: the generator keeps a
//! high-water mark in the store ([`chat_store::Store::reserve_ids`]), [`RESERVE_MS`] ahead of
//! the ids it issues, and a restarted node issues ids from that mark on, whatever its clock
//! says (a clock that stepped back while the node was down only makes the time in the next ids
//! run ahead of the clock until it catches up; ids never repeat or go backwards).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use chat_store::{Store, StoreError};

/// Milliseconds from the unix epoch to 2024-01-01T00:00:00Z.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
/// How far ahead of the newest id the stored high-water mark is moved, in milliseconds: one
/// store write per this many milliseconds of ids, and how far a restarted node's ids may run
/// ahead of its clock.
pub const RESERVE_MS: u64 = 10_000;

/// Source of "now" in unix milliseconds (the wall clock, or a test's).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A generator shared by every shard worker of a node: lock-free, except for the store write
/// every [`RESERVE_MS`].
pub struct Snowflake {
    node: u64,
    /// Last issued (ms since EPOCH_MS) << SEQ_BITS | sequence.
    last: AtomicU64,
    /// Every state below this one is covered by the stored high-water mark.
    reserved: AtomicU64,
    /// Where the mark is kept (`None`: not kept, for tests of the arithmetic only).
    store: Option<Store>,
    /// Serialises the writes of the mark.
    reserving: Mutex<()>,
    clock: Clock,
}

impl std::fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snowflake")
            .field("node", &self.node)
            .field("last", &self.last)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl Snowflake {
    /// A generator that continues after every id recorded in `store`'s high-water mark, on the
    /// wall clock. `node` must be below 1024 (the config checks it); higher bits are masked off.
    pub fn open(node: u16, store: &Store) -> Result<Snowflake, StoreError> {
        Snowflake::open_with_clock(node, store, Arc::new(now_ms))
    }

    /// Like [`Snowflake::open`] with an injected clock (unix ms), for tests.
    pub fn open_with_clock(
        node: u16,
        store: &Store,
        clock: Clock,
    ) -> Result<Snowflake, StoreError> {
        let reserved = store.ids_reserved()?;
        let mut ids = Snowflake::unpersisted(node, clock);
        // The next id is the first one the mark did not cover.
        ids.last = AtomicU64::new(reserved.saturating_sub(1));
        ids.reserved = AtomicU64::new(reserved);
        ids.store = Some(store.clone());
        Ok(ids)
    }

    /// A generator that keeps no high-water mark: unique within this process only.
    fn unpersisted(node: u16, clock: Clock) -> Snowflake {
        Snowflake {
            node: u64::from(node) & ((1 << NODE_BITS) - 1),
            last: AtomicU64::new(0),
            reserved: AtomicU64::new(u64::MAX),
            store: None,
            reserving: Mutex::new(()),
            clock,
        }
    }

    /// The next id at the current time. Fails only if the high-water mark could not be
    /// written (the store has failed): no id is issued then.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        self.next_at((self.clock)())
    }

    /// The next id as if the clock read `unix_ms`.
    pub fn next_at(&self, unix_ms: u64) -> Result<u64, StoreError> {
        let floor = unix_ms.saturating_sub(EPOCH_MS) << SEQ_BITS;
        let prev = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |prev| {
                Some((prev + 1).max(floor))
            })
            .unwrap_or_else(|p| p);
        let state = (prev + 1).max(floor);
        if state >= self.reserved.load(Ordering::Acquire) {
            self.reserve(state)?;
        }
        let ms = state >> SEQ_BITS;
        let seq = state & ((1 << SEQ_BITS) - 1);
        Ok((ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq)
    }

    /// Moves the stored mark [`RESERVE_MS`] past `state` before `state` is handed out.
    fn reserve(&self, state: u64) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let _one = self.reserving.lock().unwrap_or_else(|e| e.into_inner());
        if state < self.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        let until = ((state >> SEQ_BITS) + RESERVE_MS) << SEQ_BITS;
        store.reserve_ids(until)?;
        self.reserved.store(until, Ordering::Release);
        Ok(())
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
    use std::sync::atomic::AtomicU64;

    use chat_store::StoreConfig;

    use super::*;

    impl Snowflake {
        fn next_at_ok(&self, unix_ms: u64) -> u64 {
            self.next_at(unix_ms).unwrap()
        }
    }

    fn store_config() -> StoreConfig {
        StoreConfig {
            shards: 1,
            password_memory_kib: 8,
            password_iterations: 1,
            ..StoreConfig::default()
        }
    }

    /// Shown to fail without the stored high-water mark: the restarted generator, its clock an
    /// hour behind, issued ids below the ones issued before the restart.
    #[test]
    fn ids_never_repeat_or_go_back_across_restarts_when_the_clock_steps_back() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(EPOCH_MS + 86_400_000));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::Relaxed))
        };
        let mut issued = Vec::new();
        for restart in 0..3 {
            let store = Store::open(dir.path(), &store_config()).unwrap();
            let ids = Snowflake::open_with_clock(5, &store, clock.clone()).unwrap();
            for _ in 0..5_000 {
                issued.push(ids.next_id().unwrap());
                now.fetch_add(3, Ordering::Relaxed);
            }
            // What a node flushes before answering `sent` makes the mark durable with it.
            store.flush().unwrap();
            drop(ids);
            drop(store);
            // Down for a while, and the clock steps back an hour (then further each time).
            now.fetch_sub(3_600_000 * (restart + 1), Ordering::Relaxed);
        }
        assert!(
            issued.windows(2).all(|w| w[1] > w[0]),
            "ids went backwards or repeated across a restart"
        );
    }

    #[test]
    fn the_mark_is_written_once_per_window_and_before_the_ids_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &store_config()).unwrap();
        let t = EPOCH_MS + 1_000_000;
        let ids = Snowflake::open_with_clock(1, &store, Arc::new(move || t)).unwrap();
        let first = ids.next_at_ok(t);
        let mark = store.ids_reserved().unwrap();
        assert_eq!(mark >> SEQ_BITS, (t - EPOCH_MS) + RESERVE_MS);
        for ms in 0..RESERVE_MS {
            ids.next_at_ok(t + ms);
        }
        assert_eq!(
            store.ids_reserved().unwrap(),
            mark,
            "moved inside the window"
        );
        let past = ids.next_at_ok(t + RESERVE_MS);
        assert!(store.ids_reserved().unwrap() > mark);
        assert!(past > first);
    }

    fn fixed(node: u16) -> Snowflake {
        Snowflake::unpersisted(node, Arc::new(now_ms))
    }

    #[test]
    fn ids_carry_time_node_and_sequence() {
        let g = fixed(7);
        let t = EPOCH_MS + 1_000;
        let a = g.next_at_ok(t);
        let b = g.next_at_ok(t);
        assert_eq!(parts(a), (t, 7, 0));
        assert_eq!(parts(b), (t, 7, 1));
    }

    #[test]
    fn clock_going_backwards_never_repeats_or_decreases() {
        let g = fixed(1);
        let a = g.next_at_ok(EPOCH_MS + 5_000);
        let b = g.next_at_ok(EPOCH_MS + 4_000);
        assert!(b > a);
        assert_eq!(parts(b).0, EPOCH_MS + 5_000);
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let g = fixed(0);
        let t = EPOCH_MS + 10;
        let ids: Vec<u64> = (0..5000).map(|_| g.next_at_ok(t)).collect();
        assert!(ids.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(parts(ids[4095]).0, t);
        assert_eq!(parts(ids[4096]), (t + 1, 0, 0));
    }

    #[test]
    fn concurrent_generation_is_unique() {
        let g = Arc::new(fixed(3));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    (0..10_000)
                        .map(|_| g.next_id().unwrap())
                        .collect::<Vec<_>>()
                })
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
