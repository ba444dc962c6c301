//! Who is online. The MQTT front end reports every connection's start and end; this module turns
//! that into per-user online state, stores last-seen when a user's last device goes, and answers
//! "is this user online?" for the workers (events are published only to online users; the rest
//! get them through `sync`, which keeps the routers' memory bounded).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chat_broker::ConnectionEvent;
use chat_store::Store;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, warn};

use crate::ids::now_ms;

/// The online table: user -> device -> its open connections and whether it said it is away
/// (`offline` on `/tenants/{u}/status` while still connected). A user is online while any
/// connected device is not away. The event consumer and the request intake write it; workers
/// read it.
#[derive(Clone, Default)]
pub struct Presence {
    online: Arc<Mutex<HashMap<String, HashMap<String, DeviceState>>>>,
}

/// One connected device.
#[derive(Debug, Default)]
struct DeviceState {
    connections: u32,
    away: bool,
}

fn any_present(devices: &HashMap<String, DeviceState>) -> bool {
    devices.values().any(|d| !d.away)
}

impl Presence {
    /// Whether any device of `user` is connected and not away.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().get(user).is_some_and(any_present)
    }

    /// Number of users with at least one connected device that is not away.
    pub fn online_users(&self) -> usize {
        self.lock().values().filter(|d| any_present(d)).count()
    }

    /// Records a connection (a new connection is present); true when the user just came online.
    pub fn connected(&self, user: &str, device: &str) -> bool {
        let mut online = self.lock();
        let devices = online.entry(user.to_owned()).or_default();
        let was = any_present(devices);
        let state = devices.entry(device.to_owned()).or_default();
        state.connections += 1;
        state.away = false;
        !was
    }

    /// Records the end of a connection; true when the user just went offline.
    pub fn disconnected(&self, user: &str, device: &str) -> bool {
        let mut online = self.lock();
        let Some(devices) = online.get_mut(user) else {
            return false;
        };
        let was = any_present(devices);
        if let Some(state) = devices.get_mut(device) {
            state.connections = state.connections.saturating_sub(1);
            if state.connections == 0 {
                devices.remove(device);
            }
        }
        let now = any_present(devices);
        if devices.is_empty() {
            online.remove(user);
        }
        was && !now
    }

    /// A connected device said it is `present` (`online`) or away (`offline`); a device with
    /// no open connection is ignored (its Last Will arrives after it is gone). Returns true when
    /// this took the user offline.
    pub fn status(&self, user: &str, device: &str, present: bool) -> bool {
        let mut online = self.lock();
        let Some(devices) = online.get_mut(user) else {
            return false;
        };
        let was = any_present(devices);
        if let Some(state) = devices.get_mut(device) {
            state.away = !present;
        }
        was && !any_present(devices)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, DeviceState>>> {
        self.online.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stores that `user` was last seen now, off the async runtime.
pub(crate) async fn store_last_seen(store: Store, user: String) {
    let stored = tokio::task::spawn_blocking(move || store.set_last_seen(&user, now_ms())).await;
    if let Ok(Err(e)) = stored {
        warn!(error = %e, "storing last-seen failed");
    }
}

/// Consumes the front end's connection events until the broker stops.
pub async fn track(
    presence: Presence,
    store: Store,
    mut events: UnboundedReceiver<ConnectionEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ConnectionEvent::Connected { user, device, .. } => {
                presence.connected(&user, &device);
            }
            ConnectionEvent::Disconnected {
                user,
                device,
                reason,
                ..
            } => {
                debug!(user, device, ?reason, "device offline");
                if presence.disconnected(&user, &device) {
                    store_last_seen(store.clone(), user).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Presence;

    #[test]
    fn online_until_the_last_connection_of_the_last_device_ends() {
        let p = Presence::default();
        assert!(p.connected("alice", "phone"));
        assert!(!p.connected("alice", "laptop"));
        // A take-over: the new connection of the phone opens before the old one closes.
        assert!(!p.connected("alice", "phone"));
        assert!(!p.disconnected("alice", "phone"));
        assert!(!p.disconnected("alice", "phone"));
        assert!(p.is_online("alice"));
        assert!(p.disconnected("alice", "laptop"));
        assert!(!p.is_online("alice"));
        assert!(!p.disconnected("bob", "x"), "unknown users are a no-op");
        assert_eq!(p.online_users(), 0);
    }

    #[test]
    fn a_device_that_says_offline_is_away_until_it_says_online_or_reconnects() {
        let p = Presence::default();
        p.connected("alice", "phone");
        p.connected("alice", "laptop");
        assert!(
            !p.status("alice", "phone", false),
            "the laptop is still there"
        );
        assert!(p.status("alice", "laptop", false), "now nobody is");
        assert!(!p.is_online("alice"));
        assert_eq!(p.online_users(), 0);
        assert!(!p.status("alice", "laptop", false), "already offline");
        assert!(
            !p.disconnected("alice", "laptop"),
            "an away device leaving changes nothing"
        );
        p.status("alice", "phone", true);
        assert!(p.is_online("alice"));
        p.status("alice", "phone", false);
        assert!(p.connected("alice", "phone"), "a new connection is present");
        // Status of devices that are not connected is ignored.
        assert!(!p.status("alice", "tablet", true));
        assert!(!p.status("bob", "x", true));
        assert!(!p.is_online("bob"));
    }
}
