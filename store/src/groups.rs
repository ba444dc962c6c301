//! Groups and blocks.
//!
//! A group's record (name, members and roles) lives in the conversation
//! shard of its conversation `g.{group_id}` (key tag `g`), so the shard's
//! single writer changes membership in the same atomic batch as the system
//! entry that announces it ([`ConvWriter::group_change`]): the member list
//! and the conversation's order never disagree. The `user_groups` tree is an
//! index user -> groups (for "do these two users share a group?"); the bridge
//! brings it in step with each change during fan-out, which crash recovery
//! replays. Blocks are kept in the `blocks` tree both ways round (who blocked
//! whom, and who is blocked by whom), written together in one batch.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_in, encode, pair_key, prefix_key, tag_key};
use crate::messages::{NewMessage, StoredMessage};
use crate::shards::{check_user, ConvWriter};
use crate::{valid_id, Store, StoreError};

/// Key tag: group record, `g group_id 0x00` (in the group conversation's shard).
pub(crate) const TAG_GROUP: u8 = b'g';
/// Key tag in `blocks`: `b blocker 0x00 blocked`.
pub(crate) const BLOCK_BY: u8 = b'b';
/// Key tag in `blocks`: `r blocked 0x00 blocker` (the reverse index).
pub(crate) const BLOCKED_BY: u8 = b'r';

fn block_key(tag: u8, a: &str, b: &str) -> Vec<u8> {
    tag_key(tag, a, b.as_bytes())
}

/// A member's role in a group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    /// May add and remove members.
    Admin,
    /// An ordinary member.
    Member,
}

/// One member of a group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// The user id.
    pub user: String,
    /// Their role.
    pub role: GroupRole,
    /// The seq of the entry that made them a member (`created` or `added`): they may read the
    /// group's conversation from there on. Set by [`ConvWriter::group_change`]; records
    /// written before it was kept have none, which reads as 0: a member since the start.
    #[serde(default)]
    pub since: u64,
}

impl GroupMember {
    /// A member with `role`; [`ConvWriter::group_change`] sets [`GroupMember::since`].
    pub fn new(user: impl Into<String>, role: GroupRole) -> GroupMember {
        GroupMember {
            user: user.into(),
            role,
            since: 0,
        }
    }
}

/// A group: its name and members in the order they joined.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group id (`[a-z0-9]{1,32}`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time, unix ms.
    pub created_at: u64,
    /// Current members, oldest first.
    pub members: Vec<GroupMember>,
}

impl GroupRecord {
    /// The conversation id of the group, `g.{id}`.
    pub fn conv(&self) -> String {
        format!("g.{}", self.id)
    }

    /// `user`'s role, if a member.
    pub fn role(&self, user: &str) -> Option<GroupRole> {
        self.members.iter().find(|m| m.user == user).map(|m| m.role)
    }

    /// Whether `user` is a member.
    pub fn is_member(&self, user: &str) -> bool {
        self.role(user).is_some()
    }

    /// The members' user ids, oldest first.
    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.user.as_str())
    }
}

fn group_key(group_id: &str) -> Vec<u8> {
    tag_key(TAG_GROUP, group_id, b"")
}

fn check_group_id(group_id: &str) -> Result<(), StoreError> {
    if valid_id(group_id) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "invalid group id {group_id:?}"
        )))
    }
}

impl ConvWriter {
    /// Stores a membership change: the new `record` and the system entry
    /// `msg` that announces it (a message of the group's conversation, with
    /// `recipients` in its fan-out marker), in one atomic batch. `msg.conv`
    /// must be the record's conversation and on this writer's shard.
    ///
    /// The membership periods follow from the stored record and this entry's
    /// `seq`: new members get it as their [`GroupMember::since`] (in `record`
    /// too, which is what was stored), the others keep theirs, and those who
    /// are gone keep `since..=seq` as an ended period
    /// ([`Store::readable_ranges`]).
    pub fn group_change(
        &mut self,
        record: &mut GroupRecord,
        msg: NewMessage,
        recipients: &[String],
    ) -> Result<StoredMessage, StoreError> {
        check_group_id(&record.id)?;
        if msg.conv != record.conv() {
            return Err(StoreError::InvalidInput(format!(
                "system entry for {:?} does not belong to group {:?}",
                msg.conv, record.id
            )));
        }
        for m in &record.members {
            check_user(&m.user)?;
        }
        // `append_with` gives the entry the next seq of its conversation.
        let seq = self.last_seq(&msg.conv)?.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!("conversation {:?}: seq overflow", msg.conv))
        })?;
        let old = self.store.group(&record.id)?;
        let mut extra = self.store.membership_writes(old.as_ref(), record, seq)?;
        extra.push((group_key(&record.id), encode(&*record)?));
        let mut stored = self.append_with(vec![(msg, recipients.to_vec())], extra)?;
        stored
            .pop()
            .ok_or_else(|| StoreError::Corrupt("group change stored nothing".into()))
    }

    /// The group record, read by the writer of its shard.
    pub fn group(&self, group_id: &str) -> Result<Option<GroupRecord>, StoreError> {
        self.store.group(group_id)
    }
}

