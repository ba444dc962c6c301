use super::{convs_on_shard, new_msg, open_in, open_tmp, test_config, TS};
use crate::{ConvWriter, InboxItem, ReceiptStatus, Store, StoreError, Watermark};

/// A writer for the shard of a fixed conversation, and that conversation.
fn writer_for(store: &Store, conv: &str) -> ConvWriter {
    store.conv_writer(store.conv_shard(conv)).unwrap()
}

fn seqs(msgs: &[crate::StoredMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.seq).collect()
}

#[test]
fn conv_shard_is_folded_fnv1a_mod_shards() {
    let (_dir, store, _) = open_tmp();
    // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; the shard is (low half ^ high half) % 16.
    assert_eq!(crate::shards::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(
        store.conv_shard("a"),
        (0x8601_ec8c_u64 ^ 0xaf63_dc4c) as usize % 16
    );
    assert_eq!(store.inbox_shard("a"), store.conv_shard("a"));
    assert!(store.conv_shard("d.alice.bob") < 16);
    // Made-up ids that differ in their high bits still reach every shard.
    let mut hit = [false; 16];
    for i in 0..512 {
        hit[store.conv_shard(&format!("d.a{i}.b{i}"))] = true;
    }
    assert!(hit.iter().all(|h| *h), "shards never used: {hit:?}");
}

#[test]
fn seq_gapless_per_conv_and_independent() {
    let (_dir, store, _) = open_tmp();
    let convs = convs_on_shard(&store, 3, 2);
    let mut w = store.conv_writer(3).unwrap();
    assert_eq!(w.shard(), 3);
    assert_eq!(w.last_seq(&convs[0]).unwrap(), 0);
    for i in 0..5 {
        let out = w
            .append(vec![new_msg(&convs[0], "alice", &format!("x{i}"))])
            .unwrap();
        assert_eq!(seqs(&out), vec![i + 1]);
    }
    let out = w.append(vec![new_msg(&convs[1], "bob", "y0")]).unwrap();
    assert_eq!(seqs(&out), vec![1]);
    assert_eq!(w.last_seq(&convs[0]).unwrap(), 5);
    assert_eq!(w.last_seq(&convs[1]).unwrap(), 1);
    assert_eq!(store.last_seq(&convs[0]).unwrap(), 5);
    assert_eq!(store.last_seq(&convs[1]).unwrap(), 1);
    assert_eq!(store.last_seq("d.nobody.there").unwrap(), 0);
    let m = store.message(&convs[0], 3).unwrap().unwrap();
    assert_eq!(
        (m.seq, m.from.as_str(), m.client_id.as_str()),
        (3, "alice", "x2")
    );
    assert_eq!(m.conv, convs[0]);
    assert_eq!(m.content, serde_json::json!({"body": "hello x2"}));
    assert_eq!(store.message(&convs[0], 6).unwrap(), None);
    assert_eq!(store.message("bad conv", 1).unwrap(), None);
}

#[test]
fn several_convs_in_one_batch() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 0, 3);
    let mut w = store.conv_writer(0).unwrap();
    w.append(vec![new_msg(&c[1], "u", "pre")]).unwrap();
    let batch = vec![
        new_msg(&c[0], "u", "1"),
        new_msg(&c[1], "u", "2"),
        new_msg(&c[0], "u", "3"),
        new_msg(&c[2], "u", "4"),
        new_msg(&c[0], "u", "5"),
        new_msg(&c[1], "u", "6"),
    ];
    let out = w.append(batch.clone()).unwrap();
    assert_eq!(seqs(&out), vec![1, 2, 2, 1, 3, 3]);
    for (stored, new) in out.iter().zip(&batch) {
        assert_eq!(stored.conv, new.conv);
        assert_eq!(stored.client_id, new.client_id);
        assert_eq!(
            store.message(&stored.conv, stored.seq).unwrap().as_ref(),
            Some(stored)
        );
    }
    assert_eq!(w.append(Vec::new()).unwrap(), Vec::new());
}

