//! The embedded rumqttd routers, one per partition of users, and how links to them are built.

use std::future::Future;
use std::pin::Pin;

use rumqttd::local::{LinkBuilder, LinkRx, LinkTx};
use rumqttd::{Router, RouterConfig};

use crate::BrokerConfig;

/// A link being built: resolves once the router has answered.
type LinkFuture = Pin<Box<dyn Future<Output = Result<(LinkTx, LinkRx), String>> + Send>>;

/// Builds a link on one router: `(client_id, tenant)`. `Router::spawn` returns a sender whose
/// type rumqttd does not export, so it lives inside this closure.
type BuildLink = Box<dyn Fn(String, Option<String>) -> LinkFuture + Send + Sync>;

/// Links that the router cannot refuse: the bridge's local links come on top of device connections.
const SPARE_LINKS: usize = 64;

/// The running routers.
pub(crate) struct Routers {
    builders: Vec<BuildLink>,
}

impl Routers {
    /// Spawns `cfg.partitions` routers, each on its own thread.
    pub fn start(cfg: &BrokerConfig) -> Routers {
        let builders = (0..cfg.partitions)
            .map(|id| {
                let router_cfg = RouterConfig {
                    // The front end enforces the real cap; the router must never silently drop a
                    // link request (LinkBuilder::build would then wait forever).
                    max_connections: cfg.max_connections + SPARE_LINKS,
                    max_outgoing_packet_count: cfg.max_inflight,
                    max_segment_size: cfg.segment_size_kib * 1024,
                    max_segment_count: cfg.segment_count,
                    ..RouterConfig::default()
                };
                let tx = Router::new(id, router_cfg).spawn();
                let build: BuildLink = Box::new(move |client_id, tenant| {
                    let tx = tx.clone();
                    Box::pin(async move {
                        LinkBuilder::new(&client_id, tx)
                            .tenant_id(tenant)
                            .clean_session(true)
                            .build_async()
                            .await
                            .map(|(tx, rx, _connack)| (tx, rx))
                            .map_err(|e| e.to_string())
                    })
                });
                build
            })
            .collect();
        Routers { builders }
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.builders.len()
    }

    /// The partition that owns `user`: FNV-1a of the id, stable across runs and versions.
    pub fn partition_of(&self, user: &str) -> usize {
        partition_of(user, self.builders.len())
    }

    /// Builds a link on `partition`: resolves when the router has answered (no thread waits
    /// for it).
    pub async fn build_link(
        &self,
        partition: usize,
        client_id: &str,
        tenant: Option<String>,
    ) -> Result<(LinkTx, LinkRx), String> {
        let build = &self.builders[partition % self.builders.len()];
        build(client_id.to_owned(), tenant).await
    }
}

/// FNV-1a 64-bit hash of `user` (high half folded into the low), reduced to `partitions`.
pub fn partition_of(user: &str, partitions: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Fold the high half in: FNV-1a's low bits depend only on the low bits of each byte.
    ((hash ^ (hash >> 32)) % partitions.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("alice", 4), partition_of("alice", 4));
        assert_eq!(partition_of("anything", 1), 0);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[partition_of(&format!("user{i}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "uneven spread: {counts:?}");
    }
}
