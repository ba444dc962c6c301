//! Per-user inboxes in the inbox shard trees `inbox.{shard}` (key tags `e`,
//! `w`, `s`). `n` is gapless from 1 per user.
//!
//! Writers of one inbox shard are serialised by a mutex per shard held in the
//! store's shared state; under it `n` is allocated and the entries are
//! written (one sled batch per call), so entries appear in `n` order. The
//! mutex also guards the per-user `last n` cache.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::codec::{
    decode_in, decode_u64_in, encode, key_num_suffix, tag_key, tag_num_key, tag_prefix,
    tag_prefix_end, SEP,
};
use crate::shards::{check_conv, check_user, CACHE_MAX_ENTRIES};
use crate::{valid_id, Store, StoreError};

/// Key tag: inbox entry, `e user 0x00 n`.
pub(crate) const TAG_ENTRY: u8 = b'e';
/// Key tag: fan-out watermark, `w user 0x00 conv`.
pub(crate) const TAG_FANOUT: u8 = b'w';
/// Key tag: the `n` of a user's own message, `s user 0x00 conv 0x00 seq`.
pub(crate) const TAG_SENT: u8 = b's';

/// What an inbox entry points at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum InboxItem {
    /// The user's own message (shown to their devices as `sent`).
    Sent {
        /// Conversation id.
        conv: String,
        /// The message's seq.
        seq: u64,
    },
    /// A message to the user.
    Msg {
        /// Conversation id.
        conv: String,
        /// The message's seq.
        seq: u64,
    },
    /// Any other stored event (receipt, group, ...), stored whole, without `n`.
    Event(serde_json::Value),
}

impl InboxItem {
    /// `(conv, seq)` of a message item.
    fn message_ref(&self) -> Option<(&str, u64)> {
        match self {
            InboxItem::Sent { conv, seq } | InboxItem::Msg { conv, seq } => {
                Some((conv.as_str(), *seq))
            }
            InboxItem::Event(_) => None,
        }
    }
}

impl Store {
    /// Appends items to `user`'s inbox in one atomic sled batch, each with
    /// the next `n`; returns the `n` of each item, or `None` for a message
    /// item that was skipped as a replay.
    ///
    /// Message items (`Sent`, `Msg`) are applied at most once, so replaying
    /// a fan-out after a crash is harmless (a replayed item gets `None` and
    /// uses no `n`). For `Msg` items a fan-out watermark per `(user, conv)`
    /// records the highest seq applied and an item with `seq <=` it is a
    /// replay, so the `Msg` items of one `(user, conv)` must be appended in
    /// increasing `seq` order (the conversation's single writer and its
    /// fan-out queue do that). A `Sent` item records its `n` for
    /// [`Store::sent_n`], and that record is what marks it as applied; so a
    /// user's own messages may be written ahead of the `Msg` items of the
    /// same conversation still queued for them.
    ///
    /// Invalid ids or a message item with seq 0 give
    /// [`StoreError::InvalidInput`] and write nothing. Durable only after the
    /// next [`Store::flush`].
    pub fn inbox_append(
        &self,
        user: &str,
        items: Vec<InboxItem>,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        check_user(user)?;
        for (conv, seq) in items.iter().filter_map(InboxItem::message_ref) {
            check_conv(conv)?;
            if seq == 0 {
                return Err(StoreError::InvalidInput(
                    "message seq must be at least 1".into(),
                ));
            }
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let shard = self.inbox_shard(user);
        let tree = &self.inner.shards.inbox[shard];
        let mut cache = self.inner.shards.lock_inbox(shard);
        let last = match cache.get(user) {
            Some(n) => *n,
            None => read_inbox_last(tree, user)?,
        };
        let mut n = last;
        let mut marks: HashMap<&str, u64> = HashMap::new();
        let mut writes = sled::Batch::default();
        let mut out = Vec::with_capacity(items.len());
        let mut sent_in_batch: HashSet<(&str, u64)> = HashSet::new();
        for item in &items {
            match item {
                InboxItem::Msg { conv, seq } => {
                    let mark = match marks.get(conv.as_str()) {
                        Some(mark) => *mark,
                        None => read_fanout_mark(tree, user, conv)?,
                    };
                    if *seq <= mark {
                        out.push(None);
                        continue;
                    }
                    marks.insert(conv, *seq);
                }
                InboxItem::Sent { conv, seq } => {
                    let known = !sent_in_batch.insert((conv.as_str(), *seq))
                        || tree.contains_key(sent_key(user, conv, *seq))?;
                    if known {
                        out.push(None);
                        continue;
                    }
                }
                InboxItem::Event(_) => {}
            }
            n = n
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt(format!("inbox of {user:?}: n overflow")))?;
            writes.insert(tag_num_key(TAG_ENTRY, user, n), encode(item)?);
            if let InboxItem::Sent { conv, seq } = item {
                writes.insert(sent_key(user, conv, *seq), &n.to_be_bytes()[..]);
            }
            out.push(Some(n));
        }
        if n == last {
            return Ok(out);
        }
        for (conv, seq) in marks {
            writes.insert(
                tag_key(TAG_FANOUT, user, conv.as_bytes()),
                &seq.to_be_bytes()[..],
            );
        }
        tree.apply_batch(writes)?;
        if cache.len() >= CACHE_MAX_ENTRIES && !cache.contains_key(user) {
            cache.clear();
        }
        cache.insert(user.to_owned(), n);
        Ok(out)
    }

