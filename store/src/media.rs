//! Media metadata (trees `media`, `media_owners`, `media_convs`) and the blob store.
//!
//! A media id is the hex SHA-256 of the bytes, so a file uploaded twice is stored once. Who may
//! download it: whoever uploaded it, and whoever may read a message that referenced it
//! ([`Store::readable_ranges`]): a group member who joined after it was sent may not. The bytes live in an [`object_store`] (a directory under the data dir,
//! or an S3-compatible bucket) under `blobs/{media_id}`; uploads stream to `uploads/{random}`
//! first and are moved into place once their hash is known.

use std::sync::Arc;

use object_store::path::Path as BlobPath;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::codec::{decode_in, encode, pair_key, prefix_key, SEP};
use crate::shards::{check_conv, check_user};
use crate::{Store, StoreError};

/// Length of a media id: 64 lowercase hex characters.
pub const MEDIA_ID_HEX_LEN: usize = 64;

/// Whether `id` looks like a media id.
pub fn valid_media_id(id: &str) -> bool {
    id.len() == MEDIA_ID_HEX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What is known about a stored file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MediaRecord {
    /// Hex SHA-256 of the bytes.
    pub media_id: String,
    /// Size in bytes.
    pub size: u64,
    /// Content type given at the first upload.
    pub mime: String,
    /// First upload, unix seconds.
    pub created_at: u64,
}

fn check_media(id: &str) -> Result<(), StoreError> {
    if valid_media_id(id) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!("invalid media id {id:?}")))
    }
}

impl Store {
    /// Records an upload by `user`: the file's record (kept from the first upload) and the
    /// uploader's right to it. Returns the stored record. Flushed.
    pub fn add_media(
        &self,
        user: &str,
        media_id: &str,
        size: u64,
        mime: &str,
    ) -> Result<MediaRecord, StoreError> {
        check_user(user)?;
        check_media(media_id)?;
        let record = MediaRecord {
            media_id: media_id.to_owned(),
            size,
            mime: mime.to_owned(),
            created_at: self.now(),
        };
        let stored = match self.inner.media.compare_and_swap(
            media_id.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(&record)?),
        )? {
            Ok(()) => record,
            Err(cas) => match cas.current {
                Some(bytes) => decode_in(&self.inner.media, media_id.as_bytes(), &bytes)?,
                None => record,
            },
        };
        self.inner
            .media_owners
            .insert(pair_key(user, media_id.as_bytes()), &[][..])?;
        self.commit()?;
        Ok(stored)
    }

    /// The record of `media_id`, if it was uploaded.
    pub fn media(&self, media_id: &str) -> Result<Option<MediaRecord>, StoreError> {
        if !valid_media_id(media_id) {
            return Ok(None);
        }
        match self.inner.media.get(media_id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode_in(
                &self.inner.media,
                media_id.as_bytes(),
                &bytes,
            )?)),
        }
    }

    /// Notes that the message `seq` of `conv` referenced `media_id`: whoever may read that
    /// message may download it. Not flushed (it rides on the message's group commit).
    pub fn share_media(&self, media_id: &str, conv: &str, seq: u64) -> Result<(), StoreError> {
        check_media(media_id)?;
        check_conv(conv)?;
        self.inner
            .media_convs
            .insert(share_key(media_id, conv, seq), &[][..])?;
        Ok(())
    }

    /// Whether `user` may download `media_id`: they uploaded it, or they may read a message
    /// that referenced it. A reference stored before seqs were kept (key without one) counts
    /// for the conversation's current members, as it did then.
    pub fn media_allowed(&self, user: &str, media_id: &str) -> Result<bool, StoreError> {
        if !crate::valid_id(user) || !valid_media_id(media_id) {
            return Ok(false);
        }
        if self
            .inner
            .media_owners
            .contains_key(pair_key(user, media_id.as_bytes()))?
        {
            return Ok(true);
        }
        let tree = &self.inner.media_convs;
        let prefix = prefix_key(media_id);
        let mut from = prefix.clone();
        // One step per conversation: its first key, then a range look-up per readable range.
        while let Some(entry) = tree.range(from.clone()..).next() {
            let (key, _) = entry?;
            let Some(rest) = key.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let conv_len = rest.iter().position(|b| *b == SEP).unwrap_or(rest.len());
            let conv_bytes = &rest[..conv_len];
            let legacy = conv_len == rest.len();
            // Past every key of this conversation: `media_id 0x00 conv 0x01`.
            from = [prefix.as_slice(), conv_bytes, &[SEP + 1]].concat();
            let Ok(conv) = std::str::from_utf8(conv_bytes) else {
                continue;
            };
            if legacy && self.is_conv_member(conv, user)? {
                return Ok(true);
            }
            for (lo, hi) in self.readable_ranges(conv, user)?.ranges() {
                let lo = share_key(media_id, conv, *lo);
                let hi = share_key(media_id, conv, *hi);
                if tree.range(lo..=hi).next().transpose()?.is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// `media_id 0x00 conv 0x00 seq`: the message `seq` of `conv` referenced the file.
fn share_key(media_id: &str, conv: &str, seq: u64) -> Vec<u8> {
    let mut key = pair_key(media_id, conv.as_bytes());
    key.push(SEP);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Where media bytes live: any [`ObjectStore`] (local directory or S3-compatible).
#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

impl Blobs {
    /// Blobs in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Blobs {
        Blobs { store }
    }

    /// The object store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where a file's bytes are kept.
    pub fn blob_path(media_id: &str) -> BlobPath {
        BlobPath::from(format!("blobs/{media_id}"))
    }

    /// Where an upload is written until its hash is known.
    pub fn upload_path(name: &str) -> BlobPath {
        BlobPath::from(format!("uploads/{name}"))
    }
}
