//! Key building and value (de)serialisation shared by the account trees.
//!
//! Values are JSON (`serde_json`); composite keys join ids with a `0x00`
//! separator, which [`crate::valid_id`] guarantees cannot occur inside an id.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StoreError;

/// Separator between the parts of a composite key. Ids are `[a-z0-9]`, so it
/// never occurs inside one and `"ab"\0` is not a prefix of `"abc"\0...`.
pub(crate) const SEP: u8 = 0x00;

/// `a 0x00 b`
pub(crate) fn pair_key(a: &str, b: &[u8]) -> Vec<u8> {
    let mut key = prefix_key(a);
    key.extend_from_slice(b);
    key
}

/// `a 0x00` — the scan prefix for every pair key starting with `a`.
pub(crate) fn prefix_key(a: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + 1 + 32);
    key.extend_from_slice(a.as_bytes());
    key.push(SEP);
    key
}

/// Serialises a value for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    // Serialising our own plain structs cannot fail in practice; keep the
    // error path anyway instead of unwrapping.
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("encoding value: {e}")))
}

/// Deserialises a stored value; undecodable bytes become [`StoreError::Corrupt`]
/// naming the tree and (escaped) key.
pub(crate) fn decode<T: DeserializeOwned>(
    tree: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("tree {tree:?}, key {}: {e}", key.escape_ascii())))
}

/// Reads a big-endian `u32` stored with a fixed 4-byte layout.
pub(crate) fn decode_u32(tree: &str, key: &[u8], bytes: &[u8]) -> Result<u32, StoreError> {
    let arr: [u8; 4] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "tree {tree:?}, key {}: expected 4 bytes, found {}",
            key.escape_ascii(),
            bytes.len()
        ))
    })?;
    Ok(u32::from_be_bytes(arr))
}

// ---- messaging-layer keys -------------------------------------------------
//
// Shard trees hold several kinds of keys, told apart by a 1-byte tag:
// `tag a 0x00 rest`. Numbers in keys are `u64` big-endian so that byte order
// is numeric order.

/// `tag a 0x00`: the scan prefix of every `tag`-key of `a`.
pub(crate) fn tag_prefix(tag: u8, a: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + a.len() + 1 + 8);
    key.push(tag);
    key.extend_from_slice(a.as_bytes());
    key.push(SEP);
    key
}

/// `tag a 0x00 b`
pub(crate) fn tag_key(tag: u8, a: &str, b: &[u8]) -> Vec<u8> {
    let mut key = tag_prefix(tag, a);
    key.extend_from_slice(b);
    key
}

/// `tag a 0x00 n` with `n` as 8 bytes big-endian.
pub(crate) fn tag_num_key(tag: u8, a: &str, n: u64) -> Vec<u8> {
    tag_key(tag, a, &n.to_be_bytes())
}

/// Exclusive upper bound of the prefix `tag a 0x00`: `tag a 0x01`.
pub(crate) fn tag_prefix_end(tag: u8, a: &str) -> Vec<u8> {
    let mut key = tag_prefix(tag, a);
    if let Some(last) = key.last_mut() {
        *last = SEP + 1;
    }
    key
}

/// Name of a tree for error messages.
pub(crate) fn tree_name(tree: &sled::Tree) -> String {
    String::from_utf8_lossy(&tree.name()).into_owned()
}

/// A [`StoreError::Corrupt`] naming the tree and (escaped) key.
pub(crate) fn corrupt(tree: &sled::Tree, key: &[u8], what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "tree {:?}, key {}: {what}",
        tree_name(tree),
        key.escape_ascii()
    ))
}

/// Like [`decode`], taking the tree itself (its name is only built on error).
pub(crate) fn decode_in<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, key, &e.to_string()))
}

/// Reads a `u64` stored as exactly 8 bytes big-endian.
pub(crate) fn decode_u64_in(
    tree: &sled::Tree,
    key: &[u8],
    bytes: &[u8],
) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        corrupt(
            tree,
            key,
            &format!("expected 8 bytes, found {}", bytes.len()),
        )
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// The big-endian `u64` that ends a key of the form `prefix n`, checking
/// that the key is exactly `prefix_len + 8` bytes long.
pub(crate) fn key_num_suffix(
    tree: &sled::Tree,
    key: &[u8],
    prefix_len: usize,
) -> Result<u64, StoreError> {
    match key.get(prefix_len..) {
        Some(tail) => decode_u64_in(tree, key, tail),
        None => Err(corrupt(tree, key, "key too short")),
    }
}