#[test]
fn idempotency_lookup_and_guard() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 5, 2);
    let mut w = store.conv_writer(5).unwrap();
    assert_eq!(w.find_idempotent("alice", "m1").unwrap(), None);
    w.append(vec![
        new_msg(&c[0], "alice", "m1"),
        new_msg(&c[0], "alice", "m2"),
    ])
    .unwrap();
    assert_eq!(
        w.find_idempotent("alice", "m2").unwrap(),
        Some((c[0].clone(), 2))
    );
    assert_eq!(w.find_idempotent("bob", "m2").unwrap(), None);
    // Already stored, or twice in one batch: the whole batch is refused and
    // no seq is used up.
    let refused = [
        vec![new_msg(&c[1], "alice", "ok"), new_msg(&c[0], "alice", "m1")],
        vec![new_msg(&c[1], "alice", "d"), new_msg(&c[1], "alice", "d")],
        vec![new_msg(&c[1], "alice", "")],
        vec![new_msg(&c[1], "alice", &"x".repeat(65))],
        vec![new_msg(&c[1], "Alice", "z")],
        vec![
            new_msg(&c[1], "alice", "z"),
            new_msg("d.a\0b", "alice", "zz"),
        ],
    ];
    for batch in refused {
        let err = w.append(batch).unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    assert_eq!(w.find_idempotent("alice", "ok").unwrap(), None);
    assert_eq!(
        seqs(&w.append(vec![new_msg(&c[1], "alice", "ok")]).unwrap()),
        vec![1]
    );
    assert_eq!(
        seqs(&w.append(vec![new_msg(&c[0], "bob", "m1")]).unwrap()),
        vec![3]
    );
    assert_eq!(w.find_idempotent("alice", &"y".repeat(64)).unwrap(), None);
}

/// The writer remembers the ids a lookup found absent, so that the append right after does not
/// read them again; an append must end that, or a retry of a just-stored id would get through.
#[test]
fn an_id_looked_up_before_its_append_is_refused_after_it() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 5, 1);
    let mut w = store.conv_writer(5).unwrap();
    assert_eq!(w.find_idempotent("alice", "k").unwrap(), None);
    assert_eq!(w.find_idempotent("alice", "k").unwrap(), None);
    let twice = vec![new_msg(&c[0], "alice", "k"), new_msg(&c[0], "alice", "k")];
    assert!(matches!(w.append(twice), Err(StoreError::InvalidInput(_))));
    assert_eq!(
        seqs(&w.append(vec![new_msg(&c[0], "alice", "k")]).unwrap()),
        vec![1]
    );
    for _ in 0..2 {
        let again = w.append(vec![new_msg(&c[0], "alice", "k")]);
        assert!(
            matches!(again, Err(StoreError::InvalidInput(_))),
            "{again:?}"
        );
    }
    assert_eq!(
        w.find_idempotent("alice", "k").unwrap(),
        Some((c[0].clone(), 1))
    );
    // A lookup that found nothing, then an append of other ids, then the id itself.
    assert_eq!(w.find_idempotent("alice", "later").unwrap(), None);
    assert_eq!(
        seqs(&w.append(vec![new_msg(&c[0], "alice", "other")]).unwrap()),
        vec![2]
    );
    assert_eq!(
        seqs(&w.append(vec![new_msg(&c[0], "alice", "later")]).unwrap()),
        vec![3]
    );
    let again = w.append(vec![new_msg(&c[0], "alice", "later")]);
    assert!(
        matches!(again, Err(StoreError::InvalidInput(_))),
        "{again:?}"
    );
}