impl Store {
    /// The group `group_id`, if it exists (an invalid id is `None`).
    pub fn group(&self, group_id: &str) -> Result<Option<GroupRecord>, StoreError> {
        if !valid_id(group_id) {
            return Ok(None);
        }
        let tree = self.conv_tree(&format!("g.{group_id}"));
        let key = group_key(group_id);
        match tree.get(&key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_in(tree, &key, &bytes)?)),
        }
    }

    /// Whether `user` is a member of conversation `conv` now: one of the two users of a 1:1
    /// chat `d.{a}.{b}`, or a current member of the group of `g.{group_id}`. What they may
    /// read is [`Store::readable_ranges`].
    pub fn is_conv_member(&self, conv: &str, user: &str) -> Result<bool, StoreError> {
        if let Some(group) = conv.strip_prefix("g.") {
            return Ok(self.group(group)?.is_some_and(|g| g.is_member(user)));
        }
        Ok(conv
            .strip_prefix("d.")
            .is_some_and(|pair| pair.split('.').any(|u| u == user)))
    }

    /// Records in the `user_groups` index that `user` is (or is no longer)
    /// a member of `group_id`. Idempotent; not flushed. A deleted account is never added.
    pub fn set_user_group(
        &self,
        user: &str,
        group_id: &str,
        member: bool,
    ) -> Result<(), StoreError> {
        check_user(user)?;
        check_group_id(group_id)?;
        let key = pair_key(user, group_id.as_bytes());
        if member && self.user_deleted(user) {
            return Ok(());
        }
        if member {
            self.inner.user_groups.insert(key, &[][..])?;
        } else {
            self.inner.user_groups.remove(key)?;
        }
        Ok(())
    }

    /// The groups `user` is a member of, per the index, in id order.
    pub fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError> {
        if !valid_id(user) {
            return Ok(Vec::new());
        }
        let prefix = prefix_key(user);
        let mut out = Vec::new();
        for entry in self.inner.user_groups.scan_prefix(&prefix) {
            let (key, _) = entry?;
            if let Ok(group) = std::str::from_utf8(&key[prefix.len()..]) {
                out.push(group.to_owned());
            }
        }
        Ok(out)
    }

    /// Whether `a` and `b` share a conversation: a 1:1 chat with at least
    /// one message, or a group both are members of.
    pub fn share_conversation(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        if !valid_id(a) || !valid_id(b) || a == b {
            return Ok(false);
        }
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        if self.last_seq(&format!("d.{x}.{y}"))? > 0 {
            return Ok(true);
        }
        for group in self.user_groups(a)? {
            if self
                .inner
                .user_groups
                .contains_key(pair_key(b, group.as_bytes()))?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Blocks (`on`) or unblocks `blocked` for `blocker`. Returns whether
    /// anything changed (never for a deleted `blocker`). Not flushed: durable after the next [`Store::flush`].
    pub fn set_block(&self, blocker: &str, blocked: &str, on: bool) -> Result<bool, StoreError> {
        check_user(blocker)?;
        check_user(blocked)?;
        if self.user_deleted(blocker) {
            return Ok(false);
        }
        let forward = block_key(BLOCK_BY, blocker, blocked);
        if self.inner.blocks.contains_key(&forward)? == on {
            return Ok(false);
        }
        let reverse = block_key(BLOCKED_BY, blocked, blocker);
        let mut writes = sled::Batch::default();
        if on {
            let ts = self.now().to_be_bytes();
            writes.insert(forward, &ts[..]);
            writes.insert(reverse, &ts[..]);
        } else {
            writes.remove(forward);
            writes.remove(reverse);
        }
        self.inner.blocks.apply_batch(writes)?;
        Ok(true)
    }

    /// Whether `blocker` has blocked `blocked`.
    pub fn is_blocked(&self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        if !valid_id(blocker) || !valid_id(blocked) {
            return Ok(false);
        }
        Ok(self
            .inner
            .blocks
            .contains_key(block_key(BLOCK_BY, blocker, blocked))?)
    }

    /// The users who have blocked `user` (one prefix scan; usually empty).
    pub fn blockers_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        if !valid_id(user) {
            return Ok(Vec::new());
        }
        let prefix = tag_key(BLOCKED_BY, user, b"");
        let mut out = Vec::new();
        for entry in self.inner.blocks.scan_prefix(&prefix) {
            let (key, _) = entry?;
            if let Ok(blocker) = std::str::from_utf8(&key[prefix.len()..]) {
                out.push(blocker.to_owned());
            }
        }
        Ok(out)
    }

    /// Whether either of `a` and `b` has blocked the other.
    pub fn blocked_either(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        Ok(self.is_blocked(a, b)? || self.is_blocked(b, a)?)
    }
}
