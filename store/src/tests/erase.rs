//! Account deletion (tombstone, erasure of every per-user tree), password changes, and the
//! rewrite that removes erased values from the data files.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{new_msg, open_in, test_config};
use crate::{rewrite_if_pending, InboxItem, ReceiptStatus, Store, StoreError};

const PUSH_MARKER: &str = "MARKERPUSHTOKEN7731";
const EVENT_MARKER: &str = "MARKERINBOXEVENT5521";
const BLOCKED: &str = "zzmarkerblockedq";

/// Every file under `dir` that contains `needle`.
fn files_with(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

/// Alice with a session, a device, a push token, blocks both ways, last seen, an inbox with a
/// message from bob and a private event, a receipt, a group index entry and a media upload.
/// Returns alice's session token and password hash.
fn populate(store: &Store) -> (String, String) {
    store.create_user("alice", "alice password").unwrap();
    store.create_user("bob", "bob password").unwrap();
    let token = store.create_session("alice").unwrap().token;
    store.create_session("bob").unwrap();
    store
        .enrol_device("alice", "phone", "serial1", u64::MAX, None)
        .unwrap();
    store
        .enrol_device("bob", "laptop", "serial2", u64::MAX, None)
        .unwrap();
    store
        .set_push_token("alice", "phone", "fcm", PUSH_MARKER)
        .unwrap();
    store
        .set_push_token("bob", "laptop", "fcm", "bobtoken")
        .unwrap();
    store.set_block("alice", BLOCKED, true).unwrap();
    store.set_block("bob", "alice", true).unwrap();
    store.set_last_seen("alice", 5).unwrap();
    let conv = "d.alice.bob";
    let mut w = store.conv_writer(store.conv_shard(conv)).unwrap();
    let stored = w.append(vec![new_msg(conv, "bob", "m1")]).unwrap();
    w.set_receipt(conv, "alice", ReceiptStatus::Read, 1)
        .unwrap();
    w.set_receipt(conv, "bob", ReceiptStatus::Read, 1).unwrap();
    drop(w);
    let seq = stored[0].seq;
    store
        .inbox_append(
            "alice",
            vec![
                InboxItem::Msg {
                    conv: conv.into(),
                    seq,
                },
                InboxItem::Event(json!({"type": "note", "text": EVENT_MARKER})),
            ],
        )
        .unwrap();
    store
        .inbox_append(
            "bob",
            vec![InboxItem::Sent {
                conv: conv.into(),
                seq,
            }],
        )
        .unwrap();
    store.set_user_group("alice", "g1", true).unwrap();
    store.set_user_group("bob", "g1", true).unwrap();
    store
        .add_media("alice", &"a".repeat(64), 3, "text/plain")
        .unwrap();
    store.flush().unwrap();
    let hash = store.load_user("alice").unwrap().unwrap().password_hash;
    (token, hash)
}

#[test]
fn deleted_account_is_retired_and_its_data_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _clock) = open_in(&dir.path().join("db"), &test_config());
    let (token, _) = populate(&store);
    assert!(store.delete_user("alice").unwrap());
    assert!(!store.delete_user("alice").unwrap(), "deleted twice");

    // The id is retired.
    assert!(store.user("alice").unwrap().is_none());
    assert!(store.user_deleted("alice"));
    assert!(!store.verify_password("alice", "alice password").unwrap());
    assert!(matches!(
        store.create_user("alice", "another password"),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_session("alice"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.enrol_device("alice", "tablet", "s", u64::MAX, None),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.check_session(&token).unwrap(), None);
    assert!(!store.device_active("alice", "phone").unwrap());
    assert!(!store.set_user_disabled("alice", false).unwrap());

    // Its data is gone.
    assert!(store.devices("alice").unwrap().is_empty());
    assert!(store.push_tokens("alice").unwrap().is_empty());
    assert!(!store.is_blocked("alice", BLOCKED).unwrap());
    assert!(!store.is_blocked("bob", "alice").unwrap());
    assert!(store.blockers_of("alice").unwrap().is_empty());
    assert_eq!(store.last_seen("alice").unwrap(), None);
    assert_eq!(store.inbox_last("alice").unwrap(), 0);
    assert_eq!(store.receipt("d.alice.bob", "alice").unwrap().read, 0);
    assert!(store.user_groups("alice").unwrap().is_empty());
    assert!(!store.media_allowed("alice", &"a".repeat(64)).unwrap());
    assert!(store.erasure_pending().unwrap());

    // Bob's data and the conversation stay.
    assert!(store.user("bob").unwrap().is_some());
    assert_eq!(store.devices("bob").unwrap().len(), 1);
    assert_eq!(store.push_tokens("bob").unwrap().len(), 1);
    assert_eq!(store.receipt("d.alice.bob", "bob").unwrap().read, 1);
    assert_eq!(store.inbox_last("bob").unwrap(), 1);
    assert_eq!(store.user_groups("bob").unwrap(), vec!["g1".to_owned()]);
    assert!(store.message("d.alice.bob", 1).unwrap().is_some());

    // Nothing new is written for the deleted account.
    let n = store
        .inbox_append("alice", vec![InboxItem::Event(json!({"type": "x"}))])
        .unwrap();
    assert_eq!(n, vec![None]);
    assert_eq!(store.inbox_last("alice").unwrap(), 0);
    store.set_last_seen("alice", 9).unwrap();
    assert_eq!(store.last_seen("alice").unwrap(), None);
    assert!(!store.set_block("alice", "bob", true).unwrap());
    store.set_user_group("alice", "g2", true).unwrap();
    assert!(store.user_groups("alice").unwrap().is_empty());
    let mut w = store.conv_writer(store.conv_shard("d.alice.bob")).unwrap();
    assert_eq!(
        w.set_receipt("d.alice.bob", "alice", ReceiptStatus::Read, 1)
            .unwrap(),
        None
    );
}

#[test]
fn deletion_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (store, _clock) = open_in(&path, &test_config());
    populate(&store);
    store.delete_user("alice").unwrap();
    drop(store);
    let (store, _clock) = open_in(&path, &test_config());
    assert!(store.user_deleted("alice"));
    assert!(store.user("alice").unwrap().is_none());
    assert!(!store.user_deleted("bob"));
    assert!(store.verify_password("bob", "bob password").unwrap());
}

