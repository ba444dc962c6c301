use super::{open_tmp, T0};
use crate::{SessionCheck, StoreError, TOKEN_HEX_LEN};

const DAY: u64 = 24 * 60 * 60;

#[test]
fn create_and_check_session() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let s = store.create_session("alice").unwrap();
    assert_eq!(s.token.len(), TOKEN_HEX_LEN);
    assert!(s
        .token
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(s.expires_at, T0 + 30 * DAY);
    assert_eq!(store.check_session(&s.token).unwrap(), Some("alice".into()));
    let other = store.create_session("alice").unwrap();
    assert_ne!(s.token, other.token);
    assert!(!format!("{s:?}").contains(&s.token));
}

#[test]
fn token_is_not_stored_in_clear() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let s = store.create_session("alice").unwrap();
    let raw = hex::decode(&s.token).unwrap();
    for tree in [&store.inner.sessions, &store.inner.user_sessions] {
        for entry in tree.iter() {
            let (k, v) = entry.unwrap();
            for hay in [&k[..], &v[..]] {
                assert!(!hay.windows(raw.len()).any(|w| w == &raw[..]));
                assert!(!hay.windows(64).any(|w| w == s.token.as_bytes()));
            }
        }
    }
}

#[test]
fn session_for_unknown_user_is_refused() {
    let (_dir, store, _) = open_tmp();
    assert!(matches!(
        store.create_session("nobody"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.create_session("Bad Id"),
        Err(StoreError::InvalidInput(_))
    ));
}

#[test]
fn session_expires_and_is_deleted() {
    let (_dir, store, clock) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let s = store.create_session("alice").unwrap();
    clock.advance(30 * DAY - 1);
    assert_eq!(store.check_session(&s.token).unwrap(), Some("alice".into()));
    clock.advance(1);
    assert_eq!(store.check_session(&s.token).unwrap(), None);
    assert!(store.inner.sessions.is_empty());
    assert!(store.inner.user_sessions.is_empty());
    // Already gone.
    assert!(!store.revoke_session(&s.token).unwrap());
}

#[test]
fn purge_expired_sessions_only_removes_expired() {
    let (_dir, store, clock) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let old = store.create_session("alice").unwrap();
    clock.advance(10 * DAY);
    let new = store.create_session("alice").unwrap();
    clock.advance(25 * DAY);
    assert_eq!(store.purge_expired_sessions().unwrap(), 1);
    assert_eq!(store.check_session(&old.token).unwrap(), None);
    assert_eq!(
        store.check_session(&new.token).unwrap(),
        Some("alice".into())
    );
    assert_eq!(store.inner.user_sessions.len(), 1);
}

#[test]
fn revoke_session() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let a = store.create_session("alice").unwrap();
    let b = store.create_session("alice").unwrap();
    assert!(store.revoke_session(&a.token).unwrap());
    assert!(!store.revoke_session(&a.token).unwrap());
    assert_eq!(store.check_session(&a.token).unwrap(), None);
    assert_eq!(store.check_session(&b.token).unwrap(), Some("alice".into()));
    assert_eq!(store.inner.user_sessions.len(), 1);
}

#[test]
fn revoke_user_sessions_only_hits_that_user() {
    let (_dir, store, _) = open_tmp();
    store.create_user("ab", "password1").unwrap();
    store.create_user("abc", "password1").unwrap();
    let ab: Vec<_> = (0..3)
        .map(|_| store.create_session("ab").unwrap())
        .collect();
    let abc = store.create_session("abc").unwrap();
    assert_eq!(store.revoke_user_sessions("ab").unwrap(), 3);
    for s in &ab {
        assert_eq!(store.check_session(&s.token).unwrap(), None);
    }
    assert_eq!(store.check_session(&abc.token).unwrap(), Some("abc".into()));
    assert_eq!(store.revoke_user_sessions("ab").unwrap(), 0);
    assert_eq!(store.revoke_user_sessions("nobody").unwrap(), 0);
    assert_eq!(store.revoke_user_sessions("").unwrap(), 0);
}

#[test]
fn disabled_user_sessions_do_not_check() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let s = store.create_session("alice").unwrap();
    store.set_user_disabled("alice", true).unwrap();
    assert_eq!(store.check_session(&s.token).unwrap(), None);
    assert_eq!(
        store.session_check(&s.token).unwrap(),
        SessionCheck::Disabled("alice".into())
    );
    assert_eq!(store.session_check("00").unwrap(), SessionCheck::Invalid);
    store.set_user_disabled("alice", false).unwrap();
    assert_eq!(store.check_session(&s.token).unwrap(), Some("alice".into()));
    assert_eq!(
        store.session_check(&s.token).unwrap(),
        SessionCheck::Valid("alice".into())
    );
}

#[test]
fn malformed_tokens_are_none_not_errors() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let s = store.create_session("alice").unwrap();
    let upper = s.token.to_uppercase();
    let long = format!("{}00", s.token);
    let multibyte = "é".repeat(32); // 64 bytes, not hex
    let gs = "g".repeat(64);
    let bad = [
        "",
        "abc",
        "zz",
        &gs,
        &upper,
        &s.token[..63],
        &long,
        &multibyte,
    ];
    for t in bad {
        assert_eq!(store.check_session(t).unwrap(), None, "{t:?}");
        assert!(!store.revoke_session(t).unwrap(), "{t:?}");
    }
    // Well-formed but unknown.
    assert_eq!(store.check_session(&"0".repeat(64)).unwrap(), None);
}

#[test]
fn corrupt_session_record_is_an_error() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let s = store.create_session("alice").unwrap();
    let (key, _) = store.inner.sessions.first().unwrap().unwrap();
    store.inner.sessions.insert(key, &b"garbage"[..]).unwrap();
    assert!(matches!(
        store.check_session(&s.token),
        Err(StoreError::Corrupt(_))
    ));
    // Revoking still removes it.
    assert!(store.revoke_session(&s.token).unwrap());
    assert!(store.inner.sessions.is_empty());
}
