//! The fields of each request type: one function per type, called by
//! [`parse_request`](crate::parse_request) once `req`, `device` and `type` are known.

use serde_json::Value;

use crate::error::ErrorCode;
use crate::fields::{quote, Check, Fields, Invalid};
use crate::request::{
    GroupCreateRequest, GroupMembersRequest, HistoryRequest, PrivacyRequest, PushRegisterRequest,
    ReceiptRequest, Request, SendRequest, SyncRequest, TypingRequest, HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT, MAX_BODY_LEN, MAX_GROUP_NAME_LEN, MAX_PRESENCE_USERS, MAX_PUSH_TOKEN_LEN,
    MAX_SEND_ID_LEN, SYNC_DEFAULT_LIMIT, SYNC_MAX_LIMIT,
};
use crate::types::{parse_msg_id, Media, Target, MAX_CAPTION_LEN, MAX_MIME_LEN, MEDIA_ID_LEN};

/// Types whose answer goes only to the asking device, so they are refused without `device`.
const NEEDS_DEVICE: &[&str] = &[
    "sync",
    "history",
    "group_info",
    "presence_sub",
    "push_register",
    "push_unregister",
];

/// The request of type `kind` from `f`; `has_device` says whether the envelope named a device.
pub(crate) fn request(kind: &str, f: Fields<'_>, has_device: bool) -> Check<Request> {
    if NEEDS_DEVICE.contains(&kind) && !has_device {
        return Err(Invalid::bad(format!("{kind} needs device")));
    }
    Ok(match kind {
        "send" => Request::Send(send(f)?),
        "receipt" => Request::Receipt(ReceiptRequest {
            conv: f.conv("conv")?,
            status: f.wire("status")?,
            seq: f.positive_u64("seq")?,
        }),
        "sync" => Request::Sync(SyncRequest {
            after: f.opt_u64("after")?.unwrap_or(0),
            limit: f.limit("limit", SYNC_DEFAULT_LIMIT, SYNC_MAX_LIMIT)?,
        }),
        "history" => Request::History(HistoryRequest {
            conv: f.conv("conv")?,
            before: f.opt_u64("before")?,
            limit: f.limit("limit", HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)?,
        }),
        "group_create" => Request::GroupCreate(GroupCreateRequest {
            name: group_name(f)?,
            members: f.ids("members", "user id", false, usize::MAX)?,
        }),
        "group_add" => Request::GroupAdd(group_members(f)?),
        "group_remove" => Request::GroupRemove(group_members(f)?),
        "group_leave" => Request::GroupLeave {
            group: f.id("group", "group id")?,
        },
        "group_join" => Request::GroupJoin {
            group: f.id("group", "group id")?,
        },
        "group_decline" => Request::GroupDecline {
            group: f.id("group", "group id")?,
        },
        "group_info" => Request::GroupInfo {
            group: f.id("group", "group id")?,
        },
        "presence_sub" => Request::PresenceSub {
            users: f.ids("users", "user id", true, MAX_PRESENCE_USERS)?,
        },
        "typing" => Request::Typing(TypingRequest {
            target: target(f, kind)?,
            state: f.wire("state")?,
        }),
        "block" => Request::Block {
            user: f.id("user", "user id")?,
        },
        "unblock" => Request::Unblock {
            user: f.id("user", "user id")?,
        },
        "push_register" => Request::PushRegister(push_register(f)?),
        "push_unregister" => Request::PushUnregister,
        "privacy" => Request::Privacy(PrivacyRequest {
            id: client_id(f)?,
            last_seen: f.opt_wire("last_seen")?,
            online: f.opt_wire("online")?,
            groups: f.opt_wire("groups")?,
        }),
        _ => return Err(Invalid::bad(format!("unknown type {}", quote(kind)))),
    })
}

/// The client's `id` of a `send` or `privacy`: 1 to 64 characters.
fn client_id(f: Fields<'_>) -> Check<String> {
    match f.opt_str_max("id", MAX_SEND_ID_LEN)? {
        None => Err(f.fail("id", "missing")),
        Some("") => Err(f.fail("id", "empty")),
        Some(id) => Ok(id.to_owned()),
    }
}

