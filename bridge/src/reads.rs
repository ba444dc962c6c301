//! Answers that only read: `sync` (a user's inbox after `n`), `history` (a conversation's
//! entries, newest first) and `group_info`. They run on the blocking pool; `history_page` also serves
//! `GET /v1/conversations/{conv}/messages`.
//!
//! Reads see every applied write, flushed or not (sled), so an answer could show an inbox entry
//! or a message that a crash a moment later takes back: the device would keep `n = 57`, and
//! after the restart `n = 57` would be issued again for another event, which the device then
//! drops as a duplicate. So every read is followed by a flush through the [`Flusher`] before its
//! answer leaves the node ([`Flusher::cover_read`]): the flush starts after the read, so it
//! covers every write the read saw. When nothing is dirty it costs a few microseconds, and
//! under load it is the group commit the writers share.

use chat_proto::{Conv, ErrorCode};
use chat_store::{InboxItem, Store, StoreError, StoredMessage};
use serde_json::{json, Value};
use tracing::error;

use crate::events;
use crate::worker::Origin;
use crate::{Flusher, Services};

/// Largest answer (sync or history) in bytes, so it fits one MQTT packet that clients accept
/// (and the broker's default 1 MiB limit). A page that would be larger stops early with `more`.
pub const MAX_ANSWER_BYTES: usize = 512 * 1024;

/// Resolves inbox entries to events: messages are loaded from their conversation. No
/// membership filter is needed: a group entry reaches only the inboxes of its recipients when
/// it was stored (the members of that moment, kept in its fan-out marker), so a member added
/// later has none of the earlier ones and a removed member none of the later ones.
pub fn sync_events(
    store: &Store,
    user: &str,
    after: u64,
    limit: usize,
) -> Result<(Vec<Value>, u64, bool), StoreError> {
    let (entries, mut more) = store.inbox_after(user, after, limit)?;
    let mut last = after;
    let mut out = Vec::with_capacity(entries.len());
    let mut bytes = 0;
    for (n, item) in entries {
        let event = match item {
            InboxItem::Sent { conv, seq } => store
                .message(&conv, seq)?
                .map(|m| events::sent_value(&m, n)),
            InboxItem::Msg { conv, seq } => store
                .message(&conv, seq)?
                .map(|m| authored(store, &m, events::entry_value(&m, Some(n)))),
            InboxItem::Event(event) => Some(events::with_n_value(&event, n)),
        };
        if let Some(event) = &event {
            bytes += events::to_bytes(event).len();
            if bytes > MAX_ANSWER_BYTES && !out.is_empty() {
                more = true;
                break;
            }
        }
        last = n;
        match event {
            Some(event) => out.push(event),
            None => error!(user, n, "inbox entry points at a missing message"),
        }
    }
    Ok((out, last, more))
}

/// `event` (a `msg` or `group` entry of `msg`) with `"from_deleted": true` when its author's
/// account has been deleted: the entry stays in the other members' histories, and clients show
/// its author as a deleted account.
fn authored(store: &Store, msg: &StoredMessage, mut event: Value) -> Value {
    if let (true, Value::Object(map)) = (store.user_deleted(&msg.from), &mut event) {
        map.insert("from_deleted".into(), true.into());
    }
    event
}

/// Publishes an answer to the requesting device, with the request's `req`.
fn answer_to(services: &Services, origin: &Origin, mut answer: Value) {
    if let (Some(req), Value::Object(map)) = (&origin.req, &mut answer) {
        map.insert("req".into(), req.clone().into());
    }
    services.publisher.to_device(
        &origin.user,
        origin.device.as_deref(),
        events::to_bytes(&answer),
    );
}

pub(crate) fn answer_sync(
    services: &Services,
    origin: &Origin,
    user: &str,
    after: u64,
    limit: usize,
) {
    let read = sync_events(&services.store, user, after, limit);
    match read.map_err(ReadError::Store).and_then(|page| {
        services.flusher.cover_read()?;
        Ok(page)
    }) {
        Ok((events, last, more)) => {
            let answer = json!({"type": "sync", "events": events, "last": last, "more": more});
            answer_to(services, origin, answer);
        }
        Err(e) => {
            error!(error = %e, user, "sync failed");
            services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
        }
    }
}

