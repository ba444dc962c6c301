//! Membership periods: what of a group each member, former member and stranger may read
//! (history pages and media), and records written before periods were kept.

use super::groups::record;
use super::{new_msg, open_tmp};
use crate::codec::{pair_key, tag_key};
use crate::groups::TAG_GROUP;
use crate::{ConvWriter, GroupMember, GroupRecord, GroupRole, Readable, Store};

const MEDIA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Stores `members` as the group's new member list (one system entry); returns its seq.
fn change(w: &mut ConvWriter, g: &mut GroupRecord, members: &[&str], id: &str) -> u64 {
    let old = g.members.clone();
    g.members = members
        .iter()
        .map(|u| {
            old.iter()
                .find(|m| m.user == *u)
                .cloned()
                .unwrap_or_else(|| GroupMember::new(*u, GroupRole::Member))
        })
        .collect();
    w.group_change(g, new_msg(&g.conv(), "amy", id), &[])
        .unwrap()
        .seq
}

fn say(w: &mut ConvWriter, conv: &str, id: &str) -> u64 {
    w.append(vec![new_msg(conv, "amy", id)]).unwrap()[0].seq
}

fn page(
    store: &Store,
    conv: &str,
    user: &str,
    before: Option<u64>,
    limit: usize,
) -> (Vec<u64>, bool) {
    let readable = store.readable_ranges(conv, user).unwrap();
    let (msgs, more) = store
        .history_within(conv, &readable, before, limit)
        .unwrap();
    (msgs.iter().map(|m| m.seq).collect(), more)
}

/// amy and bob from seq 1; cat added at 3; bob removed at 5, re-added at 7, leaves at 9;
/// messages at 2, 4, 6, 8, 10.
fn churned_group(store: &Store) -> String {
    let mut g = record(
        "g1",
        &[("amy", GroupRole::Admin), ("bob", GroupRole::Member)],
    );
    let conv = g.conv();
    let mut w = store.conv_writer(store.conv_shard(&conv)).unwrap();
    assert_eq!(change(&mut w, &mut g, &["amy", "bob"], "~1"), 1);
    assert_eq!(say(&mut w, &conv, "m2"), 2);
    assert_eq!(change(&mut w, &mut g, &["amy", "bob", "cat"], "~3"), 3);
    assert_eq!(say(&mut w, &conv, "m4"), 4);
    assert_eq!(change(&mut w, &mut g, &["amy", "cat"], "~5"), 5);
    assert_eq!(say(&mut w, &conv, "m6"), 6);
    assert_eq!(change(&mut w, &mut g, &["amy", "cat", "bob"], "~7"), 7);
    assert_eq!(say(&mut w, &conv, "m8"), 8);
    assert_eq!(change(&mut w, &mut g, &["amy", "cat"], "~9"), 9);
    assert_eq!(say(&mut w, &conv, "m10"), 10);
    conv
}

#[test]
fn members_are_kept_with_the_seq_that_made_them_members() {
    let (_dir, store, _) = open_tmp();
    churned_group(&store);
    let g = store.group("g1").unwrap().unwrap();
    let since: Vec<(&str, u64)> = g
        .members
        .iter()
        .map(|m| (m.user.as_str(), m.since))
        .collect();
    assert_eq!(since, vec![("amy", 1), ("cat", 3)]);
    let ranges = |user| store.readable_ranges("g.g1", user).unwrap();
    assert_eq!(ranges("amy").ranges(), &[(1, u64::MAX)]);
    assert_eq!(ranges("cat").ranges(), &[(3, u64::MAX)]);
    assert_eq!(
        ranges("bob").ranges(),
        &[(1, 5), (7, 9)],
        "both periods, not the gap"
    );
    assert!(ranges("dan").is_empty());
    assert!(ranges("Bad!").is_empty());
    assert!(store.readable_ranges("g.nope", "amy").unwrap().is_empty());
    assert_eq!(
        store.readable_ranges("d.amy.bob", "bob").unwrap(),
        Readable::all()
    );
    assert!(store
        .readable_ranges("d.amy.bob", "cat")
        .unwrap()
        .is_empty());
}

#[test]
fn history_pages_count_only_readable_entries() {
    let (_dir, store, _) = open_tmp();
    let conv = churned_group(&store);
    assert_eq!(
        page(&store, &conv, "amy", None, 20),
        ((1..=10).rev().collect(), false)
    );
    // cat joined at 3.
    assert_eq!(
        page(&store, &conv, "cat", None, 20),
        ((3..=10).rev().collect(), false)
    );
    assert_eq!(page(&store, &conv, "cat", Some(5), 1), (vec![4], true));
    assert_eq!(page(&store, &conv, "cat", Some(4), 1), (vec![3], false));
    assert_eq!(page(&store, &conv, "cat", Some(3), 5), (vec![], false));
    // bob: 1..=5 and 7..=9, paged across the gap.
    assert_eq!(page(&store, &conv, "bob", None, 3), (vec![9, 8, 7], true));
    assert_eq!(
        page(&store, &conv, "bob", Some(7), 3),
        (vec![5, 4, 3], true)
    );
    assert_eq!(page(&store, &conv, "bob", Some(3), 3), (vec![2, 1], false));
    assert_eq!(page(&store, &conv, "bob", Some(6), 1), (vec![5], true));
    assert_eq!(page(&store, &conv, "bob", Some(0), 5), (vec![], false));
}