fn send(f: Fields<'_>) -> Check<SendRequest> {
    let id = client_id(f)?;
    let target = target(f, "send")?;
    let body = f.opt_str("body")?;
    match body {
        Some(b) if b.len() > MAX_BODY_LEN => {
            return Err(Invalid {
                code: ErrorCode::TooLarge,
                message: format!("body: longer than {MAX_BODY_LEN} bytes"),
            })
        }
        Some("") => return Err(f.fail("body", "empty; leave it out to send only media")),
        _ => {}
    }
    let media = match f.opt_object("media", "media.")? {
        Some(m) => Some(media(m)?),
        None => None,
    };
    let reply_to = match f.get("reply_to") {
        None => None,
        Some(Value::String(s)) => Some(parse_msg_id(s).ok_or_else(|| msg_id_expected(f))?),
        Some(_) => return Err(msg_id_expected(f)),
    };
    if body.is_none() && media.is_none() {
        return Err(Invalid::bad("send needs body or media"));
    }
    Ok(SendRequest {
        id,
        target,
        body: body.map(str::to_owned),
        media,
        reply_to,
    })
}

fn msg_id_expected(f: Fields<'_>) -> Invalid {
    f.fail(
        "reply_to",
        "expected a msg_id as a decimal string (\"123\", not 123)",
    )
}

/// `to` or `group`, exactly one.
fn target(f: Fields<'_>, kind: &str) -> Check<Target> {
    let to = f.opt_id("to", "user id")?;
    let group = f.opt_id("group", "group id")?;
    match (to, group) {
        (Some(user), None) => Ok(Target::To(user)),
        (None, Some(group)) => Ok(Target::Group(group)),
        (None, None) => Err(Invalid::bad(format!("{kind} needs to or group"))),
        (Some(_), Some(_)) => Err(Invalid::bad(format!("{kind} takes to or group, not both"))),
    }
}

fn media(f: Fields<'_>) -> Check<Media> {
    let media_id = f.str("media_id")?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if media_id.len() != MEDIA_ID_LEN || !media_id.bytes().all(hex) {
        return Err(f.fail(
            "media_id",
            "expected 64 lowercase hex characters (the media_id from the upload)",
        ));
    }
    let mime = f.str("mime")?;
    let printable = |b: u8| (b' '..=b'~').contains(&b);
    if !mime.contains('/') || !mime.bytes().all(printable) {
        return Err(f.fail("mime", "not a MIME type (type/subtype, printable ASCII)"));
    }
    if mime.len() > MAX_MIME_LEN {
        return Err(f.fail("mime", format!("longer than {MAX_MIME_LEN} characters")));
    }
    Ok(Media {
        media_id: media_id.to_owned(),
        mime: mime.to_owned(),
        size: f.positive_u64("size")?,
        caption: f
            .opt_str_max("caption", MAX_CAPTION_LEN)?
            .map(str::to_owned),
    })
}

/// The trimmed group name: 1 to 100 characters, no control characters.
fn group_name(f: Fields<'_>) -> Check<String> {
    let name = f.str("name")?.trim();
    if name.is_empty() {
        return Err(f.fail("name", "empty"));
    }
    if name.chars().nth(MAX_GROUP_NAME_LEN).is_some() {
        return Err(f.fail(
            "name",
            format!("longer than {MAX_GROUP_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(f.fail("name", "contains control characters"));
    }
    Ok(name.to_owned())
}

fn group_members(f: Fields<'_>) -> Check<GroupMembersRequest> {
    Ok(GroupMembersRequest {
        group: f.id("group", "group id")?,
        members: f.ids("members", "user id", true, usize::MAX)?,
    })
}

fn push_register(f: Fields<'_>) -> Check<PushRegisterRequest> {
    let platform = f.wire("platform")?;
    let token = f.str("token")?;
    if token.is_empty()
        || token.len() > MAX_PUSH_TOKEN_LEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(f.fail(
            "token",
            format!("expected 1 to {MAX_PUSH_TOKEN_LEN} visible ASCII characters"),
        ));
    }
    Ok(PushRegisterRequest {
        platform,
        token: token.to_owned(),
    })
}
