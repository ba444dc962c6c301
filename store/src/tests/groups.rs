//! Groups (record + system entry in one write, recipients kept for recovery), the
//! `user_groups` index, "share a conversation", and blocks.

use super::{new_msg, open_in, open_tmp, test_config};
use crate::{GroupMember, GroupRecord, GroupRole, InboxItem, StoreError};

pub(super) fn record(id: &str, members: &[(&str, GroupRole)]) -> GroupRecord {
    GroupRecord {
        id: id.to_owned(),
        name: "Team".to_owned(),
        created_by: "amy".to_owned(),
        created_at: 1,
        members: members
            .iter()
            .map(|(user, role)| GroupMember::new(*user, *role))
            .collect(),
    }
}

#[test]
fn a_change_stores_record_and_entry_together_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), &test_config());
    let mut g = record(
        "g1",
        &[("amy", GroupRole::Admin), ("bob", GroupRole::Member)],
    );
    let conv = g.conv();
    let mut w = store.conv_writer(store.conv_shard(&conv)).unwrap();
    assert_eq!(w.group("g1").unwrap(), None);
    let recipients = vec!["amy".to_owned(), "bob".to_owned()];
    let stored = w
        .group_change(&mut g, new_msg(&conv, "amy", "~1"), &recipients)
        .unwrap();
    assert_eq!(stored.seq, 1);
    assert_eq!(store.group("g1").unwrap(), Some(g.clone()));
    assert!(store.group("g1").unwrap().unwrap().is_member("bob"));
    assert_eq!(
        store.group("g1").unwrap().unwrap().role("amy"),
        Some(GroupRole::Admin)
    );
    // A group message keeps its recipients in the pending marker.
    let more = w
        .append_fanout(vec![(new_msg(&conv, "amy", "m1"), vec!["bob".to_owned()])])
        .unwrap();
    assert_eq!(more[0].seq, 2);
    let pending: Vec<(u64, Vec<String>)> = w
        .pending()
        .unwrap()
        .into_iter()
        .map(|(m, r)| (m.seq, r))
        .collect();
    assert_eq!(pending, vec![(1, recipients), (2, vec!["bob".to_owned()])]);
    store.clear_pending(&conv, 1).unwrap();
    assert_eq!(w.pending().unwrap().len(), 1);
    // A record for another conversation is refused, with nothing written.
    let err = w
        .group_change(&mut g.clone(), new_msg("g.other", "amy", "~2"), &[])
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)));
    drop(w);
    store.flush().unwrap();
    drop(store);
    let (store, _) = open_in(dir.path(), &test_config());
    assert_eq!(store.group("g1").unwrap(), Some(g));
    assert_eq!(store.last_seq(&conv).unwrap(), 2);
    assert_eq!(store.group("Bad!").unwrap(), None);
}

#[test]
fn who_shares_a_conversation() {
    let (_dir, store, _) = open_tmp();
    assert!(!store.share_conversation("amy", "bob").unwrap());
    // A 1:1 chat counts once it has a message.
    let mut w = store.conv_writer(store.conv_shard("d.amy.bob")).unwrap();
    w.append(vec![new_msg("d.amy.bob", "amy", "1")]).unwrap();
    assert!(store.share_conversation("bob", "amy").unwrap());
    // A group counts through the index.
    store.set_user_group("cat", "g1", true).unwrap();
    store.set_user_group("dan", "g1", true).unwrap();
    store.set_user_group("dan", "g2", true).unwrap();
    assert!(store.share_conversation("cat", "dan").unwrap());
    assert_eq!(store.user_groups("dan").unwrap(), vec!["g1", "g2"]);
    store.set_user_group("cat", "g1", false).unwrap();
    store.set_user_group("cat", "g1", false).unwrap();
    assert!(!store.share_conversation("cat", "dan").unwrap());
    assert!(!store.share_conversation("amy", "amy").unwrap());
    assert!(!store.share_conversation("amy", "B!").unwrap());
    assert!(store.set_user_group("Bad", "g1", true).is_err());
}

#[test]
fn blocks_both_ways_round() {
    let (_dir, store, _) = open_tmp();
    assert!(store.set_block("bob", "amy", true).unwrap());
    assert!(
        !store.set_block("bob", "amy", true).unwrap(),
        "already blocked"
    );
    assert!(store.set_block("cat", "amy", true).unwrap());
    assert!(store.is_blocked("bob", "amy").unwrap());
    assert!(!store.is_blocked("amy", "bob").unwrap());
    assert!(store.blocked_either("amy", "bob").unwrap());
    assert_eq!(store.blockers_of("amy").unwrap(), vec!["bob", "cat"]);
    assert!(store.blockers_of("bob").unwrap().is_empty());
    assert!(store.set_block("bob", "amy", false).unwrap());
    assert!(!store.set_block("bob", "amy", false).unwrap());
    assert_eq!(store.blockers_of("amy").unwrap(), vec!["cat"]);
    assert!(!store.blocked_either("amy", "bob").unwrap());
    assert!(store.set_block("bob", "Nope", true).is_err());
}

#[test]
fn own_messages_may_go_ahead_of_queued_ones() {
    // A group member's own message (Sent) is written at once; messages of others in the same
    // conversation reach them later from the fan-out queue (Msg, lower seq). Neither is lost
    // and replays of either are skipped.
    let (_dir, store, _) = open_tmp();
    let sent = |seq| InboxItem::Sent {
        conv: "g.g1".into(),
        seq,
    };
    let msg = |seq| InboxItem::Msg {
        conv: "g.g1".into(),
        seq,
    };
    assert_eq!(
        store.inbox_append("bob", vec![sent(6)]).unwrap(),
        vec![Some(1)]
    );
    assert_eq!(
        store.inbox_append("bob", vec![msg(5)]).unwrap(),
        vec![Some(2)]
    );
    assert_eq!(
        store.inbox_append("bob", vec![msg(7)]).unwrap(),
        vec![Some(3)]
    );
    // Replays after a crash.
    assert_eq!(
        store.inbox_append("bob", vec![sent(6)]).unwrap(),
        vec![None]
    );
    assert_eq!(
        store.inbox_append("bob", vec![msg(5), msg(7)]).unwrap(),
        vec![None, None]
    );
    assert_eq!(
        store.inbox_append("bob", vec![sent(8), sent(8)]).unwrap(),
        vec![Some(4), None]
    );
    assert_eq!(store.sent_n("bob", "g.g1", 6).unwrap(), Some(1));
    assert_eq!(store.inbox_last("bob").unwrap(), 4);
}

#[test]
fn conversation_membership() {
    let (_dir, store, _) = open_tmp();
    assert!(store.is_conv_member("d.amy.bob", "amy").unwrap());
    assert!(store.is_conv_member("d.amy.bob", "bob").unwrap());
    assert!(!store.is_conv_member("d.amy.bob", "am").unwrap());
    assert!(
        !store.is_conv_member("g.g1", "amy").unwrap(),
        "no such group"
    );
    let mut g = record("g1", &[("amy", GroupRole::Admin)]);
    let conv = g.conv();
    let mut w = store.conv_writer(store.conv_shard(&conv)).unwrap();
    w.group_change(&mut g, new_msg(&conv, "amy", "~1"), &["amy".to_owned()])
        .unwrap();
    assert!(store.is_conv_member("g.g1", "amy").unwrap());
    assert!(!store.is_conv_member("g.g1", "bob").unwrap());
    assert!(!store.is_conv_member("x.amy", "amy").unwrap());
}
