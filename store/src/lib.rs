//! `chat-store`: the chatd node's durable state, kept in one embedded
//! [sled](https://docs.rs/sled/0.34.7) database.
//!
//! It holds accounts (users with argon2id password hashes, login sessions,
//! enrolled devices) and the messaging layer's data: messages, idempotency
//! keys, fan-out markers and receipt watermarks in conversation shards,
//! per-user inboxes in inbox shards, and last-seen times. Shards are trees of
//! the same [`sled::Db`] (see [`Store::shard_tree`]); their count is
//! [`StoreConfig::shards`].
//!
//! # Messaging layer
//!
//! The API is synchronous; the bridge calls it from dedicated worker threads.
//!
//! - Conversations are placed on shards by FNV-1a 64 of the conv id
//!   ([`Store::conv_shard`]). Each conversation shard has exactly one writer,
//!   a [`ConvWriter`] from [`Store::conv_writer`] (a second one is refused
//!   while the first lives): it allocates `seq` without locks
//!   ([`ConvWriter::append`]), sets receipts ([`ConvWriter::set_receipt`])
//!   and lists / clears fan-out markers for recovery ([`ConvWriter::pending`]).
//! - Everything one `append` writes goes into one atomic sled batch on one
//!   tree (`conv.{shard}`, keys told apart by a 1-byte tag), likewise each
//!   [`Store::inbox_append`] on `inbox.{shard}`. sled recovers a
//!   crash-consistent prefix of all writes, so after a crash a later write
//!   never survives without an earlier one.
//! - Inboxes are placed by FNV-1a 64 of the user id ([`Store::inbox_shard`]);
//!   a mutex per inbox shard serialises its writers so `n` is gapless and
//!   written in order. A fan-out watermark per conversation and inbox shard
//!   (written in the same batch as the entries it covers) makes replaying a
//!   message's fan-out after a crash harmless (the replay gets `None`).
//! - Reads ([`Store::message`], [`Store::history`], [`Store::inbox_after`],
//!   ...) work from any thread and see every applied write, flushed or not;
//!   so whoever answers a client with what it read flushes first (the
//!   bridge's `Flusher::cover_read`), or a crash could take back what the
//!   client was shown.
//! - Size: about 1,500 bytes on disk per stored message with a 100-byte body,
//!   including its two inbox entries (sender's `sent` and recipient's `msg`),
//!   measured by the `bytes_per_message` test (sled 0.34.7, 20,000 messages
//!   of one conversation appended and fanned out 100 at a time, a flush after
//!   each 100; 1,470..1,510 over three runs). The keys and values themselves
//!   are about 460 bytes of that; the rest is sled's log-structured storage
//!   (about 3.3x, as measured for the architecture). Plan disk for ~1.5 KB
//!   per short message.
//!
//! # Entry point
//!
//! [`Store::open`] (`DATA_DIR/db`, [`StoreConfig`]) validates the config,
//! opens the database and its trees and returns a [`Store`]: a cheap,
//! cloneable (`Arc` inside), `Send + Sync` handle. Open it once per process
//! (sled locks the directory) and clone the handle. Opening first finishes a
//! database swap a crash interrupted (`rewrite.rs`) and afterwards any account
//! erasure a crash interrupted (`erase.rs`).
//!
//! Deleting an account ([`Store::delete_user`]) erases its data from the trees
//! and marks the database for a rewrite; call [`rewrite_if_pending`] once the
//! store is closed so that the erased values also leave the data files.
//!
//! The API is synchronous and blocking. [`Store::create_user`] and
//! [`Store::verify_password`] run argon2id (tens of milliseconds of CPU and
//! ~19 MiB of memory with the default parameters); every account write that
//! returns `Ok` has been flushed to disk (messaging writes are not: see
//! "Durability"). Async callers should therefore run these calls inside
//! `tokio::task::spawn_blocking`. [`Store::device_active`] and
//! [`Store::check_session`] never hash passwords and are read-mostly.
//!
//! # Durability
//!
//! Account writes (users, sessions, devices) are low-rate: each one that
//! reports success to its caller is followed by a synchronous `db.flush()`.
//! Housekeeping deletions (expired sessions) are not flushed; sled's own
//! background flusher (default every 500 ms) persists them, and if they are
//! lost in a crash they are simply deleted again.
//!
//! Messaging writes (messages, inbox entries, receipts, fan-out markers,
//! idempotency keys, last-seen times) never flush: they are durable only
//! after the next [`Store::flush`]. The bridge's single group-commit flusher
//! calls it as soon as a writer asks, once for every request waiting (so the
//! time one flush takes is the window in which the next batch gathers); a
//! message is reported as `sent` only after its flush.
//! Never flush from several threads at once: with sled 0.34.7, `flush_async`
//! called from several tasks at once can deadlock. What a flush survives is
//! [`StoreConfig::durability`]: by default ([`Durability::PowerLoss`]) every
//! log write ends with `fdatasync` (a patch of the vendored sled, which
//! otherwise uses `sync_file_range`), so a flushed write survives a power cut;
//! with [`Durability::ProcessCrash`] only a crash of the process.
//!
//! # Layout (files)
//!
//! - `lib.rs`: this overview, [`Store`] (open, trees, flush, meta check), [`valid_id`]
//! - `config.rs`: [`StoreConfig`] and its validation
//! - `error.rs`: [`StoreError`]
//! - `codec.rs`: key building and JSON value (de)serialisation
//! - `users.rs`: users and passwords (argon2id)
//! - `erase.rs`: account deletion: the tombstone, `Store::erase_user`, the list of per-user data
//! - `rewrite.rs`: [`rewrite_if_pending`], copying the database into fresh files after a deletion
//! - `sessions.rs`: login sessions (hashed tokens, per-user index)
//! - `devices.rs`: device enrolment and revocation
//! - `shards.rs`: shard placement (FNV-1a), shard trees, [`ConvWriter`] and its single-writer rule
//! - `messages.rs`: [`NewMessage`], [`StoredMessage`], append, idempotency, pending markers, history
//! - `receipts.rs`: [`ReceiptStatus`], [`Watermark`]
//! - `inbox.rs`: [`InboxItem`], per-user inboxes
//! - `presence.rs`: last-seen times
//! - `groups.rs`: [`GroupRecord`], the `user_groups` index, blocks
//! - `membership.rs`: [`Readable`], what of a conversation a user may read (group membership periods)
//! - `privacy.rs`: [`PrivacySettings`], the contacts index ([`Store::is_contact`]), [`GroupInvite`]s
//! - `push.rs`: push tokens, the collapsed push job queue, dead letters
//! - `media.rs`: media records and access, [`Blobs`] (the object store of the bytes)
//! - `tests/`: unit tests (compiled only for `cargo test`)
//!
//! # Schema
//!
//! Ids (`user_id`, `device_id`) match [`valid_id`]: 1..=32 chars of `[a-z0-9]`;
//! conversation ids are 1..=[`MAX_CONV_LEN`] chars of `[a-z0-9.]`.
//! `0x00` below is a literal separator byte; it cannot occur in an id, so a
//! prefix scan for `"ab" 0x00` never returns keys of user `"abc"`. In shard
//! trees a key starts with a 1-byte tag (`'m'`, `'i'`, ...). `seq`, `n` and
//! `ts` in keys and fixed values are `u64` big-endian (8 bytes), so keys sort
//! numerically. Account times are unix seconds, messaging times unix
//! milliseconds. Values are JSON (`serde_json`) unless marked "fixed".
//!
//! | tree | key | value |
//! |------|-----|-------|
//! | `meta` | `b"schema_version"` | fixed: `u32` big-endian, currently `1` |
//! | `meta` | `b"shards"` | fixed: `u32` big-endian, [`StoreConfig::shards`] at creation |
//! | `meta` | `b"id_reserved"` | fixed: `u64` big-endian, the message-id high-water mark ([`Store::reserve_ids`]) |
//! | `meta` | `b"erasure_pending"` | fixed: `u64` big-endian, unix s of the first account deletion since the last rewrite; present until [`rewrite_if_pending`] copied the database into fresh files |
//! | `users` | `user_id` | JSON `{user_id, created_at, disabled, password_hash}`; `password_hash` is an argon2id PHC string (random 16-byte salt). A deleted account's tombstone: `{user_id, created_at, disabled: true, deleted_at}` (no hash; the id stays taken) |
//! | `deleted_users` | `user_id` | JSON `{deleted_at, erased}`: the deleted ids (kept in memory for [`Store::user_deleted`]); `erased: false` until the erasure finished, which [`Store::open`] completes after a crash |
//! | `sessions` | `sha256(token bytes)` (32 bytes) | JSON `{user_id, created_at, expires_at}` |
//! | `user_sessions` | `user_id 0x00 sha256(token bytes)` | empty; index for [`Store::revoke_user_sessions`] |
//! | `devices` | `user_id 0x00 device_id` | JSON [`DeviceRecord`] `{user_id, device_id, created_at, cert_serial, cert_expires_at, cert_fingerprint?, revoked_at}` |
//! | `conv.{shard}` | `'m' conv 0x00 seq` | JSON `{msg_id, from, client_id, ts, content}` ([`StoredMessage`] without `conv`, `seq`, which are in the key) |
//! | `conv.{shard}` | `'i' sender 0x00 client_id` | fixed: `conv 0x00 seq ts`; idempotency key, `ts` = the message's ts (written-at, for [`ConvWriter::purge_idempotency`]) |
//! | `conv.{shard}` | `'p' conv 0x00 seq` | fan-out of a group entry is pending: JSON list of its recipient user ids (the members when it was stored); databases written before the batch marker also hold empty ones (1:1, the recipients follow from `conv`) |
//! | `conv.{shard}` | `b"~pending"` | the batch marker: JSON list of `[conv, seq]` whose fan-out is pending and that keep no recipients (1:1 messages), rewritten by each [`ConvWriter::append`] in its own batch and removed by [`ConvWriter::clear_batch_pending`] |
//! | `conv.{shard}` | `'g' group_id 0x00` | JSON [`GroupRecord`] `{id, name, created_by, created_at, members:[{user, role, since}]}`, in the shard of `g.{group_id}`; `since` is the seq of the entry that made them a member (records written before it was kept lack it: 0, a member since the start) |
//! | `conv.{shard}` | `'f' group_id 0x00 user` | JSON `[{from, to}]`: the user's ended memberships of the group, oldest first, from the seq of the entry that made them a member to that of their `removed`/`left` entry, both included ([`Store::readable_ranges`]); in the shard of `g.{group_id}` |
//! | `conv.{shard}` | `'r' conv 0x00 user` | JSON [`Watermark`] `{delivered, read}` |
//! | `conv.{shard}` | `'a' conv 0x00 user` | empty; `user` has sent a message in `conv` (the contacts index, written with their first message there) |
//! | `conv.{shard}` | `b"~contacts"` | empty; the shard's contacts index also covers the messages stored before it existed ([`ConvWriter::backfill_contacts`]) |
//! | `inbox.{shard}` | `'e' user 0x00 n` | JSON [`InboxItem`]: `{"sent":{conv,seq}}`, `{"msg":{conv,seq}}` or `{"event":{...}}` |
//! | `inbox.{shard}` | `'w' user 0x00 conv` | fixed: `seq`, highest seq of `conv` written to `user`'s inbox as a `msg` item |
//! | `inbox.{shard}` | `'s' user 0x00 conv 0x00 seq` | fixed: `n` of the user's own message in their inbox |
//! | `lastseen` | `user_id` | fixed: `ts` (unix ms) |
//! | `user_groups` | `user_id 0x00 group_id` | empty; index of a user's groups |
//! | `blocks` | `'b' blocker 0x00 blocked` | fixed: `ts` (unix s) of the block |
//! | `blocks` | `'r' blocked 0x00 blocker` | fixed: `ts`; reverse index (who blocked this user) |
//! | `privacy` | `user_id` | JSON [`PrivacySettings`] `{last_seen, online, groups}`, each `"everyone"`, `"contacts"` or `"nobody"`; absent: the defaults (contacts, contacts, everyone) |
//! | `group_invites` | `user_id 0x00 group_id` | JSON [`GroupInvite`] `{name, by, ts}`: a pending invite into the group |
//! | `push_tokens` | `user_id 0x00 device_id` | JSON [`PushToken`] `{device, platform, token}` |
//! | `push_jobs` | `user_id 0x00 device_id 0x00 conv` | JSON [`PushJob`]: one collapsed notification per device and conversation |
//! | `push_due` | `next_at (u64 BE) user_id 0x00 device_id 0x00 conv` | empty; jobs by due time |
//! | `push_dead` | as `push_jobs` | JSON [`PushJob`] that ran out of attempts |
//! | `media` | `media_id` (hex SHA-256) | JSON [`MediaRecord`] `{media_id, size, mime, created_at}` |
//! | `media_owners` | `user_id 0x00 media_id` | empty; who uploaded a file |
//! | `media_convs` | `media_id 0x00 conv 0x00 seq` | empty; the message `seq` of `conv` referenced it. Keys `media_id 0x00 conv` without `seq` were written before seqs were kept: they count for the conversation's current members |
//!
//! Notes:
//! - A session token is 32 random bytes shown to the client as 64 lowercase
//!   hex chars. Only its SHA-256 (of the 32 raw bytes) is stored, so a leaked
//!   database reveals no usable token.
//! - `user_sessions` is written before the session and removed after it, so a
//!   crash can leave only a harmless dangling index entry, never a session
//!   that [`Store::revoke_user_sessions`] cannot find.
//! - A revoked device keeps its record with `revoked_at` set; the id is retired
//!   for good ([`StoreError::DeviceRevoked`] on re-enrolment).
//! - `meta.shards` is written on first open; opening with a different
//!   `shards` value fails with [`StoreError::Config`], because messages are
//!   placed by shard.
//! - `conv.{shard}` holds the conversations with `conv_shard(conv) == shard`,
//!   `inbox.{shard}` the users with `inbox_shard(user) == shard`; `shard` is in
//!   `0..shards`. All trees are opened by [`Store::open`].
//! - One [`ConvWriter::append`] writes `m` and `i` of all its messages and
//!   their pending marks (`p` per group entry, the batch marker for the rest)
//!   in one batch; the fan-out then writes inbox entries (one batch per inbox
//!   shard, [`Store::inbox_append_many`]) and finally removes the marks.
//!   Because sled recovers a prefix of all writes, only messages still marked
//!   can lack inbox entries after a crash.
//! - Idempotency keys live in the conversation's shard: a client id is
//!   recognised when it is reused for the same conversation (as retries do).
//! - sled's default tree (`Db` itself) is unused.

