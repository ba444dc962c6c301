//! Messages, idempotency keys and fan-out markers in the conversation shard
//! trees `conv.{shard}` (key tags `m`, `i`, `p`; see the schema in the crate
//! docs). Writes go through the shard's [`ConvWriter`]; reads are on
//! [`Store`] from any thread.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::codec::{
    corrupt, decode_in, encode, key_num_suffix, tag_key, tag_num_key, tag_prefix, SEP,
};
use crate::shards::{check_conv, check_user, valid_conv, ConvWriter, CACHE_MAX_ENTRIES};
use crate::{Readable, Store, StoreError};

/// Key tag: message, `m conv 0x00 seq`.
pub(crate) const TAG_MSG: u8 = b'm';
/// Key tag: idempotency, `i sender 0x00 client_id`.
pub(crate) const TAG_IDEM: u8 = b'i';
/// Key tag: fan-out pending, `p conv 0x00 seq`.
pub(crate) const TAG_PENDING: u8 = b'p';
/// The shard's batch marker (the whole key): fan-out pending for the messages it lists. It
/// sorts after every tagged key, so its sled leaf holds only small receipt watermarks (sled
/// copies a whole leaf on every write to it).
pub(crate) const KEY_BATCH_PENDING: &[u8] = b"~pending";

/// Longest sender-chosen message id ([`NewMessage::client_id`]), in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Removals per sled batch in [`ConvWriter::purge_idempotency`].
const PURGE_BATCH: usize = 1024;

/// A message to store; [`ConvWriter::append`] gives it its `seq`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NewMessage {
    /// Snowflake id assigned by the bridge.
    pub msg_id: u64,
    /// Conversation id (`d.{a}.{b}` or `g.{group}`).
    pub conv: String,
    /// Sender's user id.
    pub from: String,
    /// The sender's id for this message (idempotency), 1..=64 bytes.
    pub client_id: String,
    /// Server time of the send, unix milliseconds. Also the idempotency
    /// key's "written at" time for [`ConvWriter::purge_idempotency`].
    pub ts: u64,
    /// The wire fields the bridge wants stored (`to|group`, `body`, `media`,
    /// `reply_to`), opaque to the store.
    pub content: serde_json::Value,
}

/// A stored message: a [`NewMessage`] with its `seq`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoredMessage {
    /// Snowflake id.
    pub msg_id: u64,
    /// Conversation id.
    pub conv: String,
    /// Position in the conversation, gapless from 1.
    pub seq: u64,
    /// Sender's user id.
    pub from: String,
    /// The sender's id for this message.
    pub client_id: String,
    /// Server time, unix milliseconds.
    pub ts: u64,
    /// Stored wire fields, opaque to the store.
    pub content: serde_json::Value,
}

/// Value of an `m` key; `conv` and `seq` live in the key only.
#[derive(Serialize)]
struct MsgValueRef<'a> {
    msg_id: u64,
    from: &'a str,
    client_id: &'a str,
    ts: u64,
    content: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct MsgValue {
    msg_id: u64,
    from: String,
    client_id: String,
    ts: u64,
    content: serde_json::Value,
}

impl ConvWriter {
    /// Looks up the idempotency key `(sender, client_id)` on this shard:
    /// `Some((conv, seq))` if that message was stored before. Keys are kept
    /// per conversation shard, so a client id reused for a conversation on
    /// another shard is not found here. A key found absent is remembered
    /// until the next append, whose guard then does not read it again (only
    /// this writer adds keys to its shard).
    pub fn find_idempotent(
        &self,
        sender: &str,
        client_id: &str,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let key = tag_key(TAG_IDEM, sender, client_id.as_bytes());
        match self.tree.get(&key)? {
            None => {
                let mut absent = self.absent.borrow_mut();
                if absent.len() >= CACHE_MAX_ENTRIES {
                    absent.clear();
                }
                absent.insert(key);
                Ok(None)
            }
            Some(v) => {
                let (conv, seq, _) = decode_idem(&self.tree, &key, &v)?;
                Ok(Some((conv, seq)))
            }
        }
    }