#[test]
fn records_written_without_since_read_as_members_from_the_start() {
    let (_dir, store, _) = open_tmp();
    let conv = "g.old";
    let mut w = store.conv_writer(store.conv_shard(conv)).unwrap();
    for id in ["m1", "m2", "m3"] {
        say(&mut w, conv, id);
    }
    // As today's code wrote it: no `since`.
    let legacy = br#"{"id":"old","name":"Old","created_by":"amy","created_at":1,
        "members":[{"user":"amy","role":"admin"},{"user":"bob","role":"member"}]}"#;
    let tree = store.shard_tree("conv", store.conv_shard(conv)).unwrap();
    tree.insert(tag_key(TAG_GROUP, "old", b""), &legacy[..])
        .unwrap();
    let mut g = store.group("old").unwrap().unwrap();
    assert!(g.members.iter().all(|m| m.since == 0));
    assert_eq!(store.readable_ranges(conv, "bob").unwrap(), Readable::all());
    assert_eq!(page(&store, conv, "bob", None, 10), (vec![3, 2, 1], false));
    // A change keeps them members from the start; removing one closes that period.
    assert_eq!(change(&mut w, &mut g, &["amy", "cat"], "~4"), 4);
    assert_eq!(store.readable_ranges(conv, "amy").unwrap(), Readable::all());
    assert_eq!(
        store.readable_ranges(conv, "bob").unwrap().ranges(),
        &[(0, 4)]
    );
    assert_eq!(
        store.readable_ranges(conv, "cat").unwrap().ranges(),
        &[(4, u64::MAX)]
    );
}

#[test]
fn readable_ranges_merge_and_contain() {
    let r = Readable::from_ranges(vec![(7, 9), (1, 5), (6, 6), (12, 11), (20, 30)]);
    assert_eq!(r.ranges(), &[(1, 9), (20, 30)]);
    assert!(r.contains(1) && r.contains(9) && r.contains(25));
    assert!(!r.contains(0) && !r.contains(10) && !r.contains(31));
    assert!(Readable::none().is_empty() && !Readable::none().contains(0));
    assert!(Readable::all().contains(u64::MAX));
}

#[test]
fn media_is_for_readers_of_a_message_that_carried_it() {
    let (_dir, store, _) = open_tmp();
    let conv = churned_group(&store);
    // Shared at 4: amy and cat (from 3) and bob (1..=5) may read it; dan never.
    store.share_media(MEDIA, &conv, 4).unwrap();
    for (user, allowed) in [("amy", true), ("cat", true), ("bob", true), ("dan", false)] {
        assert_eq!(store.media_allowed(user, MEDIA).unwrap(), allowed, "{user}");
    }
    // Shared at 2 and 6 only: cat (from 3) still gets it at 6, bob (away at 6) at 2.
    let other = "b".repeat(64);
    store.share_media(&other, &conv, 2).unwrap();
    assert!(store.media_allowed("bob", &other).unwrap());
    assert!(!store.media_allowed("cat", &other).unwrap());
    store.share_media(&other, &conv, 6).unwrap();
    assert!(store.media_allowed("cat", &other).unwrap());
    // Shared at 6 only: bob was away.
    let third = "c".repeat(64);
    store.share_media(&third, &conv, 6).unwrap();
    assert!(!store.media_allowed("bob", &third).unwrap());
    assert!(store.media_allowed("amy", &third).unwrap());
    // Each conversation counts: a 1:1 chat that sorts first and denies, then the group.
    let fourth = "e".repeat(64);
    store.share_media(&fourth, "d.amy.bob", 1).unwrap();
    store.share_media(&fourth, &conv, 6).unwrap();
    assert!(store.media_allowed("cat", &fourth).unwrap());
    assert!(store.media_allowed("bob", &fourth).unwrap());
    assert!(!store.media_allowed("dan", &fourth).unwrap());
    // A conversation whose id extends the group's is another conversation.
    let fifth = "f".repeat(64);
    store.share_media(&fifth, "g.g10", 4).unwrap();
    assert!(!store.media_allowed("cat", &fifth).unwrap());
    assert!(store.share_media("nope", &conv, 1).is_err());
    assert!(!store.media_allowed("Bad!", MEDIA).unwrap());
}

#[test]
fn media_shared_before_seqs_were_kept_is_for_current_members() {
    let (_dir, store, _) = open_tmp();
    let conv = churned_group(&store);
    let old = "d".repeat(64);
    // A row as today's code writes it: `media_id 0x00 conv`, no seq.
    store
        .inner
        .media_convs
        .insert(pair_key(&old, conv.as_bytes()), &[][..])
        .unwrap();
    assert!(store.media_allowed("cat", &old).unwrap());
    assert!(store.media_allowed("amy", &old).unwrap());
    assert!(
        !store.media_allowed("bob", &old).unwrap(),
        "no longer a member"
    );
    assert!(!store.media_allowed("dan", &old).unwrap());
}
