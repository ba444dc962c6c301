//! Requests between users that are not messages: presence subscriptions, typing indicators and
//! blocks; and push registration. They run on the blocking pool (they read the store), never touch a conversation
//! shard, and store nothing but blocks.
//!
//! Privacy rules: a user's presence is shown as far as their privacy settings allow
//! (`privacy.rs`), and never between two users when either has blocked the other. A
//! `presence_sub` entry that may see nothing is skipped silently, exactly like one for a user
//! who does not exist, so the answer never tells whether a user exists or blocked you.
//! Typing between blocked users is dropped silently for the same reason.

use chat_proto::{Conv, ErrorCode, TypingState};
use tracing::error;

use crate::presence::MAX_WATCHED_PER_DEVICE;
use crate::worker::Origin;
use crate::Services;
use crate::{events, privacy};

fn unavailable(services: &Services, origin: &Origin, e: &chat_store::StoreError) {
    error!(error = %e, "store read failed");
    services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
}

/// `presence_sub`: the current state of every user the requester may see, then changes of
/// them until the device disconnects; finally an `ok`.
pub(crate) fn presence_sub(services: &Services, origin: &Origin, users: &[String]) {
    let Some(device) = origin.device.as_deref() else {
        return;
    };
    let me = origin.user.as_str();
    let mut allowed = Vec::new();
    for user in users {
        match privacy::sight(&services.store, me, user) {
            Ok(sight) if !sight.none() => allowed.push((user.clone(), sight)),
            Ok(_) => {}
            Err(e) => return unavailable(services, origin, &e),
        }
    }
    let watched: Vec<String> = allowed.iter().map(|(user, _)| user.clone()).collect();
    if services.presence.subscribe(me, device, &watched).is_err() {
        let message = format!("users: a device may watch at most {MAX_WATCHED_PER_DEVICE} users");
        return services.error(origin, None, ErrorCode::TooLarge, &message);
    }
    for (user, sight) in &allowed {
        let online = services.presence.is_online(user);
        let last_seen = if online && sight.online {
            None
        } else {
            match services.store.last_seen(user) {
                Ok(ts) => ts,
                Err(e) => return unavailable(services, origin, &e),
            }
        };
        if let Some(event) = sight.event(user, online, last_seen) {
            services.publisher.to_device(me, Some(device), event);
        }
    }
    let ok = events::ok(origin.req.as_deref(), "presence_sub", None);
    services.publisher.to_device(me, Some(device), ok);
}

/// `typing`: forwarded at once to the other member(s) who are online, never stored.
pub(crate) fn typing(services: &Services, origin: &Origin, conv: &Conv, state: TypingState) {
    let me = origin.user.as_str();
    let recipients: Vec<String> = match conv {
        Conv::Direct(..) => {
            let Some(to) = conv.other(me) else { return };
            match services.store.user(to) {
                Ok(Some(_)) => vec![to.to_owned()],
                Ok(None) => {
                    let message = format!("to: no user {to:?}");
                    return services.error(origin, None, ErrorCode::NotFound, &message);
                }
                Err(e) => return unavailable(services, origin, &e),
            }
        }
        Conv::Group(group) => match services.store.group(group) {
            Ok(Some(record)) if record.is_member(me) => record
                .member_ids()
                .filter(|m| *m != me)
                .map(str::to_owned)
                .collect(),
            Ok(_) => {
                return services.error(
                    origin,
                    None,
                    ErrorCode::Forbidden,
                    "group: not a member of this group",
                )
            }
            Err(e) => return unavailable(services, origin, &e),
        },
    };
    let event = events::typing(me, &conv.to_string(), state);
    for user in recipients {
        if !services.presence.is_online(&user) {
            continue;
        }
        match services.store.blocked_either(me, &user) {
            Ok(false) => services.publisher.to_user(&user, event.clone()),
            Ok(true) => {}
            Err(e) => error!(error = %e, "block lookup failed"),
        }
    }
}

/// `block` / `unblock`: stored and flushed before the `ok`.
pub(crate) fn block(services: &Services, origin: &Origin, user: &str, on: bool) {
    let me = origin.user.as_str();
    if user == me {
        return services.error(
            origin,
            None,
            ErrorCode::BadRequest,
            "user: you cannot block yourself",
        );
    }
    if let Err(e) = services.store.set_block(me, user, on) {
        return unavailable(services, origin, &e);
    }
    if let Err(e) = services.flusher.flush() {
        error!(error = %e, "flush after block failed");
        return services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
    }
    let request = if on { "block" } else { "unblock" };
    let ok = events::ok(origin.req.as_deref(), request, None);
    services
        .publisher
        .to_device(me, origin.device.as_deref(), ok);
}

/// `push_register` / `push_unregister` for the requesting device (which must be enrolled and
/// not revoked). Stored and flushed before the `ok`.
pub(crate) fn push_token(services: &Services, origin: &Origin, token: Option<(&str, &str)>) {
    let me = origin.user.as_str();
    let Some(device) = origin.device.as_deref() else {
        return;
    };
    match services.store.device_active(me, device) {
        Ok(true) => {}
        Ok(false) => {
            let message = format!("device: no active device {device:?}");
            return services.error(origin, None, ErrorCode::NotFound, &message);
        }
        Err(e) => return unavailable(services, origin, &e),
    }
    let (stored, request) = match token {
        Some((platform, token)) => (
            services.store.set_push_token(me, device, platform, token),
            "push_register",
        ),
        None => (
            services.store.remove_push_token(me, device).map(drop),
            "push_unregister",
        ),
    };
    if let Err(e) = stored {
        return unavailable(services, origin, &e);
    }
    let ok = events::ok(origin.req.as_deref(), request, None);
    services.publisher.to_device(me, Some(device), ok);
}
