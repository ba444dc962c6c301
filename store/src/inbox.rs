//! Per-user inboxes in the inbox shard trees `inbox.{shard}` (key tags `e`,
//! `c`, `s`; `w` in data written before `c` existed). `n` is gapless from 1
//! per user.
//!
//! Writers of one inbox shard are serialised by a mutex per shard held in the
//! store's shared state; under it `n` is allocated and the entries are
//! written (one sled batch per call), so entries appear in `n` order. The
//! mutex also guards the per-user `last n` cache.

use std::collections::hash_map::Entry;
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
/// Key tag: fan-out watermark of a conversation on this inbox shard, `c conv`:
/// the highest seq whose `Msg` items all went into this shard (a 1:1 `Msg`
/// written in one batch with its sender's `Sent` does not move it).
pub(crate) const TAG_CONV_MARK: u8 = b'c';
/// Key tag: the per-user fan-out watermark `w user 0x00 conv` that data
/// written before [`TAG_CONV_MARK`] holds; still honoured on replay, no
/// longer written.
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

/// Whether the message items of an append may have been appended before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appending {
    /// First writes, on the live path (a worker's round, a live group fan-out): the replay
    /// checks, two reads per message item, are skipped. The watermark and the `sent` record
    /// are written all the same, for a later replay to be checked against.
    New,
    /// Possibly again, as recovery after a crash replays fan-outs: items already applied are
    /// skipped (returned as `None`).
    Replay,
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
    /// item that was skipped as a replay or because `user`'s account was deleted.
    ///
    /// Message items (`Sent`, `Msg`) are applied at most once, so replaying
    /// a fan-out after a crash is harmless (a replayed item gets `None` and
    /// uses no `n`). For `Msg` items a fan-out watermark per conversation
    /// and inbox shard records the highest seq applied and an item with
    /// `seq <=` it is a replay. So the `Msg` items of one conversation must
    /// be appended in increasing `seq` order, and all the `Msg` items of one
    /// `(conv, seq)` for the users of one inbox shard in the same call (the
    /// conversation's single writer and its fan-out queue do both: one
    /// watermark per shard instead of one per member is what keeps a group
    /// fan-out at one write per member). A 1:1 `Msg` given in the same call
    /// as its sender's `Sent`, both on this shard, moves no watermark: the
    /// sender's `Sent` record, written in the same atomic batch, is what a
    /// replay checks for it. A `Sent` item records its `n` for
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
        let items: Vec<(&str, &InboxItem)> = items.iter().map(|item| (user, item)).collect();
        check_items(&items)?;
        self.append_on_shard(self.inbox_shard(user), &items, Appending::Replay)
    }

    /// [`Store::inbox_append`] for the items of many users at once (a group
    /// commit's fan-out): the items are grouped by inbox shard and each shard
    /// gets one atomic sled batch, in shard order; each user's items keep
    /// their order. Returns the `n` of each item (or `None` for a replay), in
    /// the order given. sled takes a process-wide exclusive lock for every
    /// batch, so one batch per shard instead of one per user is what makes a
    /// busy round cheap.
    ///
    /// With [`Appending::New`] the caller guarantees that no message item
    /// was appended before, and the replay checks are skipped.
    ///
    /// Invalid input writes nothing. If a shard's batch fails, the other
    /// shards are still written and the first error is returned (the caller
    /// then treats the whole round as not stored: its flush fails too).
    pub fn inbox_append_many(
        &self,
        items: &[(String, InboxItem)],
        appending: Appending,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let items: Vec<(&str, &InboxItem)> = items
            .iter()
            .map(|(user, item)| (user.as_str(), item))
            .collect();
        for (user, _) in &items {
            check_user(user)?;
        }
        check_items(&items)?;
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); self.inner.cfg.shards];
        for (i, (user, _)) in items.iter().enumerate() {
            by_shard[self.inbox_shard(user)].push(i);
        }
        let mut out = vec![None; items.len()];
        let mut first_error = None;
        for (shard, indexes) in by_shard.iter().enumerate() {
            if indexes.is_empty() {
                continue;
            }
            let part: Vec<(&str, &InboxItem)> = indexes.iter().map(|&i| items[i]).collect();
            match self.append_on_shard(shard, &part, appending) {
                Ok(ns) => {
                    for (&i, n) in indexes.iter().zip(ns) {
                        out[i] = n;
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Writes checked `(user, item)`s, all of users on inbox shard `shard`,
    /// in one sled batch under the shard's lock (see [`Store::inbox_append`]).
    fn append_on_shard(
        &self,
        shard: usize,
        items: &[(&str, &InboxItem)],
        appending: Appending,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let check = appending == Appending::Replay;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let tree = &self.inner.shards.inbox[shard];
        let mut cache = self.inner.shards.lock_inbox(shard);
        // Per user in this batch: (n before it, last n given).
        let mut last: HashMap<&str, (u64, u64)> = HashMap::new();
        // Per conversation: the watermark before this batch (read on replay only).
        let mut before: HashMap<&str, u64> = HashMap::new();
        // Per conversation: the highest seq written by this batch.
        let mut marks: HashMap<&str, u64> = HashMap::new();
        // Per (user, conv) in this batch: the highest seq given to the user.
        let mut given: HashMap<(&str, &str), u64> = HashMap::new();
        let mut sent_in_batch: HashSet<(&str, &str, u64)> = HashSet::new();
        // The `Sent` items of this batch: a 1:1 `Msg` whose sender's `Sent` is among them needs
        // no watermark, because the two are written in one atomic batch and a replay finds the
        // `Sent` record (`sender_has_sent`).
        let sents: HashSet<(&str, &str, u64)> = items
            .iter()
            .filter_map(|&(user, item)| match item {
                InboxItem::Sent { conv, seq } => Some((user, conv.as_str(), *seq)),
                _ => None,
            })
            .collect();
        // Under the shard's lock, so an erasure (which takes it too) never misses an entry.
        let retired = self.retired_users();
        let mut writes = sled::Batch::default();
        let mut out = Vec::with_capacity(items.len());
        for &(user, item) in items {
            if !retired.is_empty() && retired.contains(user) {
                // A deleted account's inbox stays erased (e.g. the fan-out of its own `left`).
                out.push(None);
                continue;
            }
            match item {
                InboxItem::Msg { conv, seq } => {
                    let mark = match given.get(&(user, conv.as_str())) {
                        Some(mark) => *mark,
                        None if check => {
                            let shard_mark = match before.entry(conv) {
                                Entry::Occupied(e) => *e.get(),
                                Entry::Vacant(e) => *e.insert(read_conv_mark(tree, conv)?),
                            };
                            shard_mark.max(read_legacy_mark(tree, user, conv)?)
                        }
                        None => 0,
                    };
                    let sender = direct_other(conv, user);
                    if *seq <= mark || (check && sender_has_sent(tree, sender, conv, *seq)?) {
                        out.push(None);
                        continue;
                    }
                    given.insert((user, conv), *seq);
                    if !sender.is_some_and(|from| sents.contains(&(from, conv.as_str(), *seq))) {
                        let high = marks.entry(conv).or_insert(0);
                        *high = (*high).max(*seq);
                    }
                }
                InboxItem::Sent { conv, seq } => {
                    let known = !sent_in_batch.insert((user, conv.as_str(), *seq))
                        || (check && tree.contains_key(sent_key(user, conv, *seq))?);
                    if known {
                        out.push(None);
                        continue;
                    }
                }
                InboxItem::Event(_) => {}
            }
            let (_, n) = match last.entry(user) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let before = match cache.get(user) {
                        Some(n) => *n,
                        None => read_inbox_last(tree, user)?,
                    };
                    entry.insert((before, before))
                }
            };
            *n = n
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt(format!("inbox of {user:?}: n overflow")))?;
            let n = *n;
            writes.insert(tag_num_key(TAG_ENTRY, user, n), encode(item)?);
            if let InboxItem::Sent { conv, seq } = item {
                writes.insert(sent_key(user, conv, *seq), &n.to_be_bytes()[..]);
            }
            out.push(Some(n));
        }
        if last.values().all(|(before, n)| before == n) {
            return Ok(out);
        }
        for (conv, seq) in marks {
            // Never lowered (only a replay can give an older seq).
            let seq = seq.max(before.get(conv).copied().unwrap_or(0));
            writes.insert(conv_mark_key(conv), &seq.to_be_bytes()[..]);
        }
        tree.apply_batch(writes)?;
        for (user, (before, n)) in last {
            if before == n {
                continue;
            }
            if cache.len() >= CACHE_MAX_ENTRIES && !cache.contains_key(user) {
                cache.clear();
            }
            cache.insert(user.to_owned(), n);
        }
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
        read_u64(self.inbox_tree(user), &sent_key(user, conv, seq))
    }
}

