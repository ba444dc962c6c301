//! Conversation shard workers. Each owns one shard's [`ConvWriter`], so `seq` is allocated without
//! locks and every member of a conversation sees one order. A worker takes whatever requests are
//! queued (up to a batch), writes the new messages and their inbox entries, waits for one group
//! commit, and only then publishes `sent`, `msg` and `receipt` events. Group entries (messages
//! and membership changes) are written with the sender's own copy only; after the commit they
//! go to the shard's fan-out queue (`fanout.rs`), so a large group costs the worker one write.
//!
//! Crash safety: a message is written together with a "fan-out pending" marker (holding the
//! recipients of a group entry); inbox entries are replay-safe, so finishing the fan-out of
//! pending entries on start-up (`Worker::recover`) completes what a crash interrupted without
//! duplicating anything.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{Conv, ErrorCode, ReceiptStatus};
use chat_store::{Appending, ConvWriter, InboxItem, NewMessage, StoredMessage};
use tracing::{error, info, warn};

use crate::events;
use crate::fanout::FanoutJob;
use crate::groups::{self, storage_unavailable, GroupCache, GroupJob, GroupOp, GroupReply};
use crate::ids::now_ms;
use crate::invites;
use crate::Services;

/// Most requests one worker handles per group commit.
const BATCH: usize = 256;

/// How long `(sender, id)` idempotency keys are kept: a retry within this time is recognised.
const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);

/// How often a worker drops idempotency keys older than the retention.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Work for a conversation shard.
#[derive(Debug)]
pub(crate) enum Job {
    Send(SendJob),
    Receipt(ReceiptJob),
    Group(GroupJob),
}

impl Job {
    /// The conversation the job belongs to (it picks the shard).
    pub(crate) fn conv(&self) -> String {
        match self {
            Job::Send(j) => j.conv.to_string(),
            Job::Receipt(j) => j.conv.to_string(),
            Job::Group(j) => format!("g.{}", j.group),
        }
    }
}

/// Where an answer goes: the requesting user, the device it named, its request id.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub user: String,
    pub device: Option<String>,
    pub req: Option<String>,
}

#[derive(Debug)]
pub(crate) struct SendJob {
    pub origin: Origin,
    pub id: String,
    pub conv: Conv,
    /// The stored wire fields: `to` or `group`, `body`, `media`, `reply_to`.
    pub content: serde_json::Value,
    /// When the bridge read the request (for the `send` -> `sent` latency).
    pub received: Instant,
}

#[derive(Debug)]
pub(crate) struct ReceiptJob {
    pub origin: Origin,
    pub conv: Conv,
    pub status: ReceiptStatus,
    pub seq: u64,
}