    /// Last allocated `seq` of `conv` (0 if none), cached after the first
    /// read. `conv` must be on this writer's shard.
    pub fn last_seq(&mut self, conv: &str) -> Result<u64, StoreError> {
        if let Some(seq) = self.last_seq.get(conv) {
            return Ok(*seq);
        }
        self.check_own_conv(conv)?;
        let seq = read_last_seq(&self.tree, conv)?;
        self.cache_seq(conv, seq);
        Ok(seq)
    }

    fn cache_seq(&mut self, conv: &str, seq: u64) {
        if self.last_seq.len() >= CACHE_MAX_ENTRIES && !self.last_seq.contains_key(conv) {
            self.last_seq.clear();
        }
        self.last_seq.insert(conv.to_owned(), seq);
    }

    /// Stores messages in one atomic sled batch: for each (in order) the
    /// next `seq` of its conversation (consecutive within the batch), the
    /// message (`m`), its idempotency key (`i`) and a fan-out pending marker
    /// (`p`). Durable only after the next [`Store::flush`].
    ///
    /// The whole batch is refused with [`StoreError::InvalidInput`] if any
    /// message is on another shard, has an invalid conversation or sender id
    /// or client id, or reuses a `(from, client_id)` that is stored or
    /// appears twice in the batch (check [`ConvWriter::find_idempotent`]
    /// first; this is a guard). On any error nothing is written and no seq
    /// is consumed.
    pub fn append(&mut self, batch: Vec<NewMessage>) -> Result<Vec<StoredMessage>, StoreError> {
        self.append_fanout(batch.into_iter().map(|m| (m, Vec::new())).collect())
    }

    /// Like [`ConvWriter::append`], with each message's recipients kept in
    /// its fan-out marker (group messages: the members at the time of the
    /// send), so that recovery after a crash fans out to the same users.
    ///
    /// A message with no recipients kept (1:1: they follow from `conv`) gets
    /// no marker of its own: it is listed in the shard's batch marker (`P`),
    /// which the same sled batch rewrites with the messages of this append
    /// added to those still listed. [`ConvWriter::clear_batch_pending`]
    /// removes it once their fan-out is written, one write per round
    /// instead of one per message.
    ///
    /// The same batch records each sender's first message in a conversation
    /// in the contacts index (see `privacy.rs`).
    pub fn append_fanout(
        &mut self,
        batch: Vec<(NewMessage, Vec<String>)>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let marks = self.author_marks(&batch)?;
        self.append_with(batch, marks)
    }

    /// [`ConvWriter::append_fanout`] plus `extra` key/value writes in the
    /// same atomic batch.
    pub(crate) fn append_with(
        &mut self,
        batch: Vec<(NewMessage, Vec<String>)>,
        extra: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.check_batch(batch.iter().map(|(m, _)| m))?;
        // This append adds keys: the lookups before it no longer prove anything.
        self.absent.get_mut().clear();
        for user in batch.iter().flat_map(|(_, r)| r) {
            check_user(user)?;
        }
        let mut assigned: HashMap<String, u64> = HashMap::new();
        let mut writes = sled::Batch::default();
        let mut listed = self.batch_pending.clone();
        let listed_before = listed.len();
        let mut out = Vec::with_capacity(batch.len());
        for (msg, recipients) in batch {
            let last = match assigned.get(&msg.conv) {
                Some(seq) => *seq,
                None => self.last_seq(&msg.conv)?,
            };
            let seq = last.checked_add(1).ok_or_else(|| {
                StoreError::Corrupt(format!("conversation {:?}: seq overflow", msg.conv))
            })?;
            assigned.insert(msg.conv.clone(), seq);
            let value = encode(&MsgValueRef {
                msg_id: msg.msg_id,
                from: &msg.from,
                client_id: &msg.client_id,
                ts: msg.ts,
                content: &msg.content,
            })?;
            writes.insert(tag_num_key(TAG_MSG, &msg.conv, seq), value);
            writes.insert(
                tag_key(TAG_IDEM, &msg.from, msg.client_id.as_bytes()),
                encode_idem(&msg.conv, seq, msg.ts),
            );
            if recipients.is_empty() {
                listed.push((msg.conv.clone(), seq));
            } else {
                writes.insert(
                    tag_num_key(TAG_PENDING, &msg.conv, seq),
                    encode(&recipients)?,
                );
            }
            out.push(StoredMessage {
                msg_id: msg.msg_id,
                conv: msg.conv,
                seq,
                from: msg.from,
                client_id: msg.client_id,
                ts: msg.ts,
                content: msg.content,
            });
        }
        for (key, value) in extra {
            writes.insert(key, value);
        }
        if listed.len() > listed_before {
            writes.insert(KEY_BATCH_PENDING, encode(&listed)?);
        }
        self.tree.apply_batch(writes)?;
        self.batch_pending = listed;
        for (conv, seq) in assigned {
            self.cache_seq(&conv, seq);
        }
        Ok(out)
    }

