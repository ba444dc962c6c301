//! Push notification state: device tokens, the durable job queue and its dead letters.
//!
//! A job is keyed by `(user, device, conv)`, so every new message of a conversation for an
//! offline device updates the one waiting job (its `count` grows, its text is the newest)
//! instead of adding another: a burst becomes one notification per device. `version` grows on
//! every update; a sender finishing a job deletes it only if it is still the version it sent,
//! else the newer content stays queued (sent as an update with the same collapse key).
//! `push_due` indexes jobs by the time they are due. All changes go through one mutex, so the
//! bridge's enqueues and the push worker never interleave within a job.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_in, encode, pair_key, prefix_key, SEP};
use crate::shards::check_user;
use crate::{valid_id, Store, StoreError};

/// Longest push token accepted, in bytes.
pub const MAX_PUSH_TOKEN_BYTES: usize = 4096;

/// A device's registration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PushToken {
    /// The device.
    pub device: String,
    /// `fcm` or `apns`.
    pub platform: String,
    /// The provider's token for the device.
    pub token: String,
}

/// One pending notification (possibly standing for several messages).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PushJob {
    /// The recipient.
    pub user: String,
    /// The recipient's device.
    pub device: String,
    /// `fcm` or `apns`.
    pub platform: String,
    /// The device's token when the job was last updated.
    pub token: String,
    /// The conversation (also the collapse key).
    pub conv: String,
    /// Sender of the newest message.
    pub from: String,
    /// Text preview of the newest message, if previews are on.
    pub preview: Option<String>,
    /// Messages this notification stands for.
    pub count: u64,
    /// Grows on every update.
    pub version: u64,
    /// Failed sends so far.
    pub attempts: u32,
    /// When the job is due, unix ms.
    pub next_at: u64,
    /// When it was first queued, unix ms.
    pub created_at: u64,
    /// The last failure, for operators.
    pub last_error: Option<String>,
}

impl PushJob {
    /// The job's id: `user.device.conv` (user and device ids have no dots, so it parses
    /// back; and it is safe in a URL path).
    pub fn id(&self) -> String {
        format!("{}.{}.{}", self.user, self.device, self.conv)
    }

    fn key(&self) -> Vec<u8> {
        job_key(&self.user, &self.device, &self.conv)
    }
}

fn job_key(user: &str, device: &str, conv: &str) -> Vec<u8> {
    let mut key = pair_key(user, device.as_bytes());
    key.push(SEP);
    key.extend_from_slice(conv.as_bytes());
    key
}

fn due_key(next_at: u64, job_key: &[u8]) -> Vec<u8> {
    let mut key = next_at.to_be_bytes().to_vec();
    key.extend_from_slice(job_key);
    key
}

/// Parses a job id `user.device.conv` into its key.
fn key_of_id(id: &str) -> Option<Vec<u8>> {
    let mut parts = id.splitn(3, '.');
    let (user, device, conv) = (parts.next()?, parts.next()?, parts.next()?);
    (valid_id(user) && valid_id(device) && crate::shards::valid_conv(conv))
        .then(|| job_key(user, device, conv))
}