mod codec;
mod config;
mod devices;
mod erase;
mod error;
mod groups;
mod inbox;
mod media;
mod membership;
mod messages;
mod presence;
mod privacy;
mod push;
mod receipts;
mod rewrite;
mod sessions;
mod shards;
mod users;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{default_shards, Durability, StoreConfig, MAX_SESSION_TTL_SECS, MAX_SHARDS};
pub use devices::{DeviceRecord, MAX_CERT_SERIAL_LEN};
pub use error::StoreError;
pub use groups::{GroupMember, GroupRecord, GroupRole};
pub use inbox::{Appending, InboxItem};
pub use media::{valid_media_id, Blobs, MediaRecord, MEDIA_ID_HEX_LEN};
pub use membership::Readable;
pub use messages::{NewMessage, StoredMessage, MAX_CLIENT_ID_LEN};
pub use privacy::{Audience, GroupInvite, PrivacySettings};
pub use push::{PushJob, PushToken, MAX_PUSH_TOKEN_BYTES};
pub use receipts::{ReceiptStatus, Watermark};
pub use rewrite::rewrite_if_pending;
pub use sessions::{Session, SessionCheck, TOKEN_HEX_LEN};
pub use shards::{ConvWriter, CONV_TREE_KIND, INBOX_TREE_KIND, MAX_CONV_LEN};
pub use users::{PasswordCheck, UserRecord, PASSWORD_MAX_LEN, PASSWORD_MIN_LEN};

