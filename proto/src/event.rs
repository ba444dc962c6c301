//! Server events (`/tenants/{u}/in`) and answers (`/tenants/{u}/in/{device}`): [`Event`].
//!
//! Optional fields are left out, never `null`. `msg_id` travels as a decimal string, `ts` and
//! `last_seen` are unix milliseconds. `n` is on stored events only (`sent`, `msg`, `receipt`,
//! `group`); messages inside a `history` answer carry none. Unknown fields are ignored when
//! reading, so clients keep working when the server adds fields.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::ErrorCode;
use crate::ids::Conv;
use crate::types::{
    msg_id_str, opt_msg_id_str, Audience, GroupChange, Media, PresenceState, ReceiptStatus, Role,
    Target, TypingState,
};

/// Anything the server publishes to a client, tagged by `"type"`.
///
/// `ok` (`{"type":"ok","req":..,"request":"push_register"}`) is the answer to a request that
/// has no answer of its own (`push_register`, `group_add`, `block` ...), sent to the `device`
/// the request named. For `group_create` it also carries the new `group` id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// `sent`: the sender's message is durable.
    Sent(SentEvent),
    /// `msg`: a message for a recipient.
    Msg(MsgEvent),
    /// `receipt`: messages were delivered to or read by `by`.
    Receipt(ReceiptEvent),
    /// `group`: a group was created or its membership changed.
    Group(GroupEvent),
    /// `presence`: a user's online state (not stored).
    Presence(PresenceEvent),
    /// `typing`: a typing indicator (not stored).
    Typing(TypingEvent),
    /// `error`: a request was refused.
    Error(ErrorEvent),
    /// `sync`: the answer to `sync`.
    Sync(SyncAnswer),
    /// `history`: the answer to `history`.
    History(HistoryAnswer),
    /// `group_info`: the answer to `group_info`.
    GroupInfo(GroupInfoAnswer),
    /// `ok`: the answer to a request with no other answer.
    Ok(OkAnswer),
    /// `privacy`: the user's privacy settings (not stored).
    Privacy(PrivacyEvent),
    /// `group_invite`: someone asks the user to join a group.
    GroupInvite(GroupInviteEvent),
}

/// A valid JSON error event, sent if serialisation ever failed (it cannot: see
/// [`Event::to_json`]).
const SERIALISE_FAILED: &[u8] =
    br#"{"type":"error","code":"internal","message":"event serialisation failed"}"#;

impl Event {
    /// The event as a JSON payload.
    pub fn to_json(&self) -> Vec<u8> {
        // Events hold strings, integers, bools, sequences and already valid raw JSON, so
        // serde_json cannot fail; the fallback only keeps this path free of panics.
        serde_json::to_vec(self).unwrap_or_else(|_| SERIALISE_FAILED.to_vec())
    }

    /// Reads an event payload (for clients).
    pub fn from_json(payload: &[u8]) -> Result<Event, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// The inbox number `n` of a stored event; `None` for the others (and for a `msg` inside a
    /// history answer).
    pub fn n(&self) -> Option<u64> {
        match self {
            Event::Sent(e) => Some(e.n),
            Event::Msg(e) => e.n,
            Event::Receipt(e) => Some(e.n),
            Event::Group(e) => e.n,
            Event::GroupInvite(e) => Some(e.n),
            _ => None,
        }
    }
}

/// `sent`: `{type, id, msg_id, conv, seq, to|group, body?, media?, reply_to?, ts, n}`, to all
/// devices of the sender once the message is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEvent {
    /// The client's id from the `send`.
    pub id: String,
    /// The server's message id (decimal string on the wire).
    #[serde(with = "msg_id_str")]
    pub msg_id: u64,
    /// The conversation.
    pub conv: Conv,
    /// Position in the conversation.
    pub seq: u64,
    /// `to` or `group`, as sent.
    #[serde(flatten)]
    pub target: Target,
    /// The text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The attached file, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// The message this one answers.
    #[serde(
        default,
        with = "opt_msg_id_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<u64>,
    /// When the server stored it, unix ms.
    pub ts: u64,
    /// The sender's inbox number for this event.
    pub n: u64,
}

/// `msg`: `{type, msg_id, conv, seq, from, to|group, body?, media?, reply_to?, ts, n, from_deleted?}`, to
/// every recipient; also the entries of a `history` answer (without `n`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgEvent {
    /// The server's message id (decimal string on the wire).
    #[serde(with = "msg_id_str")]
    pub msg_id: u64,
    /// The conversation.
    pub conv: Conv,
    /// Position in the conversation.
    pub seq: u64,
    /// The sender.
    pub from: String,
    /// `to` (the recipient of a 1:1 message) or `group`.
    #[serde(flatten)]
    pub target: Target,
    /// The text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The attached file, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// The message this one answers.
    #[serde(
        default,
        with = "opt_msg_id_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_to: Option<u64>,
    /// When the server stored it, unix ms.
    pub ts: u64,
    /// The recipient's inbox number; absent in `history` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// The sender has deleted their account (`"from_deleted":true`; absent otherwise): show the
    /// author as a deleted account.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_deleted: bool,
}

/// `receipt`: `{type, conv, by, status, seq, ts, n}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvent {
    /// The conversation.
    pub conv: Conv,
    /// The user whose devices got (or read) the messages.
    pub by: String,
    /// `delivered` or `read`.
    pub status: ReceiptStatus,
    /// Everything up to this `seq` is covered.
    pub seq: u64,
    /// When the server stored it, unix ms.
    pub ts: u64,
    /// The receiving user's inbox number for this event.
    pub n: u64,
}

