//! Publishing events to devices. The bridge has one link per router partition; whoever
//! publishes (a shard worker, the fan-out, a read answering `sync`) queues the publish on the
//! link of the recipient's partition itself and tells that router, once per [`Batch`].
//!
//! There is no publishing thread in between: that hop cost a thread wake-up per partition and
//! round, on the path of every `sent` and `msg` (docs/BENCHMARKS-HISTORY.md).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use chat_broker::{partition_of, LinkTx, Packet, Publish};
use tracing::warn;

/// Cloneable handle: publish to a user's or a device's topic.
#[derive(Clone)]
pub struct Publisher {
    /// Link `i` is on router partition `i`.
    links: Arc<[Mutex<LinkTx>]>,
}

impl Publisher {
    /// A publisher over the bridge's links (link `i` must be on partition `i`).
    pub fn new(links: Vec<LinkTx>) -> Publisher {
        Publisher {
            links: links.into_iter().map(Mutex::new).collect(),
        }
    }

    /// Publishes gathered until the batch is sent (or dropped), then handed to each router at
    /// once.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            publisher: self,
            queued: Vec::new(),
        }
    }

    /// Publishes to `/tenants/{user}/in`: every device of the user.
    pub fn to_user(&self, user: &str, payload: Vec<u8>) {
        self.to_device(user, None, payload);
    }

    /// Publishes to `/tenants/{user}/in/{device}`, or to the user's topic when no device is named.
    pub fn to_device(&self, user: &str, device: Option<&str>, payload: Vec<u8>) {
        let partition = partition_of(user, self.links.len());
        self.hand_over(partition, std::iter::once(publish(user, device, payload)));
    }

    /// Queues `publishes` on `partition`'s link and notifies its router once. In order: the
    /// router takes the link's whole queue on each notification.
    fn hand_over(&self, partition: usize, mut publishes: impl DoubleEndedIterator<Item = Packet>) {
        let Some(last) = publishes.next_back() else {
            return;
        };
        let mut link = self.links[partition]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        link.buffer().extend(publishes);
        // `push` queues the last one and notifies the router for all of them.
        if link.push(last).is_err() {
            warn!(
                partition,
                "router link closed; events dropped (devices get them by sync)"
            );
        }
    }
}

/// A publish to `/tenants/{user}/in/{device}`, or to `/tenants/{user}/in` (every device of the
/// user) when no device is named.
fn publish(user: &str, device: Option<&str>, payload: Vec<u8>) -> Packet {
    let topic = match device {
        Some(device) => format!("/tenants/{user}/in/{device}"),
        None => format!("/tenants/{user}/in"),
    };
    let publish = Publish::new(Bytes::from(topic), Bytes::from(payload), false);
    Packet::Publish(publish, None)
}

/// Publishes to hand over together: one lock of each partition's link and one router
/// notification per partition, however many publishes. Sent when dropped if not before.
pub struct Batch<'a> {
    publisher: &'a Publisher,
    /// `(partition, publish)`, in the order they were added.
    queued: Vec<(usize, Packet)>,
}

impl Batch<'_> {
    /// Adds a publish to `/tenants/{user}/in`: every device of the user.
    pub fn for_user(&mut self, user: &str, payload: Vec<u8>) {
        self.for_device(user, None, payload);
    }

    /// Adds a publish to `/tenants/{user}/in/{device}`, or to the user's topic when no device
    /// is named.
    pub fn for_device(&mut self, user: &str, device: Option<&str>, payload: Vec<u8>) {
        let partition = partition_of(user, self.publisher.links.len());
        self.queued
            .push((partition, publish(user, device, payload)));
    }

    /// Hands everything added to the routers.
    pub fn send(mut self) {
        self.hand_over();
    }

    fn hand_over(&mut self) {
        // Stable: each partition's publishes keep the order they were added in.
        self.queued.sort_by_key(|(partition, _)| *partition);
        let mut queued = self.queued.drain(..).peekable();
        while let Some(&(partition, _)) = queued.peek() {
            let run: Vec<Packet> = std::iter::from_fn(|| {
                queued
                    .next_if(|(p, _)| *p == partition)
                    .map(|(_, publish)| publish)
            })
            .collect();
            self.publisher.hand_over(partition, run.into_iter());
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.hand_over();
    }
}
