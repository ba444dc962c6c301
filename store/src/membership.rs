//! Which entries of a conversation a user may read: [`Readable`], from
//! [`Store::readable_ranges`].
//!
//! A 1:1 chat is readable whole by its two users. A group is readable from
//! the `seq` of the entry that made a user a member ([`GroupMember::since`],
//! the `created` or `added` entry) on, and for each earlier membership from
//! its start up to and including the `removed` or `left` entry that ended it
//! (so a former member sees their own removal, and nothing after it). The
//! ended periods are kept per group and user under key tag `f` in the group
//! conversation's shard, written by [`ConvWriter::group_change`] in the same
//! batch as the record and the entry that ends them.
//!
//! [`ConvWriter::group_change`]: crate::ConvWriter::group_change

use serde::{Deserialize, Serialize};

use crate::codec::{decode_in, encode, tag_key};
use crate::groups::{GroupMember, GroupRecord};
use crate::{valid_id, Store, StoreError};

/// Key tag: a user's ended memberships of a group, `f group_id 0x00 user` (in the group
/// conversation's shard).
pub(crate) const TAG_FORMER: u8 = b'f';

/// One ended membership: `from..=to` are the seqs its member may read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Period {
    /// The seq of the entry that made them a member.
    pub from: u64,
    /// The seq of the `removed` or `left` entry that ended it.
    pub to: u64,
}

/// The seqs of one conversation that one user may read: disjoint inclusive
/// ranges, oldest first. Empty: the user may read nothing (not a member, now
/// or before).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readable {
    ranges: Vec<(u64, u64)>,
}

impl Readable {
    /// The whole conversation.
    pub fn all() -> Readable {
        Readable {
            ranges: vec![(0, u64::MAX)],
        }
    }

    /// Nothing at all.
    pub fn none() -> Readable {
        Readable::default()
    }

    /// From inclusive ranges in any order (overlapping ones are merged).
    pub fn from_ranges(mut ranges: Vec<(u64, u64)>) -> Readable {
        ranges.retain(|(from, to)| from <= to);
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (from, to) in ranges {
            match merged.last_mut() {
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        Readable { ranges: merged }
    }

    /// The inclusive ranges, oldest first.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Whether nothing is readable.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether the entry `seq` is readable.
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&seq))
    }
}

/// A key and its value, to write in a batch.
type Write = (Vec<u8>, Vec<u8>);

fn former_key(group_id: &str, user: &str) -> Vec<u8> {
    tag_key(TAG_FORMER, group_id, user.as_bytes())
}

impl Store {
    /// The seqs of `conv` that `user` may read (see the module docs): all of a 1:1 chat
    /// `d.{a}.{b}` for `a` and `b`; of a group `g.{id}`, their current membership from its
    /// start and every ended one. Invalid ids read nothing.
    pub fn readable_ranges(&self, conv: &str, user: &str) -> Result<Readable, StoreError> {
        let Some(group_id) = conv.strip_prefix("g.") else {
            return Ok(if self.is_conv_member(conv, user)? {
                Readable::all()
            } else {
                Readable::none()
            });
        };
        if !valid_id(group_id) || !valid_id(user) {
            return Ok(Readable::none());
        }
        let Some(record) = self.group(group_id)? else {
            return Ok(Readable::none());
        };
        let mut ranges: Vec<(u64, u64)> = self
            .former_periods(&record, user)?
            .into_iter()
            .map(|p| (p.from, p.to))
            .collect();
        if let Some(member) = record.members.iter().find(|m| m.user == user) {
            ranges.push((member.since, u64::MAX));
        }
        Ok(Readable::from_ranges(ranges))
    }

    /// `user`'s ended memberships of the group, oldest first (none if never a member).
    pub(crate) fn former_periods(
        &self,
        record: &GroupRecord,
        user: &str,
    ) -> Result<Vec<Period>, StoreError> {
        let tree = self.conv_tree(&record.conv());
        let key = former_key(&record.id, user);
        match tree.get(&key)? {
            None => Ok(Vec::new()),
            Some(bytes) => decode_in(tree, &key, &bytes),
        }
    }

    /// Bookkeeping of a membership change whose entry takes `seq`: members of `new` who are
    /// not in `old` become members from `seq` on, the others keep their `since`; members of
    /// `old` who are not in `new` get the period `since..=seq` added to their ended ones.
    /// Returns those writes, to go into the change's batch.
    pub(crate) fn membership_writes(
        &self,
        old: Option<&GroupRecord>,
        new: &mut GroupRecord,
        seq: u64,
    ) -> Result<Vec<Write>, StoreError> {
        let old_members: &[GroupMember] = old.map_or(&[], |g| g.members.as_slice());
        for member in &mut new.members {
            member.since = old_members
                .iter()
                .find(|m| m.user == member.user)
                .map_or(seq, |m| m.since);
        }
        let mut writes = Vec::new();
        for gone in old_members.iter().filter(|m| !new.is_member(&m.user)) {
            let mut periods = self.former_periods(new, &gone.user)?;
            periods.push(Period {
                from: gone.since,
                to: seq,
            });
            writes.push((former_key(&new.id, &gone.user), encode(&periods)?));
        }
        Ok(writes)
    }
}
