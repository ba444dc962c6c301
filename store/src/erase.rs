//! Account deletion: the tombstone that retires the id, and the erasure of the user's private
//! data from every tree (`Store::erase_user`, the one list to extend when a tree of per-user
//! data is added).
//!
//! Deleting removes keys, but sled is log-structured: removed values stay in old log segments
//! until they are reclaimed. So a deletion also sets the `erasure_pending` mark in `meta`, and
//! the database is rewritten into fresh files (`rewrite.rs`) when the node stops cleanly or,
//! failing that, when it next starts.
//!
//! Crash safety: the `deleted_users` entry (with `erased: false`) and the mark are written
//! before the tombstone and the erasure; [`Store::open`] finishes every erasure whose entry still
//! says `erased: false`. Every step is idempotent.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::codec::{decode, decode_in, encode, prefix_key, tag_key, tag_prefix};
use crate::groups::{BLOCKED_BY, BLOCK_BY};
use crate::inbox::{TAG_ENTRY, TAG_FANOUT, TAG_SENT};
use crate::messages::TAG_IDEM;
use crate::receipts::TAG_RECEIPT;
use crate::users::StoredUser;
use crate::{valid_id, InboxItem, Store, StoreError, TREE_USERS};

/// `meta` key: set (to the unix seconds of the first deletion since the last rewrite) while
/// deleted data may still sit in old log segments.
pub(crate) const META_ERASURE_PENDING: &[u8] = b"erasure_pending";

/// Value of the `deleted_users` tree.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub(crate) struct Deleted {
    /// When the account was deleted, unix seconds.
    pub(crate) deleted_at: u64,
    /// Whether `Store::erase_user` has finished for it.
    pub(crate) erased: bool,
}

