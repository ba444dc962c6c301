//! Who is online. The MQTT front end reports every connection's start and end; this module turns
//! that into per-user online state, stores last-seen when a user's last device goes, and answers
//! "is this user online?" for the workers (events are published only to online users; the rest
//! get them through `sync`, which keeps the routers' memory bounded).
//!
//! It also keeps the presence subscriptions (`presence_sub`): which devices watch which users.
//! A subscription lasts as long as the watching device is connected. When a user comes online or
//! goes offline, every watching device gets a `presence` event on its own answer topic, as far
//! as the user's privacy settings let that watcher see it (`privacy.rs`, checked again for
//! every event, so a settings change or a block applies at once).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chat_broker::ConnectionEvent;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, warn};

use crate::ids::now_ms;
use crate::{privacy, Services};

/// Most users one device may watch at once.
pub const MAX_WATCHED_PER_DEVICE: usize = 1024;

/// The online table: user -> device -> its open connections and whether it said it is away
/// (`offline` on `/tenants/{u}/status` while still connected). A user is online while any
/// connected device is not away. The event consumer and the request intake write it; workers
/// read it.
#[derive(Clone, Default)]
pub struct Presence {
    online: Arc<Mutex<HashMap<String, HashMap<String, DeviceState>>>>,
    watch: Arc<Mutex<Watches>>,
}

/// Presence subscriptions, both ways round.
#[derive(Default)]
struct Watches {
    /// watched user -> watching (user, device)
    watchers: HashMap<String, HashSet<(String, String)>>,
    /// watching (user, device) -> watched users
    watching: HashMap<(String, String), HashSet<String>>,
}