/// Version of the on-disk schema described in the crate docs.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the `meta` tree (schema version, shard count).
pub const TREE_META: &str = "meta";
/// Name of the `users` tree.
pub const TREE_USERS: &str = "users";
/// Name of the `sessions` tree.
pub const TREE_SESSIONS: &str = "sessions";
/// Name of the `user_sessions` index tree.
pub const TREE_USER_SESSIONS: &str = "user_sessions";
/// Name of the `devices` tree.
pub const TREE_DEVICES: &str = "devices";
/// Name of the `lastseen` tree.
pub const TREE_LAST_SEEN: &str = "lastseen";
/// Name of the `user_groups` index tree.
pub const TREE_USER_GROUPS: &str = "user_groups";
/// Name of the `blocks` tree.
pub const TREE_BLOCKS: &str = "blocks";
/// Name of the `deleted_users` tree (the ids of deleted accounts).
pub const TREE_DELETED_USERS: &str = "deleted_users";
/// Name of the `privacy` settings tree.
pub const TREE_PRIVACY: &str = "privacy";
/// Name of the `group_invites` tree.
pub const TREE_GROUP_INVITES: &str = "group_invites";
/// Names of the push trees: tokens, jobs, the due-time index, dead letters.
pub const TREES_PUSH: [&str; 4] = ["push_tokens", "push_jobs", "push_due", "push_dead"];
/// Names of the media trees: records, uploaders, conversations that shared a file.
pub const TREES_MEDIA: [&str; 3] = ["media", "media_owners", "media_convs"];