/// Why a read could not be answered: the store failed, or the flush that makes what it saw
/// durable failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("flush: {0}")]
    Flush(String),
}

impl From<String> for ReadError {
    fn from(flush: String) -> Self {
        ReadError::Flush(flush)
    }
}

/// Why a history page cannot be read.
#[derive(Debug)]
pub enum HistoryError {
    /// The user is not a member of the conversation.
    Forbidden,
    /// The store failed, or the flush that makes the page durable.
    Store(ReadError),
}

/// A page of `conv` for `user`: `msg` and `group` entries (without `n`) newest first, and
/// whether older ones exist, counting only the entries `user` may read (of a group: those of
/// their memberships, [`Store::readable_ranges`]). Someone who may read nothing of `conv` (never
/// a member) is refused. Nothing in it is returned before it is on disk (a flush through
/// `flusher` follows the read).
pub fn history_page(
    store: &Store,
    flusher: &Flusher,
    user: &str,
    conv: &Conv,
    before: Option<u64>,
    limit: usize,
) -> Result<(Vec<Value>, bool), HistoryError> {
    let conv = conv.to_string();
    let readable = store
        .readable_ranges(&conv, user)
        .map_err(|e| HistoryError::Store(e.into()))?;
    if readable.is_empty() {
        return Err(HistoryError::Forbidden);
    }
    let (messages, mut more) = store
        .history_within(&conv, &readable, before, limit)
        .map_err(|e| HistoryError::Store(e.into()))?;
    let mut out = Vec::with_capacity(messages.len());
    let mut bytes = 0;
    // Messages stored while the reader blocked their sender are not theirs to see. (They still
    // count towards `limit`, so a page can be shorter than asked; `more` stays right.)
    for m in messages.iter().filter(|m| !events::hidden_for(m, user)) {
        let event = authored(store, m, events::entry_value(m, None));
        bytes += events::to_bytes(&event).len();
        if bytes > MAX_ANSWER_BYTES && !out.is_empty() {
            more = true;
            break;
        }
        out.push(event);
    }
    flusher
        .cover_read()
        .map_err(|e| HistoryError::Store(e.into()))?;
    Ok((out, more))
}

pub(crate) fn answer_history(
    services: &Services,
    origin: &Origin,
    conv: &Conv,
    before: Option<u64>,
    limit: usize,
) {
    let flusher = &services.flusher;
    match history_page(&services.store, flusher, &origin.user, conv, before, limit) {
        Ok((messages, more)) => {
            let answer = json!({"type": "history", "conv": conv.to_string(), "messages": messages, "more": more});
            answer_to(services, origin, answer);
        }
        Err(HistoryError::Forbidden) => services.error(
            origin,
            None,
            ErrorCode::Forbidden,
            "not a member of this conversation",
        ),
        Err(HistoryError::Store(e)) => {
            error!(error = %e, "history failed");
            services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
        }
    }
}

/// `group_info`: the group's name and members, for members only. A group that does not exist
/// gets the same answer as one the user is not in, so ids cannot be probed.
pub(crate) fn answer_group_info(services: &Services, origin: &Origin, group: &str) {
    let read = services.store.group(group).map_err(ReadError::Store);
    match read.and_then(|record| Ok(services.flusher.cover_read().map(|()| record)?)) {
        Ok(Some(record)) if record.is_member(&origin.user) => {
            let answer = json!({
                "type": "group_info",
                "group": record.id,
                "name": record.name,
                "members": crate::groups::members_json(&record.members),
            });
            answer_to(services, origin, answer);
        }
        Ok(_) => services.error(
            origin,
            None,
            ErrorCode::Forbidden,
            "group: not a member of this group",
        ),
        Err(e) => {
            error!(error = %e, "group_info failed");
            services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
        }
    }
}