/// A change of a user's online state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The user's first present device appeared.
    CameOnline,
    /// The user's last present device went.
    WentOffline,
    /// Nothing changed for the user as a whole.
    None,
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

    /// The connected devices of `user`, each with whether it said it is away, by device id.
    pub fn devices(&self, user: &str) -> Vec<(String, bool)> {
        let mut devices: Vec<(String, bool)> = self
            .lock()
            .get(user)
            .map(|d| d.iter().map(|(id, s)| (id.clone(), s.away)).collect())
            .unwrap_or_default();
        devices.sort();
        devices
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
        let mut device_gone = false;
        if let Some(state) = devices.get_mut(device) {
            state.connections = state.connections.saturating_sub(1);
            if state.connections == 0 {
                devices.remove(device);
                device_gone = true;
            }
        }
        let now = any_present(devices);
        if devices.is_empty() {
            online.remove(user);
        }
        drop(online);
        if device_gone {
            self.unsubscribe_device(user, device);
        }
        was && !now
    }

    /// A connected device said it is `present` (`online`) or away (`offline`); a device with
    /// no open connection is ignored (its Last Will arrives after it is gone).
    pub fn status(&self, user: &str, device: &str, present: bool) -> Transition {
        let mut online = self.lock();
        let Some(devices) = online.get_mut(user) else {
            return Transition::None;
        };
        let was = any_present(devices);
        if let Some(state) = devices.get_mut(device) {
            state.away = !present;
        }
        match (was, any_present(devices)) {
            (false, true) => Transition::CameOnline,
            (true, false) => Transition::WentOffline,
            _ => Transition::None,
        }
    }

    /// Adds `watched` to what `(user, device)` watches. Fails, changing nothing, if the device
    /// would watch more than [`MAX_WATCHED_PER_DEVICE`] users.
    pub fn subscribe(&self, user: &str, device: &str, watched: &[String]) -> Result<(), usize> {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_owned(), device.to_owned());
        let current = watch.watching.get(&key).map_or(0, HashSet::len);
        let new = watched
            .iter()
            .filter(|w| !watch.watching.get(&key).is_some_and(|s| s.contains(*w)))
            .count();
        if current + new > MAX_WATCHED_PER_DEVICE {
            return Err(MAX_WATCHED_PER_DEVICE);
        }
        for w in watched {
            watch
                .watchers
                .entry(w.clone())
                .or_default()
                .insert(key.clone());
        }
        watch
            .watching
            .entry(key)
            .or_default()
            .extend(watched.iter().cloned());
        Ok(())
    }

    /// The devices watching `user`: (user, device) pairs.
    pub fn watchers_of(&self, user: &str) -> Vec<(String, String)> {
        let watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        watch
            .watchers
            .get(user)
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Ends the watch of `(user, device)` on `watched`.
    pub fn unwatch(&self, user: &str, device: &str, watched: &str) {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_owned(), device.to_owned());
        if let Some(set) = watch.watching.get_mut(&key) {
            set.remove(watched);
            if set.is_empty() {
                watch.watching.remove(&key);
            }
        }
        if let Some(set) = watch.watchers.get_mut(watched) {
            set.remove(&key);
            if set.is_empty() {
                watch.watchers.remove(watched);
            }
        }
    }

    /// Drops every subscription of a device that is gone.
    fn unsubscribe_device(&self, user: &str, device: &str) {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_owned(), device.to_owned());
        let Some(watched) = watch.watching.remove(&key) else {
            return;
        };
        for w in watched {
            if let Some(set) = watch.watchers.get_mut(&w) {
                set.remove(&key);
                if set.is_empty() {
                    watch.watchers.remove(&w);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, DeviceState>>> {
        self.online.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Announces a user's new online state, off the async runtime: stores last-seen when they
/// went offline, then tells every device watching them what its user may see of it: coming
/// online only to those who may see the online state, going offline to those who may see it
/// or the last-seen time (which comes only to the latter).
pub(crate) async fn changed(services: Arc<Services>, user: String, online: bool) {
    let done = tokio::task::spawn_blocking(move || announce(&services, &user, online)).await;
    if done.is_err() {
        warn!("announcing a presence change failed");
    }
}

fn announce(services: &Services, user: &str, online: bool) {
    let mut last_seen = None;
    if !online {
        let now = now_ms();
        match services.store.set_last_seen(user, now) {
            Ok(()) => last_seen = Some(now),
            Err(e) => warn!(error = %e, "storing last-seen failed"),
        }
    }
    let watchers = services.presence.watchers_of(user);
    if watchers.is_empty() {
        return;
    }
    for (watcher, device) in watchers {
        let sight = match privacy::sight(&services.store, &watcher, user) {
            Ok(sight) => sight,
            Err(e) => {
                warn!(error = %e, "privacy lookup failed");
                continue;
            }
        };
        if online && !sight.online {
            continue;
        }
        if let Some(event) = sight.event(user, online, last_seen) {
            services.publisher.to_device(&watcher, Some(&device), event);
        }
    }
}

/// The front end's connection events, shared by the task that follows them and by those that
/// catch up on them first: the intake before it acts on a device's status, the workers and the
/// fan-out before they publish to the users found online. The front end queues a connection's
/// `Connected` right after its CONNACK, before it reads the connection's first packet, so a
/// status is never applied before the connection it came on is known, and a device that has
/// subscribed is never left out of a publish because the task had not run yet.
pub(crate) struct Feed {
    rx: Mutex<UnboundedReceiver<ConnectionEvent>>,
    /// Where announcements run ([`Feed::catch_up`] is also called from the workers' threads).
    runtime: tokio::runtime::Handle,
}

impl Feed {
    /// Call inside the runtime the announcements should run on.
    pub(crate) fn new(rx: UnboundedReceiver<ConnectionEvent>) -> Feed {
        Feed {
            rx: Mutex::new(rx),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UnboundedReceiver<ConnectionEvent>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies every event already queued, from any thread. A device's `Connected` is queued
    /// before its CONNACK goes out, so whoever calls this before deciding who is online sees
    /// every device that could have subscribed by then.
    pub(crate) fn catch_up(&self, services: &Arc<Services>) {
        let mut rx = self.lock();
        while let Ok(event) = rx.try_recv() {
            apply(services, event);
        }
    }
}

/// Applies one connection event (under the feed's lock, so events apply in order) and
/// announces a change of the user's state.
fn apply(services: &Arc<Services>, event: ConnectionEvent) {
    let (user, online) = match event {
        ConnectionEvent::Connected { user, device, .. } => {
            if !services.presence.connected(&user, &device) {
                return;
            }
            (user, true)
        }
        ConnectionEvent::Disconnected {
            user,
            device,
            reason,
            ..
        } => {
            debug!(user, device, ?reason, "device offline");
            if !services.presence.disconnected(&user, &device) {
                return;
            }
            (user, false)
        }
    };
    services
        .connections
        .runtime
        .spawn(changed(services.clone(), user, online));
}

/// Follows the front end's connection events until the broker stops.
pub(crate) async fn track(services: Arc<Services>) {
    loop {
        let more = std::future::poll_fn(|cx| {
            let mut rx = services.connections.lock();
            match rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(event)) => {
                    apply(&services, event);
                    std::task::Poll::Ready(true)
                }
                std::task::Poll::Ready(None) => std::task::Poll::Ready(false),
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
        .await;
        if !more {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Presence, Transition};

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
        assert_eq!(
            p.status("alice", "phone", false),
            Transition::None,
            "the laptop is still there"
        );
        assert_eq!(
            p.status("alice", "laptop", false),
            Transition::WentOffline,
            "now nobody is"
        );
        assert!(!p.is_online("alice"));
        assert_eq!(p.online_users(), 0);
        assert_eq!(
            p.status("alice", "laptop", false),
            Transition::None,
            "already offline"
        );
        assert!(
            !p.disconnected("alice", "laptop"),
            "an away device leaving changes nothing"
        );
        assert_eq!(p.status("alice", "phone", true), Transition::CameOnline);
        assert!(p.is_online("alice"));
        p.status("alice", "phone", false);
        assert!(p.connected("alice", "phone"), "a new connection is present");
        // Status of devices that are not connected is ignored.
        assert_eq!(p.status("alice", "tablet", true), Transition::None);
        assert_eq!(p.status("bob", "x", true), Transition::None);
        assert!(!p.is_online("bob"));
    }

    #[test]
    fn subscriptions_end_with_the_watching_device() {
        let p = Presence::default();
        p.connected("amy", "phone");
        p.connected("amy", "phone");
        p.subscribe("amy", "phone", &["bob".into(), "cat".into()])
            .unwrap();
        p.subscribe("amy", "phone", &["bob".into()]).unwrap();
        assert_eq!(p.watchers_of("bob"), vec![("amy".into(), "phone".into())]);
        // One of two connections of the phone closes: still watching.
        p.disconnected("amy", "phone");
        assert_eq!(p.watchers_of("cat").len(), 1);
        p.disconnected("amy", "phone");
        assert!(p.watchers_of("bob").is_empty());
        assert!(p.watchers_of("cat").is_empty());
    }

    #[test]
    fn a_device_watches_at_most_the_cap() {
        let p = Presence::default();
        let many: Vec<String> = (0..super::MAX_WATCHED_PER_DEVICE)
            .map(|i| format!("u{i}"))
            .collect();
        p.subscribe("amy", "phone", &many).unwrap();
        // Watching someone again costs nothing; someone new is over the cap.
        p.subscribe("amy", "phone", &many[..3]).unwrap();
        assert!(p.subscribe("amy", "phone", &["extra".into()]).is_err());
        assert!(p.watchers_of("extra").is_empty());
    }
}
