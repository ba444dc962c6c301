//! Placement of conversations and inboxes on shards (FNV-1a 64), the
//! per-shard trees `conv.{shard}` and `inbox.{shard}`, and the single-writer
//! rule for conversation shards ([`ConvWriter`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::{Store, StoreError, MAX_ID_LEN};

/// Tree kind of the conversation shards (`conv.{shard}`).
pub const CONV_TREE_KIND: &str = "conv";
/// Tree kind of the inbox shards (`inbox.{shard}`).
pub const INBOX_TREE_KIND: &str = "inbox";

/// Longest conversation id: `d.{a}.{b}` with two 32-char user ids.
pub const MAX_CONV_LEN: usize = 2 + MAX_ID_LEN + 1 + MAX_ID_LEN;

/// Above this many cached entries a cache (a writer's `last seq` per
/// conversation, an inbox shard's `last n` per user) is emptied and refilled
/// from disk on demand, so memory stays bounded with millions of ids.
pub(crate) const CACHE_MAX_ENTRIES: usize = 100_000;

/// FNV-1a, 64 bit.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// True if `conv` can be stored: 1..=[`MAX_CONV_LEN`] chars of `[a-z0-9.]`
/// (so never the `0x00` key separator). The `d.{a}.{b}` / `g.{id}` grammar
/// is the bridge's business.
pub(crate) fn valid_conv(conv: &str) -> bool {
    !conv.is_empty()
        && conv.len() <= MAX_CONV_LEN
        && conv
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
}

pub(crate) fn check_conv(conv: &str) -> Result<(), StoreError> {
    if valid_conv(conv) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "invalid conversation id {conv:?}"
        )))
    }
}

pub(crate) fn check_user(user: &str) -> Result<(), StoreError> {
    if crate::valid_id(user) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "invalid user id {user:?}"
        )))
    }
}

/// Trees and in-memory coordination of the message shards, shared by all
/// clones of a [`Store`].
pub(crate) struct ShardState {
    /// `conv.{shard}`
    pub(crate) conv: Vec<sled::Tree>,
    /// `inbox.{shard}`
    pub(crate) inbox: Vec<sled::Tree>,
    /// One flag per conversation shard: a [`ConvWriter`] exists.
    writers: Vec<AtomicBool>,
    /// One lock per inbox shard, guarding the `last n` cache (user -> n).
    inbox_locks: Vec<Mutex<HashMap<String, u64>>>,
}

impl ShardState {
    pub(crate) fn open(db: &sled::Db, shards: usize) -> Result<ShardState, StoreError> {
        let open = |kind: &str| -> Result<Vec<sled::Tree>, StoreError> {
            (0..shards)
                .map(|s| Ok(db.open_tree(format!("{kind}.{s}"))?))
                .collect()
        };
        Ok(ShardState {
            conv: open(CONV_TREE_KIND)?,
            inbox: open(INBOX_TREE_KIND)?,
            writers: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            inbox_locks: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// Locks an inbox shard. A poisoned lock (a writer panicked while
    /// holding it) may have left the cache out of step with the disk, so the
    /// cache is emptied and refilled from disk.
    pub(crate) fn lock_inbox(&self, shard: usize) -> MutexGuard<'_, HashMap<String, u64>> {
        let lock = &self.inbox_locks[shard];
        match lock.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.clear();
                lock.clear_poison();
                tracing::warn!(shard, "inbox shard lock was poisoned; cache dropped");
                guard
            }
        }
    }
}

/// The only writer of one conversation shard (tree `conv.{shard}`).
///
/// `seq` is allocated from an in-memory cache without locks, which is only
/// correct because at most one `ConvWriter` per shard exists in the process:
/// [`Store::conv_writer`] refuses a second one with [`StoreError::Conflict`]
/// while the first is alive, and dropping it releases the shard. It is
/// neither `Clone` nor shareable for writes (`&mut self`); move it into the
/// worker thread that owns the shard.
///
/// Nothing here flushes: a write is durable only after the next
/// [`Store::flush`] (the bridge's single group-commit flusher).
pub struct ConvWriter {
    pub(crate) store: Store,
    pub(crate) shard: usize,
    pub(crate) tree: sled::Tree,
    /// conv -> last allocated seq; only ever holds values that are on disk.
    pub(crate) last_seq: HashMap<String, u64>,
    /// `(conv, seq)` of the messages named by the shard's batch marker (`P`), as on disk.
    pub(crate) batch_pending: Vec<(String, u64)>,
    /// Idempotency keys [`ConvWriter::find_idempotent`] found absent since the last append.
    /// Only this writer adds such keys, so they are still absent when the append's guard
    /// checks them, and it does not read them again.
    pub(crate) absent: RefCell<HashSet<Vec<u8>>>,
}

