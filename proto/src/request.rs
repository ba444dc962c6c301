//! Client requests (topic `/tenants/{u}/out`) and status messages (`/tenants/{u}/status`):
//! the types, and the entry points [`parse_request`] and [`parse_status`].
//!
//! Parsing checks, in this order: payload size, JSON, object, `req`, `device`, `type`, then
//! the fields of that type (and whether it needs a `device`). The first failure is reported.
//! Unknown extra fields are ignored, and a field set to `null` counts as absent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ErrorCode, RequestError};
use crate::fields::{quote, Check, Fields, Invalid};
use crate::ids::Conv;
use crate::parse;
use crate::types::{opt_msg_id_str, Audience, Media, Platform, ReceiptStatus, Target, TypingState};

/// Largest payload accepted on `/out` or `/status`; larger ones are refused with `too_large`
/// before any JSON parsing.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;
/// Longest `req`, in characters.
pub const MAX_REQ_LEN: usize = 64;
/// Longest `send` `id`, in characters.
pub const MAX_SEND_ID_LEN: usize = 64;
/// Longest `send` `body`, in bytes of UTF-8 (64 KiB); more is `too_large`.
pub const MAX_BODY_LEN: usize = 65_536;
/// `sync` `limit` when absent.
pub const SYNC_DEFAULT_LIMIT: usize = 100;
/// Larger `sync` limits are clamped to this.
pub const SYNC_MAX_LIMIT: usize = 1000;
/// `history` `limit` when absent.
pub const HISTORY_DEFAULT_LIMIT: usize = 50;
/// Larger `history` limits are clamped to this.
pub const HISTORY_MAX_LIMIT: usize = 200;
/// Longest group name (after trimming), in characters.
pub const MAX_GROUP_NAME_LEN: usize = 100;
/// Most users in one `presence_sub`.
pub const MAX_PRESENCE_USERS: usize = 256;
/// Longest push token, in characters.
pub const MAX_PUSH_TOKEN_LEN: usize = 4096;

/// A parsed, validated request with its routing fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    /// Client-chosen request id (at most 64 characters), echoed in the answer or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The sending device; answers go to `/tenants/{u}/in/{device}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// What is asked.
    #[serde(flatten)]
    pub request: Request,
}

impl Envelope {
    /// The request as a JSON payload for `/tenants/{u}/out`; [`parse_request`] reads it back
    /// unchanged. For clients (the SDK, the CLI, tests).
    pub fn to_json(&self) -> Vec<u8> {
        // Every field is a string, integer, bool, sequence or struct of those: serde_json
        // cannot fail on them.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One request, by `type`. Field rules are on each struct; ids are valid ids, conversations
/// canonical, lists of ids deduplicated (first occurrence kept), limits defaulted and clamped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// `send`: a message to a user or group.
    Send(SendRequest),
    /// `receipt`: everything in a conversation up to `seq` was delivered or read.
    Receipt(ReceiptRequest),
    /// `sync`: inbox events after `n` (needs `device`).
    Sync(SyncRequest),
    /// `history`: a page of a conversation, newest first (needs `device`).
    History(HistoryRequest),
    /// `group_create`: a new group; the sender is its admin.
    GroupCreate(GroupCreateRequest),
    /// `group_add`: add members (admins only).
    GroupAdd(GroupMembersRequest),
    /// `group_remove`: remove members (admins only).
    GroupRemove(GroupMembersRequest),
    /// `group_leave`: the sender leaves the group.
    GroupLeave {
        /// The group id.
        group: String,
    },
    /// `group_join`: accept a pending invite into a group.
    GroupJoin {
        /// The group id.
        group: String,
    },
    /// `group_decline`: refuse (and drop) a pending invite into a group.
    GroupDecline {
        /// The group id.
        group: String,
    },
    /// `group_info`: the group's name and members (needs `device`).
    GroupInfo {
        /// The group id.
        group: String,
    },
    /// `presence_sub`: current state and then changes of these users (needs `device`).
    PresenceSub {
        /// 1 to 256 user ids, deduplicated.
        users: Vec<String>,
    },
    /// `typing`: a typing indicator, forwarded and never stored.
    Typing(TypingRequest),
    /// `block`: stop delivery and pushes from `user`.
    Block {
        /// The user to block.
        user: String,
    },
    /// `unblock`: undo a `block`.
    Unblock {
        /// The user to unblock.
        user: String,
    },
    /// `push_register`: push notifications for `device` (needs `device`).
    PushRegister(PushRegisterRequest),
    /// `privacy`: change (the settings given) and read the privacy settings.
    Privacy(PrivacyRequest),
    /// `push_unregister`: no more pushes for `device` (needs `device`).
    PushUnregister,
}

impl Request {
    /// The wire `type` of this request (`"send"`, `"group_add"` ...).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Send(_) => "send",
            Request::Receipt(_) => "receipt",
            Request::Sync(_) => "sync",
            Request::History(_) => "history",
            Request::GroupCreate(_) => "group_create",
            Request::GroupAdd(_) => "group_add",
            Request::GroupRemove(_) => "group_remove",
            Request::GroupLeave { .. } => "group_leave",
            Request::GroupJoin { .. } => "group_join",
            Request::GroupDecline { .. } => "group_decline",
            Request::GroupInfo { .. } => "group_info",
            Request::PresenceSub { .. } => "presence_sub",
            Request::Typing(_) => "typing",
            Request::Block { .. } => "block",
            Request::Unblock { .. } => "unblock",
            Request::PushRegister(_) => "push_register",
            Request::PushUnregister => "push_unregister",
            Request::Privacy(_) => "privacy",
        }
    }
}