/// Runs a shard worker until its queue closes. `fanout` is the shard's group fan-out queue.
pub(crate) fn run(
    writer: ConvWriter,
    jobs: Receiver<Job>,
    services: Arc<Services>,
    fanout: Sender<FanoutJob>,
) {
    let mut worker = Worker {
        writer,
        services,
        groups: GroupCache::new(),
        fanout,
    };
    match worker
        .writer
        .backfill_contacts(|c| c.get("system").is_none())
    {
        Ok(0) => {}
        Ok(n) => info!(
            shard = worker.writer.shard(),
            marks = n,
            "contacts index backfilled"
        ),
        Err(e) => error!(error = %e, "backfilling the contacts index failed"),
    }
    worker.recover();
    let mut last_purge = Instant::now();
    let stats = worker.services.stats.clone();
    let depth = stats.shard_queue(worker.writer.shard());
    loop {
        match jobs.recv_timeout(PURGE_EVERY) {
            Ok(first) => {
                let mut batch = Vec::with_capacity(16);
                batch.push(first);
                batch.extend(jobs.try_iter().take(BATCH - 1));
                let taken = batch.len() as i64;
                worker.process(batch);
                // Counted until answered, so that a drain can wait for zero.
                if let Some(d) = depth {
                    d.add(-taken);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            worker.purge();
        }
    }
}

/// A conversation shard's writer and what it keeps between batches.
struct Worker {
    writer: ConvWriter,
    services: Arc<Services>,
    groups: GroupCache,
    fanout: Sender<FanoutJob>,
}

/// Answers a send that could not be stored or flushed: the client retries with the same id.
fn unavailable(services: &Services, origin: &Origin, id: &str) {
    services.error(
        origin,
        Some(id),
        ErrorCode::Unavailable,
        "storage unavailable; retry with the same id",
    );
}

/// Events to publish after the group commit: (user, payload).
type Outbox = Vec<(String, Vec<u8>)>;

/// What one batch of jobs has produced so far.
#[derive(Default)]
struct Round {
    /// Sends accepted, not yet written: origin, message, group recipients (empty for 1:1),
    /// when the request was read.
    sends: Vec<(Origin, NewMessage, Vec<String>, Instant)>,
    /// `(sender, id)` of the sends in this batch, to spot a retry inside the batch.
    in_batch: HashSet<(String, String)>,
    /// Written sends, to answer `unavailable` if the flush fails.
    written: Vec<(Origin, String)>,
    /// When each written send was read (same order as `written`).
    received: Vec<Instant>,
    /// Retried sends, answered with their original `sent` after the flush.
    retries: Vec<(Origin, String)>,
    /// Group entries for the fan-out queue, handed off when the round's writes are done.
    handoff: Vec<FanoutJob>,
    /// Answers (`ok`) to send once flushed: (user, device, payload).
    answers: Vec<(Origin, Vec<u8>)>,
    /// Outcomes of group changes asked for through a handle, sent once flushed.
    replies: Vec<GroupReply>,
    publish: Outbox,
}

impl Worker {
    fn purge(&self) {
        let cutoff = now_ms().saturating_sub(IDEMPOTENCY_RETENTION.as_millis() as u64);
        match self.writer.purge_idempotency(cutoff) {
            Ok(0) => {}
            Ok(n) => info!(
                shard = self.writer.shard(),
                purged = n,
                "old idempotency keys removed"
            ),
            Err(e) => warn!(error = %e, "idempotency purge failed"),
        }
    }

    /// Finishes the fan-out of entries a crash interrupted: 1:1 messages here, group entries
    /// through the fan-out queue (ahead of anything new). Devices get them through `sync`.
    fn recover(&mut self) {
        let pending = match self.writer.pending() {
            Ok(p) => p,
            Err(e) => return error!(error = %e, "reading pending fan-outs failed"),
        };
        if pending.is_empty() {
            return;
        }
        let services = self.services.clone();
        let mut publish = Vec::new();
        let count = pending.len();
        let msgs: Vec<&StoredMessage> = pending.iter().map(|(msg, _)| msg).collect();
        write_inboxes(&services, &msgs, Appending::Replay, &mut publish);
        let mut direct = Vec::new();
        for (msg, recipients) in pending {
            if is_direct(&msg) {
                direct.push(msg);
            } else {
                self.hand_off(FanoutJob {
                    msg,
                    recipients,
                    appending: Appending::Replay,
                });
            }
        }
        if let Err(e) = services.flusher.flush() {
            return error!(error = %e, "flush after recovery failed");
        }
        // Markers of 1:1 messages stored before the batch marker existed, then the batch marker.
        for msg in &direct {
            if let Err(e) = self.writer.clear_pending(&msg.conv, msg.seq) {
                warn!(error = %e, conv = msg.conv, "clearing a pending marker failed");
            }
        }
        if let Err(e) = self.writer.clear_batch_pending() {
            warn!(error = %e, "clearing the batch marker failed");
        }
        info!(entries = count, "finishing interrupted fan-outs");
    }

    fn hand_off(&self, job: FanoutJob) {
        let depth = self.services.stats.fanout_queue(self.writer.shard());
        if let Some(d) = depth {
            d.inc();
        }
        if self.fanout.send(job).is_err() {
            if let Some(d) = depth {
                d.dec();
            }
            warn!("fan-out queue stopped; the entry is fanned out on the next start");
        }
    }

    fn process(&mut self, batch: Vec<Job>) {
        let services = self.services.clone();
        let mut round = Round::default();
        for job in batch {
            match job {
                Job::Send(job) => self.accept_send(job, &mut round),
                Job::Receipt(job) => {
                    if let Err((code, message)) = self.receipt(&job, &mut round.publish) {
                        services.error(&job.origin, None, code, message);
                    }
                }
                Job::Group(job) => {
                    // Sends that came first are stored first: they go to the old members.
                    self.store_sends(&mut round);
                    self.group_change(job, &mut round);
                }
            }
        }
        self.store_sends(&mut round);
        // Group entries go to the fan-out queue before this round's flush: their inbox writes
        // overlap it, and the fan-out's own flush (which publishes nothing before it succeeds)
        // covers these messages too, since sled makes a prefix of all writes durable.
        for job in std::mem::take(&mut round.handoff) {
            self.hand_off(job);
        }
        if let Err(e) = services.flusher.flush() {
            // Nothing is acknowledged: the client retries with the same id and gets the same
            // message. The fan-out queue flushes again before it publishes anything.
            error!(error = %e, "group commit failed");
            for (origin, id) in &round.written {
                unavailable(&services, origin, id);
            }
            for (origin, _) in &round.answers {
                services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
            }
            for reply in round.replies {
                let _ = reply.send(Err(storage_unavailable()));
            }
            return;
        }
        // Counted before `sent` goes out, so that whoever sees a `sent` sees it counted.
        services
            .stats
            .messages_stored
            .add(round.received.len() as u64);
        for at in &round.received {
            services.stats.send_latency.observe(at.elapsed());
        }
        services.catch_up_presence();
        let mut events = services.publisher.batch();
        for (user, payload) in round.publish {
            if services.presence.is_online(&user) {
                events.for_user(&user, payload);
            }
        }
        events.send();
        if let Err(e) = self.writer.clear_batch_pending() {
            warn!(error = %e, "clearing the batch marker failed");
        }
        let mut answers = services.publisher.batch();
        for (origin, payload) in round.answers {
            answers.for_device(&origin.user, origin.device.as_deref(), payload);
        }
        answers.send();
        for reply in round.replies {
            // The asker may have given up waiting; the change stands either way.
            let _ = reply.send(Ok(()));
        }
        for (origin, id) in round.retries {
            answer_retry(&self.writer, &services, &origin, &id);
        }
    }

    /// Checks a send and queues it for [`Worker::store_sends`], or answers it at once.
    fn accept_send(&mut self, job: SendJob, round: &mut Round) {
        let services = self.services.clone();
        let key = (job.origin.user.clone(), job.id.clone());
        let known = match self.writer.find_idempotent(&job.origin.user, &job.id) {
            Ok(found) => found.is_some(),
            Err(e) => {
                error!(error = %e, "idempotency lookup failed");
                return unavailable(&services, &job.origin, &job.id);
            }
        };
        if known || !round.in_batch.insert(key) {
            return round.retries.push((job.origin, job.id));
        }
        let checked = self
            .audience(&job.origin.user, &job.conv)
            .and_then(|audience| {
                check_media(&services, &job.origin.user, &job.content).map(|()| audience)
            });
        let (recipients, hidden) = match checked {
            Ok(audience) => audience,
            Err((code, message)) => {
                return services.error(&job.origin, Some(&job.id), code, &message);
            }
        };
        let SendJob {
            origin,
            id,
            conv,
            mut content,
            received,
        } = job;
        if let (false, serde_json::Value::Object(map)) = (hidden.is_empty(), &mut content) {
            map.insert("hidden".into(), hidden.into());
        }
        let msg_id = match services.ids.next_id() {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "message id reservation failed");
                return unavailable(&services, &origin, &id);
            }
        };
        let msg = NewMessage {
            msg_id,
            conv: conv.to_string(),
            from: origin.user.clone(),
            client_id: id,
            ts: now_ms(),
            content,
        };
        round.sends.push((origin, msg, recipients, received));
    }

    /// Who gets a message of `sender` in `conv` (group members; empty for 1:1, where the
    /// recipient follows from `conv`), and who must never see it (they blocked the sender).
    /// `Err` is the refusal for the sender.
    fn audience(
        &mut self,
        sender: &str,
        conv: &Conv,
    ) -> Result<(Vec<String>, Vec<String>), (ErrorCode, String)> {
        let store = &self.services.store;
        let failed = |e: chat_store::StoreError| {
            error!(error = %e, "checking a send failed");
            storage_unavailable()
        };
        match conv {
            Conv::Direct(..) => {
                let to = conv.other(sender).unwrap_or(sender);
                if store.user(to).map_err(failed)?.is_none() {
                    return Err((ErrorCode::NotFound, format!("to: no user {to:?}")));
                }
                if store.is_blocked(sender, to).map_err(failed)? {
                    let message = "to: you blocked this user; unblock them to send";
                    return Err((ErrorCode::Forbidden, message.to_owned()));
                }
                let hidden = if store.is_blocked(to, sender).map_err(failed)? {
                    vec![to.to_owned()]
                } else {
                    Vec::new()
                };
                Ok((Vec::new(), hidden))
            }
            Conv::Group(group) => {
                let record = match self.groups.get(&self.writer, group).map_err(failed)? {
                    Some(record) if record.is_member(sender) => record,
                    _ => {
                        let message = "group: not a member of this group";
                        return Err((ErrorCode::Forbidden, message.to_owned()));
                    }
                };
                let blockers = store.blockers_of(sender).map_err(failed)?;
                let (hidden, recipients): (Vec<String>, Vec<String>) = record
                    .member_ids()
                    .filter(|m| *m != sender)
                    .map(str::to_owned)
                    .partition(|m| blockers.contains(m));
                Ok((recipients, hidden))
            }
        }
    }

    /// Writes the queued sends (not flushed) and queues their inbox entries and events.
    fn store_sends(&mut self, round: &mut Round) {
        if round.sends.is_empty() {
            return;
        }
        let services = self.services.clone();
        let mut received = Vec::with_capacity(round.sends.len());
        let (origins, batch): (Vec<Origin>, Vec<(NewMessage, Vec<String>)>) = round
            .sends
            .drain(..)
            .map(|(origin, msg, recipients, at)| {
                received.push(at);
                (origin, (msg, recipients))
            })
            .unzip();
        let recipients: Vec<Vec<String>> = batch.iter().map(|(_, r)| r.clone()).collect();
        let ids: Vec<String> = batch.iter().map(|(m, _)| m.client_id.clone()).collect();
        let stored = match self.writer.append_fanout(batch) {
            Ok(stored) => stored,
            Err(e) => {
                error!(error = %e, "storing messages failed");
                for (origin, id) in origins.iter().zip(&ids) {
                    unavailable(&services, origin, id);
                }
                return;
            }
        };
        round.received.extend(received);
        let msgs: Vec<&StoredMessage> = stored.iter().collect();
        write_inboxes(&services, &msgs, Appending::New, &mut round.publish);
        for ((msg, recipients), (origin, id)) in stored
            .into_iter()
            .zip(recipients)
            .zip(origins.into_iter().zip(ids))
        {
            if let Some(media_id) = media_id_of(&msg.content) {
                // From now on whoever may read this message may download it.
                if let Err(e) = services.store.share_media(media_id, &msg.conv, msg.seq) {
                    error!(error = %e, "recording a shared file failed");
                }
            }
            if !is_direct(&msg) {
                round.handoff.push(FanoutJob {
                    msg,
                    recipients,
                    appending: Appending::New,
                });
            }
            round.written.push((origin, id));
        }
    }

    /// Stores a membership change (and the invites of users whose settings ask for one), or
    /// answers why not (to the requester's devices, or to the job's reply).
    fn group_change(&mut self, mut job: GroupJob, round: &mut Round) {
        let services = self.services.clone();
        let refuse = |job: &mut GroupJob, (code, message): groups::Refusal| match job.reply.take() {
            Some(reply) => drop(reply.send(Err((code, message)))),
            None => services.error(&job.origin, None, code, &message),
        };
        let current = match self.groups.get(&self.writer, &job.group) {
            Ok(current) => current.cloned(),
            Err(e) => {
                error!(error = %e, "reading a group failed");
                return refuse(&mut job, storage_unavailable());
            }
        };
        let invited = match invites::screen(&services, current.as_ref(), &mut job) {
            Ok(invited) => invited,
            Err(refusal) => return refuse(&mut job, refusal),
        };
        if let (true, Some(current)) = (invited.only, &current) {
            invites::settle(
                &services,
                &job,
                &current.name,
                &invited.users,
                &mut round.publish,
            );
            let answer = events::ok_invited(
                job.origin.req.as_deref(),
                job.op.request_name(),
                None,
                &invited.users,
            );
            return round.answers.push((job.origin, answer));
        }
        let change = match groups::plan(&services, current.as_ref(), &job) {
            Ok(change) => change,
            Err(refusal) => return refuse(&mut job, refusal),
        };
        let groups::Change {
            mut record,
            entry,
            recipients,
        } = change;
        match self.writer.group_change(&mut record, entry, &recipients) {
            Ok(msg) => {
                let created = matches!(job.op, GroupOp::Create { .. });
                let answer = events::ok_invited(
                    job.origin.req.as_deref(),
                    job.op.request_name(),
                    created.then_some(job.group.as_str()),
                    &invited.users,
                );
                invites::settle(
                    &services,
                    &job,
                    &record.name,
                    &invited.users,
                    &mut round.publish,
                );
                self.groups.put(record);
                round.handoff.push(FanoutJob {
                    msg,
                    recipients,
                    appending: Appending::New,
                });
                match job.reply.take() {
                    Some(reply) => round.replies.push(reply),
                    None => round.answers.push((job.origin, answer)),
                }
            }
            Err(e) => {
                error!(error = %e, "storing a group change failed");
                refuse(&mut job, storage_unavailable());
            }
        }
    }

    /// Moves a receipt watermark and stores `receipt` events for the authors of the messages it
    /// covers and for the reader's other devices.
    fn receipt(
        &mut self,
        job: &ReceiptJob,
        publish: &mut Outbox,
    ) -> Result<(), (ErrorCode, &'static str)> {
        let services = self.services.clone();
        let user = &job.origin.user;
        let unavailable = |e: chat_store::StoreError| {
            error!(error = %e, "receipt storage failed");
            (ErrorCode::Unavailable, "storage unavailable")
        };
        let member = match &job.conv {
            Conv::Direct(..) => job.conv.is_member_direct(user),
            Conv::Group(group) => self
                .groups
                .get(&self.writer, group)
                .map_err(unavailable)?
                .is_some_and(|g| g.is_member(user)),
        };
        if !member {
            return Err((ErrorCode::Forbidden, "not a member of this conversation"));
        }
        let conv = job.conv.to_string();
        let last = self.writer.last_seq(&conv).map_err(unavailable)?;
        if last == 0 {
            return Err((ErrorCode::NotFound, "no messages in this conversation"));
        }
        let seq = job.seq.min(last);
        let status = match job.status {
            ReceiptStatus::Delivered => chat_store::ReceiptStatus::Delivered,
            ReceiptStatus::Read => chat_store::ReceiptStatus::Read,
        };
        let Some((old, _new)) = self
            .writer
            .set_receipt(&conv, user, status, seq)
            .map_err(unavailable)?
        else {
            return Ok(());
        };
        // The reader's own inbox (their other devices) and the authors'.
        let mut targets = vec![user.clone()];
        match &job.conv {
            Conv::Direct(..) => targets.extend(job.conv.other(user).map(str::to_owned)),
            Conv::Group(group) => {
                let record = self.groups.get(&self.writer, group).map_err(unavailable)?;
                // Messages from before the reader joined were never theirs to read.
                let joined = record
                    .and_then(|g| g.members.iter().find(|m| m.user == *user))
                    .map_or(0, |m| m.since.saturating_sub(1));
                let since = match job.status {
                    ReceiptStatus::Delivered => old.delivered,
                    ReceiptStatus::Read => old.read,
                };
                let authors = authors_between(&services, &conv, since.max(joined), seq)
                    .map_err(unavailable)?;
                targets.extend(
                    authors
                        .into_iter()
                        .filter(|a| a != user && record.is_some_and(|g| g.is_member(a))),
                );
            }
        }
        let event = events::receipt_body(&conv, user, job.status, seq, now_ms());
        for target in targets {
            match services
                .store
                .inbox_append(&target, vec![InboxItem::Event(event.clone())])
            {
                Ok(ns) => {
                    if let Some(Some(n)) = ns.first() {
                        publish.push((target, events::with_n(&event, *n)));
                    }
                }
                Err(e) => error!(error = %e, user = target, "inbox write failed"),
            }
        }
        Ok(())
    }
}

