use std::sync::{Arc, Barrier};

use super::{open_tmp, T0};
use crate::{PasswordCheck, StoreError, UserRecord};

#[test]
fn create_and_read_user() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "correct horse").unwrap();
    assert_eq!(
        store.user("alice").unwrap(),
        Some(UserRecord {
            user_id: "alice".into(),
            created_at: T0,
            disabled: false
        })
    );
    assert_eq!(store.user("bob").unwrap(), None);
    assert_eq!(store.user_count(), 1);
}

#[test]
fn duplicate_user_is_conflict() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let err = store.create_user("alice", "password2").unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The original password still works.
    assert!(store.verify_password("alice", "password1").unwrap());
    assert!(!store.verify_password("alice", "password2").unwrap());
}

#[test]
fn invalid_input_is_refused() {
    let (_dir, store, _) = open_tmp();
    for id in ["", "Alice", "a-b", "a b", &"a".repeat(33), "é"] {
        let err = store.create_user(id, "password1").unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInput(_)),
            "{id:?}: {err:?}"
        );
    }
    for pw in ["short", &"x".repeat(257)] {
        let err = store.create_user("bob", pw).unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    store.create_user("bob", &"x".repeat(256)).unwrap();
    store.create_user(&"a".repeat(32), "12345678").unwrap();
    assert_eq!(store.user_count(), 2);
}

#[test]
fn verify_password_right_wrong_unknown() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "correct horse").unwrap();
    assert!(store.verify_password("alice", "correct horse").unwrap());
    assert!(!store.verify_password("alice", "wrong horse").unwrap());
    assert!(!store.verify_password("alice", "").unwrap());
    assert!(!store.verify_password("alice", &"x".repeat(10_000)).unwrap());
    assert!(!store.verify_password("nobody", "correct horse").unwrap());
    assert!(!store.verify_password("NOT VALID", "correct horse").unwrap());
}

#[test]
fn stored_hash_is_argon2id_with_random_salt() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "same password").unwrap();
    store.create_user("bob", "same password").unwrap();
    let a = store.load_user("alice").unwrap().unwrap().password_hash;
    let b = store.load_user("bob").unwrap().unwrap().password_hash;
    assert!(a.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{a}");
    assert_ne!(a, b);
    assert!(!a.contains("same password"));
}

#[test]
fn disabled_user_cannot_log_in() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "correct horse").unwrap();
    assert!(store.set_user_disabled("alice", true).unwrap());
    assert!(store.user("alice").unwrap().unwrap().disabled);
    assert!(!store.verify_password("alice", "correct horse").unwrap());
    // Only the right password learns that the account is disabled.
    assert_eq!(
        store.check_password("alice", "correct horse").unwrap(),
        PasswordCheck::Disabled
    );
    assert_eq!(
        store.check_password("alice", "wrong horse").unwrap(),
        PasswordCheck::Invalid
    );
    // Idempotent.
    assert!(store.set_user_disabled("alice", true).unwrap());
    assert!(store.set_user_disabled("alice", false).unwrap());
    assert!(store.verify_password("alice", "correct horse").unwrap());
    assert!(!store.set_user_disabled("nobody", true).unwrap());
}

#[test]
fn corrupt_user_record_is_an_error_not_a_panic() {
    let (_dir, store, _) = open_tmp();
    store
        .inner
        .users
        .insert("mallory", &b"\xff not json"[..])
        .unwrap();
    assert!(matches!(store.user("mallory"), Err(StoreError::Corrupt(_))));
    assert!(matches!(
        store.verify_password("mallory", "password1"),
        Err(StoreError::Corrupt(_))
    ));
    let bad_hash = br#"{"user_id":"eve","created_at":1,"disabled":false,"password_hash":"nope"}"#;
    store.inner.users.insert("eve", &bad_hash[..]).unwrap();
    assert!(matches!(
        store.verify_password("eve", "password1"),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn concurrent_create_user_has_exactly_one_winner() {
    let (_dir, store, _) = open_tmp();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                store.create_user("racer", &format!("password{i}"))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
        .count();
    assert_eq!((ok, conflicts), (1, 7), "{results:?}");
    assert_eq!(store.user_count(), 1);
    let winner = results.iter().position(|r| r.is_ok()).unwrap();
    assert!(store
        .verify_password("racer", &format!("password{winner}"))
        .unwrap());
}
