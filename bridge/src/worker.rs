//! Conversation shard workers. Each owns one shard's [`ConvWriter`], so `seq` is allocated without
//! locks and every member of a conversation sees one order. A worker takes whatever requests are
//! queued (up to a batch), writes the new messages and their inbox entries, waits for one group
//! commit, and only then publishes `sent`, `msg` and `receipt` events.
//!
//! Crash safety: a message is written together with a "fan-out pending" marker; inbox entries
//! carry a per-(user, conversation) watermark, so replaying the fan-out of pending messages on
//! start-up (in [`recover`]) finishes what a crash interrupted without duplicating anything.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{Conv, ErrorCode, ReceiptStatus};
use chat_store::{ConvWriter, InboxItem, NewMessage, StoredMessage};
use tracing::{error, info, warn};

use crate::events;
use crate::ids::now_ms;
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
    pub to: String,
    /// The stored wire fields: `to`, `body`, `media`, `reply_to`.
    pub content: serde_json::Value,
}

#[derive(Debug)]
pub(crate) struct ReceiptJob {
    pub origin: Origin,
    pub conv: Conv,
    pub status: ReceiptStatus,
    pub seq: u64,
}

/// Runs a shard worker until its queue closes.
pub(crate) fn run(mut writer: ConvWriter, jobs: Receiver<Job>, services: Arc<Services>) {
    recover(&mut writer, &services);
    let mut last_purge = Instant::now();
    loop {
        match jobs.recv_timeout(PURGE_EVERY) {
            Ok(first) => {
                let mut batch = Vec::with_capacity(16);
                batch.push(first);
                batch.extend(jobs.try_iter().take(BATCH - 1));
                process(&mut writer, batch, &services);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            let cutoff = now_ms().saturating_sub(IDEMPOTENCY_RETENTION.as_millis() as u64);
            match writer.purge_idempotency(cutoff) {
                Ok(0) => {}
                Ok(n) => info!(
                    shard = writer.shard(),
                    purged = n,
                    "old idempotency keys removed"
                ),
                Err(e) => warn!(error = %e, "idempotency purge failed"),
            }
        }
    }
}

/// Finishes the fan-out of messages a crash interrupted. Devices get them through `sync`.
fn recover(writer: &mut ConvWriter, services: &Services) {
    let pending = match writer.pending() {
        Ok(p) => p,
        Err(e) => return error!(error = %e, "reading pending fan-outs failed"),
    };
    if pending.is_empty() {
        return;
    }
    let mut publish = Vec::new();
    for msg in &pending {
        fan_out(services, msg, &mut publish);
    }
    if let Err(e) = services.flusher.flush() {
        return error!(error = %e, "flush after recovery failed");
    }
    for msg in &pending {
        if let Err(e) = writer.clear_pending(&msg.conv, msg.seq) {
            warn!(error = %e, conv = msg.conv, "clearing a pending marker failed");
        }
    }
    info!(messages = pending.len(), "finished interrupted fan-outs");
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

fn process(writer: &mut ConvWriter, batch: Vec<Job>, services: &Services) {
    let mut sends: Vec<(Origin, NewMessage)> = Vec::new();
    let mut retries: Vec<(Origin, String)> = Vec::new();
    let mut in_batch: HashSet<(String, String)> = HashSet::new();
    let mut publish: Outbox = Vec::new();
    for job in batch {
        match job {
            Job::Send(job) => {
                let key = (job.origin.user.clone(), job.id.clone());
                let known = match writer.find_idempotent(&job.origin.user, &job.id) {
                    Ok(found) => found.is_some(),
                    Err(e) => {
                        error!(error = %e, "idempotency lookup failed");
                        unavailable(services, &job.origin, &job.id);
                        continue;
                    }
                };
                if known || !in_batch.insert(key) {
                    retries.push((job.origin, job.id));
                    continue;
                }
                if let Err(message) = check_recipient(services, &job) {
                    services.error(&job.origin, Some(&job.id), ErrorCode::NotFound, &message);
                    continue;
                }
                let msg = NewMessage {
                    msg_id: services.ids.next_id(),
                    conv: job.conv.to_string(),
                    from: job.origin.user.clone(),
                    client_id: job.id,
                    ts: now_ms(),
                    content: job.content,
                };
                sends.push((job.origin, msg));
            }
            Job::Receipt(job) => receipt(writer, services, job, &mut publish),
        }
    }

    // The client ids, for answering `unavailable` if the batch cannot be stored or flushed.
    let ids: Vec<String> = sends.iter().map(|(_, m)| m.client_id.clone()).collect();
    let (origins, new): (Vec<Origin>, Vec<NewMessage>) = sends.into_iter().unzip();
    let stored = if new.is_empty() {
        Vec::new()
    } else {
        match writer.append(new) {
            Ok(stored) => stored,
            Err(e) => {
                error!(error = %e, "storing messages failed");
                for (origin, id) in origins.iter().zip(&ids) {
                    unavailable(services, origin, id);
                }
                Vec::new()
            }
        }
    };
    for msg in &stored {
        fan_out(services, msg, &mut publish);
    }
    if let Err(e) = services.flusher.flush() {
        // Nothing is acknowledged: the client retries with the same id and gets the same message.
        error!(error = %e, "group commit failed");
        for (origin, id) in origins.iter().zip(&ids) {
            unavailable(services, origin, id);
        }
        return;
    }
    for (user, payload) in publish {
        if services.presence.is_online(&user) {
            services.publisher.to_user(&user, payload);
        }
    }
    for msg in &stored {
        if let Err(e) = writer.clear_pending(&msg.conv, msg.seq) {
            warn!(error = %e, conv = msg.conv, "clearing a pending marker failed");
        }
    }
    for (origin, id) in retries {
        answer_retry(writer, services, &origin, &id);
    }
}

/// The recipient must be a registered user.
fn check_recipient(services: &Services, job: &SendJob) -> Result<(), String> {
    match services.store.user(&job.to) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("to: no user {:?}", job.to)),
        Err(e) => {
            error!(error = %e, "user lookup failed");
            Err("recipient lookup failed".into())
        }
    }
}

