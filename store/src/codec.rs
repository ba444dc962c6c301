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
