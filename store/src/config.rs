//! `[store]` section of the node configuration.

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Largest accepted number of message shards.
pub const MAX_SHARDS: usize = 1024;
/// Largest accepted session lifetime (10 years).
pub const MAX_SESSION_TTL_SECS: u64 = 10 * 365 * 24 * 60 * 60;

/// `[store]` section of the node config.
///
/// Every field has a default (`#[serde(default)]`), so an empty section is
/// valid. Unknown keys are rejected so that a typo in a security setting
/// (e.g. `password_memory_kb`) does not silently fall back to the default.
/// Call [`StoreConfig::validate`] (done by [`crate::Store::open`]) before use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Number of message shards (trees `conv.{shard}` and `inbox.{shard}`
    /// of the messaging layer, one bridge worker thread each), 0..=1024.
    /// Recorded in the database on first open; reopening with a different
    /// value is refused because messages are placed by shard. Default 0,
    /// "auto": the count an existing database was created with, and for a
    /// new one [`default_shards`] (half the CPUs, 1..=16). sled 0.34 runs
    /// every write batch under one process-wide lock, so workers beyond that
    /// mostly wait for each other: on 2 cores one shard stored 2,930 msg/s
    /// with p99 9 ms at half load, four 2,410 msg/s with p99 39 ms, sixteen
    /// 1,388 msg/s (docs/BENCHMARKS-HISTORY.md).
    pub shards: usize,
    /// Size of sled's page cache in MiB, at least 1. Default 256.
    pub cache_capacity_mb: u64,
    /// Argon2id memory cost (`m_cost`) in KiB for password hashes, at least 8.
    /// Default 19456 (19 MiB, OWASP recommendation). Tests lower it.
    pub password_memory_kib: u32,
    /// Argon2id iteration count (`t_cost`), at least 1. Default 2.
    pub password_iterations: u32,
    /// Lifetime of a login session in seconds, 1..=10 years. Default 30 days.
    pub session_ttl_secs: u64,
    /// What a flush (and so every `sent`) survives. Default
    /// [`Durability::PowerLoss`]: each log write ends with `fdatasync`.
    pub durability: Durability,
}

/// What a completed [`crate::Store::flush`] survives (the `store.durability` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `power_loss` (the default): every log write ends with `fdatasync`, which
    /// also writes the file's size and asks the disk to empty its volatile
    /// write cache; large values (sled blob files) and their directory entries
    /// are synced too. A flushed write survives a crash of the process, of the
    /// kernel and a power cut (given a disk that honours cache flushes).
    #[default]
    PowerLoss,
    /// `process_crash`: sled's own `sync_file_range`, which starts and waits
    /// for the write-back of the written range only. A flushed write survives
    /// a crash of the process (SIGKILL, panic, OOM kill), not a kernel crash
    /// or a power cut: the disk's write cache and the file's metadata are not
    /// flushed, so acknowledged messages can vanish then.
    ProcessCrash,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            shards: 0,
            cache_capacity_mb: 256,
            password_memory_kib: 19_456,
            password_iterations: 2,
            session_ttl_secs: 30 * 24 * 60 * 60,
            durability: Durability::PowerLoss,
        }
    }
}

impl StoreConfig {
    /// Checks every field's range, including that the argon2 parameters are
    /// accepted by the argon2 crate. Returns [`StoreError::Config`] naming the
    /// offending field.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.shards > MAX_SHARDS {
            return Err(cfg_err(format!(
                "shards must be in 0..={MAX_SHARDS} (0: auto), got {}",
                self.shards
            )));
        }
        if self.cache_capacity_mb == 0 || self.cache_capacity_mb.checked_mul(1 << 20).is_none() {
            return Err(cfg_err(format!(
                "cache_capacity_mb must be at least 1 and fit in bytes, got {}",
                self.cache_capacity_mb
            )));
        }
        if !(1..=MAX_SESSION_TTL_SECS).contains(&self.session_ttl_secs) {
            return Err(cfg_err(format!(
                "session_ttl_secs must be in 1..={MAX_SESSION_TTL_SECS}, got {}",
                self.session_ttl_secs
            )));
        }
        self.argon2_params().map(|_| ())
    }

    /// Cache capacity in bytes (saturating; `validate` rejects overflow).
    pub(crate) fn cache_capacity_bytes(&self) -> u64 {
        self.cache_capacity_mb.saturating_mul(1 << 20)
    }

    /// Argon2id parameters built from this config (one lane).
    pub(crate) fn argon2_params(&self) -> Result<argon2::Params, StoreError> {
        argon2::Params::new(self.password_memory_kib, self.password_iterations, 1, None).map_err(
            |e| {
                cfg_err(format!(
                    "password_memory_kib={} / password_iterations={} rejected by argon2: {e}",
                    self.password_memory_kib, self.password_iterations
                ))
            },
        )
    }
}

/// The shard count of a new database when `shards` is 0: half the CPUs the
/// process may use, at least 1 and at most 16 (measured on 2 cores only:
/// see [`StoreConfig::shards`]).
pub fn default_shards() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cpus / 2).clamp(1, 16)
}

fn cfg_err(msg: String) -> StoreError {
    StoreError::Config(msg)
}
