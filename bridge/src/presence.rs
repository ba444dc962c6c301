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

/// The online table: user -> device -> open connections. One task writes it (the event
/// consumer); workers read it.
#[derive(Clone, Default)]
pub struct Presence {
    online: Arc<Mutex<HashMap<String, HashMap<String, u32>>>>,
}

impl Presence {
    /// Whether any device of `user` is connected.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    /// Number of users with at least one connected device.
    pub fn online_users(&self) -> usize {
        self.lock().len()
    }

    /// Records a connection; true when the user just came online.
    pub fn connected(&self, user: &str, device: &str) -> bool {
        let mut online = self.lock();
        let devices = online.entry(user.to_owned()).or_default();
        let first = devices.is_empty();
        *devices.entry(device.to_owned()).or_default() += 1;
        first
    }

    /// Records the end of a connection; true when the user's last connection ended.
    pub fn disconnected(&self, user: &str, device: &str) -> bool {
        let mut online = self.lock();
        let Some(devices) = online.get_mut(user) else {
            return false;
        };
        if let Some(count) = devices.get_mut(device) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                devices.remove(device);
            }
        }
        if devices.is_empty() {
            online.remove(user);
            return true;
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, u32>>> {
        self.online.lock().unwrap_or_else(|e| e.into_inner())
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
                    let store = store.clone();
                    let stored =
                        tokio::task::spawn_blocking(move || store.set_last_seen(&user, now_ms()))
                            .await;
                    if let Ok(Err(e)) = stored {
                        warn!(error = %e, "storing last-seen failed");
                    }
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
}
