//! The store's share of a 1:1 message, as the bridge does it: the idempotency lookup of each
//! send, a group-commit batch of messages appended to their conversation shards (message,
//! idempotency key, the shard's batch marker), every inbox entry of the batch (the recipient's
//! `msg` and the sender's `sent`) in one call, the batch markers cleared; with and without the
//! durable flush at the end of the batch.
//! Reported per message (criterion's "elements"). Run with
//! `cargo bench -p chat-store --bench write_path`.

#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::hint::black_box;

use chat_store::{Appending, ConvWriter, InboxItem, NewMessage, Store, StoreConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Messages per group commit (the bridge's rounds are up to this size under load).
const BATCH: usize = 64;
/// Distinct users; conversations are pseudo-random pairs of them.
const USERS: u64 = 1_000;

struct Bench {
    store: Store,
    writers: Vec<ConvWriter>,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            password_memory_kib: 8,
            password_iterations: 1,
            ..StoreConfig::default()
        };
        let store = Store::open(&dir.path().join("db"), &cfg).unwrap();
        let writers = (0..store.config().shards)
            .map(|s| store.conv_writer(s).unwrap())
            .collect();
        Bench {
            store,
            writers,
            _dir: dir,
        }
    }

    /// What the bridge's shard workers do with a round: look each send's id up, append each
    /// shard's messages, write
    /// every inbox entry (sender's `sent`, recipient's `msg`) in one call, clear the batch
    /// markers.
    fn write(&mut self, batch: Vec<NewMessage>) {
        let mut by_shard: Vec<Vec<NewMessage>> =
            (0..self.writers.len()).map(|_| Vec::new()).collect();
        for m in batch {
            let shard = self.store.conv_shard(&m.conv);
            let known = self.writers[shard].find_idempotent(&m.from, &m.client_id);
            assert_eq!(known.unwrap(), None, "every send of the bench is new");
            by_shard[shard].push(m);
        }
        let mut inbox = Vec::new();
        for (shard, msgs) in by_shard.into_iter().enumerate() {
            if msgs.is_empty() {
                continue;
            }
            for m in self.writers[shard].append(msgs).unwrap() {
                let to = m.content["to"].as_str().unwrap().to_owned();
                let (conv, seq) = (m.conv, m.seq);
                let sent = InboxItem::Sent {
                    conv: conv.clone(),
                    seq,
                };
                inbox.push((m.from, sent));
                inbox.push((to, InboxItem::Msg { conv, seq }));
            }
        }
        self.store
            .inbox_append_many(&inbox, Appending::New)
            .unwrap();
        for writer in &mut self.writers {
            writer.clear_batch_pending().unwrap();
        }
    }
}

/// The next batch of 1:1 messages between pseudo-random pairs, with 100-byte bodies; `next`
/// numbers the messages.
fn batch(next: &Cell<u64>) -> Vec<NewMessage> {
    (0..BATCH)
        .map(|_| {
            next.set(next.get() + 1);
            let i = next.get();
            let a = i.wrapping_mul(2_654_435_761) % USERS;
            let b = (a + 1 + i.wrapping_mul(40_503) % (USERS - 1)) % USERS;
            let (from, to) = (format!("user{a}"), format!("user{b}"));
            let conv = if from < to {
                format!("d.{from}.{to}")
            } else {
                format!("d.{to}.{from}")
            };
            NewMessage {
                msg_id: i,
                conv,
                from,
                client_id: format!("c{i}"),
                ts: 1_700_000_000_000 + i,
                content: serde_json::json!({"to": to, "body": "x".repeat(100)}),
            }
        })
        .collect()
}

fn write_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_to_one_message");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut bench = Bench::new();
    let next = Cell::new(0);
    // Warm the trees so that the figures are for a store that already holds messages.
    for _ in 0..200 {
        bench.write(batch(&next));
    }
    group.bench_function("store_writes", |b| {
        b.iter_batched(
            || batch(&next),
            |msgs| bench.write(black_box(msgs)),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("store_writes_and_flush", |b| {
        b.iter_batched(
            || batch(&next),
            |msgs| {
                bench.write(black_box(msgs));
                bench.store.flush().unwrap();
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, write_path);
criterion_main!(benches);
