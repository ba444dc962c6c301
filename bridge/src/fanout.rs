//! Group fan-out: one thread per conversation shard writes a group entry (a message or a
//! membership change) into each recipient's inbox, once the shard worker has written it (the
//! worker hands entries over before its flush, so these writes overlap it). So a large group
//! never holds up the worker: the sender's `sent` waits only for the entry's own flush, and the
//! members' inbox writes go in batches, each followed by one group commit (which makes the
//! entry durable too) and then the `msg` (or `group`) events to online members.
//!
//! Jobs are taken in the order the worker stored them, so a member's inbox gets each group's
//! entries in `seq` order, and a job is never split between batches, so all its recipients on
//! one inbox shard are written by one sled batch: the inbox's replay watermark (one per
//! conversation and inbox shard) relies on both. The entry's fan-out marker stays until every
//! recipient has it; recovery on start-up queues unfinished entries again, with the recipients
//! the marker recorded, and replays are skipped by the inbox.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use chat_store::{Appending, InboxItem, StoredMessage};
use serde_json::Value;
use tracing::{error, warn};

use crate::events;
use crate::Services;

/// Inbox writes between two group commits (and event publishes), unless one job has more:
/// a job's recipients always go in one batch. One batch for a whole group of the largest
/// size measured best (`scripts/bench group`: p99 send->msg 16-23 ms against 28-66 ms with
/// batches of 128, which cost a 256-member message three serial flushes).
pub(crate) const FANOUT_BATCH: usize = crate::groups::MAX_MEMBERS_CAP;

/// Most jobs taken off the queue at once.
const JOBS_PER_ROUND: usize = 64;

/// One stored group entry and who gets it.
#[derive(Debug)]
pub(crate) struct FanoutJob {
    pub msg: StoredMessage,
    pub recipients: Vec<String>,
    /// `Replay` for an entry recovery found unfinished (members may have it already).
    pub appending: Appending,
}

/// Runs shard `shard`'s fan-out queue until the worker (its only sender) is gone.
pub(crate) fn run(jobs: Receiver<FanoutJob>, services: Arc<Services>, shard: usize) {
    while let Ok(first) = jobs.recv() {
        let mut round = vec![first];
        round.extend(jobs.try_iter().take(JOBS_PER_ROUND - 1));
        let mut batch = Batch::default();
        let mut committed = true;
        for (index, job) in round.iter().enumerate() {
            index_membership(&services, &job.msg);
            let item = InboxItem::Msg {
                conv: job.msg.conv.clone(),
                seq: job.msg.seq,
            };
            let full = batch.entries.len() + job.recipients.len() > FANOUT_BATCH;
            if full && !batch.entries.is_empty() && !batch.commit(&services, &round) {
                committed = false;
                break;
            }
            for user in &job.recipients {
                batch.push(user, &item, index, job.appending);
            }
        }
        committed = committed && batch.commit(&services, &round);
        // Counted until published, so that a drain can wait for zero.
        if let Some(d) = services.stats.fanout_queue(shard) {
            d.add(-(round.len() as i64));
        }
        if !committed {
            // Markers stay: the next start finishes these fan-outs.
            continue;
        }
        for job in &round {
            if let Err(e) = services.store.clear_pending(&job.msg.conv, job.msg.seq) {
                warn!(error = %e, conv = job.msg.conv, "clearing a pending marker failed");
            }
        }
    }
}

/// Inbox entries of a round's jobs waiting to be written together.
#[derive(Default)]
struct Batch {
    entries: Vec<(String, InboxItem)>,
    /// The job (index in the round) of each entry.
    jobs: Vec<usize>,
    /// Some entry may be a replay.
    replay: bool,
}

impl Batch {
    fn push(&mut self, user: &str, item: &InboxItem, job: usize, appending: Appending) {
        self.entries.push((user.to_owned(), item.clone()));
        self.jobs.push(job);
        self.replay |= appending == Appending::Replay;
    }

    /// Writes the entries (one sled batch per inbox shard), flushes and publishes their events.
    /// False if the flush failed.
    fn commit(&mut self, services: &Arc<Services>, round: &[FanoutJob]) -> bool {
        let appending = if std::mem::take(&mut self.replay) {
            Appending::Replay
        } else {
            Appending::New
        };
        let entries = std::mem::take(&mut self.entries);
        let jobs = std::mem::take(&mut self.jobs);
        let mut publish: Vec<(String, Vec<u8>)> = Vec::new();
        match services.store.inbox_append_many(&entries, appending) {
            Ok(ns) => {
                for (((user, _), job), n) in entries.into_iter().zip(jobs).zip(ns) {
                    let (Some(n), Some(job)) = (n, round.get(job)) else {
                        continue;
                    };
                    let event = events::entry_value(&job.msg, Some(n));
                    services.push_if_offline(&user, &job.msg);
                    publish.push((user, events::to_bytes(&event)));
                }
            }
            // Members get what was written through `sync`; the flush fails as well.
            Err(e) => error!(error = %e, "inbox write failed"),
        }
        commit(services, &mut publish)
    }
}

/// Flushes, then publishes what is queued to the members that are online. False if the flush
/// failed (nothing is published: those members get the entries by `sync` after recovery).
fn commit(services: &Arc<Services>, publish: &mut Vec<(String, Vec<u8>)>) -> bool {
    if let Err(e) = services.flusher.flush() {
        error!(error = %e, "group commit failed during fan-out");
        publish.clear();
        return false;
    }
    services.catch_up_presence();
    let mut events = services.publisher.batch();
    for (user, payload) in publish.drain(..) {
        if services.presence.is_online(&user) {
            events.for_user(&user, payload);
        }
    }
    events.send();
    true
}

/// Brings the `user_groups` index in step with a membership change (idempotent, so replaying
/// it after a crash is harmless).
fn index_membership(services: &Services, msg: &StoredMessage) {
    let Some(system) = msg.content.get("system") else {
        return;
    };
    let Some(group) = msg.content.get("group").and_then(Value::as_str) else {
        return;
    };
    let joined = matches!(
        system.get("event").and_then(Value::as_str),
        Some("created" | "added")
    );
    // `members` of a `created`/`added` entry joined; `gone` lists who left or was removed
    // (a `left` entry may also list a member promoted to admin, who stays).
    let (list, member_now) = if joined {
        (system.get("members"), true)
    } else {
        (system.get("gone"), false)
    };
    for entry in list.and_then(Value::as_array).into_iter().flatten() {
        let user = entry
            .get("user")
            .and_then(Value::as_str)
            .or_else(|| entry.as_str());
        let Some(user) = user else { continue };
        if let Err(e) = services.store.set_user_group(user, group, member_now) {
            error!(error = %e, user, group, "group index write failed");
        }
    }
}
