//! The crate's single error type.

/// Everything that can go wrong in the store.
///
/// Lookups that simply find nothing are not errors: they return `Ok(None)`,
/// `Ok(false)` or an empty `Vec`. An error means the caller asked for
/// something impossible (`Conflict`, `DeviceRevoked`, `NotFound`,
/// `InvalidInput`), the configuration is wrong (`Config`), or the disk or its
/// contents failed us (`Sled`, `Corrupt`, `Hash`).
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The underlying sled database failed (I/O, lock held by another process, ...).
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// The thing to create already exists (e.g. the user id is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The device id was revoked earlier; a revoked device id is retired for good.
    #[error("device was revoked; its id cannot be enrolled again")]
    DeviceRevoked,
    /// A record the operation needs does not exist (e.g. enrolling a device for an unknown user).
    #[error("not found: {0}")]
    NotFound(String),
    /// Bytes read from disk could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Password hashing failed (bad parameters or an undecodable stored hash).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The configuration is invalid, or does not match the one the database was created with.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// A caller-supplied argument is invalid (malformed id, password length, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl StoreError {
    /// Whether the database could not read or write (disk full, read-only file
    /// system, other I/O errors): a condition the caller should report as
    /// "unavailable, retry later" rather than as a fault of its own.
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(_)))
    }
}
