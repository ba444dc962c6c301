//! Answers that only read: `sync` (a user's inbox after `n`) and `history` (a conversation's
//! messages, newest first). They run on the blocking pool; `history_page` also serves
//! `GET /v1/conversations/{conv}/messages`.

use chat_proto::{Conv, ErrorCode};
use chat_store::{InboxItem, Store, StoreError};
use serde_json::{json, Value};
use tracing::error;

use crate::events;
use crate::worker::Origin;
use crate::Services;

/// Largest answer (sync or history) in bytes, so it fits one MQTT packet that clients accept
/// (and the broker's default 1 MiB limit). A page that would be larger stops early with `more`.
pub const MAX_ANSWER_BYTES: usize = 512 * 1024;

/// Resolves inbox entries to events: messages are loaded from their conversation.
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
                .map(|m| events::msg_value(&m, Some(n))),
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

pub(crate) fn answer_sync(
    services: &Services,
    origin: &Origin,
    user: &str,
    after: u64,
    limit: usize,
) {
    match sync_events(&services.store, user, after, limit) {
        Ok((events, last, more)) => {
            let mut answer = json!({"type": "sync", "events": events, "last": last, "more": more});
            if let (Some(req), Value::Object(map)) = (&origin.req, &mut answer) {
                map.insert("req".into(), req.clone().into());
            }
            services
                .publisher
                .to_device(user, origin.device.as_deref(), events::to_bytes(&answer));
        }
        Err(e) => {
            error!(error = %e, user, "sync failed");
            services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
        }
    }
}

/// Why a history page cannot be read.
#[derive(Debug)]
pub enum HistoryError {
    /// The user is not a member of the conversation.
    Forbidden,
    /// The store failed.
    Store(StoreError),
}

/// A page of `conv` for `user`: `msg` events (without `n`) newest first, and whether older ones exist.
pub fn history_page(
    store: &Store,
    user: &str,
    conv: &Conv,
    before: Option<u64>,
    limit: usize,
) -> Result<(Vec<Value>, bool), HistoryError> {
    if !conv.is_member_direct(user) {
        return Err(HistoryError::Forbidden);
    }
    let (messages, mut more) = store
        .history(&conv.to_string(), before, limit)
        .map_err(HistoryError::Store)?;
    let mut out = Vec::with_capacity(messages.len());
    let mut bytes = 0;
    for m in &messages {
        let event = events::msg_value(m, None);
        bytes += events::to_bytes(&event).len();
        if bytes > MAX_ANSWER_BYTES && !out.is_empty() {
            more = true;
            break;
        }
        out.push(event);
    }
    Ok((out, more))
}

pub(crate) fn answer_history(
    services: &Services,
    origin: &Origin,
    conv: &Conv,
    before: Option<u64>,
    limit: usize,
) {
    match history_page(&services.store, &origin.user, conv, before, limit) {
        Ok((messages, more)) => {
            let mut answer = json!({"type": "history", "conv": conv.to_string(), "messages": messages, "more": more});
            if let (Some(req), Value::Object(map)) = (&origin.req, &mut answer) {
                map.insert("req".into(), req.clone().into());
            }
            services.publisher.to_device(
                &origin.user,
                origin.device.as_deref(),
                events::to_bytes(&answer),
            );
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