impl fmt::Debug for ConvWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConvWriter")
            .field("shard", &self.shard)
            .field("cached_convs", &self.last_seq.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ConvWriter {
    fn drop(&mut self) {
        self.store.inner.shards.writers[self.shard].store(false, Ordering::Release);
    }
}

impl ConvWriter {
    /// The conversation shard this writer owns.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Refuses a conversation that is invalid or lives on another shard.
    pub(crate) fn check_own_conv(&self, conv: &str) -> Result<(), StoreError> {
        check_conv(conv)?;
        let shard = self.store.conv_shard(conv);
        if shard != self.shard {
            return Err(StoreError::InvalidInput(format!(
                "conversation {conv:?} is on shard {shard}, not on this writer's shard {}",
                self.shard
            )));
        }
        Ok(())
    }
}

impl Store {
    /// The conversation shard of `conv`: FNV-1a 64 of its bytes modulo
    /// [`crate::StoreConfig::shards`]. (With a power-of-two shard count the
    /// result depends only on the low bits of each byte; real ids spread
    /// evenly, but synthetic ids that differ only in mirrored digits, such
    /// as `d.a{i}.b{i}`, miss some shards.)
    pub fn conv_shard(&self, conv: &str) -> usize {
        shard_of(conv, self.inner.cfg.shards)
    }

    /// The inbox shard of `user`: FNV-1a 64 of its bytes modulo
    /// [`crate::StoreConfig::shards`].
    pub fn inbox_shard(&self, user: &str) -> usize {
        shard_of(user, self.inner.cfg.shards)
    }

    /// Takes ownership of conversation shard `shard`. Only one writer per
    /// shard may exist at a time: a second request while the first is alive
    /// gives [`StoreError::Conflict`]; dropping the writer releases the
    /// shard. A shard out of range gives [`StoreError::InvalidInput`].
    pub fn conv_writer(&self, shard: usize) -> Result<ConvWriter, StoreError> {
        let shards = &self.inner.shards;
        let Some(flag) = shards.writers.get(shard) else {
            return Err(StoreError::InvalidInput(format!(
                "shard {shard} out of range 0..{}",
                self.inner.cfg.shards
            )));
        };
        if flag
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(StoreError::Conflict(format!(
                "conversation shard {shard} already has a writer"
            )));
        }
        let mut writer = ConvWriter {
            store: self.clone(),
            shard,
            tree: shards.conv[shard].clone(),
            last_seq: HashMap::new(),
            absent: RefCell::default(),
            batch_pending: Vec::new(),
        };
        // On error the writer is dropped here, which releases the shard again.
        writer.batch_pending = crate::messages::read_batch_marker(&writer.tree)?;
        Ok(writer)
    }

    /// The `conv.{shard}` tree of `conv`.
    pub(crate) fn conv_tree(&self, conv: &str) -> &sled::Tree {
        &self.inner.shards.conv[self.conv_shard(conv)]
    }

    /// The `inbox.{shard}` tree of `user`.
    pub(crate) fn inbox_tree(&self, user: &str) -> &sled::Tree {
        &self.inner.shards.inbox[self.inbox_shard(user)]
    }
}

fn shard_of(id: &str, shards: usize) -> usize {
    // `shards` is 1..=1024 (validated), so both conversions are lossless. FNV-1a's low bits
    // depend only on the low bits of each byte; folding the high half in spreads ids that differ
    // in other bits (e.g. `d.a1.b1`, `d.a2.b2`) over every shard.
    let h = fnv1a64(id.as_bytes());
    ((h ^ (h >> 32)) % shards as u64) as usize
}