    /// Entries of `user`'s inbox with `n > after`, ascending, at most
    /// `limit`, and whether more follow. An invalid user has an empty inbox.
    pub fn inbox_after(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, InboxItem)>, bool), StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok((Vec::new(), false));
        };
        if !valid_id(user) {
            return Ok((Vec::new(), false));
        }
        let tree = self.inbox_tree(user);
        let prefix_len = tag_prefix(TAG_ENTRY, user).len();
        let mut iter =
            tree.range(tag_num_key(TAG_ENTRY, user, first)..tag_prefix_end(TAG_ENTRY, user));
        let mut page = Vec::new();
        while page.len() < limit {
            let Some(entry) = iter.next() else {
                return Ok((page, false));
            };
            let (key, bytes) = entry?;
            let n = key_num_suffix(tree, &key, prefix_len)?;
            page.push((n, decode_in(tree, &key, &bytes)?));
        }
        let more = iter.next().transpose()?.is_some();
        Ok((page, more))
    }

    /// The highest `n` of `user`'s inbox (0 if empty), read from disk.
    pub fn inbox_last(&self, user: &str) -> Result<u64, StoreError> {
        if !valid_id(user) {
            return Ok(0);
        }
        read_inbox_last(self.inbox_tree(user), user)
    }

    /// The `n` under which `user`'s own message `(conv, seq)` went into
    /// their inbox (to answer a retried send), if it did.
    pub fn sent_n(&self, user: &str, conv: &str, seq: u64) -> Result<Option<u64>, StoreError> {
        if !valid_id(user) || check_conv(conv).is_err() {
            return Ok(None);
        }
        let tree = self.inbox_tree(user);
        let key = sent_key(user, conv, seq);
        match tree.get(&key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_u64_in(tree, &key, &bytes)?)),
        }
    }
}

/// `s user 0x00 conv 0x00 seq`
fn sent_key(user: &str, conv: &str, seq: u64) -> Vec<u8> {
    let mut key = tag_key(TAG_SENT, user, conv.as_bytes());
    key.push(SEP);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Highest `n` among the `e` keys of `user`: one reverse prefix scan step.
fn read_inbox_last(tree: &sled::Tree, user: &str) -> Result<u64, StoreError> {
    let prefix = tag_prefix(TAG_ENTRY, user);
    match tree.scan_prefix(&prefix).next_back() {
        None => Ok(0),
        Some(entry) => {
            let (key, _) = entry?;
            key_num_suffix(tree, &key, prefix.len())
        }
    }
}

fn read_fanout_mark(tree: &sled::Tree, user: &str, conv: &str) -> Result<u64, StoreError> {
    let key = tag_key(TAG_FANOUT, user, conv.as_bytes());
    match tree.get(&key)? {
        None => Ok(0),
        Some(bytes) => decode_u64_in(tree, &key, &bytes),
    }
}
