//! [`ErrorCode`] (the `code` of an `error` event) and [`RequestError`] (a refused request).

use crate::event::{ErrorEvent, Event};
use crate::types::wire_enum;

wire_enum! {
    /// The `code` of an `error` event: the kind of failure, for programs. The `message` next to
    /// it is for people.
    pub enum ErrorCode {
        /// Malformed request: not JSON, wrong field types, missing fields, invalid ids.
        BadRequest = "bad_request",
        /// Not allowed: not a member, not an admin, blocked.
        Forbidden = "forbidden",
        /// No such conversation, group or user.
        NotFound = "not_found",
        /// Over a size limit (payload, body).
        TooLarge = "too_large",
        /// Too many requests; retry later.
        RateLimited = "rate_limited",
        /// The request conflicts with the current state.
        Conflict = "conflict",
        /// The server cannot serve it right now (overloaded, shutting down); retry later.
        Unavailable = "unavailable",
        /// A server fault; the message never carries internals.
        Internal = "internal",
    }
}

/// A request (or status message) that was refused before reaching any handler.
///
/// Besides the reason it carries what the `error` event needs: `req` and `id` to echo, and
/// `device` to address it to (`/tenants/{u}/in/{device}`). These three are picked out of any
/// JSON object, even one that is otherwise invalid, whenever they have an acceptable form
/// (`req`: a string of at most 64 characters; `id`: a non-empty string of at most 64
/// characters; `device`: a valid device id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RequestError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// What exactly is wrong, naming the field (`"to: not a valid user id"`).
    pub message: String,
    /// The request's `req`, to echo.
    pub req: Option<String>,
    /// The request's `id` (a `send`'s message id), to echo.
    pub id: Option<String>,
    /// The device the answer should go to.
    pub device: Option<String>,
}

impl RequestError {
    /// The `error` event to send back.
    pub fn to_event(&self) -> Event {
        Event::Error(ErrorEvent {
            req: self.req.clone(),
            id: self.id.clone(),
            code: self.code,
            message: self.message.clone(),
        })
    }
}