    /// Validation of [`ConvWriter::append`]; reads only.
    fn check_batch<'a>(
        &self,
        batch: impl Iterator<Item = &'a NewMessage>,
    ) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        for msg in batch {
            self.check_own_conv(&msg.conv)?;
            check_user(&msg.from)?;
            if msg.client_id.is_empty() || msg.client_id.len() > MAX_CLIENT_ID_LEN {
                return Err(StoreError::InvalidInput(format!(
                    "client id must be 1..={MAX_CLIENT_ID_LEN} bytes"
                )));
            }
            let key = tag_key(TAG_IDEM, &msg.from, msg.client_id.as_bytes());
            let dup = !seen.insert((msg.from.as_str(), msg.client_id.as_str()))
                || (!self.absent.borrow().contains(&key) && self.tree.contains_key(&key)?);
            if dup {
                return Err(StoreError::InvalidInput(format!(
                    "message ({:?}, {:?}) is already stored",
                    msg.from, msg.client_id
                )));
            }
        }
        Ok(())
    }

    /// Messages whose fan-out is pending (their marker `p` is present, or
    /// the batch marker lists them), in `(conv, seq)` order, with the
    /// recipients kept by [`ConvWriter::append_fanout`] (empty for plain
    /// [`ConvWriter::append`]): finish them on start-up, then
    /// [`ConvWriter::clear_pending`] or [`ConvWriter::clear_batch_pending`].
    pub fn pending(&self) -> Result<Vec<(StoredMessage, Vec<String>)>, StoreError> {
        let mut out = Vec::new();
        for (conv, seq) in &self.batch_pending {
            let msg_key = tag_num_key(TAG_MSG, conv, *seq);
            let Some(bytes) = self.tree.get(&msg_key)? else {
                return Err(corrupt(
                    &self.tree,
                    KEY_BATCH_PENDING,
                    "lists a missing message",
                ));
            };
            out.push((
                decode_message(&self.tree, &msg_key, conv.clone(), *seq, &bytes)?,
                Vec::new(),
            ));
        }
        for entry in self.tree.scan_prefix([TAG_PENDING]) {
            let (key, marker) = entry?;
            let recipients: Vec<String> = if marker.is_empty() {
                Vec::new()
            } else {
                decode_in(&self.tree, &key, &marker)?
            };
            let (conv, seq) = split_conv_seq_key(&self.tree, &key)?;
            let mut msg_key = key.to_vec();
            msg_key[0] = TAG_MSG;
            let Some(bytes) = self.tree.get(&msg_key)? else {
                return Err(corrupt(&self.tree, &key, "pending marker without message"));
            };
            let msg = decode_message(&self.tree, &msg_key, conv, seq, &bytes)?;
            out.push((msg, recipients));
        }
        out.sort_by(|(a, _), (b, _)| (a.conv.as_str(), a.seq).cmp(&(b.conv.as_str(), b.seq)));
        Ok(out)
    }

    /// Removes the fan-out pending mark of `(conv, seq)`: its marker `p`,
    /// or its line in the batch marker (no-op if neither).
    pub fn clear_pending(&mut self, conv: &str, seq: u64) -> Result<(), StoreError> {
        self.check_own_conv(conv)?;
        let Some(at) = self
            .batch_pending
            .iter()
            .position(|(c, s)| c == conv && *s == seq)
        else {
            return self.store.clear_pending(conv, seq);
        };
        let mut rest = self.batch_pending.clone();
        rest.remove(at);
        if rest.is_empty() {
            self.tree.remove(KEY_BATCH_PENDING)?;
        } else {
            self.tree.insert(KEY_BATCH_PENDING, encode(&rest)?)?;
        }
        self.batch_pending = rest;
        Ok(())
    }

    /// Removes the batch marker: the fan-out of every message it lists is
    /// written. One write, whatever the number of messages (no-op if none).
    pub fn clear_batch_pending(&mut self) -> Result<(), StoreError> {
        if self.batch_pending.is_empty() {
            return Ok(());
        }
        self.tree.remove(KEY_BATCH_PENDING)?;
        self.batch_pending.clear();
        Ok(())
    }

    /// Deletes the idempotency keys written (per [`NewMessage::ts`]) before
    /// `older_than_ms` (unix ms); returns how many. Scans every `i` key of
    /// the shard: run it rarely (e.g. daily). Undecodable values are logged
    /// and skipped.
    pub fn purge_idempotency(&self, older_than_ms: u64) -> Result<usize, StoreError> {
        let mut purged = 0;
        let mut writes = sled::Batch::default();
        let mut in_batch = 0;
        for entry in self.tree.scan_prefix([TAG_IDEM]) {
            let (key, value) = entry?;
            match decode_idem(&self.tree, &key, &value) {
                Ok((_, _, ts)) if ts < older_than_ms => {
                    writes.remove(key);
                    in_batch += 1;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping undecodable idempotency key"),
            }
            if in_batch == PURGE_BATCH {
                self.tree.apply_batch(std::mem::take(&mut writes))?;
                purged += in_batch;
                in_batch = 0;
            }
        }
        self.tree.apply_batch(writes)?;
        Ok(purged + in_batch)
    }
}