#[test]
fn conv_of_other_shard_is_refused() {
    let (_dir, store, _) = open_tmp();
    let other = convs_on_shard(&store, 2, 1).remove(0);
    let mut w = store.conv_writer(1).unwrap();
    for err in [
        w.append(vec![new_msg(&other, "a", "1")]).unwrap_err(),
        w.last_seq(&other).unwrap_err(),
        w.set_receipt(&other, "a", ReceiptStatus::Read, 1)
            .unwrap_err(),
        w.clear_pending(&other, 1).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    assert_eq!(store.last_seq(&other).unwrap(), 0);
}

#[test]
fn one_writer_per_shard() {
    let (_dir, store, _) = open_tmp();
    let w = store.conv_writer(7).unwrap();
    let clone = store.clone();
    assert!(matches!(clone.conv_writer(7), Err(StoreError::Conflict(_))));
    let other = store.conv_writer(8).unwrap();
    assert!(format!("{other:?}").contains("shard: 8"));
    assert!(matches!(
        store.conv_writer(16),
        Err(StoreError::InvalidInput(_))
    ));
    drop(w);
    let again = std::thread::spawn(move || clone.conv_writer(7).map(|w| w.shard()))
        .join()
        .unwrap();
    assert_eq!(again.unwrap(), 7);
    assert!(
        store.conv_writer(7).is_ok(),
        "released when the thread's writer dropped"
    );
}

#[test]
fn history_pages_newest_first() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 4, 2);
    let mut w = store.conv_writer(4).unwrap();
    let batch = (0..10)
        .map(|i| new_msg(&c[0], "a", &format!("{i}")))
        .collect();
    w.append(batch).unwrap();
    w.append(vec![new_msg(&c[1], "a", "other")]).unwrap();
    let page = |before, limit| {
        let (msgs, more) = store.history(&c[0], before, limit).unwrap();
        (seqs(&msgs), more)
    };
    assert_eq!(page(None, 3), (vec![10, 9, 8], true));
    assert_eq!(page(Some(8), 3), (vec![7, 6, 5], true));
    assert_eq!(page(Some(4), 3), (vec![3, 2, 1], false));
    assert_eq!(page(None, 10), ((1..=10).rev().collect(), false));
    assert_eq!(page(None, 9), ((2..=10).rev().collect(), true));
    assert_eq!(page(None, 100), ((1..=10).rev().collect(), false));
    assert_eq!(page(Some(2), 5), (vec![1], false));
    assert_eq!(page(Some(1), 5), (vec![], false));
    assert_eq!(page(Some(0), 5), (vec![], false));
    assert_eq!(page(Some(u64::MAX), 1), (vec![10], true));
    assert_eq!(page(None, 0), (vec![], true));
    assert_eq!(page(Some(1), 0), (vec![], false));
    let empty = convs_on_shard(&store, 4, 3).remove(2);
    assert_eq!(store.history(&empty, None, 5).unwrap(), (vec![], false));
    assert_eq!(store.history("no\0conv", None, 5).unwrap(), (vec![], false));
    let (msgs, _) = store.history(&c[1], None, 5).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].client_id, "other");
}

/// `(conv, seq)` of what `pending` lists.
fn pending_of(w: &ConvWriter) -> Vec<(String, u64)> {
    w.pending()
        .unwrap()
        .into_iter()
        .map(|(m, _)| (m.conv, m.seq))
        .collect()
}

