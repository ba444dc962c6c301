//! Disk use per stored message (a measurement, printed; run with
//! `cargo test -p chat-store bytes_per_message -- --nocapture`).

use std::time::Instant;

use super::{open_tmp, TS};
use crate::{InboxItem, NewMessage};

const MESSAGES: u64 = 20_000;
const PER_BATCH: u64 = 100;

#[test]
fn bytes_per_message() {
    let started = Instant::now();
    let (_dir, store, _) = open_tmp();
    store.flush().unwrap();
    let empty = store.size_on_disk().unwrap();
    let conv = "d.alice.bob";
    let mut w = store.conv_writer(store.conv_shard(conv)).unwrap();
    let body = "x".repeat(100);
    for b in 0..MESSAGES / PER_BATCH {
        let batch: Vec<NewMessage> = (0..PER_BATCH)
            .map(|i| {
                let k = b * PER_BATCH + i;
                NewMessage {
                    msg_id: (TS << 22) | k,
                    conv: conv.into(),
                    from: "alice".into(),
                    client_id: format!("01hq3v7c8k{k:010}"),
                    ts: TS + k,
                    content: serde_json::json!({ "to": "bob", "body": body }),
                }
            })
            .collect();
        let stored = w.append(batch).unwrap();
        let refs = |f: fn(String, u64) -> InboxItem| {
            stored
                .iter()
                .map(|m| f(m.conv.clone(), m.seq))
                .collect::<Vec<_>>()
        };
        store
            .inbox_append("alice", refs(|conv, seq| InboxItem::Sent { conv, seq }))
            .unwrap();
        store
            .inbox_append("bob", refs(|conv, seq| InboxItem::Msg { conv, seq }))
            .unwrap();
        for m in &stored {
            w.clear_pending(&m.conv, m.seq).unwrap();
        }
        store.flush().unwrap();
    }
    store.flush().unwrap();
    let size = store.size_on_disk().unwrap();
    assert_eq!(store.inbox_last("bob").unwrap(), MESSAGES);
    assert!(size > empty);
    eprintln!(
        "bytes_per_message: {} bytes on disk per 100-byte message incl. 2 inbox entries \
         ({} bytes total, {} when empty, {:?})",
        (size - empty) / MESSAGES,
        size,
        empty,
        started.elapsed()
    );
}
