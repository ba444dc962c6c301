//! Privacy: each user's settings (tree `privacy`), the contacts index and
//! pending group invites (tree `group_invites`).
//!
//! A user's contacts are the users they have written to: the other user of
//! a 1:1 chat where they sent a message, or the members of a group they
//! sent a message in (while both are members). The index behind it is one
//! empty key `'a' conv 0x00 user` ("`user` has sent in `conv`") in the
//! conversation's shard, written by [`ConvWriter::append`] in the same sled
//! batch as the user's first message there, so it is exactly as durable as
//! the message; later messages find it and write nothing more. Membership
//! changes are not messages: being put into a group makes nobody a contact.
//! Databases written before the index get it once per shard from
//! [`ConvWriter::backfill_contacts`] (the bridge's shard workers call it on
//! start).

use serde::{Deserialize, Serialize};

use std::collections::HashSet;

use crate::codec::{decode_in, encode, pair_key, tag_key};
use crate::messages::{split_conv_seq_key, NewMessage, TAG_MSG};
use crate::shards::{check_user, ConvWriter};
use crate::{valid_id, Store, StoreError};

/// Key tag in conversation shards: `a conv 0x00 user`, the user has sent a
/// message in the conversation.
pub(crate) const TAG_AUTHOR: u8 = b'a';

/// Who may see something of a user, or add them to groups.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Any user.
    Everyone,
    /// Only the user's contacts (see [`Store::is_contact`]).
    Contacts,
    /// No one.
    Nobody,
}

/// A user's privacy settings; a user who never set any has the defaults.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct PrivacySettings {
    /// Who sees the user's last-seen time (default: contacts).
    pub last_seen: Audience,
    /// Who sees whether the user is online (default: contacts).
    pub online: Audience,
    /// Who may add the user to a group without asking (default: everyone);
    /// anyone else sends an invite.
    pub groups: Audience,
}

impl Default for PrivacySettings {
    fn default() -> PrivacySettings {
        PrivacySettings {
            last_seen: Audience::Contacts,
            online: Audience::Contacts,
            groups: Audience::Everyone,
        }
    }
}

/// A pending invitation of a user into a group, by someone their `groups`
/// setting did not let add them directly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupInvite {
    /// The group's name when the invite was made.
    pub name: String,
    /// Who invited.
    pub by: String,
    /// When, unix ms.
    pub ts: u64,
}

/// The key in each conversation shard that says its contacts index is complete (the messages
/// stored before the index existed are in it). Sorts after every tagged key.
const KEY_CONTACTS_DONE: &[u8] = b"~contacts";

/// The part of a stored message the backfill reads.
#[derive(Deserialize)]
struct Author {
    from: String,
    content: serde_json::Value,
}

/// Key/value writes to add to a sled batch.
pub(crate) type Writes = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn author_key(conv: &str, user: &str) -> Vec<u8> {
    tag_key(TAG_AUTHOR, conv, user.as_bytes())
}

fn direct_conv(a: &str, b: &str) -> String {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    format!("d.{x}.{y}")
}

impl ConvWriter {
    /// The contacts-index keys a batch of messages adds: one per sender and
    /// conversation that has none yet (a read each; a write only the first
    /// time).
    pub(crate) fn author_marks(
        &self,
        batch: &[(NewMessage, Vec<String>)],
    ) -> Result<Writes, StoreError> {
        let mut marks: Writes = Vec::new();
        for (msg, _) in batch {
            let key = author_key(&msg.conv, &msg.from);
            if !marks.iter().any(|(k, _)| *k == key) && !self.tree.contains_key(&key)? {
                marks.push((key, Vec::new()));
            }
        }
        Ok(marks)
    }
}

