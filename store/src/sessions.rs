//! Login sessions (trees `sessions` and `user_sessions`).
//!
//! The token handed to the client is 32 random bytes as 64 lowercase hex
//! chars; the store keeps only `sha256(raw token bytes)`. The `user_sessions`
//! index (`user_id 0x00 hash` -> empty) makes [`Store::revoke_user_sessions`]
//! a prefix scan instead of a full scan.

use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{decode, encode, pair_key, prefix_key};
use crate::{valid_id, Store, StoreError, TREE_SESSIONS, TREE_USER_SESSIONS};

/// Length of a session token: 32 bytes as lowercase hex.
pub const TOKEN_HEX_LEN: usize = 64;

const TOKEN_BYTES: usize = 32;

/// A freshly created session. The token is shown to the client once; the
/// store cannot reproduce it.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// 64 lowercase hex chars (32 random bytes).
    pub token: String,
    /// Expiry, unix seconds; the session is invalid from this second on.
    pub expires_at: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never log the bearer token.
        f.debug_struct("Session")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What [`Store::session_check`] found for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCheck {
    /// A live session of this enabled user.
    Valid(String),
    /// A live session of this user, who is disabled.
    Disabled(String),
    /// Malformed, unknown or expired token, or a user that no longer exists.
    Invalid,
}

/// Value of the `sessions` tree.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct StoredSession {
    user_id: String,
    created_at: u64,
    expires_at: u64,
}

impl Store {
    /// Creates a session for an existing user, valid for
    /// [`crate::StoreConfig::session_ttl_secs`]. Call it after
    /// [`Store::verify_password`] succeeded. Unknown user:
    /// [`StoreError::NotFound`]; malformed id: [`StoreError::InvalidInput`].
    pub fn create_session(&self, user_id: &str) -> Result<Session, StoreError> {
        if !valid_id(user_id) {
            return Err(StoreError::InvalidInput(format!(
                "invalid user id {user_id:?}"
            )));
        }
        if self.load_live_user(user_id)?.is_none() {
            return Err(StoreError::NotFound(format!("user {user_id:?}")));
        }
        let mut raw = [0u8; TOKEN_BYTES];
        OsRng.fill_bytes(&mut raw);
        let hash = token_hash(&raw);
        let now = self.now();
        let expires_at = now.saturating_add(self.inner.cfg.session_ttl_secs);
        let value = encode(&StoredSession {
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at,
        })?;
        // Index first, session second: a crash in between leaves only a
        // dangling index entry, never an unrevocable session.
        self.inner
            .user_sessions
            .insert(pair_key(user_id, &hash), &[][..])?;
        self.inner.sessions.insert(hash, value)?;
        self.commit()?;
        tracing::debug!(user_id, expires_at, "session created");
        Ok(Session {
            token: hex::encode(raw),
            expires_at,
        })
    }

    /// Returns the session's user id if the token is known, not expired and
    /// its user exists and is not disabled; otherwise `None`. A malformed
    /// token is `None`, never an error. An expired session is deleted here.
    /// Cheap: one or two reads, no hashing beyond one SHA-256.
    pub fn check_session(&self, token: &str) -> Result<Option<String>, StoreError> {
        match self.session_check(token)? {
            SessionCheck::Valid(user) => Ok(Some(user)),
            SessionCheck::Disabled(_) | SessionCheck::Invalid => Ok(None),
        }
    }

    /// Like [`Store::check_session`], but tells a live session of a disabled user apart
    /// ([`SessionCheck::Disabled`]), so that the API can say why it refuses.
    pub fn session_check(&self, token: &str) -> Result<SessionCheck, StoreError> {
        let Some(hash) = parse_token(token) else {
            return Ok(SessionCheck::Invalid);
        };
        let Some(bytes) = self.inner.sessions.get(hash)? else {
            return Ok(SessionCheck::Invalid);
        };
        let session: StoredSession = decode(TREE_SESSIONS, &hash, &bytes)?;
        if self.now() >= session.expires_at {
            self.delete_session(&hash, &session.user_id)?;
            tracing::debug!(user_id = %session.user_id, "expired session removed");
            return Ok(SessionCheck::Invalid);
        }
        let exists = valid_id(&session.user_id) && self.load_live_user(&session.user_id)?.is_some();
        if !exists {
            return Ok(SessionCheck::Invalid);
        }
        if !self.user_enabled(&session.user_id)? {
            return Ok(SessionCheck::Disabled(session.user_id));
        }
        Ok(SessionCheck::Valid(session.user_id))
    }