/// Writes the inbox entries of one stored message (the sender's `sent`, the recipients' `msg`)
/// and queues their events.
fn fan_out(services: &Services, msg: &StoredMessage, publish: &mut Outbox) {
    let Ok(conv) = Conv::parse(&msg.conv) else {
        return error!(
            conv = msg.conv,
            "stored message has an invalid conversation id"
        );
    };
    let item = |sent: bool| {
        let (conv, seq) = (msg.conv.clone(), msg.seq);
        if sent {
            InboxItem::Sent { conv, seq }
        } else {
            InboxItem::Msg { conv, seq }
        }
    };
    let Some((a, b)) = conv.members_direct() else {
        return error!(conv = msg.conv, "group fan-out is not supported yet");
    };
    for member in [a, b] {
        let sent = member == msg.from;
        match services.store.inbox_append(member, vec![item(sent)]) {
            Ok(ns) => {
                if let Some(Some(n)) = ns.first() {
                    let event = if sent {
                        events::sent(msg, *n)
                    } else {
                        events::msg(msg, Some(*n))
                    };
                    publish.push((member.to_owned(), event));
                }
            }
            Err(e) => error!(error = %e, user = member, "inbox write failed"),
        }
    }
}

/// Moves a receipt watermark and stores `receipt` events for the other member (the author of
/// the covered messages) and for the reader's other devices. Refusals come back as an `error`.
fn receipt(writer: &mut ConvWriter, services: &Services, job: ReceiptJob, publish: &mut Outbox) {
    if let Err((code, message)) = try_receipt(writer, services, &job, publish) {
        services.error(&job.origin, None, code, message);
    }
}

fn try_receipt(
    writer: &mut ConvWriter,
    services: &Services,
    job: &ReceiptJob,
    publish: &mut Outbox,
) -> Result<(), (ErrorCode, &'static str)> {
    let user = &job.origin.user;
    if !job.conv.is_member_direct(user) {
        return Err((ErrorCode::Forbidden, "not a member of this conversation"));
    }
    let unavailable = |e: chat_store::StoreError| {
        error!(error = %e, "receipt storage failed");
        (ErrorCode::Unavailable, "storage unavailable")
    };
    let conv = job.conv.to_string();
    let last = writer.last_seq(&conv).map_err(unavailable)?;
    if last == 0 {
        return Err((ErrorCode::NotFound, "no messages in this conversation"));
    }
    let seq = job.seq.min(last);
    let status = match job.status {
        ReceiptStatus::Delivered => chat_store::ReceiptStatus::Delivered,
        ReceiptStatus::Read => chat_store::ReceiptStatus::Read,
    };
    if writer
        .set_receipt(&conv, user, status, seq)
        .map_err(unavailable)?
        .is_none()
    {
        return Ok(());
    }
    let event = events::receipt_body(&conv, user, job.status, seq, now_ms());
    // The reader's own inbox (their other devices) and the other member's (the author).
    let other = job.conv.other(user).unwrap_or(user).to_owned();
    for target in [user.clone(), other] {
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
