//! `chat-proto`: the wire types of the chatd MQTT protocol (v1), shared by the server's bridge
//! and the client SDK. It parses and validates every client request into a [`Request`] enum
//! and (de)serialises every server [`Event`] with the exact JSON field names of the contract
//! (`docs/PROTOCOL.md`). No I/O, no async, no server logic: bytes in, types out, and back.
//!
//! # Entry points
//!
//! - [`parse_request`]: a payload from `/tenants/{u}/out` -> [`Envelope`] (`req`, `device`,
//!   [`Request`]) or a [`RequestError`] that names the field at fault and carries the `req`,
//!   `id` and `device` to echo ([`RequestError::to_event`] builds the `error` event).
//! - [`parse_status`]: a payload from `/tenants/{u}/status` -> [`Status`] (online / offline).
//! - [`Event`]: everything the server publishes; [`Event::to_json`] writes a payload,
//!   [`Event::from_json`] reads one. [`Envelope::to_json`] writes requests, for clients.
//! - [`Conv`] and [`valid_id`]: conversation and user/device/group ids.
//!
//! # Layout
//!
//! - `ids.rs`: [`valid_id`], [`Conv`] (`d.{a}.{b}` / `g.{group_id}`) and [`ConvError`]
//! - `types.rs`: small shared wire types: [`Target`] (`to` | `group`), [`Media`], the string
//!   enums ([`ReceiptStatus`], [`TypingState`], [`Platform`], [`Role`], [`GroupChange`],
//!   [`PresenceState`], [`Audience`]) and the decimal-string form of `msg_id`
//! - `error.rs`: [`ErrorCode`] and [`RequestError`]
//! - `request.rs`: [`Envelope`], [`Request`] and its structs, [`Status`], the limits, and the
//!   parse entry points
//! - `parse.rs`: the fields of each request type, one function per type
//! - `fields.rs`: typed, validating access to a JSON object's fields (error messages)
//! - `event.rs`: [`Event`], one struct per event type, [`RawEvent`] for `sync` answers
//! - `tests/`: unit and property tests (compiled only for `cargo test`)

mod error;
mod event;
mod fields;
mod ids;
mod parse;
mod request;
mod types;

#[cfg(test)]
mod tests;

pub use error::{ErrorCode, RequestError};
pub use event::{
    ErrorEvent, Event, GroupEvent, GroupInfoAnswer, GroupInviteEvent, HistoryAnswer, HistoryEntry,
    Member, MsgEvent, OkAnswer, PresenceEvent, PrivacyEvent, RawEvent, ReceiptEvent, SentEvent,
    SyncAnswer, TypingEvent,
};
pub use ids::{valid_id, Conv, ConvError, MAX_ID_LEN};
pub use request::{
    parse_request, parse_status, Envelope, GroupCreateRequest, GroupMembersRequest, HistoryRequest,
    PrivacyRequest, PushRegisterRequest, ReceiptRequest, Request, SendRequest, Status, SyncRequest,
    TypingRequest, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, MAX_BODY_LEN, MAX_GROUP_NAME_LEN,
    MAX_PAYLOAD_LEN, MAX_PRESENCE_USERS, MAX_PUSH_TOKEN_LEN, MAX_REQ_LEN, MAX_SEND_ID_LEN,
    SYNC_DEFAULT_LIMIT, SYNC_MAX_LIMIT,
};
pub use types::{
    parse_msg_id, Audience, GroupChange, Media, Platform, PresenceState, ReceiptStatus, Role,
    Target, TypingState, MAX_CAPTION_LEN, MAX_MIME_LEN, MEDIA_ID_LEN,
};
