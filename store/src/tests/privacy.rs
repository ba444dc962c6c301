//! Privacy settings, the contacts index and group invites.

use super::{new_msg, open_in, open_tmp, test_config};
use crate::privacy::TAG_AUTHOR;
use crate::{Audience, GroupInvite, GroupMember, GroupRecord, GroupRole, PrivacySettings};

#[test]
fn settings_default_then_persist() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), &test_config());
    let defaults = store.privacy("amy").unwrap();
    assert_eq!(defaults.last_seen, Audience::Contacts);
    assert_eq!(defaults.online, Audience::Contacts);
    assert_eq!(defaults.groups, Audience::Everyone);
    let mine = PrivacySettings {
        last_seen: Audience::Nobody,
        online: Audience::Everyone,
        groups: Audience::Contacts,
    };
    store.set_privacy("amy", &mine).unwrap();
    assert_eq!(
        store.privacy("bob").unwrap(),
        defaults,
        "others keep theirs"
    );
    assert!(store.set_privacy("Bad!", &mine).is_err());
    assert_eq!(store.privacy("Bad!").unwrap(), defaults);
    store.flush().unwrap();
    drop(store);
    let (store, _) = open_in(dir.path(), &test_config());
    assert_eq!(store.privacy("amy").unwrap(), mine);
}

#[test]
fn writing_in_a_direct_chat_makes_the_other_a_contact_of_the_writer_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), &test_config());
    let conv = "d.amy.bob";
    let mut w = store.conv_writer(store.conv_shard(conv)).unwrap();
    assert!(!store.is_contact("bob", "amy").unwrap());
    w.append(vec![new_msg(conv, "amy", "1")]).unwrap();
    assert!(store.is_contact("amy", "bob").unwrap(), "amy wrote to bob");
    assert!(!store.is_contact("bob", "amy").unwrap(), "bob never wrote");
    assert!(store.has_written("amy", conv).unwrap());
    // Only a sender's first message in a conversation costs a write, even twice in one batch.
    let again = vec![(new_msg(conv, "amy", "2"), Vec::new())];
    assert!(w.author_marks(&again).unwrap().is_empty());
    let twice = vec![
        (new_msg(conv, "bob", "1"), Vec::new()),
        (new_msg(conv, "bob", "2"), Vec::new()),
    ];
    assert_eq!(w.author_marks(&twice).unwrap().len(), 1);
    w.append(vec![new_msg(conv, "bob", "1"), new_msg(conv, "bob", "2")])
        .unwrap();
    assert!(w.author_marks(&twice[..1]).unwrap().is_empty());
    assert!(store.is_contact("bob", "amy").unwrap());
    assert!(!store.is_contact("amy", "amy").unwrap());
    assert!(!store.is_contact("amy", "Bad!").unwrap());
    drop(w);
    // The mark went to disk with the message.
    store.flush().unwrap();
    drop(store);
    let (store, _) = open_in(dir.path(), &test_config());
    assert!(store.is_contact("amy", "bob").unwrap());
}

#[test]
fn a_group_makes_contacts_only_of_members_who_wrote_in_it() {
    let (_dir, store, _) = open_tmp();
    let mut g = GroupRecord {
        id: "g1".into(),
        name: "Team".into(),
        created_by: "amy".into(),
        created_at: 1,
        members: ["amy", "bob", "cat"]
            .iter()
            .map(|u| GroupMember::new(*u, GroupRole::Member))
            .collect(),
    };
    let conv = g.conv();
    let mut w = store.conv_writer(store.conv_shard(&conv)).unwrap();
    // amy creates the group: a membership change, not a message.
    w.group_change(&mut g, new_msg(&conv, "amy", "~1"), &[])
        .unwrap();
    for user in ["amy", "bob", "cat"] {
        store.set_user_group(user, "g1", true).unwrap();
    }
    assert!(
        !store.is_contact("amy", "bob").unwrap(),
        "adding is not writing"
    );
    assert!(!store.is_contact("bob", "amy").unwrap());
    w.append_fanout(vec![(new_msg(&conv, "bob", "m1"), vec!["amy".into()])])
        .unwrap();
    assert!(store.is_contact("bob", "amy").unwrap());
    assert!(store.is_contact("bob", "cat").unwrap());
    assert!(!store.is_contact("amy", "bob").unwrap());
    // Once cat leaves, bob's group message no longer makes her his contact.
    store.set_user_group("cat", "g1", false).unwrap();
    assert!(!store.is_contact("bob", "cat").unwrap());
}

#[test]
fn invites_are_kept_per_user_and_group_until_removed() {
    let (_dir, store, _) = open_tmp();
    let invite = GroupInvite {
        name: "Team".into(),
        by: "amy".into(),
        ts: 5,
    };
    assert_eq!(store.group_invite("bob", "g1").unwrap(), None);
    store.set_group_invite("bob", "g1", &invite).unwrap();
    assert_eq!(
        store.group_invite("bob", "g1").unwrap(),
        Some(invite.clone())
    );
    assert_eq!(store.group_invite("bob", "g2").unwrap(), None);
    assert_eq!(store.group_invite("bo", "g1").unwrap(), None);
    assert!(store.set_group_invite("bob", "G!", &invite).is_err());
    assert!(store.remove_group_invite("bob", "g1").unwrap());
    assert!(!store.remove_group_invite("bob", "g1").unwrap());
    assert_eq!(store.group_invite("bob", "g1").unwrap(), None);
}

#[test]
fn messages_stored_before_the_index_are_backfilled_once() {
    let (_dir, store, _) = open_tmp();
    let conv = "d.amy.bob";
    let mut w = store.conv_writer(store.conv_shard(conv)).unwrap();
    let mut system = new_msg(conv, "bob", "1");
    system.content = serde_json::json!({"system": {}});
    w.append(vec![new_msg(conv, "amy", "1"), system]).unwrap();
    // As in a database written before the index: no marks.
    for user in ["amy", "bob"] {
        let key = crate::codec::tag_key(TAG_AUTHOR, conv, user.as_bytes());
        store.conv_tree(conv).remove(key).unwrap();
    }
    assert!(!store.is_contact("amy", "bob").unwrap());
    let is_message = |content: &serde_json::Value| content.get("system").is_none();
    assert_eq!(w.backfill_contacts(is_message).unwrap(), 1);
    assert!(store.is_contact("amy", "bob").unwrap());
    assert!(
        !store.is_contact("bob", "amy").unwrap(),
        "not for a system entry"
    );
    assert_eq!(
        w.backfill_contacts(is_message).unwrap(),
        0,
        "once per shard"
    );
}