#[test]
fn batch_marker_lists_unfinished_appends_until_cleared_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), &test_config());
    let mut c = convs_on_shard(&store, 4, 2);
    c.sort();
    let mut w = store.conv_writer(4).unwrap();
    // 1:1 messages keep no marker of their own: the batch marker lists them.
    w.append(vec![new_msg(&c[1], "a", "1"), new_msg(&c[0], "a", "2")])
        .unwrap();
    {
        let tree = store.shard_tree("conv", 4).unwrap();
        assert_eq!(tree.scan_prefix(b"p").count(), 0);
        assert!(tree
            .contains_key(crate::messages::KEY_BATCH_PENDING)
            .unwrap());
    }
    // A second append before the first was cleared keeps both (a round that failed).
    w.append(vec![new_msg(&c[1], "a", "3")]).unwrap();
    // A group entry beside them keeps its own marker with its recipients.
    w.append_fanout(vec![(new_msg(&c[0], "a", "4"), vec!["bob".to_owned()])])
        .unwrap();
    let want = vec![
        (c[0].clone(), 1),
        (c[0].clone(), 2),
        (c[1].clone(), 1),
        (c[1].clone(), 2),
    ];
    assert_eq!(pending_of(&w), want);
    // A crash now: a new writer (after a reopen) finds the same.
    drop(w);
    store.flush().unwrap();
    drop(store);
    let (store, _) = open_in(dir.path(), &test_config());
    let mut w = store.conv_writer(4).unwrap();
    assert_eq!(pending_of(&w), want);
    // One write clears the batch marker; the group entry's marker stays for its fan-out.
    w.clear_batch_pending().unwrap();
    assert_eq!(pending_of(&w), vec![(c[0].clone(), 2)]);
    w.clear_batch_pending().unwrap();
    store.clear_pending(&c[0], 2).unwrap();
    assert!(pending_of(&w).is_empty());
    let tree = store.shard_tree("conv", 4).unwrap();
    assert!(!tree
        .contains_key(crate::messages::KEY_BATCH_PENDING)
        .unwrap());
    assert_eq!(store.last_seq(&c[1]).unwrap(), 2);
}

#[test]
fn pending_markers_listed_then_cleared() {
    let (_dir, store, _) = open_tmp();
    let mut c = convs_on_shard(&store, 9, 2);
    c.sort();
    let mut w = store.conv_writer(9).unwrap();
    assert!(w.pending().unwrap().is_empty());
    w.append(vec![new_msg(&c[1], "a", "1"), new_msg(&c[0], "a", "2")])
        .unwrap();
    w.append(vec![new_msg(&c[1], "a", "3")]).unwrap();
    let listed: Vec<_> = w
        .pending()
        .unwrap()
        .into_iter()
        .map(|(m, _)| (m.conv, m.seq))
        .collect();
    assert_eq!(
        listed,
        vec![(c[0].clone(), 1), (c[1].clone(), 1), (c[1].clone(), 2)]
    );
    w.clear_pending(&c[1], 1).unwrap();
    w.clear_pending(&c[1], 1).unwrap();
    let listed: Vec<_> = w
        .pending()
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.client_id)
        .collect();
    assert_eq!(listed, vec!["2", "3"]);
    w.clear_pending(&c[0], 1).unwrap();
    w.clear_pending(&c[1], 2).unwrap();
    assert!(w.pending().unwrap().is_empty());
    // The messages themselves stay.
    assert_eq!(store.last_seq(&c[1]).unwrap(), 2);
}