/// `send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendRequest {
    /// The client's id for this message (1 to 64 characters), reused on every retry: the
    /// server stores a message once per `(sender, id)`.
    pub id: String,
    /// `to` a user or `group`: exactly one.
    #[serde(flatten)]
    pub target: Target,
    /// Text, 1 to 65,536 bytes of UTF-8 (more is `too_large`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// An uploaded file. At least one of `body` and `media` is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// The `msg_id` this message answers (a decimal string on the wire).
    #[serde(
        with = "opt_msg_id_str",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub reply_to: Option<u64>,
}

/// `receipt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptRequest {
    /// The conversation.
    pub conv: Conv,
    /// `delivered` or `read` (`read` implies `delivered`).
    pub status: ReceiptStatus,
    /// Everything up to this `seq` (at least 1) is covered.
    pub seq: u64,
}

/// `sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRequest {
    /// Inbox events with `n > after` (default 0: from the start).
    pub after: u64,
    /// At most this many events: default 100, clamped to 1000.
    pub limit: usize,
}

/// `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRequest {
    /// The conversation.
    pub conv: Conv,
    /// Only messages with `seq < before`; absent: from the newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// At most this many messages: default 50, clamped to 200.
    pub limit: usize,
}

/// `group_create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupCreateRequest {
    /// The name, trimmed: 1 to 100 characters, no control characters.
    pub name: String,
    /// Initial members besides the creator; may be empty.
    pub members: Vec<String>,
}

/// `group_add` and `group_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMembersRequest {
    /// The group id.
    pub group: String,
    /// At least one user id.
    pub members: Vec<String>,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypingRequest {
    /// `to` a user or `group`: exactly one.
    #[serde(flatten)]
    pub target: Target,
    /// `start` or `stop`.
    pub state: TypingState,
}

/// `push_register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushRegisterRequest {
    /// `fcm` or `apns`.
    pub platform: Platform,
    /// The push token: 1 to 4096 visible ASCII characters (no spaces).
    pub token: String,
}

/// `privacy`: settings left out stay as they are; none at all only reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivacyRequest {
    /// The client's id for this change (1 to 64 characters), echoed in the `privacy` event.
    pub id: String,
    /// Who sees the user's last-seen time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Audience>,
    /// Who sees whether the user is online.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<Audience>,
    /// Who may add the user to groups (anyone else sends an invite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Audience>,
}

/// A message on `/tenants/{u}/status`: `{"type":"online","device":d}` after connecting,
/// `{"type":"offline","device":d}` as the Last Will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Status {
    /// The device connected.
    Online {
        /// The device id.
        device: String,
    },
    /// The device disconnected.
    Offline {
        /// The device id.
        device: String,
    },
}

impl Status {
    /// The device this status is about.
    pub fn device(&self) -> &str {
        match self {
            Status::Online { device } | Status::Offline { device } => device,
        }
    }

    /// The status as a JSON payload (e.g. for the Last Will).
    pub fn to_json(&self) -> Vec<u8> {
        // Strings only: serde_json cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Parses and validates a request published on `/tenants/{u}/out`.
///
/// On failure the [`RequestError`] says what is wrong (naming the field) and carries `req`,
/// `id` and `device` picked from the payload, so the `error` event can echo them and go to
/// that device.
pub fn parse_request(payload: &[u8]) -> Result<Envelope, RequestError> {
    let map = parse_object(payload)?;
    let fields = Fields::new(&map);
    parse_envelope(fields).map_err(|invalid| echo_error(fields, invalid))
}

/// Parses a message published on `/tenants/{u}/status`.
pub fn parse_status(payload: &[u8]) -> Result<Status, RequestError> {
    let map = parse_object(payload)?;
    let fields = Fields::new(&map);
    parse_status_fields(fields).map_err(|invalid| echo_error(fields, invalid))
}

/// Size guard, then JSON, then "is an object".
fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, RequestError> {
    let bare = |code, message: String| RequestError {
        code,
        message,
        req: None,
        id: None,
        device: None,
    };
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(bare(
            ErrorCode::TooLarge,
            format!("payload: larger than {MAX_PAYLOAD_LEN} bytes"),
        ));
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bare(ErrorCode::BadRequest, "not a JSON object".to_owned())),
        Err(e) => Err(bare(ErrorCode::BadRequest, format!("not valid JSON: {e}"))),
    }
}

fn parse_envelope(fields: Fields<'_>) -> Check<Envelope> {
    let req = fields.opt_str_max("req", MAX_REQ_LEN)?.map(str::to_owned);
    let device = fields.opt_id("device", "device id")?;
    let kind = fields.str("type")?;
    let request = parse::request(kind, fields, device.is_some())?;
    Ok(Envelope {
        req,
        device,
        request,
    })
}

fn parse_status_fields(fields: Fields<'_>) -> Check<Status> {
    let kind = fields.str("type")?;
    if kind != "online" && kind != "offline" {
        return Err(Invalid::bad(format!("unknown type {}", quote(kind))));
    }
    let device = fields.id("device", "device id")?;
    Ok(if kind == "online" {
        Status::Online { device }
    } else {
        Status::Offline { device }
    })
}

/// Attaches the echo fields that have an acceptable form, whatever else is wrong.
fn echo_error(fields: Fields<'_>, invalid: Invalid) -> RequestError {
    let echo = |key: &str, max: usize| {
        fields
            .opt_str_max(key, max)
            .ok()
            .flatten()
            .map(str::to_owned)
    };
    RequestError {
        code: invalid.code,
        message: invalid.message,
        req: echo("req", MAX_REQ_LEN),
        id: echo("id", MAX_SEND_ID_LEN).filter(|id| !id.is_empty()),
        device: fields.opt_id("device", "device id").ok().flatten(),
    }
}