impl Store {
    fn push_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .push_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or replaces) the push token of `user`'s `device`. Flushed.
    pub fn set_push_token(
        &self,
        user: &str,
        device: &str,
        platform: &str,
        token: &str,
    ) -> Result<(), StoreError> {
        check_user(user)?;
        check_user(device)?;
        if token.is_empty() || token.len() > MAX_PUSH_TOKEN_BYTES {
            return Err(StoreError::InvalidInput("invalid push token".into()));
        }
        let record = PushToken {
            device: device.to_owned(),
            platform: platform.to_owned(),
            token: token.to_owned(),
        };
        self.inner
            .push_tokens
            .insert(pair_key(user, device.as_bytes()), encode(&record)?)?;
        self.commit()
    }

    /// Removes the token of `user`'s `device` and its queued jobs. Returns whether a token was
    /// there. Flushed.
    pub fn remove_push_token(&self, user: &str, device: &str) -> Result<bool, StoreError> {
        if !valid_id(user) || !valid_id(device) {
            return Ok(false);
        }
        let _guard = self.push_lock();
        let removed = self
            .inner
            .push_tokens
            .remove(pair_key(user, device.as_bytes()))?
            .is_some();
        let prefix = {
            let mut p = pair_key(user, device.as_bytes());
            p.push(SEP);
            p
        };
        for entry in self.inner.push_jobs.scan_prefix(&prefix) {
            let (key, bytes) = entry?;
            let job: PushJob = decode_in(&self.inner.push_jobs, &key, &bytes)?;
            self.inner.push_due.remove(due_key(job.next_at, &key))?;
            self.inner.push_jobs.remove(key)?;
        }
        self.commit()?;
        Ok(removed)
    }

    /// The push tokens of `user`'s devices.
    pub fn push_tokens(&self, user: &str) -> Result<Vec<PushToken>, StoreError> {
        if !valid_id(user) {
            return Ok(Vec::new());
        }
        let tree = &self.inner.push_tokens;
        let mut out = Vec::new();
        for entry in tree.scan_prefix(prefix_key(user)) {
            let (key, bytes) = entry?;
            out.push(decode_in(tree, &key, &bytes)?);
        }
        Ok(out)
    }

    /// Queues (or updates) one notification per registered device of `user` for a new message
    /// in `conv`; a new job is due at `due_at`, an existing one keeps its time. Returns how many
    /// devices have a job. Not flushed (it rides on the message's group commit).
    pub fn enqueue_push(
        &self,
        user: &str,
        conv: &str,
        from: &str,
        preview: Option<&str>,
        now: u64,
        due_at: u64,
    ) -> Result<usize, StoreError> {
        let tokens = self.push_tokens(user)?;
        if tokens.is_empty() {
            return Ok(0);
        }
        crate::shards::check_conv(conv)?;
        let _guard = self.push_lock();
        for t in &tokens {
            let key = job_key(user, &t.device, conv);
            let job = match self.inner.push_jobs.get(&key)? {
                Some(bytes) => {
                    let mut job: PushJob = decode_in(&self.inner.push_jobs, &key, &bytes)?;
                    job.count += 1;
                    job.version += 1;
                    job.from = from.to_owned();
                    job.preview = preview.map(str::to_owned);
                    job.token = t.token.clone();
                    job.platform = t.platform.clone();
                    job
                }
                None => {
                    let job = PushJob {
                        user: user.to_owned(),
                        device: t.device.clone(),
                        platform: t.platform.clone(),
                        token: t.token.clone(),
                        conv: conv.to_owned(),
                        from: from.to_owned(),
                        preview: preview.map(str::to_owned),
                        count: 1,
                        version: 1,
                        attempts: 0,
                        next_at: due_at,
                        created_at: now,
                        last_error: None,
                    };
                    self.inner.push_due.insert(due_key(due_at, &key), &[][..])?;
                    job
                }
            };
            self.inner.push_jobs.insert(key, encode(&job)?)?;
        }
        Ok(tokens.len())
    }

    /// Jobs due at `now` (at most `limit`, earliest first); each is leased until
    /// `lease_until` so the next scan does not pick it again while it is being sent.
    pub fn take_due_push(
        &self,
        now: u64,
        lease_until: u64,
        limit: usize,
    ) -> Result<Vec<PushJob>, StoreError> {
        let _guard = self.push_lock();
        let mut out = Vec::new();
        let end = (now + 1).to_be_bytes();
        let due: Vec<sled::IVec> = self
            .inner
            .push_due
            .range(..&end[..])
            .take(limit)
            .map(|e| e.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        for dkey in due {
            self.inner.push_due.remove(&dkey)?;
            let key = &dkey[8..];
            let Some(bytes) = self.inner.push_jobs.get(key)? else {
                continue;
            };
            let mut job: PushJob = decode_in(&self.inner.push_jobs, key, &bytes)?;
            job.next_at = lease_until;
            self.inner.push_jobs.insert(key, encode(&job)?)?;
            self.inner
                .push_due
                .insert(due_key(lease_until, key), &[][..])?;
            out.push(job);
        }
        Ok(out)
    }

    /// When the earliest job is due (unix ms), if any.
    pub fn next_push_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.inner.push_due.first()?.and_then(|(k, _)| {
            let mut at = [0u8; 8];
            at.copy_from_slice(k.get(..8)?);
            Some(u64::from_be_bytes(at))
        }))
    }

    /// Finishes a sent job: it is deleted if it is still at `version`; a job updated meanwhile
    /// stays, due at once, to send the update.
    pub fn push_sent(&self, job: &PushJob, now: u64) -> Result<(), StoreError> {
        self.settle(job, |current| {
            if current.version == job.version {
                None
            } else {
                current.attempts = 0;
                current.next_at = now;
                Some(())
            }
        })
    }

    /// Schedules another attempt of a failed job at `next_at`.
    pub fn push_retry(&self, job: &PushJob, next_at: u64, error: &str) -> Result<(), StoreError> {
        self.settle(job, |current| {
            current.attempts = job.attempts + 1;
            current.next_at = next_at;
            current.last_error = Some(error.to_owned());
            Some(())
        })
    }

    /// Moves a job to the dead letters (it will not be tried again unless an operator says so).
    pub fn push_dead_letter(&self, job: &PushJob, error: &str) -> Result<(), StoreError> {
        let mut dead = job.clone();
        dead.attempts = job.attempts + 1;
        dead.last_error = Some(error.to_owned());
        self.settle(job, |_| None)?;
        self.inner.push_dead.insert(job.key(), encode(&dead)?)?;
        self.commit()
    }

    /// Drops a job (its token was refused as invalid).
    pub fn push_drop(&self, job: &PushJob) -> Result<(), StoreError> {
        self.settle(job, |_| None)
    }

    /// Rewrites or deletes the stored job of `job`'s key under the lock: `update` gets the
    /// stored job and returns `Some` to keep it (with its changes) or `None` to delete it.
    fn settle(
        &self,
        job: &PushJob,
        update: impl FnOnce(&mut PushJob) -> Option<()>,
    ) -> Result<(), StoreError> {
        let _guard = self.push_lock();
        let key = job.key();
        let Some(bytes) = self.inner.push_jobs.get(&key)? else {
            return Ok(());
        };
        let mut current: PushJob = decode_in(&self.inner.push_jobs, &key, &bytes)?;
        self.inner.push_due.remove(due_key(current.next_at, &key))?;
        match update(&mut current) {
            Some(()) => {
                self.inner
                    .push_due
                    .insert(due_key(current.next_at, &key), &[][..])?;
                self.inner.push_jobs.insert(key, encode(&current)?)?;
            }
            None => {
                self.inner.push_jobs.remove(key)?;
            }
        }
        Ok(())
    }

    /// Jobs waiting (including leased ones).
    pub fn push_queue_len(&self) -> usize {
        self.inner.push_jobs.len()
    }

    /// Dead letters waiting for an operator.
    pub fn push_dead_len(&self) -> usize {
        self.inner.push_dead.len()
    }

    /// The dead letters, oldest key first.
    pub fn push_dead_letters(&self) -> Result<Vec<PushJob>, StoreError> {
        let tree = &self.inner.push_dead;
        let mut out = Vec::new();
        for entry in tree.iter() {
            let (key, bytes) = entry?;
            out.push(decode_in(tree, &key, &bytes)?);
        }
        Ok(out)
    }

    /// Puts a dead letter back in the queue, due at `now` with its attempts reset. Returns
    /// whether it existed.
    pub fn retry_dead_letter(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        let Some(key) = key_of_id(id) else {
            return Ok(false);
        };
        let Some(bytes) = self.inner.push_dead.remove(&key)? else {
            return Ok(false);
        };
        let mut job: PushJob = decode_in(&self.inner.push_dead, &key, &bytes)?;
        job.attempts = 0;
        job.next_at = now;
        let _guard = self.push_lock();
        self.inner.push_due.insert(due_key(now, &key), &[][..])?;
        self.inner.push_jobs.insert(key, encode(&job)?)?;
        drop(_guard);
        self.commit()?;
        Ok(true)
    }

    /// Deletes a dead letter. Returns whether it existed.
    pub fn drop_dead_letter(&self, id: &str) -> Result<bool, StoreError> {
        let Some(key) = key_of_id(id) else {
            return Ok(false);
        };
        let existed = self.inner.push_dead.remove(key)?.is_some();
        self.commit()?;
        Ok(existed)
    }
}