/// Longest id accepted by [`valid_id`].
pub const MAX_ID_LEN: usize = 32;

const META_SCHEMA_VERSION: &[u8] = b"schema_version";
const META_SHARDS: &[u8] = b"shards";
const META_ID_RESERVED: &[u8] = b"id_reserved";

/// Source of "now" in unix seconds. [`Store::open`] uses the system clock;
/// [`Store::open_with_clock`] lets tests move time forward.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Returns true if `s` is a valid id: 1..=32 chars of `[a-z0-9]`.
/// `user_id`, `device_id` and `group_id` share this rule.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Handle to the node's database. Cheap to clone; all clones share one
/// `sled::Db`. See the crate docs for the schema and the blocking caveat.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    users: sled::Tree,
    sessions: sled::Tree,
    user_sessions: sled::Tree,
    devices: sled::Tree,
    lastseen: sled::Tree,
    user_groups: sled::Tree,
    blocks: sled::Tree,
    privacy: sled::Tree,
    group_invites: sled::Tree,
    push_tokens: sled::Tree,
    push_jobs: sled::Tree,
    push_due: sled::Tree,
    push_dead: sled::Tree,
    media: sled::Tree,
    media_owners: sled::Tree,
    media_convs: sled::Tree,
    deleted_users: sled::Tree,
    /// The ids in `deleted_users`, for the checks that keep a deleted account's data erased.
    retired: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Serialises every change of push jobs.
    push_lock: std::sync::Mutex<()>,
    /// Message and inbox shard trees, writer flags and inbox locks.
    shards: shards::ShardState,
    cfg: StoreConfig,
    argon2_params: argon2::Params,
    /// PHC hash of a random password, verified against for unknown users so
    /// that timing does not reveal whether a user exists.
    dummy_hash: String,
    clock: Clock,
    /// Set by the first failed flush (see [`Store::storage_failed`]).
    failed: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// Opens the sled database. sled releases its file lock only when the last