impl Store {
    /// The message `seq` of `conv`, if stored. An invalid `conv` is `None`.
    pub fn message(&self, conv: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        if !valid_conv(conv) {
            return Ok(None);
        }
        let tree = self.conv_tree(conv);
        let key = tag_num_key(TAG_MSG, conv, seq);
        match tree.get(&key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_message(
                tree,
                &key,
                conv.to_owned(),
                seq,
                &bytes,
            )?)),
        }
    }

    /// One page of `conv`, newest first: at most `limit` messages with
    /// `seq < before` (all when `None`), and whether older messages exist
    /// beyond the page. A reverse range scan: cost grows with `limit`, not
    /// with the conversation. An invalid `conv` is an empty page.
    pub fn history(
        &self,
        conv: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, bool), StoreError> {
        self.history_within(conv, &Readable::all(), before, limit)
    }

    /// Like [`Store::history`], counting only the messages whose `seq` is in `readable`
    /// ([`Store::readable_ranges`]): the page and `more` are as if the others did not exist.
    /// One reverse range scan per readable range, so the gaps cost nothing.
    pub fn history_within(
        &self,
        conv: &str,
        readable: &Readable,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<StoredMessage>, bool), StoreError> {
        if !valid_conv(conv) {
            return Ok((Vec::new(), false));
        }
        let tree = self.conv_tree(conv);
        let prefix = tag_prefix(TAG_MSG, conv);
        // The newest readable seq below `before`, per range, newest range first.
        let below = before.map_or(u64::MAX, |b| b.saturating_sub(1));
        let mut iter = readable
            .ranges()
            .iter()
            .rev()
            .filter(|(from, _)| before != Some(0) && *from <= below)
            .flat_map(|(from, to)| {
                let lo = tag_num_key(TAG_MSG, conv, *from);
                let hi = tag_num_key(TAG_MSG, conv, (*to).min(below));
                tree.range(lo..=hi).rev()
            });
        let mut page = Vec::new();
        while page.len() < limit {
            let Some(entry) = iter.next() else {
                return Ok((page, false));
            };
            let (key, bytes) = entry?;
            let seq = key_num_suffix(tree, &key, prefix.len())?;
            page.push(decode_message(tree, &key, conv.to_owned(), seq, &bytes)?);
        }
        let more = iter.next().transpose()?.is_some();
        Ok((page, more))
    }

    /// Removes the fan-out pending marker of `(conv, seq)` (no-op if
    /// absent), for the thread that finishes a fan-out the conversation's
    /// writer handed over (group messages). Not flushed.
    pub fn clear_pending(&self, conv: &str, seq: u64) -> Result<(), StoreError> {
        check_conv(conv)?;
        self.conv_tree(conv)
            .remove(tag_num_key(TAG_PENDING, conv, seq))?;
        Ok(())
    }

    /// Last `seq` of `conv` (0 if empty), read from disk (no cache).
    pub fn last_seq(&self, conv: &str) -> Result<u64, StoreError> {
        if !valid_conv(conv) {
            return Ok(0);
        }
        read_last_seq(self.conv_tree(conv), conv)
    }
}

