//! Users and their argon2id password hashes (tree `users`).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::{valid_id, Store, StoreError, TREE_USERS};

/// Shortest password [`Store::create_user`] accepts, in bytes.
pub const PASSWORD_MIN_LEN: usize = 8;
/// Longest password accepted, in bytes. Longer input to
/// [`Store::verify_password`] is rejected without hashing.
pub const PASSWORD_MAX_LEN: usize = 256;

/// Public view of a user (without the password hash).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// The user's id (see [`crate::valid_id`]).
    pub user_id: String,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// A disabled user cannot log in, and its sessions and devices are inactive.
    pub disabled: bool,
}

/// Value of the `users` tree.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct StoredUser {
    pub(crate) user_id: String,
    pub(crate) created_at: u64,
    pub(crate) disabled: bool,
    /// argon2id PHC string; empty (and not written) in the tombstone of a deleted account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) password_hash: String,
    /// When the account was deleted (unix seconds): the record is a tombstone that keeps the id
    /// retired. See `erase.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deleted_at: Option<u64>,
}

impl StoredUser {
    /// Whether this is the tombstone of a deleted account.
    pub(crate) fn deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// What [`Store::check_password`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password is right and the user may log in.
    Valid,
    /// Unknown user, deleted account or wrong password (indistinguishable by design).
    Invalid,
    /// The password is right but the user is disabled.
    Disabled,
}

impl From<StoredUser> for UserRecord {
    fn from(u: StoredUser) -> Self {
        UserRecord {
            user_id: u.user_id,
            created_at: u.created_at,
            disabled: u.disabled,
        }
    }
}

impl Store {
    /// Creates a user with an argon2id hash (random salt) of `password`.
    ///
    /// Atomic: of several concurrent calls for the same id exactly one
    /// succeeds, the others get [`StoreError::Conflict`]. An invalid
    /// `user_id` (see [`valid_id`]) or a password outside
    /// [`PASSWORD_MIN_LEN`]..=[`PASSWORD_MAX_LEN`] bytes gives
    /// [`StoreError::InvalidInput`]. CPU-heavy: use `spawn_blocking` from async code.
    pub fn create_user(&self, user_id: &str, password: &str) -> Result<(), StoreError> {
        if !valid_id(user_id) {
            return Err(StoreError::InvalidInput(format!(
                "invalid user id {user_id:?}: need 1..=32 chars of [a-z0-9]"
            )));
        }
        check_password_len(password)?;
        // Cheap pre-check so that a taken id does not cost a hash; the CAS
        // below is what actually guarantees uniqueness.
        // A deleted account's tombstone keeps its id taken for good.
        if self.inner.users.contains_key(user_id)? {
            return Err(conflict(user_id));
        }
        let record = StoredUser {
            user_id: user_id.to_owned(),
            created_at: self.now(),
            disabled: false,
            password_hash: hash_password(&self.inner.argon2_params, password)?,
            deleted_at: None,
        };
        let value = encode(&record)?;
        let cas = self
            .inner
            .users
            .compare_and_swap(user_id, None as Option<&[u8]>, Some(value))?;
        if cas.is_err() {
            return Err(conflict(user_id));
        }
        self.commit()?;
        tracing::info!(user_id, "user created");
        Ok(())
    }

    /// Checks `password` against the user's stored hash.
    ///
    /// Returns `Ok(false)` for a wrong password, an unknown user and a
    /// disabled user. For an unknown user it still verifies against a dummy
    /// hash, and for a disabled user it still verifies the real hash, so the
    /// time taken does not reveal which case applies. Passwords longer than
    /// [`PASSWORD_MAX_LEN`] are rejected without hashing (that leaks only the
    /// caller's own input length). CPU-heavy: use `spawn_blocking` from async code.
    pub fn verify_password(&self, user_id: &str, password: &str) -> Result<bool, StoreError> {
        Ok(self.check_password(user_id, password)? == PasswordCheck::Valid)
    }

    /// Like [`Store::verify_password`], but tells a disabled user with the right password
    /// apart ([`PasswordCheck::Disabled`]), so that the API can say why the login fails. Only
    /// someone who knows the password learns that the account is disabled.
    pub fn check_password(
        &self,
        user_id: &str,
        password: &str,
    ) -> Result<PasswordCheck, StoreError> {
        if password.len() > PASSWORD_MAX_LEN {
            return Ok(PasswordCheck::Invalid);
        }
        let user = if valid_id(user_id) {
            self.load_user(user_id)?
        } else {
            None
        };
        match user {
            None => {
                verify_hash(&self.inner.dummy_hash, password)?;
                Ok(PasswordCheck::Invalid)
            }
            Some(user) if user.deleted() => {
                verify_hash(&self.inner.dummy_hash, password)?;
                Ok(PasswordCheck::Invalid)
            }
            Some(user) => match (verify_hash(&user.password_hash, password)?, user.disabled) {
                (false, _) => Ok(PasswordCheck::Invalid),
                (true, true) => Ok(PasswordCheck::Disabled),
                (true, false) => Ok(PasswordCheck::Valid),
            },
        }
    }

