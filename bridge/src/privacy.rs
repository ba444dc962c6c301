//! Privacy settings (`privacy` request) and who may see whose presence.
//!
//! A user's `online` and `last_seen` settings say who sees each of them: `everyone`, their
//! `contacts` (the users they have written to, [`chat_store::Store::is_contact`]) or `nobody`.
//! Someone whose own `last_seen` is `nobody` sees nobody's last seen. Blocks, either way, stop
//! presence completely. [`sight`] applies these rules; `presence_sub` answers (`social.rs`)
//! and every later presence event (`presence.rs`) go through it, so what is produced after a
//! settings change follows the new settings. A change also re-sends each current watcher what
//! it may now see, and ends the subscriptions of those who may see nothing any more.

use chat_proto::{Audience, ErrorCode, PrivacyRequest};
use chat_store::{PrivacySettings, Store, StoreError};
use tracing::{error, warn};

use crate::events;
use crate::worker::Origin;
use crate::Services;

/// What a watcher may see of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sight {
    /// Whether the user is online.
    pub online: bool,
    /// When the user was last seen.
    pub last_seen: bool,
}

impl Sight {
    /// Nothing at all: the user is not shown to the watcher.
    pub(crate) fn none(self) -> bool {
        !self.online && !self.last_seen
    }

    /// The `presence` event of `user` for this watcher, if any: the true state when it may see
    /// it, else `offline` (to someone who may see only the last-seen time). `online` is the
    /// user's state, `last_seen` their stored time, shown only when allowed and offline.
    pub(crate) fn event(self, user: &str, online: bool, last_seen: Option<u64>) -> Option<Vec<u8>> {
        if self.none() {
            return None;
        }
        let last_seen = last_seen.filter(|_| self.last_seen);
        Some(events::presence(user, online && self.online, last_seen))
    }
}

/// What `watcher` may see of `user`'s presence now.
pub(crate) fn sight(store: &Store, watcher: &str, user: &str) -> Result<Sight, StoreError> {
    let hidden = Sight {
        online: false,
        last_seen: false,
    };
    if watcher == user || store.blocked_either(watcher, user)? {
        return Ok(hidden);
    }
    let theirs = store.privacy(user)?;
    let mut contact = None;
    let mut allows = |audience: chat_store::Audience| -> Result<bool, StoreError> {
        Ok(match audience {
            chat_store::Audience::Everyone => true,
            chat_store::Audience::Nobody => false,
            chat_store::Audience::Contacts => match contact {
                Some(known) => known,
                None => *contact.insert(store.is_contact(user, watcher)?),
            },
        })
    };
    let online = allows(theirs.online)?;
    let last_seen = allows(theirs.last_seen)?
        && store.privacy(watcher)?.last_seen != chat_store::Audience::Nobody;
    Ok(Sight { online, last_seen })
}

/// Whether `user`'s `groups` setting lets `adder` add them without asking.
pub(crate) fn may_add(store: &Store, adder: &str, user: &str) -> Result<bool, StoreError> {
    Ok(match store.privacy(user)?.groups {
        chat_store::Audience::Everyone => true,
        chat_store::Audience::Nobody => false,
        chat_store::Audience::Contacts => store.is_contact(user, adder)?,
    })
}

fn to_store(audience: Audience) -> chat_store::Audience {
    match audience {
        Audience::Everyone => chat_store::Audience::Everyone,
        Audience::Contacts => chat_store::Audience::Contacts,
        Audience::Nobody => chat_store::Audience::Nobody,
    }
}

fn to_wire(audience: chat_store::Audience) -> &'static str {
    let wire = match audience {
        chat_store::Audience::Everyone => Audience::Everyone,
        chat_store::Audience::Contacts => Audience::Contacts,
        chat_store::Audience::Nobody => Audience::Nobody,
    };
    wire.as_str()
}

fn unavailable(services: &Services, origin: &Origin, e: &dyn std::fmt::Display) {
    error!(error = %e, "privacy settings storage failed");
    services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
}

/// `privacy`: applies the settings given (stored and flushed), then answers the asking device
/// with the current settings; after a change the user's other connected devices get the same
/// event and the user's watchers are brought in line.
pub(crate) fn privacy(services: &Services, origin: &Origin, request: &PrivacyRequest) {
    let me = origin.user.as_str();
    let mut settings = match services.store.privacy(me) {
        Ok(settings) => settings,
        Err(e) => return unavailable(services, origin, &e),
    };
    let before = settings;
    let fields = [
        (request.last_seen, &mut settings.last_seen),
        (request.online, &mut settings.online),
        (request.groups, &mut settings.groups),
    ];
    for (asked, setting) in fields {
        if let Some(asked) = asked {
            *setting = to_store(asked);
        }
    }
    let changed = settings != before;
    if changed {
        if let Err(e) = services.store.set_privacy(me, &settings) {
            return unavailable(services, origin, &e);
        }
        if let Err(e) = services.flusher.flush() {
            return unavailable(services, origin, &e);
        }
    }
    let event = privacy_event(origin.req.as_deref(), &request.id, &settings);
    match origin.device.as_deref() {
        None => services.publisher.to_user(me, event),
        Some(device) => {
            if changed {
                for (other, _) in services.presence.devices(me) {
                    if other != device {
                        let copy = event.clone();
                        services.publisher.to_device(me, Some(&other), copy);
                    }
                }
            }
            services.publisher.to_device(me, Some(device), event);
        }
    }
    if changed {
        refresh_watchers(services, me);
    }
}

fn privacy_event(req: Option<&str>, id: &str, settings: &PrivacySettings) -> Vec<u8> {
    let mut event = serde_json::Map::new();
    event.insert("type".into(), "privacy".into());
    if let Some(req) = req {
        event.insert("req".into(), req.into());
    }
    event.insert("id".into(), id.into());
    event.insert("last_seen".into(), to_wire(settings.last_seen).into());
    event.insert("online".into(), to_wire(settings.online).into());
    event.insert("groups".into(), to_wire(settings.groups).into());
    events::to_bytes(&serde_json::Value::Object(event))
}

/// After `user` changed their settings: each device watching them gets what it may see now,
/// and those that may see nothing stop watching them.
fn refresh_watchers(services: &Services, user: &str) {
    let online = services.presence.is_online(user);
    let last_seen = match services.store.last_seen(user) {
        Ok(ts) => ts,
        Err(e) => return warn!(error = %e, "reading last-seen failed"),
    };
    for (watcher, device) in services.presence.watchers_of(user) {
        let sight = match sight(&services.store, &watcher, user) {
            Ok(sight) => sight,
            Err(e) => {
                warn!(error = %e, "privacy lookup failed");
                continue;
            }
        };
        if sight.none() {
            services.presence.unwatch(&watcher, &device, user);
        } else if let Some(event) = sight.event(user, online, last_seen) {
            services.publisher.to_device(&watcher, Some(&device), event);
        }
    }
}