/// Refuses message items with an invalid conversation or seq 0.
fn check_items(items: &[(&str, &InboxItem)]) -> Result<(), StoreError> {
    for (conv, seq) in items.iter().filter_map(|(_, item)| item.message_ref()) {
        check_conv(conv)?;
        if seq == 0 {
            return Err(StoreError::InvalidInput(
                "message seq must be at least 1".into(),
            ));
        }
    }
    Ok(())
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

/// `c conv`
fn conv_mark_key(conv: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + conv.len());
    key.push(TAG_CONV_MARK);
    key.extend_from_slice(conv.as_bytes());
    key
}

/// The other member of the 1:1 conversation `conv` (`d.{a}.{b}`) when `user` is one of them.
fn direct_other<'a>(conv: &'a str, user: &str) -> Option<&'a str> {
    let (a, b) = conv.strip_prefix("d.")?.split_once('.')?;
    match user {
        u if u == a => Some(b),
        u if u == b => Some(a),
        _ => None,
    }
}

/// Whether `sender`'s own entry for `(conv, seq)` is on this shard: a 1:1 `Msg` written in the
/// same batch as it carries no watermark, and this record is what shows it was applied.
fn sender_has_sent(
    tree: &sled::Tree,
    sender: Option<&str>,
    conv: &str,
    seq: u64,
) -> Result<bool, StoreError> {
    match sender {
        Some(sender) => Ok(tree.contains_key(sent_key(sender, conv, seq))?),
        None => Ok(false),
    }
}

fn read_conv_mark(tree: &sled::Tree, conv: &str) -> Result<u64, StoreError> {
    Ok(read_u64(tree, &conv_mark_key(conv))?.unwrap_or(0))
}

/// The per-user watermark of data written before the per-shard one.
fn read_legacy_mark(tree: &sled::Tree, user: &str, conv: &str) -> Result<u64, StoreError> {
    Ok(read_u64(tree, &tag_key(TAG_FANOUT, user, conv.as_bytes()))?.unwrap_or(0))
}

/// The 8-byte big-endian number stored under `key`, if any.
fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>, StoreError> {
    match tree.get(key)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(decode_u64_in(tree, key, &bytes)?)),
    }
}
