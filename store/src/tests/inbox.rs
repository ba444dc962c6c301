use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;

use super::open_tmp;
use crate::{Appending, InboxItem, StoreError};

fn msg(conv: &str, seq: u64) -> InboxItem {
    InboxItem::Msg {
        conv: conv.into(),
        seq,
    }
}

fn sent(conv: &str, seq: u64) -> InboxItem {
    InboxItem::Sent {
        conv: conv.into(),
        seq,
    }
}

#[test]
fn n_is_gapless_across_appends() {
    let (_dir, store, _) = open_tmp();
    assert_eq!(store.inbox_last("bob").unwrap(), 0);
    let out = store
        .inbox_append(
            "bob",
            vec![
                msg("d.a.bob", 1),
                InboxItem::Event(json!({"type": "receipt"})),
            ],
        )
        .unwrap();
    assert_eq!(out, vec![Some(1), Some(2)]);
    let out = store
        .inbox_append("bob", vec![msg("d.a.bob", 2), msg("g.x", 1)])
        .unwrap();
    assert_eq!(out, vec![Some(3), Some(4)]);
    assert_eq!(store.inbox_append("bob", Vec::new()).unwrap(), Vec::new());
    assert_eq!(store.inbox_last("bob").unwrap(), 4);
    // Other users have their own n, even "bo" whose key prefix is close.
    assert_eq!(
        store.inbox_append("bo", vec![msg("d.a.bo", 1)]).unwrap(),
        vec![Some(1)]
    );
    let (all, more) = store.inbox_after("bob", 0, 10).unwrap();
    assert!(!more);
    assert_eq!(
        all,
        vec![
            (1, msg("d.a.bob", 1)),
            (2, InboxItem::Event(json!({"type": "receipt"}))),
            (3, msg("d.a.bob", 2)),
            (4, msg("g.x", 1)),
        ]
    );
    let ns = |after, limit| {
        let (page, more) = store.inbox_after("bob", after, limit).unwrap();
        (page.into_iter().map(|(n, _)| n).collect::<Vec<_>>(), more)
    };
    assert_eq!(ns(0, 2), (vec![1, 2], true));
    assert_eq!(ns(2, 2), (vec![3, 4], false));
    assert_eq!(ns(1, 3), (vec![2, 3, 4], false));
    assert_eq!(ns(4, 2), (vec![], false));
    assert_eq!(ns(u64::MAX, 2), (vec![], false));
    assert_eq!(ns(3, 0), (vec![], true));
    assert_eq!(store.inbox_after("nobody", 0, 5).unwrap(), (vec![], false));
}

#[test]
fn replayed_message_items_are_skipped_without_gap() {
    let (_dir, store, _) = open_tmp();
    assert_eq!(
        store.inbox_append("bob", vec![msg("d.a.bob", 1)]).unwrap(),
        vec![Some(1)]
    );
    assert_eq!(
        store.inbox_append("bob", vec![msg("d.a.bob", 1)]).unwrap(),
        vec![None]
    );
    // Replays mixed with new items, and a seq repeated inside one call.
    let out = store
        .inbox_append(
            "bob",
            vec![
                msg("d.a.bob", 1),
                msg("d.a.bob", 2),
                msg("d.a.bob", 2),
                InboxItem::Event(json!({})),
                sent("d.a.bob", 3),
                msg("d.c.bob", 1),
            ],
        )
        .unwrap();
    assert_eq!(out, vec![None, Some(2), None, Some(3), Some(4), Some(5)]);
    assert_eq!(
        store.inbox_append("bob", vec![sent("d.a.bob", 3)]).unwrap(),
        vec![None]
    );
    assert_eq!(store.inbox_last("bob").unwrap(), 5);
    let (page, _) = store.inbox_after("bob", 0, 100).unwrap();
    let ns: Vec<u64> = page.iter().map(|(n, _)| *n).collect();
    assert_eq!(ns, vec![1, 2, 3, 4, 5]);
    // The watermark is per user: alice gets her own copy.
    assert_eq!(
        store
            .inbox_append("alice", vec![sent("d.a.bob", 1)])
            .unwrap(),
        vec![Some(1)]
    );
}