/// The messages listed by a conversation shard's batch marker (none if absent).
pub(crate) fn read_batch_marker(tree: &sled::Tree) -> Result<Vec<(String, u64)>, StoreError> {
    match tree.get(KEY_BATCH_PENDING)? {
        None => Ok(Vec::new()),
        Some(bytes) => decode_in(tree, KEY_BATCH_PENDING, &bytes),
    }
}

/// Highest `seq` among the `m` keys of `conv`: one reverse prefix scan step.
fn read_last_seq(tree: &sled::Tree, conv: &str) -> Result<u64, StoreError> {
    let prefix = tag_prefix(TAG_MSG, conv);
    match tree.scan_prefix(&prefix).next_back() {
        None => Ok(0),
        Some(entry) => {
            let (key, _) = entry?;
            key_num_suffix(tree, &key, prefix.len())
        }
    }
}

fn decode_message(
    tree: &sled::Tree,
    key: &[u8],
    conv: String,
    seq: u64,
    bytes: &[u8],
) -> Result<StoredMessage, StoreError> {
    let v: MsgValue = decode_in(tree, key, bytes)?;
    Ok(StoredMessage {
        msg_id: v.msg_id,
        conv,
        seq,
        from: v.from,
        client_id: v.client_id,
        ts: v.ts,
        content: v.content,
    })
}

/// Splits `tag conv 0x00 seq` into `(conv, seq)`.
pub(crate) fn split_conv_seq_key(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<(String, u64), StoreError> {
    let bad = || corrupt(tree, key, "expected tag conv 0x00 seq");
    let sep_at = key
        .len()
        .checked_sub(9)
        .filter(|at| *at >= 2)
        .ok_or_else(bad)?;
    if key[sep_at] != SEP {
        return Err(bad());
    }
    let conv = std::str::from_utf8(&key[1..sep_at]).map_err(|_| bad())?;
    let seq = key_num_suffix(tree, key, sep_at + 1)?;
    Ok((conv.to_owned(), seq))
}

/// Value of an `i` key: `conv 0x00 seq ts` (both u64 big-endian).
fn encode_idem(conv: &str, seq: u64, ts: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(conv.len() + 17);
    v.extend_from_slice(conv.as_bytes());
    v.push(SEP);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v
}

fn decode_idem(tree: &sled::Tree, key: &[u8], v: &[u8]) -> Result<(String, u64, u64), StoreError> {
    let bad = || corrupt(tree, key, "expected idempotency value conv 0x00 seq ts");
    let sep_at = v
        .len()
        .checked_sub(17)
        .filter(|at| *at >= 1)
        .ok_or_else(bad)?;
    if v[sep_at] != SEP {
        return Err(bad());
    }
    let conv = std::str::from_utf8(&v[..sep_at]).map_err(|_| bad())?;
    let mut seq = [0u8; 8];
    let mut ts = [0u8; 8];
    seq.copy_from_slice(&v[sep_at + 1..sep_at + 9]);
    ts.copy_from_slice(&v[sep_at + 9..]);
    Ok((
        conv.to_owned(),
        u64::from_be_bytes(seq),
        u64::from_be_bytes(ts),
    ))
}