fn media_id_of(content: &serde_json::Value) -> Option<&str> {
    content.get("media")?.get("media_id")?.as_str()
}

/// A `send` with `media` must name a file that exists and that the sender uploaded or was
/// sent; its `size` and `mime` must be the stored ones.
fn check_media(
    services: &Services,
    sender: &str,
    content: &serde_json::Value,
) -> Result<(), (ErrorCode, String)> {
    let Some(media) = content.get("media") else {
        return Ok(());
    };
    let id = media_id_of(content).unwrap_or("");
    let failed = |e: chat_store::StoreError| {
        error!(error = %e, "checking media failed");
        storage_unavailable()
    };
    let record = services.store.media(id).map_err(failed)?;
    let allowed = services.store.media_allowed(sender, id).map_err(failed)?;
    let Some(record) = record.filter(|_| allowed) else {
        return Err((
            ErrorCode::NotFound,
            "media: no such media; upload it first".into(),
        ));
    };
    let size = media.get("size").and_then(serde_json::Value::as_u64);
    let mime = media.get("mime").and_then(serde_json::Value::as_str);
    if size != Some(record.size) || mime != Some(record.mime.as_str()) {
        let message = format!(
            "media: size and mime must be those of the upload ({} bytes, {})",
            record.size, record.mime
        );
        return Err((ErrorCode::BadRequest, message));
    }
    Ok(())
}