#[test]
fn purge_idempotency_by_age() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 6, 1).remove(0);
    let mut w = store.conv_writer(6).unwrap();
    let mut old = new_msg(&c, "a", "old");
    old.ts = TS - 1;
    let mut batch: Vec<_> = (0..1500)
        .map(|i| new_msg(&c, "a", &format!("o{i}")))
        .collect();
    for m in &mut batch {
        m.ts = TS - 10;
    }
    batch.push(old);
    batch.push(new_msg(&c, "a", "new"));
    w.append(batch).unwrap();
    assert_eq!(w.purge_idempotency(TS - 10).unwrap(), 0);
    assert_eq!(w.purge_idempotency(TS).unwrap(), 1501);
    assert_eq!(w.find_idempotent("a", "old").unwrap(), None);
    assert_eq!(
        w.find_idempotent("a", "new").unwrap(),
        Some((c.clone(), 1502))
    );
    assert_eq!(w.purge_idempotency(TS).unwrap(), 0);
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config();
    let conv = "d.alice.bob";
    {
        let (store, _) = open_in(dir.path(), &cfg);
        let mut w = writer_for(&store, conv);
        let out = w
            .append(vec![new_msg(conv, "alice", "1"), new_msg(conv, "bob", "2")])
            .unwrap();
        w.clear_pending(conv, 1).unwrap();
        w.set_receipt(conv, "bob", ReceiptStatus::Read, 1).unwrap();
        for m in &out {
            store
                .inbox_append(
                    "alice",
                    vec![InboxItem::Sent {
                        conv: conv.into(),
                        seq: m.seq,
                    }],
                )
                .unwrap();
        }
        store.set_last_seen("bob", TS).unwrap();
        store.flush().unwrap();
        // writer and store dropped here
    }
    let (store, _) = open_in(dir.path(), &cfg);
    let mut w = writer_for(&store, conv);
    assert_eq!(w.last_seq(conv).unwrap(), 2);
    assert_eq!(
        seqs(&w.append(vec![new_msg(conv, "alice", "3")]).unwrap()),
        vec![3]
    );
    assert_eq!(
        w.find_idempotent("bob", "2").unwrap(),
        Some((conv.into(), 2))
    );
    let pending: Vec<_> = w
        .pending()
        .unwrap()
        .into_iter()
        .map(|(m, _)| m.seq)
        .collect();
    assert_eq!(pending, vec![2, 3]);
    assert_eq!(
        store.receipt(conv, "bob").unwrap(),
        Watermark {
            delivered: 1,
            read: 1
        }
    );
    assert_eq!(store.inbox_last("alice").unwrap(), 2);
    assert_eq!(store.sent_n("alice", conv, 2).unwrap(), Some(2));
    let n = store
        .inbox_append(
            "alice",
            vec![InboxItem::Sent {
                conv: conv.into(),
                seq: 3,
            }],
        )
        .unwrap();
    assert_eq!(n, vec![Some(3)]);
    let replay = store
        .inbox_append(
            "alice",
            vec![InboxItem::Sent {
                conv: conv.into(),
                seq: 2,
            }],
        )
        .unwrap();
    assert_eq!(replay, vec![None]);
    assert_eq!(store.last_seen("bob").unwrap(), Some(TS));
}

#[test]
fn corrupt_message_bytes_are_an_error() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 1, 1).remove(0);
    let mut w = store.conv_writer(1).unwrap();
    w.append(vec![new_msg(&c, "a", "1"), new_msg(&c, "a", "2")])
        .unwrap();
    let tree = store.shard_tree("conv", 1).unwrap();
    let mut key = vec![b'm'];
    key.extend_from_slice(c.as_bytes());
    key.push(0);
    key.extend_from_slice(&2u64.to_be_bytes());
    tree.insert(&key, &b"\xff\x00garbage"[..]).unwrap();
    let corrupt = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    };
    corrupt(store.message(&c, 2).map(drop));
    corrupt(store.history(&c, None, 10).map(drop));
    corrupt(w.pending().map(drop));
    assert_eq!(store.message(&c, 1).unwrap().unwrap().seq, 1);
    assert_eq!(seqs(&store.history(&c, Some(2), 10).unwrap().0), vec![1]);
    // A malformed key (seq not 8 bytes) and a malformed idempotency value.
    let mut short = key[..key.len() - 8].to_vec();
    short.extend_from_slice(b"\xff\xff");
    tree.insert(&short, &b"{}"[..]).unwrap();
    corrupt(store.last_seq(&c).map(drop));
    corrupt(store.history(&c, None, 1).map(drop));
    tree.insert(b"ia\x001", &b"short"[..]).unwrap();
    corrupt(w.find_idempotent("a", "1").map(drop));
    assert_eq!(
        w.purge_idempotency(u64::MAX).unwrap(),
        1,
        "bad value skipped"
    );
    // A pending marker without its message.
    let mut orphan = vec![b'p'];
    orphan.extend_from_slice(c.as_bytes());
    orphan.push(0);
    orphan.extend_from_slice(&9u64.to_be_bytes());
    tree.remove(&key).unwrap();
    tree.insert(&orphan, &b""[..]).unwrap();
    corrupt(w.pending().map(drop));
}