/// reference to the database is gone, and its background flusher thread can
/// hold one for a moment after the `Store` was dropped; so a reopen in the same
/// process waits up to `wait` ([`LOCK_WAIT`] for [`Store::open`]) for the lock. Another process holding it
/// still gets the error, just that much later.
fn open_db(
    dir: &Path,
    cfg: &StoreConfig,
    wait: std::time::Duration,
) -> Result<sled::Db, StoreError> {
    let give_up = std::time::Instant::now() + wait;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cfg.cache_capacity_bytes())
            .sync_data(cfg.durability == Durability::PowerLoss)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(db) => {
                if cfg.durability == Durability::PowerLoss {
                    sync_dirs(dir)?;
                }
                return Ok(db);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes the directory entries of a (possibly just created) database durable: `dir` itself,
/// its `blobs/` folder and its parent. sled syncs its files' contents but never a directory,
/// so after a power cut a new database's files could be missing although their data was
/// synced.
fn sync_dirs(dir: &Path) -> Result<(), StoreError> {
    let mut dirs = vec![dir.join("blobs"), dir.to_path_buf()];
    dirs.extend(dir.parent().map(Path::to_path_buf));
    for d in dirs.iter().filter(|d| d.is_dir()) {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
    }
    Ok(())
}

/// How long [`Store::open`] waits for a lock held by a just-dropped store.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    /// Opens (creating if needed) the database in `dir` (e.g. `DATA_DIR/db`).
    ///
    /// Validates `cfg`, checks the `meta` tree against it (schema version,
    /// shard count) and precomputes one argon2 hash (the dummy used for
    /// unknown users), so it takes as long as one password hash.
    pub fn open(dir: &Path, cfg: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_with_clock(dir, cfg, Arc::new(system_now))
    }

    /// Like [`Store::open`] but with an injected clock (unix seconds), for
    /// tests of session expiry.
    pub fn open_with_clock(
        dir: &Path,
        cfg: &StoreConfig,
        clock: Clock,
    ) -> Result<Store, StoreError> {
        cfg.validate()?;
        let argon2_params = cfg.argon2_params()?;
        rewrite::recover(dir)?;
        let db = open_db(dir, cfg, LOCK_WAIT)?;
        let cfg = &resolve_shards(&db, cfg)?;
        check_meta(&db, cfg)?;
        let dummy_hash = users::dummy_hash(&argon2_params)?;
        let inner = Inner {
            meta: db.open_tree(TREE_META)?,
            users: db.open_tree(TREE_USERS)?,
            sessions: db.open_tree(TREE_SESSIONS)?,
            user_sessions: db.open_tree(TREE_USER_SESSIONS)?,
            devices: db.open_tree(TREE_DEVICES)?,
            lastseen: db.open_tree(TREE_LAST_SEEN)?,
            user_groups: db.open_tree(TREE_USER_GROUPS)?,
            blocks: db.open_tree(TREE_BLOCKS)?,
            privacy: db.open_tree(TREE_PRIVACY)?,
            group_invites: db.open_tree(TREE_GROUP_INVITES)?,
            push_tokens: db.open_tree(TREES_PUSH[0])?,
            push_jobs: db.open_tree(TREES_PUSH[1])?,
            push_due: db.open_tree(TREES_PUSH[2])?,
            push_dead: db.open_tree(TREES_PUSH[3])?,
            push_lock: std::sync::Mutex::new(()),
            media: db.open_tree(TREES_MEDIA[0])?,
            media_owners: db.open_tree(TREES_MEDIA[1])?,
            media_convs: db.open_tree(TREES_MEDIA[2])?,
            deleted_users: db.open_tree(TREE_DELETED_USERS)?,
            retired: std::sync::RwLock::default(),
            shards: shards::ShardState::open(&db, cfg.shards)?,
            db,
            cfg: cfg.clone(),
            argon2_params,
            dummy_hash,
            clock,
            failed: std::sync::atomic::AtomicBool::new(false),
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        store.load_deleted()?;
        tracing::debug!(path = %dir.display(), shards = cfg.shards, "store opened");
        Ok(store)
    }

    /// The (validated) configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    /// The underlying database, for the messaging layer to open its trees.
    /// Prefer [`Store::shard_tree`] for the per-shard trees.
    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// Opens the tree `{kind}.{shard}` (e.g. `msg.3`), checking that `shard`
    /// is below [`StoreConfig::shards`] and that `kind` is 1..=32 chars of
    /// `[a-z_]` and not one of the account tree names.
    pub fn shard_tree(&self, kind: &str, shard: usize) -> Result<sled::Tree, StoreError> {
        let kind_ok = !kind.is_empty()
            && kind.len() <= MAX_ID_LEN
            && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && ![
                TREE_META,
                TREE_USERS,
                TREE_SESSIONS,
                TREE_USER_SESSIONS,
                TREE_DEVICES,
                TREE_LAST_SEEN,
                TREE_USER_GROUPS,
                TREE_BLOCKS,
                TREE_DELETED_USERS,
                TREE_PRIVACY,
                TREE_GROUP_INVITES,
            ]
            .contains(&kind)
            && !TREES_PUSH.contains(&kind);
        if !kind_ok {
            return Err(StoreError::InvalidInput(format!(
                "invalid shard tree kind {kind:?}"
            )));
        }
        if shard >= self.inner.cfg.shards {
            return Err(StoreError::InvalidInput(format!(
                "shard {shard} out of range 0..{}",
                self.inner.cfg.shards
            )));
        }
        Ok(self.inner.db.open_tree(format!("{kind}.{shard}"))?)
    }

    /// Flushes all dirty data to disk (blocking). Account writes already do
    /// this before returning. Message, inbox, receipt and presence writes do
    /// not: they are durable only after the next call, which the bridge's
    /// single group-commit flusher makes for many writes at once. Never call
    /// it (or sled's `flush_async`) from several threads at once.
    ///
    /// A failed flush (disk full, read-only file system, I/O error) marks the
    /// store as failed for good: see [`Store::storage_failed`].
    pub fn flush(&self) -> Result<(), StoreError> {
        if let Err(e) = self.inner.db.flush() {
            self.inner
                .failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(e.into());
        }
        Ok(())
    }

    /// Whether a flush has failed. sled keeps the first I/O error it meets and
    /// returns it from every later operation, reads included, so a failed
    /// store stays failed until the database is opened again (in practice: the
    /// process restarts); what was flushed before the failure is intact and
    /// recovered on the next open.
    pub fn storage_failed(&self) -> bool {
        self.inner.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// The message-id high-water mark: every id issued so far lies below it
    /// (see [`Store::reserve_ids`]); `0` for a new database.
    pub fn ids_reserved(&self) -> Result<u64, StoreError> {
        let meta = self.inner.db.open_tree(TREE_META)?;
        match meta.get(META_ID_RESERVED)? {
            Some(bytes) => codec::decode_u64_in(&meta, META_ID_RESERVED, &bytes),
            None => Ok(0),
        }
    }

    /// Raises the message-id high-water mark to `until` (an opaque value of
    /// the id generator, compared as a number). Not flushed: written before
    /// any record that carries an id at or past the old mark, it becomes
    /// durable with the first such record (sled recovers a prefix of all
    /// writes), so no id that reached a client is issued again after a
    /// restart, whatever the clock says then.
    pub fn reserve_ids(&self, until: u64) -> Result<(), StoreError> {
        let meta = self.inner.db.open_tree(TREE_META)?;
        meta.insert(META_ID_RESERVED, &until.to_be_bytes()[..])?;
        Ok(())
    }

    /// Makes a completed account write durable before it is reported as a
    /// success (see "Durability" in the crate docs).
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.flush()
    }

    /// Current time in unix seconds, from the store's clock.
    pub(crate) fn now(&self) -> u64 {
        (self.inner.clock)()
    }
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `cfg` with `shards` 0 ("auto") replaced by the count the database was
/// created with, or for a new database by [`default_shards`].
fn resolve_shards(db: &sled::Db, cfg: &StoreConfig) -> Result<StoreConfig, StoreError> {
    let mut cfg = cfg.clone();
    if cfg.shards == 0 {
        let meta = db.open_tree(TREE_META)?;
        cfg.shards = match meta.get(META_SHARDS)? {
            Some(bytes) => codec::decode_u32(TREE_META, META_SHARDS, &bytes)? as usize,
            None => default_shards(),
        };
    }
    Ok(cfg)
}

/// Writes `meta` on first open; afterwards checks schema version and shard
/// count against `cfg`.
fn check_meta(db: &sled::Db, cfg: &StoreConfig) -> Result<(), StoreError> {
    let meta = db.open_tree(TREE_META)?;
    let shards = u32::try_from(cfg.shards)
        .map_err(|_| StoreError::Config(format!("shards {} too large", cfg.shards)))?;
    let version = meta_u32(&meta, META_SCHEMA_VERSION, SCHEMA_VERSION)?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Config(format!(
            "database schema version {version} is not supported (this build knows {SCHEMA_VERSION})"
        )));
    }
    let stored_shards = meta_u32(&meta, META_SHARDS, shards)?;
    if stored_shards != shards {
        return Err(StoreError::Config(format!(
            "database was created with shards = {stored_shards}, config says {shards}; \
             changing the shard count is not supported"
        )));
    }
    db.flush()?;
    Ok(())
}

/// Reads a fixed-layout `u32` from `meta`, first inserting `initial` if the
/// key is absent (atomically, so concurrent first opens agree).
fn meta_u32(meta: &sled::Tree, key: &[u8], initial: u32) -> Result<u32, StoreError> {
    let initial_bytes = initial.to_be_bytes();
    match meta.compare_and_swap(key, None as Option<&[u8]>, Some(&initial_bytes[..]))? {
        Ok(()) => Ok(initial),
        Err(cas) => match cas.current {
            Some(bytes) => codec::decode_u32(TREE_META, key, &bytes),
            // Cannot happen: a CAS expecting "absent" only fails on a value.
            None => Err(StoreError::Corrupt(format!(
                "meta key {}: inconsistent compare-and-swap result",
                key.escape_ascii()
            ))),
        },
    }
}