/// Most messages a group receipt looks at to find the authors it covers.
const RECEIPT_SCAN_MAX: u64 = 1000;

/// Distinct authors of the messages `since < seq <= upto` of `conv` (the newest
/// [`RECEIPT_SCAN_MAX`] of them), leaving out membership changes.
fn authors_between(
    services: &Services,
    conv: &str,
    since: u64,
    upto: u64,
) -> Result<Vec<String>, chat_store::StoreError> {
    let count = upto.saturating_sub(since).min(RECEIPT_SCAN_MAX);
    if count == 0 {
        return Ok(Vec::new());
    }
    let limit = usize::try_from(count).unwrap_or(usize::MAX);
    let (messages, _) = services.store.history(conv, Some(upto + 1), limit)?;
    let mut authors: Vec<String> = Vec::new();
    for msg in messages.iter().filter(|m| !events::is_system(m)) {
        if !authors.contains(&msg.from) {
            authors.push(msg.from.clone());
        }
    }
    Ok(authors)
}

/// A 1:1 message: its fan-out (two inbox entries) is written by the worker itself.
fn is_direct(msg: &StoredMessage) -> bool {
    msg.conv.starts_with("d.")
}

/// Whose inbox gets what of a stored message, written by the worker: the sender's own copy
/// (their other devices see it as `sent`; none for a membership change) and, for a 1:1
/// message, the recipient's `msg` unless they blocked the sender. Group members get theirs
/// from the fan-out queue.
fn worker_entries(msg: &StoredMessage) -> Vec<(String, InboxItem)> {
    let mut entries = Vec::with_capacity(2);
    if !events::is_system(msg) {
        let item = InboxItem::Sent {
            conv: msg.conv.clone(),
            seq: msg.seq,
        };
        entries.push((msg.from.clone(), item));
    }
    if !is_direct(msg) {
        return entries;
    }
    let members = Conv::parse(&msg.conv).ok().and_then(|c| {
        c.members_direct()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    });
    let Some((a, b)) = members else {
        error!(
            conv = msg.conv,
            "stored message has an invalid 1:1 conversation id"
        );
        return entries;
    };
    let to = if a == msg.from { b } else { a };
    if !events::hidden_for(msg, &to) {
        let item = InboxItem::Msg {
            conv: msg.conv.clone(),
            seq: msg.seq,
        };
        entries.push((to, item));
    }
    entries
}

