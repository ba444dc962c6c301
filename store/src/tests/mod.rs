//! Unit tests. Helpers: a cheap argon2 config and a movable clock.

mod devices;
mod erase;
mod groups;
mod inbox;
mod membership;
mod messages;
mod privacy;
mod receipts;
mod sessions;
mod size;
mod store;
mod users;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tempfile::TempDir;

use crate::{NewMessage, Store, StoreConfig};

/// Start of the fake clock (2023-11-14).
pub(crate) const T0: u64 = 1_700_000_000;

/// Defaults with argon2 cost lowered so tests stay fast.
pub(crate) fn test_config() -> StoreConfig {
    StoreConfig {
        password_memory_kib: 256,
        password_iterations: 1,
        cache_capacity_mb: 8,
        shards: 16,
        ..StoreConfig::default()
    }
}

/// A clock the test can move.
#[derive(Clone)]
pub(crate) struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    pub(crate) fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// A store in a fresh temp dir with a fake clock at `T0`. Keep the `TempDir`
/// alive as long as the store.
pub(crate) fn open_tmp() -> (TempDir, Store, FakeClock) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, clock) = open_in(dir.path(), &test_config());
    (dir, store, clock)
}

pub(crate) fn open_in(path: &std::path::Path, cfg: &StoreConfig) -> (Store, FakeClock) {
    let clock = FakeClock(Arc::new(AtomicU64::new(T0)));
    let c = clock.clone();
    let store = Store::open_with_clock(path, cfg, Arc::new(move || c.0.load(Ordering::SeqCst)))
        .expect("open store");
    (store, clock)
}

/// Unix ms used as the message time in messaging tests.
pub(crate) const TS: u64 = 1_700_000_000_000;

/// A message from `from` with client id `id` and a small body.
pub(crate) fn new_msg(conv: &str, from: &str, id: &str) -> NewMessage {
    NewMessage {
        msg_id: 1,
        conv: conv.to_owned(),
        from: from.to_owned(),
        client_id: id.to_owned(),
        ts: TS,
        content: serde_json::json!({ "body": format!("hello {id}") }),
    }
}

/// `count` distinct 1:1 conversation ids that live on `shard`. (The two
/// ids differ in more than their digits: with FNV-1a the low bits of the
/// hash depend only on the low bits of the bytes, so `d.a{i}.b{i}` would
/// never reach some shards.)
pub(crate) fn convs_on_shard(store: &Store, shard: usize, count: usize) -> Vec<String> {
    let convs: Vec<String> = (0..100_000)
        .map(|i| format!("d.u{i}.v{}", i * 7 + 3))
        .filter(|c| store.conv_shard(c) == shard)
        .take(count)
        .collect();
    assert_eq!(
        convs.len(),
        count,
        "not enough conversations on shard {shard}"
    );
    convs
}