/// A group member and their role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The user id.
    pub user: String,
    /// `admin` or `member`.
    pub role: Role,
}

/// `group`: `{type, group, name, event, members:[{user, role}], by, seq, ts, n}`. A membership
/// change is also an entry of the group's conversation: `seq` is its place there, and `history`
/// answers list it (without `n`) among the messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    /// The group id.
    pub group: String,
    /// The group's name.
    pub name: String,
    /// What happened.
    pub event: GroupChange,
    /// The members concerned (all of them for `created`).
    pub members: Vec<Member>,
    /// Who did it.
    pub by: String,
    /// Position in the group's conversation.
    pub seq: u64,
    /// When, unix ms.
    pub ts: u64,
    /// The receiving user's inbox number; absent in `history` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// `by` has deleted their account since (`"from_deleted":true`; absent otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_deleted: bool,
}

/// `presence`: `{type, user, state, last_seen?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// The user.
    pub user: String,
    /// `online` or `offline`.
    pub state: PresenceState,
    /// When the user's last device went offline, unix ms (only when known and offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
}

/// `typing`: `{type, from, conv, state}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingEvent {
    /// Who is typing.
    pub from: String,
    /// The conversation.
    pub conv: Conv,
    /// `start` or `stop`.
    pub state: TypingState,
}

/// `error`: `{type, req?, id?, code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// The refused request's `req`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The refused `send`'s `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The kind of failure.
    pub code: ErrorCode,
    /// What is wrong, for people.
    pub message: String,
}

/// `sync` answer: `{type, req?, events:[...], last, more}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAnswer {
    /// The request's `req`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Stored events with `n > after`, oldest first, embedded as they were stored.
    pub events: Vec<RawEvent>,
    /// The `n` to send as `after` next time (the last event's, or `after` when none).
    pub last: u64,
    /// Whether more events follow `last`.
    pub more: bool,
}

/// `history` answer: `{type, req?, conv, messages:[...], more}`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryAnswer {
    /// The request's `req`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The conversation.
    pub conv: Conv,
    /// The conversation's entries, newest first, without `n`: `msg` events, and in groups also
    /// `group` events (membership changes).
    pub messages: Vec<HistoryEntry>,
    /// Whether older entries exist.
    pub more: bool,
}

/// One entry of a `history` answer, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryEntry {
    /// A message.
    Msg(MsgEvent),
    /// A group membership change.
    Group(GroupEvent),
}

impl HistoryEntry {
    /// The entry's place in its conversation.
    pub fn seq(&self) -> u64 {
        match self {
            HistoryEntry::Msg(m) => m.seq,
            HistoryEntry::Group(g) => g.seq,
        }
    }
}

/// `group_info` answer: `{type, req?, group, name, members}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfoAnswer {
    /// The request's `req`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The group id.
    pub group: String,
    /// The group's name.
    pub name: String,
    /// Every member with their role.
    pub members: Vec<Member>,
}

/// `ok` answer: `{type, req?, request, group?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkAnswer {
    /// The request's `req`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The request's `type` (`"push_register"` ...).
    pub request: String,
    /// For `group_create`: the new group's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// For `group_create` and `group_add`: the users whose `groups` setting made them invited
    /// instead of added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invited: Vec<String>,
}

/// `privacy`: `{type, req?, id, last_seen, online, groups}`, the settings after a `privacy`
/// request, to the asking device and (after a change) the user's other devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyEvent {
    /// The request's `req`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The request's `id`.
    pub id: String,
    /// Who sees the user's last-seen time.
    pub last_seen: Audience,
    /// Who sees whether the user is online.
    pub online: Audience,
    /// Who may add the user to groups.
    pub groups: Audience,
}

/// `group_invite`: `{type, group, name, by, ts, n}`, stored in the invitee's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInviteEvent {
    /// The group id.
    pub group: String,
    /// The group's name.
    pub name: String,
    /// Who invited.
    pub by: String,
    /// When, unix ms.
    pub ts: u64,
    /// The invitee's inbox number.
    pub n: u64,
}

/// One stored event, as JSON text, embedded verbatim in a `sync` answer.
///
/// Serialising writes the text as it is (no re-encoding). Reading goes through a
/// [`serde_json::Value`], because raw values cannot be borrowed from inside a tagged enum; the
/// text is then compact with sorted keys. Equality compares the JSON values, not the text.
#[derive(Debug, Clone)]
pub struct RawEvent(Box<RawValue>);

impl RawEvent {
    /// Wraps stored JSON text; fails if it is not valid JSON.
    pub fn from_json(json: String) -> Result<RawEvent, serde_json::Error> {
        RawValue::from_string(json).map(RawEvent)
    }

    /// The JSON of `event` (serialising an [`Event`] does not fail in practice).
    pub fn from_event(event: &Event) -> Result<RawEvent, serde_json::Error> {
        serde_json::value::to_raw_value(event).map(RawEvent)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Reads the embedded event.
    pub fn parse(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for RawEvent {
    fn eq(&self, other: &RawEvent) -> bool {
        let value = |raw: &RawEvent| serde_json::from_str::<serde_json::Value>(raw.get()).ok();
        self.get() == other.get() || value(self) == value(other)
    }
}

impl Eq for RawEvent {}

impl Serialize for RawEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawEvent, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        serde_json::value::to_raw_value(&value)
            .map(RawEvent)
            .map_err(serde::de::Error::custom)
    }
}