/// Writes the worker's inbox entries of `msgs` ([`worker_entries`]) in one call, one sled
/// batch per inbox shard, and queues their events (`sent` to the sender, `msg` to a 1:1
/// recipient, who is also pushed to if offline). `appending` is `Replay` for recovery only.
fn write_inboxes(
    services: &Services,
    msgs: &[&StoredMessage],
    appending: Appending,
    publish: &mut Outbox,
) {
    let mut entries = Vec::with_capacity(msgs.len() * 2);
    let mut of_msg = Vec::with_capacity(msgs.len() * 2);
    for (i, msg) in msgs.iter().enumerate() {
        for entry in worker_entries(msg) {
            entries.push(entry);
            of_msg.push(i);
        }
    }
    let ns = match services.store.inbox_append_many(&entries, appending) {
        Ok(ns) => ns,
        // Devices get what was written through `sync`; the round's flush fails as well.
        Err(e) => return error!(error = %e, "inbox write failed"),
    };
    for (((user, item), i), n) in entries.into_iter().zip(of_msg).zip(ns) {
        let (Some(n), msg) = (n, msgs[i]) else {
            continue;
        };
        match item {
            InboxItem::Sent { .. } => publish.push((user, events::sent(msg, n))),
            _ => {
                services.push_if_offline(&user, msg);
                publish.push((user, events::msg(msg, Some(n))));
            }
        }
    }
}

/// A send whose id was seen before: answer with the original `sent` (same msg_id, seq, n).
fn answer_retry(writer: &ConvWriter, services: &Services, origin: &Origin, id: &str) {
    let found = writer.find_idempotent(&origin.user, id);
    let Ok(Some((conv, seq))) = found else {
        return services.error(
            origin,
            Some(id),
            ErrorCode::Unavailable,
            "message not stored; retry with the same id",
        );
    };
    let message = services.store.message(&conv, seq);
    let n = services.store.sent_n(&origin.user, &conv, seq);
    match (message, n) {
        (Ok(Some(msg)), Ok(Some(n))) => services
            .publisher
            .to_user(&origin.user, events::sent(&msg, n)),
        _ => services.error(
            origin,
            Some(id),
            ErrorCode::Unavailable,
            "message not available; retry with the same id",
        ),
    }
}
