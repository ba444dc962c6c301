//! Receipt watermarks per `(conv, user)` in the conversation shard trees
//! (key tag `r`).

use serde::{Deserialize, Serialize};

use crate::codec::{decode_in, encode, tag_key};
use crate::shards::{check_user, valid_conv, ConvWriter};
use crate::{Store, StoreError};

/// Key tag: receipt watermark, `r conv 0x00 user`.
pub(crate) const TAG_RECEIPT: u8 = b'r';

/// What a receipt says about everything up to its `seq`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Reached one of the user's devices.
    Delivered,
    /// Read on one of the user's devices (implies delivered).
    Read,
}

/// A user's receipt watermarks in one conversation: every message with
/// `seq <= delivered` has been delivered, every one with `seq <= read` read.
/// Always `read <= delivered`. `Default` is `0, 0` (nothing yet).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    /// Highest delivered `seq`.
    pub delivered: u64,
    /// Highest read `seq`.
    pub read: u64,
}

impl ConvWriter {
    /// Moves the `(conv, user)` watermark forward to `seq`: `Delivered`
    /// raises `delivered`, `Read` raises both `read` and `delivered`.
    /// Returns `Some((old, new))` when something changed, `None` when the
    /// receipt was old news (or its user's account was deleted). `seq` is not checked against the conversation's last
    /// seq (the caller clamps it); `seq` 0, an invalid user or a conversation
    /// of another shard give [`StoreError::InvalidInput`]. Durable only after
    /// the next [`Store::flush`].
    pub fn set_receipt(
        &mut self,
        conv: &str,
        user: &str,
        status: ReceiptStatus,
        seq: u64,
    ) -> Result<Option<(Watermark, Watermark)>, StoreError> {
        self.check_own_conv(conv)?;
        check_user(user)?;
        if seq == 0 {
            return Err(StoreError::InvalidInput(
                "receipt seq must be at least 1".into(),
            ));
        }
        if self.store.user_deleted(user) {
            return Ok(None);
        }
        let key = tag_key(TAG_RECEIPT, conv, user.as_bytes());
        let old = read_watermark(&self.tree, &key)?;
        let mut new = old;
        new.delivered = new.delivered.max(seq);
        if status == ReceiptStatus::Read {
            new.read = new.read.max(seq);
        }
        if new == old {
            return Ok(None);
        }
        // Single writer per shard: no compare-and-swap needed.
        self.tree.insert(key, encode(&new)?)?;
        Ok(Some((old, new)))
    }
}

impl Store {
    /// The `(conv, user)` watermark; `0, 0` if none (or invalid ids).
    pub fn receipt(&self, conv: &str, user: &str) -> Result<Watermark, StoreError> {
        if !valid_conv(conv) || !crate::valid_id(user) {
            return Ok(Watermark::default());
        }
        read_watermark(
            self.conv_tree(conv),
            &tag_key(TAG_RECEIPT, conv, user.as_bytes()),
        )
    }
}

fn read_watermark(tree: &sled::Tree, key: &[u8]) -> Result<Watermark, StoreError> {
    match tree.get(key)? {
        None => Ok(Watermark::default()),
        Some(bytes) => decode_in(tree, key, &bytes),
    }
}