#[test]
fn sent_items_record_their_n() {
    let (_dir, store, _) = open_tmp();
    store
        .inbox_append("alice", vec![msg("d.alice.bob", 1)])
        .unwrap();
    let out = store
        .inbox_append("alice", vec![sent("d.alice.bob", 2), sent("g.grp", 7)])
        .unwrap();
    assert_eq!(out, vec![Some(2), Some(3)]);
    assert_eq!(store.sent_n("alice", "d.alice.bob", 2).unwrap(), Some(2));
    assert_eq!(store.sent_n("alice", "g.grp", 7).unwrap(), Some(3));
    assert_eq!(
        store.sent_n("alice", "d.alice.bob", 1).unwrap(),
        None,
        "msg, not sent"
    );
    assert_eq!(store.sent_n("bob", "g.grp", 7).unwrap(), None);
    assert_eq!(store.sent_n("alice", "bad\0", 7).unwrap(), None);
}

#[test]
fn invalid_input_writes_nothing() {
    let (_dir, store, _) = open_tmp();
    for (user, items) in [
        ("Bob", vec![msg("d.a.b", 1)]),
        ("bob", vec![InboxItem::Event(json!(1)), msg("d.a.b", 0)]),
        ("bob", vec![InboxItem::Event(json!(1)), sent("D.a.b", 1)]),
    ] {
        let err = store.inbox_append(user, items).unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    assert_eq!(store.inbox_last("bob").unwrap(), 0);
    assert_eq!(
        store.inbox_append("bob", vec![msg("d.a.b", 1)]).unwrap(),
        vec![Some(1)]
    );
}

#[test]
fn concurrent_appends_to_one_user_are_gapless() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 200;
    let (_dir, store, _) = open_tmp();
    let store = Arc::new(store);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let conv = format!("d.t{t}.zed");
                let mut got = Vec::new();
                for i in 0..PER_THREAD {
                    let items = if i % 2 == 0 {
                        vec![msg(&conv, i + 1)]
                    } else {
                        vec![InboxItem::Event(json!({"i": i})), msg(&conv, i + 1)]
                    };
                    got.extend(store.inbox_append("zed", items).unwrap());
                }
                got
            })
        })
        .collect();
    let mut returned = HashSet::new();
    for h in handles {
        for n in h.join().unwrap() {
            assert!(returned.insert(n.unwrap()), "n {n:?} handed out twice");
        }
    }
    let total = THREADS * PER_THREAD * 3 / 2;
    assert_eq!(returned, (1..=total).collect());
    assert_eq!(store.inbox_last("zed").unwrap(), total);
    let (page, more) = store.inbox_after("zed", 0, 10_000).unwrap();
    assert!(!more);
    let ns: Vec<u64> = page.iter().map(|(n, _)| *n).collect();
    assert_eq!(ns, (1..=total).collect::<Vec<_>>());
    // Within each conversation, n grows with seq (entries written in n order).
    for t in 0..THREADS {
        let conv = format!("d.t{t}.zed");
        let seqs: Vec<u64> = page
            .iter()
            .filter_map(|(_, item)| match item {
                InboxItem::Msg { conv: c, seq } if *c == conv => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, (1..=PER_THREAD).collect::<Vec<_>>());
    }
}

#[test]
fn item_serde_form() {
    let v = serde_json::to_value(sent("d.a.b", 3)).unwrap();
    assert_eq!(v, json!({"sent": {"conv": "d.a.b", "seq": 3}}));
    let v = serde_json::to_value(InboxItem::Event(json!({"type": "group"}))).unwrap();
    assert_eq!(v, json!({"event": {"type": "group"}}));
}