    /// The user's public record, if it exists. A deleted account does not exist any more
    /// (`None`), though its id stays taken.
    pub fn user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        if !valid_id(user_id) {
            return Ok(None);
        }
        Ok(self.load_live_user(user_id)?.map(UserRecord::from))
    }

    /// Replaces the password of `user_id` after checking `old_password`, like a login would
    /// ([`Store::check_password`]: unknown, deleted, disabled users and a wrong password give
    /// `Ok(false)`, and nothing changes). A `new_password` outside
    /// [`PASSWORD_MIN_LEN`]..=[`PASSWORD_MAX_LEN`] bytes is [`StoreError::InvalidInput`].
    /// Sessions are not touched: the caller revokes the others
    /// ([`Store::revoke_user_sessions_except`]). Two argon2 runs: use `spawn_blocking`.
    pub fn change_password(
        &self,
        user_id: &str,
        old_password: &str,
        new_password: &str,
    ) -> Result<bool, StoreError> {
        check_password_len(new_password)?;
        if self.check_password(user_id, old_password)? != PasswordCheck::Valid {
            return Ok(false);
        }
        let new_hash = hash_password(&self.inner.argon2_params, new_password)?;
        let edited = self.update_user(user_id, |user| {
            if user.deleted() || user.disabled {
                return Edit::Leave(false);
            }
            user.password_hash.clone_from(&new_hash);
            Edit::Write
        })?;
        if edited == Some(Edit::Write) {
            tracing::info!(user_id, "password changed");
            return Ok(true);
        }
        Ok(false)
    }

    /// Disables or re-enables a user. Returns whether the user exists (a deleted account does
    /// not).
    /// A disabled user cannot log in; its sessions stop checking and its
    /// devices stop being active, but nothing is deleted.
    pub fn set_user_disabled(&self, user_id: &str, disabled: bool) -> Result<bool, StoreError> {
        if !valid_id(user_id) {
            return Ok(false);
        }
        let edited = self.update_user(user_id, |user| {
            if user.deleted() {
                return Edit::Leave(false);
            }
            if user.disabled == disabled {
                return Edit::Leave(true);
            }
            user.disabled = disabled;
            Edit::Write
        })?;
        Ok(match edited {
            None => false,
            Some(Edit::Leave(answer)) => answer,
            Some(Edit::Write) => {
                tracing::info!(user_id, disabled, "user disabled flag changed");
                true
            }
        })
    }

    /// Number of users. O(number of users): sled counts by scanning.
    pub fn user_count(&self) -> usize {
        self.inner.users.len()
    }

    /// Reads and decodes a user; `user_id` must already be valid.
    pub(crate) fn load_user(&self, user_id: &str) -> Result<Option<StoredUser>, StoreError> {
        match self.inner.users.get(user_id)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode(TREE_USERS, user_id.as_bytes(), &bytes)?)),
        }
    }

    /// Like [`Store::load_user`], but a deleted account's tombstone reads as absent.
    pub(crate) fn load_live_user(&self, user_id: &str) -> Result<Option<StoredUser>, StoreError> {
        Ok(self.load_user(user_id)?.filter(|u| !u.deleted()))
    }

    /// Changes `user_id`'s record with `edit` under compare-and-swap, rereading and editing
    /// again when another writer got in between, and flushes the write. `None` when there is no
    /// record; otherwise what `edit` said the last time (a [`Edit::Write`] is stored).
    fn update_user(
        &self,
        user_id: &str,
        mut edit: impl FnMut(&mut StoredUser) -> Edit,
    ) -> Result<Option<Edit>, StoreError> {
        loop {
            let Some(old) = self.inner.users.get(user_id)? else {
                return Ok(None);
            };
            let mut user: StoredUser = decode(TREE_USERS, user_id.as_bytes(), &old)?;
            let edited = edit(&mut user);
            if edited != Edit::Write {
                return Ok(Some(edited));
            }
            let new = encode(&user)?;
            let cas = self
                .inner
                .users
                .compare_and_swap(user_id, Some(old), Some(new))?;
            if cas.is_ok() {
                self.commit()?;
                return Ok(Some(Edit::Write));
            }
            // Lost a race with another writer: reread and edit again.
        }
    }

    /// True if the user exists, is not disabled and not deleted. Never hashes.
    pub(crate) fn user_enabled(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self.load_live_user(user_id)?.is_some_and(|u| !u.disabled))
    }
}

/// The password rule: [`PASSWORD_MIN_LEN`]..=[`PASSWORD_MAX_LEN`] bytes.
fn check_password_len(password: &str) -> Result<(), StoreError> {
    if (PASSWORD_MIN_LEN..=PASSWORD_MAX_LEN).contains(&password.len()) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "password must be {PASSWORD_MIN_LEN}..={PASSWORD_MAX_LEN} bytes"
        )))
    }
}

fn conflict(user_id: &str) -> StoreError {
    StoreError::Conflict(format!("user {user_id:?} already exists"))
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// argon2id PHC string of `password` with a random 16-byte salt.
pub(crate) fn hash_password(params: &Params, password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

/// Hash of a random password, verified against for unknown users.
pub(crate) fn dummy_hash(params: &Params) -> Result<String, StoreError> {
    let mut secret = [0u8; 24];
    OsRng.fill_bytes(&mut secret);
    hash_password(params, &hex::encode(secret))
}

/// Verifies `password` against a PHC string (the parameters come from the
/// string, so hashes made with older settings keep working).
fn verify_hash(phc: &str, password: &str) -> Result<bool, StoreError> {
    let parsed = PasswordHash::new(phc)
        .map_err(|e| StoreError::Corrupt(format!("stored password hash: {e}")))?;
    // The instance's own params are irrelevant: verification uses the hash's.
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(StoreError::Hash(e.to_string())),
    }
}

/// What an edit of a user record (`Store::update_user`) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    /// Store the edited record.
    Write,
    /// Store nothing; the operation answers this.
    Leave(bool),
}
