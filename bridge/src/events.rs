//! Stored records to wire events (PROTOCOL.md field names; optional fields omitted, `msg_id` as
//! a decimal string, `ts` in unix milliseconds).

use chat_proto::{ErrorCode, ReceiptStatus, TypingState};
use chat_store::StoredMessage;
use serde_json::{json, Map, Value};

/// Copies the stored wire fields (`to`/`group`, `body`, `media`, `reply_to`) into `event`.
fn content_into(msg: &StoredMessage, event: &mut Map<String, Value>) {
    if let Value::Object(content) = &msg.content {
        for key in ["to", "group", "body", "media", "reply_to"] {
            if let Some(v) = content.get(key) {
                event.insert(key.to_owned(), v.clone());
            }
        }
    }
}

fn message_event(kind: &str, msg: &StoredMessage, n: Option<u64>) -> Map<String, Value> {
    let mut event = Map::new();
    event.insert("type".into(), kind.into());
    if kind == "sent" {
        event.insert("id".into(), msg.client_id.clone().into());
    }
    event.insert("msg_id".into(), msg.msg_id.to_string().into());
    event.insert("conv".into(), msg.conv.clone().into());
    event.insert("seq".into(), msg.seq.into());
    if kind == "msg" {
        event.insert("from".into(), msg.from.clone().into());
    }
    content_into(msg, &mut event);
    event.insert("ts".into(), msg.ts.into());
    if let Some(n) = n {
        event.insert("n".into(), n.into());
    }
    event
}

/// The `sent` event of the sender's own message, with the sender's inbox number.
pub(crate) fn sent_value(msg: &StoredMessage, n: u64) -> Value {
    Value::Object(message_event("sent", msg, Some(n)))
}

/// A `msg` event; `n` is the recipient's inbox number (none in history pages).
pub(crate) fn msg_value(msg: &StoredMessage, n: Option<u64>) -> Value {
    Value::Object(message_event("msg", msg, n))
}

pub(crate) fn sent(msg: &StoredMessage, n: u64) -> Vec<u8> {
    to_bytes(&sent_value(msg, n))
}

pub(crate) fn msg(msg: &StoredMessage, n: Option<u64>) -> Vec<u8> {
    to_bytes(&msg_value(msg, n))
}

/// Whether a stored entry is a membership change of a group (a system entry).
pub(crate) fn is_system(msg: &StoredMessage) -> bool {
    msg.content.get("system").is_some()
}

/// Whether `user` blocked the sender when the message was stored: such a message is never
/// delivered to them, and hidden from their history.
pub(crate) fn hidden_for(msg: &StoredMessage, user: &str) -> bool {
    msg.content
        .get("hidden")
        .and_then(Value::as_array)
        .is_some_and(|users| users.iter().any(|u| u.as_str() == Some(user)))
}

/// A conversation entry as its members see it: a `msg` event, or a `group` event for a
/// membership change. `n` is the member's inbox number (none in history pages).
pub(crate) fn entry_value(msg: &StoredMessage, n: Option<u64>) -> Value {
    let Some(system) = msg.content.get("system") else {
        return msg_value(msg, n);
    };
    let mut event = Map::new();
    event.insert("type".into(), "group".into());
    let group = msg.content.get("group").cloned().unwrap_or_default();
    event.insert("group".into(), group);
    for key in ["name", "event", "members"] {
        event.insert(key.into(), system.get(key).cloned().unwrap_or_default());
    }
    event.insert("by".into(), msg.from.clone().into());
    event.insert("seq".into(), msg.seq.into());
    event.insert("ts".into(), msg.ts.into());
    if let Some(n) = n {
        event.insert("n".into(), n.into());
    }
    Value::Object(event)
}

/// The `ok` answer to a request with no answer of its own (`group` for `group_create`).
pub(crate) fn ok(req: Option<&str>, request: &str, group: Option<&str>) -> Vec<u8> {
    ok_invited(req, request, group, &[])
}

/// [`ok`] for `group_create` and `group_add`, with the users `invited` instead of added.
pub(crate) fn ok_invited(
    req: Option<&str>,
    request: &str,
    group: Option<&str>,
    invited: &[String],
) -> Vec<u8> {
    let mut event = Map::new();
    event.insert("type".into(), "ok".into());
    if let Some(req) = req {
        event.insert("req".into(), req.into());
    }
    event.insert("request".into(), request.into());
    if let Some(group) = group {
        event.insert("group".into(), group.into());
    }
    if !invited.is_empty() {
        event.insert("invited".into(), invited.into());
    }
    to_bytes(&Value::Object(event))
}