impl Store {
    /// Deletes the account `user_id`: its record becomes a tombstone (no password hash, the id
    /// stays taken: registering it again is a conflict, logging in fails), its sessions,
    /// devices, push tokens and jobs, blocks (both ways), last-seen time, inbox, receipt
    /// watermarks, idempotency keys, group index and media ownership are erased, and the
    /// database is marked for a rewrite ([`Store::erasure_pending`]). Messages it sent stay in
    /// their conversations. Group membership is the bridge's to change (members must see a
    /// `left` entry): leave the groups first.
    ///
    /// Returns `false` when there is no such (live) account. Flushed.
    pub fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        if !valid_id(user_id) {
            return Ok(false);
        }
        let Some(mut user) = self.load_user(user_id)? else {
            return Ok(false);
        };
        if user.deleted() {
            return Ok(false);
        }
        let now = self.now();
        // Retired first: from here on nothing new is written for this user.
        self.set_deleted(user_id, now, false)?;
        if !self.inner.meta.contains_key(META_ERASURE_PENDING)? {
            self.inner
                .meta
                .insert(META_ERASURE_PENDING, &now.to_be_bytes()[..])?;
        }
        user = StoredUser {
            user_id: user.user_id,
            created_at: user.created_at,
            disabled: true,
            password_hash: String::new(),
            deleted_at: Some(now),
        };
        self.inner.users.insert(user_id, encode(&user)?)?;
        self.erase_user(user_id)?;
        self.set_deleted(user_id, now, true)?;
        self.commit()?;
        tracing::info!(user_id, "account deleted");
        Ok(true)
    }

    /// Whether `user` is a deleted account. An in-memory lookup (the deleted ids are loaded
    /// when the store opens): cheap enough for every message rendered.
    pub fn user_deleted(&self, user: &str) -> bool {
        let retired = self.retired_users();
        !retired.is_empty() && retired.contains(user)
    }

    /// The deleted ids (read lock).
    pub(crate) fn retired_users(&self) -> std::sync::RwLockReadGuard<'_, HashSet<String>> {
        self.inner.retired.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether deleted data may still sit in old log segments: the database should be
    /// rewritten ([`crate::rewrite_if_pending`]) once the store is closed.
    pub fn erasure_pending(&self) -> Result<bool, StoreError> {
        Ok(self.inner.meta.contains_key(META_ERASURE_PENDING)?)
    }

    /// Erases everything `user` owns, tree by tree. Not flushed. This is the one list of
    /// per-user data: a new tree that holds some must be added here (and to the schema table).
    ///
    /// Receipt watermarks live under the conversation (`r conv 0x00 user`): the conversations
    /// are taken from the user's inbox and group index before those are erased.
    pub(crate) fn erase_user(&self, user: &str) -> Result<(), StoreError> {
        let convs = self.user_convs(user)?;
        self.revoke_user_sessions(user)?;
        remove_prefix(&self.inner.devices, &prefix_key(user))?;
        for token in self.push_tokens(user)? {
            self.remove_push_token(user, &token.device)?;
        }
        remove_prefix(&self.inner.push_tokens, &prefix_key(user))?;
        remove_prefix(&self.inner.push_dead, &prefix_key(user))?;
        self.erase_blocks(user)?;
        self.inner.lastseen.remove(user.as_bytes())?;
        self.erase_inbox(user)?;
        for conv in &convs {
            let tree = self.conv_tree(conv);
            tree.remove(tag_key(TAG_RECEIPT, conv, user.as_bytes()))?;
            // Whom they wrote to (the contacts index) is theirs too.
            tree.remove(crate::privacy::author_key(conv, user))?;
        }
        self.inner.privacy.remove(user.as_bytes())?;
        remove_prefix(&self.inner.group_invites, &prefix_key(user))?;
        for tree in &self.inner.shards.conv {
            remove_prefix(tree, &tag_prefix(TAG_IDEM, user))?;
        }
        remove_prefix(&self.inner.user_groups, &prefix_key(user))?;
        remove_prefix(&self.inner.media_owners, &prefix_key(user))?;
        Ok(())
    }

    /// The conversations `user` took part in: those of their inbox entries and their groups.
    fn user_convs(&self, user: &str) -> Result<HashSet<String>, StoreError> {
        let mut convs: HashSet<String> = self
            .user_groups(user)?
            .into_iter()
            .map(|g| format!("g.{g}"))
            .collect();
        let mut after = 0;
        loop {
            let (page, more) = self.inbox_after(user, after, 1024)?;
            for (n, item) in &page {
                after = *n;
                let conv = match item {
                    InboxItem::Sent { conv, .. } | InboxItem::Msg { conv, .. } => {
                        Some(conv.as_str())
                    }
                    InboxItem::Event(event) => event.get("conv").and_then(|c| c.as_str()),
                };
                if let Some(conv) = conv.filter(|c| crate::shards::valid_conv(c)) {
                    convs.insert(conv.to_owned());
                }
            }
            if !more {
                return Ok(convs);
            }
        }
    }

    /// Removes the user's blocks and the blocks of them, both index directions.
    fn erase_blocks(&self, user: &str) -> Result<(), StoreError> {
        let tree = &self.inner.blocks;
        for (tag, reverse) in [(BLOCK_BY, BLOCKED_BY), (BLOCKED_BY, BLOCK_BY)] {
            let prefix = tag_prefix(tag, user);
            for entry in tree.scan_prefix(&prefix) {
                let (key, _) = entry?;
                if let Ok(other) = std::str::from_utf8(&key[prefix.len()..]) {
                    tree.remove(tag_key(reverse, other, user.as_bytes()))?;
                }
                tree.remove(key)?;
            }
        }
        Ok(())
    }

    /// Removes the user's inbox (entries, `sent` records, old per-user watermarks) under the
    /// inbox shard's lock, and forgets its cached last `n`.
    fn erase_inbox(&self, user: &str) -> Result<(), StoreError> {
        let shard = self.inbox_shard(user);
        let tree = &self.inner.shards.inbox[shard];
        let mut cache = self.inner.shards.lock_inbox(shard);
        for tag in [TAG_ENTRY, TAG_SENT, TAG_FANOUT] {
            remove_prefix(tree, &tag_prefix(tag, user))?;
        }
        cache.remove(user);
        Ok(())
    }

    fn set_deleted(&self, user: &str, deleted_at: u64, erased: bool) -> Result<(), StoreError> {
        let value = encode(&Deleted { deleted_at, erased })?;
        self.inner.deleted_users.insert(user.as_bytes(), value)?;
        self.inner
            .retired
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_owned());
        Ok(())
    }

    /// On open: loads the deleted ids and finishes every erasure a crash interrupted.
    pub(crate) fn load_deleted(&self) -> Result<(), StoreError> {
        let tree = &self.inner.deleted_users;
        let mut unfinished = Vec::new();
        for entry in tree.iter() {
            let (key, bytes) = entry?;
            let deleted: Deleted = decode_in(tree, &key, &bytes)?;
            let Ok(user) = std::str::from_utf8(&key) else {
                continue;
            };
            self.inner
                .retired
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user.to_owned());
            if !deleted.erased {
                unfinished.push((user.to_owned(), deleted.deleted_at));
            }
        }
        for (user, deleted_at) in unfinished {
            tracing::warn!(user, "finishing an account erasure a crash interrupted");
            if let Some(bytes) = self.inner.users.get(&user)? {
                let mut record: StoredUser = decode(TREE_USERS, user.as_bytes(), &bytes)?;
                record.password_hash.clear();
                record.disabled = true;
                record.deleted_at = Some(deleted_at);
                self.inner.users.insert(user.as_bytes(), encode(&record)?)?;
            }
            self.erase_user(&user)?;
            self.set_deleted(&user, deleted_at, true)?;
            self.commit()?;
        }
        Ok(())
    }
}

/// Removes every key of `tree` that starts with `prefix`.
fn remove_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for entry in tree.scan_prefix(prefix) {
        let (key, _) = entry?;
        batch.remove(key);
    }
    tree.apply_batch(batch)?;
    Ok(())
}