#[test]
fn rewrite_removes_erased_values_from_the_files_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let cfg = test_config();
    let (store, _clock) = open_in(&path, &cfg);
    let (_, hash) = populate(&store);
    let markers = [
        PUSH_MARKER.as_bytes(),
        EVENT_MARKER.as_bytes(),
        BLOCKED.as_bytes(),
        hash.as_bytes(),
    ];
    // The scan can see them: they are in the files before the deletion.
    for marker in markers {
        assert!(
            !files_with(dir.path(), marker).is_empty(),
            "{} not found before the deletion",
            String::from_utf8_lossy(marker)
        );
    }
    store.delete_user("alice").unwrap();
    drop(store);
    assert!(rewrite_if_pending(&path, &cfg, Duration::from_secs(2)).unwrap());
    for marker in markers {
        assert_eq!(
            files_with(dir.path(), marker),
            Vec::<String>::new(),
            "{} is still on disk",
            String::from_utf8_lossy(marker)
        );
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["db"], "the swap left other directories behind");
    // Done once: the mark is gone.
    assert!(!rewrite_if_pending(&path, &cfg, Duration::from_secs(2)).unwrap());
    let (store, _clock) = open_in(&path, &cfg);
    assert!(!store.erasure_pending().unwrap());
    assert!(store.user_deleted("alice"));
    assert!(store.verify_password("bob", "bob password").unwrap());
    assert_eq!(store.push_tokens("bob").unwrap().len(), 1);
    assert_eq!(store.inbox_last("bob").unwrap(), 1);
    assert_eq!(
        store.message("d.alice.bob", 1).unwrap().unwrap().content,
        json!({"body": "hello m1"})
    );
}

#[test]
fn rewrite_without_a_deletion_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let cfg = test_config();
    let (store, _clock) = open_in(&path, &cfg);
    populate(&store);
    drop(store);
    assert!(!rewrite_if_pending(&path, &cfg, Duration::from_secs(2)).unwrap());
    assert!(!files_with(dir.path(), PUSH_MARKER.as_bytes()).is_empty());
}

#[test]
fn open_recovers_from_a_crash_at_each_step_of_the_swap() {
    let cfg = test_config();
    // (leftovers next to `db`, whether `db` itself is there)
    let cases: [(&[&str], bool); 4] = [
        (&["db.new"], true),
        (&["db.next"], true),
        (&["db.next", "db.old"], false),
        (&["db.old"], true),
    ];
    for (leftovers, db_present) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (store, _clock) = open_in(&path, &cfg);
        store.create_user("bob", "bob password").unwrap();
        drop(store);
        // Every leftover that is a complete database is a copy of bob's; `db.new` is garbage.
        for name in leftovers {
            let target = dir.path().join(name);
            if *name == "db.new" {
                std::fs::create_dir(&target).unwrap();
                std::fs::write(target.join("db"), b"half a copy").unwrap();
            } else {
                copy_dir(&path, &target);
            }
        }
        if !db_present {
            std::fs::remove_dir_all(&path).unwrap();
        }
        let (store, _clock) = open_in(&path, &cfg);
        assert!(
            store.verify_password("bob", "bob password").unwrap(),
            "{leftovers:?}"
        );
        drop(store);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["db"], "{leftovers:?}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn password_change_checks_the_old_one_and_keeps_the_calling_session() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _clock) = open_in(&dir.path().join("db"), &test_config());
    store.create_user("alice", "old password").unwrap();
    let keep = store.create_session("alice").unwrap().token;
    let other = store.create_session("alice").unwrap().token;
    assert!(!store
        .change_password("alice", "wrong password", "new password")
        .unwrap());
    assert!(matches!(
        store.change_password("alice", "old password", "short"),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(store
        .change_password("alice", "old password", "new password")
        .unwrap());
    assert!(store.verify_password("alice", "new password").unwrap());
    assert!(!store.verify_password("alice", "old password").unwrap());
    assert_eq!(
        store.revoke_user_sessions_except("alice", &keep).unwrap(),
        1
    );
    assert_eq!(
        store.check_session(&keep).unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(store.check_session(&other).unwrap(), None);
    assert!(!store
        .change_password("nobody", "old password", "new password")
        .unwrap());
}