impl ConvWriter {
    /// Adds to the contacts index the messages stored before it existed, once per shard: one
    /// pass over the shard's messages, written in one batch with the key that marks the shard
    /// done, so later starts skip it. `is_message` tells a message's stored `content` from a
    /// membership change's (which makes nobody a contact). Returns how many marks it wrote.
    pub fn backfill_contacts(
        &mut self,
        is_message: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<usize, StoreError> {
        if self.tree.contains_key(KEY_CONTACTS_DONE)? {
            return Ok(0);
        }
        let mut seen = HashSet::new();
        let mut writes = sled::Batch::default();
        for entry in self.tree.scan_prefix([TAG_MSG]) {
            let (key, value) = entry?;
            let (conv, _) = split_conv_seq_key(&self.tree, &key)?;
            let msg: Author = decode_in(&self.tree, &key, &value)?;
            let mark = author_key(&conv, &msg.from);
            if is_message(&msg.content) && seen.insert(mark.clone()) {
                writes.insert(mark, &[][..]);
            }
        }
        writes.insert(KEY_CONTACTS_DONE, &[][..]);
        self.tree.apply_batch(writes)?;
        Ok(seen.len())
    }
}

impl Store {
    /// `user`'s privacy settings (the defaults if never set, or if `user`
    /// is not a valid id).
    pub fn privacy(&self, user: &str) -> Result<PrivacySettings, StoreError> {
        if !valid_id(user) {
            return Ok(PrivacySettings::default());
        }
        let tree = &self.inner.privacy;
        match tree.get(user.as_bytes())? {
            None => Ok(PrivacySettings::default()),
            Some(bytes) => decode_in(tree, user.as_bytes(), &bytes),
        }
    }

    /// Replaces `user`'s privacy settings. Not flushed: durable after the
    /// next [`Store::flush`].
    pub fn set_privacy(&self, user: &str, settings: &PrivacySettings) -> Result<(), StoreError> {
        check_user(user)?;
        self.inner
            .privacy
            .insert(user.as_bytes(), encode(settings)?)?;
        Ok(())
    }

    /// Whether `user` has sent a message in `conv` (membership changes do
    /// not count).
    pub fn has_written(&self, user: &str, conv: &str) -> Result<bool, StoreError> {
        if !valid_id(user) || !crate::shards::valid_conv(conv) {
            return Ok(false);
        }
        Ok(self.conv_tree(conv).contains_key(author_key(conv, user))?)
    }

    /// Whether `other` is a contact of `owner`: `owner` has written to
    /// `other`, in their 1:1 chat or in a group both are members of now.
    pub fn is_contact(&self, owner: &str, other: &str) -> Result<bool, StoreError> {
        if !valid_id(owner) || !valid_id(other) || owner == other {
            return Ok(false);
        }
        if self.has_written(owner, &direct_conv(owner, other))? {
            return Ok(true);
        }
        for group in self.user_groups(owner)? {
            let shared = self
                .inner
                .user_groups
                .contains_key(pair_key(other, group.as_bytes()))?;
            if shared && self.has_written(owner, &format!("g.{group}"))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores (or replaces) `user`'s invite into `group`. Not flushed.
    pub fn set_group_invite(
        &self,
        user: &str,
        group: &str,
        invite: &GroupInvite,
    ) -> Result<(), StoreError> {
        check_user(user)?;
        if !valid_id(group) {
            return Err(StoreError::InvalidInput(format!(
                "invalid group id {group:?}"
            )));
        }
        let key = pair_key(user, group.as_bytes());
        self.inner.group_invites.insert(key, encode(invite)?)?;
        Ok(())
    }

    /// `user`'s pending invite into `group`, if any.
    pub fn group_invite(&self, user: &str, group: &str) -> Result<Option<GroupInvite>, StoreError> {
        if !valid_id(user) || !valid_id(group) {
            return Ok(None);
        }
        let tree = &self.inner.group_invites;
        let key = pair_key(user, group.as_bytes());
        match tree.get(&key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_in(tree, &key, &bytes)?)),
        }
    }

    /// Removes `user`'s invite into `group`; whether there was one. Not
    /// flushed.
    pub fn remove_group_invite(&self, user: &str, group: &str) -> Result<bool, StoreError> {
        if !valid_id(user) || !valid_id(group) {
            return Ok(false);
        }
        let key = pair_key(user, group.as_bytes());
        Ok(self.inner.group_invites.remove(key)?.is_some())
    }
}