#[test]
fn corrupt_inbox_bytes_are_an_error() {
    let (_dir, store, _) = open_tmp();
    store.inbox_append("bob", vec![msg("d.a.bob", 1)]).unwrap();
    let tree = store.shard_tree("inbox", store.inbox_shard("bob")).unwrap();
    let mut key = b"ebob\0".to_vec();
    key.extend_from_slice(&1u64.to_be_bytes());
    tree.insert(&key, &b"{\"nope\":1}"[..]).unwrap();
    assert!(matches!(
        store.inbox_after("bob", 0, 5),
        Err(StoreError::Corrupt(_))
    ));
    tree.insert(b"wbob\0d.a.bob", &b"123"[..]).unwrap();
    assert!(matches!(
        store.inbox_append("bob", vec![msg("d.a.bob", 2)]),
        Err(StoreError::Corrupt(_))
    ));
    tree.insert(b"ebob\0\xff", &b"{}"[..]).unwrap();
    assert!(matches!(
        store.inbox_last("bob"),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn many_users_at_once_number_each_user_in_order() {
    let (_dir, store, _) = open_tmp();
    // Users on several inbox shards, some with several items, interleaved.
    let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    assert!(
        users
            .iter()
            .map(|u| store.inbox_shard(u))
            .collect::<HashSet<_>>()
            .len()
            > 4
    );
    let mut items = Vec::new();
    for round in 1..=3u64 {
        for (i, user) in users.iter().enumerate() {
            let conv = format!("d.{user}.zz");
            items.push((user.clone(), sent(&conv, round)));
            if i % 3 == 0 {
                items.push((user.clone(), msg("g.x", round)));
            }
        }
    }
    let ns = store.inbox_append_many(&items, Appending::New).unwrap();
    // Each user's items get 1, 2, 3... in the order given.
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let want: Vec<Option<u64>> = items
        .iter()
        .map(|(user, _)| {
            let n = counts.entry(user).or_insert(0);
            *n += 1;
            Some(*n)
        })
        .collect();
    assert_eq!(ns, want, "same n, in the order given");
    for user in &users {
        let (page, more) = store.inbox_after(user, 0, 100).unwrap();
        let mine: Vec<(u64, InboxItem)> = items
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, item)| item.clone())
            .enumerate()
            .map(|(i, item)| (i as u64 + 1, item))
            .collect();
        assert_eq!((page, more), (mine, false), "{user}");
    }
    assert_eq!(store.sent_n("u1", "d.u1.zz", 2).unwrap(), Some(2));
    // A replay of the same items (recovery) is skipped whole, with no gap.
    let again = store.inbox_append_many(&items, Appending::Replay).unwrap();
    assert!(again.iter().all(Option::is_none), "{again:?}");
    assert_eq!(store.inbox_last("u0").unwrap(), 6);
    // New items after it continue the numbering, the watermark written by `New` holds.
    let next = vec![
        ("u0".to_owned(), msg("g.x", 3)),
        ("u0".to_owned(), msg("g.x", 4)),
    ];
    assert_eq!(
        store.inbox_append_many(&next, Appending::Replay).unwrap(),
        vec![None, Some(7)]
    );
    // Invalid input anywhere writes nothing.
    let bad = vec![
        ("u1".to_owned(), msg("g.x", 9)),
        ("Bad".to_owned(), msg("g.x", 9)),
    ];
    assert!(matches!(
        store.inbox_append_many(&bad, Appending::New),
        Err(StoreError::InvalidInput(_))
    ));
    let zero = vec![("u1".to_owned(), msg("g.x", 0))];
    assert!(store.inbox_append_many(&zero, Appending::New).is_err());
    assert_eq!(store.inbox_last("u1").unwrap(), 3);
    assert_eq!(
        store.inbox_append_many(&[], Appending::New).unwrap(),
        Vec::new()
    );
}

#[test]
fn replay_skips_the_shards_a_fan_out_reached() {
    let (_dir, store, _) = open_tmp();
    let users: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    let first_shard = store.inbox_shard(&users[0]);
    let (reached, missed): (Vec<&String>, Vec<&String>) = users
        .iter()
        .partition(|u| store.inbox_shard(u) == first_shard);
    assert!(!reached.is_empty() && !missed.is_empty());
    // A crash after the fan-out of g.x seq 1 reached one shard only.
    let part: Vec<(String, InboxItem)> = reached
        .iter()
        .map(|u| ((*u).clone(), msg("g.x", 1)))
        .collect();
    assert!(store
        .inbox_append_many(&part, Appending::New)
        .unwrap()
        .iter()
        .all(Option::is_some));
    // Recovery replays it to everyone: only the missed shards' members get it.
    let all: Vec<(String, InboxItem)> = users.iter().map(|u| (u.clone(), msg("g.x", 1))).collect();
    let out = store.inbox_append_many(&all, Appending::Replay).unwrap();
    for ((user, _), n) in all.iter().zip(&out) {
        let want = if missed.contains(&user) {
            Some(1)
        } else {
            None
        };
        assert_eq!(*n, want, "{user}");
        assert_eq!(store.inbox_last(user).unwrap(), 1, "{user}");
    }
    // The next seq goes to everyone, the one after a replay too.
    let next: Vec<(String, InboxItem)> = users.iter().map(|u| (u.clone(), msg("g.x", 2))).collect();
    assert!(store
        .inbox_append_many(&next, Appending::Replay)
        .unwrap()
        .iter()
        .all(|n| *n == Some(2)));
    assert!(store
        .inbox_append_many(&next, Appending::Replay)
        .unwrap()
        .iter()
        .all(Option::is_none));
    // Another conversation has its own watermark.
    assert_eq!(
        store.inbox_append(&users[0], vec![msg("g.y", 1)]).unwrap(),
        vec![Some(3)]
    );
}

#[test]
fn replay_honours_per_user_watermarks_of_older_data() {
    let (_dir, store, _) = open_tmp();
    let tree = store.shard_tree("inbox", store.inbox_shard("bob")).unwrap();
    // Written by a version that kept one watermark per (user, conv).
    tree.insert(b"wbob\0g.x", &5u64.to_be_bytes()[..]).unwrap();
    assert_eq!(
        store
            .inbox_append("bob", vec![msg("g.x", 5), msg("g.x", 6)])
            .unwrap(),
        vec![None, Some(1)]
    );
    // The shard's watermark is now 6: the per-user one no longer matters.
    assert_eq!(
        store.inbox_append("bob", vec![msg("g.x", 6)]).unwrap(),
        vec![None]
    );
    tree.insert(b"cg.x", &b"123"[..]).unwrap();
    assert!(matches!(
        store.inbox_append("bob", vec![msg("g.x", 7)]),
        Err(StoreError::Corrupt(_))
    ));
}

// A 1:1 message whose sender and recipient share an inbox shard writes no watermark: the
// sender's `Sent` record, in the same batch, is what a replay finds. Across shards, and for a
// `Msg` without its `Sent` beside it, the watermark is written and honoured as before.
#[test]
fn direct_messages_on_one_shard_replay_by_the_senders_record() {
    let (_dir, store, _) = open_tmp();
    let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let a = &users[0];
    let shard = store.inbox_shard(a);
    let b = users[1..]
        .iter()
        .find(|u| store.inbox_shard(u) == shard)
        .expect("a user on a's shard");
    let c = users[1..]
        .iter()
        .find(|u| store.inbox_shard(u) != shard)
        .expect("a user on another shard");
    let tree = store.shard_tree("inbox", shard).unwrap();
    let conv = |x: &str, y: &str| {
        let (lo, hi) = if x < y { (x, y) } else { (y, x) };
        format!("d.{lo}.{hi}")
    };
    let mark = |tree: &sled::Tree, conv: &str| tree.contains_key(format!("c{conv}")).unwrap();

    let ab = conv(a, b);
    let pair = |seq| vec![(a.clone(), sent(&ab, seq)), (b.clone(), msg(&ab, seq))];
    assert_eq!(
        store.inbox_append_many(&pair(1), Appending::New).unwrap(),
        vec![Some(1), Some(1)]
    );
    assert!(
        !mark(&tree, &ab),
        "no watermark for a same-shard 1:1 message"
    );
    // A crash after that batch: recovery replays it and nothing is written twice.
    assert_eq!(
        store
            .inbox_append_many(&pair(1), Appending::Replay)
            .unwrap(),
        vec![None, None]
    );
    assert_eq!(
        store.inbox_append(b, vec![msg(&ab, 1)]).unwrap(),
        vec![None]
    );
    // A crash before the batch of seq 2: recovery writes both.
    assert_eq!(
        store
            .inbox_append_many(&pair(2), Appending::Replay)
            .unwrap(),
        vec![Some(2), Some(2)]
    );
    assert_eq!(
        (store.inbox_last(a).unwrap(), store.inbox_last(b).unwrap()),
        (2, 2)
    );
    // A `Msg` with no `Sent` beside it (a system message) moves the watermark.
    assert_eq!(
        store.inbox_append(b, vec![msg(&ab, 3)]).unwrap(),
        vec![Some(3)]
    );
    assert!(mark(&tree, &ab));
    assert_eq!(
        store.inbox_append(b, vec![msg(&ab, 3)]).unwrap(),
        vec![None]
    );

    // Across shards the recipient's shard keeps the watermark.
    let ac = conv(a, c);
    let across = vec![(a.clone(), sent(&ac, 1)), (c.clone(), msg(&ac, 1))];
    assert_eq!(
        store.inbox_append_many(&across, Appending::New).unwrap(),
        vec![Some(3), Some(1)]
    );
    let c_tree = store.shard_tree("inbox", store.inbox_shard(c)).unwrap();
    assert!(mark(&c_tree, &ac));
    assert_eq!(
        store.inbox_append_many(&across, Appending::Replay).unwrap(),
        vec![None, None]
    );
    assert_eq!(store.inbox_last(c).unwrap(), 1);
}