/// A `group_invite` event without `n` (stored like this; `n` is added per inbox).
pub(crate) fn group_invite_body(group: &str, name: &str, by: &str, ts: u64) -> Value {
    json!({"type": "group_invite", "group": group, "name": name, "by": by, "ts": ts})
}

/// A `presence` event (`last_seen` only when offline and known).
pub(crate) fn presence(user: &str, online: bool, last_seen: Option<u64>) -> Vec<u8> {
    let mut event = json!({"type": "presence", "user": user, "state": if online { "online" } else { "offline" }});
    if let (Some(ts), false, Value::Object(map)) = (last_seen, online, &mut event) {
        map.insert("last_seen".into(), ts.into());
    }
    to_bytes(&event)
}

/// A `typing` event.
pub(crate) fn typing(from: &str, conv: &str, state: TypingState) -> Vec<u8> {
    to_bytes(&json!({"type": "typing", "from": from, "conv": conv, "state": state.as_str()}))
}

/// A `receipt` event without `n` (stored like this; `n` is added per inbox).
pub(crate) fn receipt_body(
    conv: &str,
    by: &str,
    status: ReceiptStatus,
    seq: u64,
    ts: u64,
) -> Value {
    let status = match status {
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Read => "read",
    };
    json!({"type": "receipt", "conv": conv, "by": by, "status": status, "seq": seq, "ts": ts})
}

/// A stored event with its inbox number added.
pub(crate) fn with_n_value(event: &Value, n: u64) -> Value {
    let mut event = event.clone();
    if let Value::Object(map) = &mut event {
        map.insert("n".into(), n.into());
    }
    event
}

pub(crate) fn with_n(event: &Value, n: u64) -> Vec<u8> {
    to_bytes(&with_n_value(event, n))
}

/// An `error` event.
pub(crate) fn error(
    req: Option<&str>,
    id: Option<&str>,
    code: ErrorCode,
    message: &str,
) -> Vec<u8> {
    let mut event = Map::new();
    event.insert("type".into(), "error".into());
    if let Some(req) = req {
        event.insert("req".into(), req.into());
    }
    if let Some(id) = id {
        event.insert("id".into(), id.into());
    }
    event.insert("code".into(), code.as_str().into());
    event.insert("message".into(), message.into());
    to_bytes(&Value::Object(event))
}

pub(crate) fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredMessage {
        StoredMessage {
            msg_id: 42,
            conv: "d.alice.bob".into(),
            seq: 3,
            from: "alice".into(),
            client_id: "c1".into(),
            ts: 1_700_000_000_000,
            content: json!({"to": "bob", "body": "hi"}),
        }
    }

    #[test]
    fn sent_and_msg_have_the_protocol_fields() {
        let sent: Value = serde_json::from_slice(&sent(&stored(), 7)).unwrap();
        assert_eq!(
            sent,
            json!({"type":"sent","id":"c1","msg_id":"42","conv":"d.alice.bob","seq":3,"to":"bob","body":"hi","ts":1_700_000_000_000u64,"n":7})
        );
        let msg: Value = serde_json::from_slice(&msg(&stored(), Some(2))).unwrap();
        assert_eq!(
            msg,
            json!({"type":"msg","msg_id":"42","conv":"d.alice.bob","seq":3,"from":"alice","to":"bob","body":"hi","ts":1_700_000_000_000u64,"n":2})
        );
        let history: Value = serde_json::from_slice(&msg_bytes_without_n()).unwrap();
        assert!(history.get("n").is_none());
    }

    fn msg_bytes_without_n() -> Vec<u8> {
        msg(&stored(), None)
    }

    #[test]
    fn errors_echo_req_and_id() {
        let e: Value = serde_json::from_slice(&error(
            Some("r1"),
            Some("c1"),
            ErrorCode::TooLarge,
            "body too long",
        ))
        .unwrap();
        assert_eq!(
            e,
            json!({"type":"error","req":"r1","id":"c1","code":"too_large","message":"body too long"})
        );
        let e: Value =
            serde_json::from_slice(&error(None, None, ErrorCode::BadRequest, "x")).unwrap();
        assert_eq!(
            e,
            json!({"type":"error","code":"bad_request","message":"x"})
        );
    }
}
