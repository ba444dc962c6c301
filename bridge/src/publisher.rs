//! Publishing events to devices. Each router partition has one thread that owns the bridge's
//! link on that router and publishes what the workers hand it, in order, batching whatever is
//! queued into one router notification.

use std::sync::mpsc::{channel, Receiver, Sender};

use chat_broker::{partition_of, LinkTx};
use tracing::warn;

/// A publish: topic and payload.
type Outgoing = (String, Vec<u8>);

/// Most publishes handed to the router per notification.
const BATCH: usize = 256;

/// Cloneable handle: publish to a user's or a device's topic.
#[derive(Clone)]
pub struct Publisher {
    partitions: Vec<Sender<Outgoing>>,
}

impl Publisher {
    /// Starts one publishing thread per link (link `i` must be on partition `i`).
    pub fn start(links: Vec<LinkTx>) -> std::io::Result<Publisher> {
        let mut partitions = Vec::with_capacity(links.len());
        for (i, link) in links.into_iter().enumerate() {
            let (tx, rx) = channel();
            std::thread::Builder::new()
                .name(format!("chat-publish-{i}"))
                .spawn(move || run(link, rx))?;
            partitions.push(tx);
        }
        Ok(Publisher { partitions })
    }

    /// Publishes to `/tenants/{user}/in`: every device of the user.
    pub fn to_user(&self, user: &str, payload: Vec<u8>) {
        self.publish(user, format!("/tenants/{user}/in"), payload);
    }

    /// Publishes to `/tenants/{user}/in/{device}`, or to the user's topic when no device is named.
    pub fn to_device(&self, user: &str, device: Option<&str>, payload: Vec<u8>) {
        match device {
            Some(device) => self.publish(user, format!("/tenants/{user}/in/{device}"), payload),
            None => self.to_user(user, payload),
        }
    }

    fn publish(&self, user: &str, topic: String, payload: Vec<u8>) {
        let partition = partition_of(user, self.partitions.len());
        if self.partitions[partition].send((topic, payload)).is_err() {
            warn!(
                user,
                "publisher stopped; event dropped (the device gets it by sync)"
            );
        }
    }
}

fn run(mut link: LinkTx, rx: Receiver<Outgoing>) {
    while let Ok(first) = rx.recv() {
        let mut batch: Vec<Outgoing> = Vec::with_capacity(16);
        batch.push(first);
        batch.extend(rx.try_iter().take(BATCH - 1));
        let Some((topic, payload)) = batch.pop() else {
            continue;
        };
        {
            let mut buffer = link.buffer();
            for (topic, payload) in batch {
                let publish = chat_broker::Publish::new(
                    bytes::Bytes::from(topic),
                    bytes::Bytes::from(payload),
                    false,
                );
                buffer.push_back(chat_broker::Packet::Publish(publish, None));
            }
        }
        // `publish` queues the last one and notifies the router once for the whole batch.
        if link.publish(topic, payload).is_err() {
            warn!("router link closed; publisher stopping");
            return;
        }
    }
}