    /// Deletes the session (logout). Returns whether a stored session was
    /// removed (an expired but not yet purged one counts). A malformed token
    /// gives `Ok(false)`.
    pub fn revoke_session(&self, token: &str) -> Result<bool, StoreError> {
        let Some(hash) = parse_token(token) else {
            return Ok(false);
        };
        let Some(bytes) = self.inner.sessions.remove(hash)? else {
            return Ok(false);
        };
        match decode::<StoredSession>(TREE_SESSIONS, &hash, &bytes) {
            Ok(s) => {
                self.inner
                    .user_sessions
                    .remove(pair_key(&s.user_id, &hash))?;
            }
            // The session itself is gone, which is what the caller asked
            // for; a dangling index entry is harmless.
            Err(e) => tracing::warn!(error = %e, "revoked a session with an undecodable record"),
        }
        self.commit()?;
        Ok(true)
    }

    /// Deletes every session of the user (e.g. after a password change or
    /// when disabling the account). Uses the `user_sessions` index (prefix
    /// scan, no full scan). Returns the number of sessions removed.
    pub fn revoke_user_sessions(&self, user_id: &str) -> Result<usize, StoreError> {
        self.revoke_sessions_but(user_id, None)
    }

    /// Like [`Store::revoke_user_sessions`], but keeps the session of `keep_token` (the one
    /// that asked, e.g. for a password change). Returns the number of sessions removed.
    pub fn revoke_user_sessions_except(
        &self,
        user_id: &str,
        keep_token: &str,
    ) -> Result<usize, StoreError> {
        self.revoke_sessions_but(user_id, parse_token(keep_token))
    }

    fn revoke_sessions_but(
        &self,
        user_id: &str,
        keep: Option<[u8; 32]>,
    ) -> Result<usize, StoreError> {
        if !valid_id(user_id) {
            return Ok(0);
        }
        let prefix = prefix_key(user_id);
        let mut removed = 0;
        for entry in self.inner.user_sessions.scan_prefix(&prefix) {
            let (key, _) = entry?;
            let hash = &key[prefix.len()..];
            if keep.is_some_and(|k| k[..] == *hash) {
                continue;
            }
            if hash.len() != TOKEN_BYTES {
                tracing::warn!(
                    key = %key.escape_ascii(),
                    "malformed {TREE_USER_SESSIONS} key removed"
                );
            } else if self.inner.sessions.remove(hash)?.is_some() {
                removed += 1;
            }
            self.inner.user_sessions.remove(&key)?;
        }
        self.commit()?;
        tracing::info!(user_id, removed, "user sessions revoked");
        Ok(removed)
    }

    /// Deletes all expired sessions; returns how many. O(number of
    /// sessions): run it occasionally from one background task (e.g.
    /// hourly). Not flushed: losing a purge in a crash only delays it.
    pub fn purge_expired_sessions(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let mut purged = 0;
        for entry in self.inner.sessions.iter() {
            let (key, bytes) = entry?;
            let session: StoredSession = match decode(TREE_SESSIONS, &key, &bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping undecodable session");
                    continue;
                }
            };
            if now >= session.expires_at {
                self.delete_session(&key, &session.user_id)?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Removes a session and then its index entry (see the crash note in
    /// `create_session`). Not flushed.
    fn delete_session(&self, hash: &[u8], user_id: &str) -> Result<(), StoreError> {
        self.inner.sessions.remove(hash)?;
        self.inner.user_sessions.remove(pair_key(user_id, hash))?;
        Ok(())
    }
}

/// Decodes a well-formed token (64 lowercase hex chars) and returns the
/// storage key `sha256(raw bytes)`; `None` for anything else.
fn parse_token(token: &str) -> Option<[u8; 32]> {
    if token.len() != TOKEN_HEX_LEN
        || !token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut raw = [0u8; TOKEN_BYTES];
    hex::decode_to_slice(token, &mut raw).ok()?;
    Some(token_hash(&raw))
}

fn token_hash(raw: &[u8; TOKEN_BYTES]) -> [u8; 32] {
    Sha256::digest(raw).into()
}
