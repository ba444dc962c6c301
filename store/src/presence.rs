//! Last-seen times of users (tree `lastseen`).

use crate::codec::decode_u64_in;
use crate::{valid_id, Store, StoreError};

impl Store {
    /// Records when `user` was last seen (unix ms), replacing the previous
    /// value. Not flushed: durable after the next [`Store::flush`] (or
    /// sled's background flush); losing one in a crash only makes it older. Ignored for a
    /// deleted account (its last disconnect comes after the erasure).
    pub fn set_last_seen(&self, user: &str, ts_ms: u64) -> Result<(), StoreError> {
        crate::shards::check_user(user)?;
        if self.user_deleted(user) {
            return Ok(());
        }
        self.inner
            .lastseen
            .insert(user.as_bytes(), &ts_ms.to_be_bytes()[..])?;
        Ok(())
    }

    /// When `user` was last seen (unix ms), if ever recorded.
    pub fn last_seen(&self, user: &str) -> Result<Option<u64>, StoreError> {
        if !valid_id(user) {
            return Ok(None);
        }
        let tree = &self.inner.lastseen;
        match tree.get(user.as_bytes())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_u64_in(tree, user.as_bytes(), &bytes)?)),
        }
    }
}
