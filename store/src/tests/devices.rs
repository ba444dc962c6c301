use super::{open_tmp, T0};
use crate::{DeviceRecord, StoreError};

#[test]
fn enrol_and_read_device() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let rec = store
        .enrol_device("alice", "phone", "01ab", T0 + 100, Some("f1"))
        .unwrap();
    let expected = DeviceRecord {
        user_id: "alice".into(),
        device_id: "phone".into(),
        created_at: T0,
        cert_serial: "01ab".into(),
        cert_expires_at: T0 + 100,
        cert_fingerprint: Some("f1".into()),
        revoked_at: None,
    };
    assert_eq!(rec, expected);
    assert_eq!(store.device("alice", "phone").unwrap(), Some(expected));
    assert_eq!(store.device("alice", "laptop").unwrap(), None);
    assert!(store.device_active("alice", "phone").unwrap());
}

#[test]
fn renew_keeps_record_with_new_serial() {
    let (_dir, store, clock) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    store
        .enrol_device("alice", "phone", "01", T0 + 100, Some("f1"))
        .unwrap();
    clock.advance(50);
    let renewed = store
        .enrol_device("alice", "phone", "02", T0 + 500, Some("f2"))
        .unwrap();
    assert_eq!(renewed.created_at, T0);
    assert_eq!(renewed.cert_serial, "02");
    assert_eq!(renewed.cert_expires_at, T0 + 500);
    assert_eq!(renewed.cert_fingerprint.as_deref(), Some("f2"));
    assert_eq!(store.devices("alice").unwrap(), vec![renewed]);
    // A renewal without a fingerprint drops the old one: it named the old certificate.
    let renewed = store
        .enrol_device("alice", "phone", "03", T0 + 600, None)
        .unwrap();
    assert_eq!(renewed.cert_fingerprint, None);
}

#[test]
fn a_record_from_before_fingerprints_reads_as_none_and_a_bad_fingerprint_is_refused() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    let old = br#"{"user_id":"alice","device_id":"phone","created_at":5,"cert_serial":"01","cert_expires_at":9,"revoked_at":null}"#;
    store
        .inner
        .devices
        .insert(crate::codec::pair_key("alice", b"phone"), &old[..])
        .unwrap();
    let rec = store.device("alice", "phone").unwrap().unwrap();
    assert_eq!(
        (rec.cert_serial.as_str(), rec.cert_fingerprint),
        ("01", None)
    );
    let long = "f".repeat(crate::MAX_CERT_SERIAL_LEN + 1);
    for bad in ["", "has space", long.as_str()] {
        assert!(
            matches!(
                store.enrol_device("alice", "tablet", "01", 9, Some(bad)),
                Err(StoreError::InvalidInput(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn revoked_device_id_is_retired() {
    let (_dir, store, clock) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    store
        .enrol_device("alice", "phone", "01", T0 + 100, None)
        .unwrap();
    clock.advance(7);
    assert!(store.revoke_device("alice", "phone").unwrap());
    assert!(!store.revoke_device("alice", "phone").unwrap());
    assert!(!store.revoke_device("alice", "unknown").unwrap());
    let rec = store.device("alice", "phone").unwrap().unwrap();
    assert_eq!(rec.revoked_at, Some(T0 + 7));
    assert!(!store.device_active("alice", "phone").unwrap());
    assert!(matches!(
        store.enrol_device("alice", "phone", "02", T0 + 200, None),
        Err(StoreError::DeviceRevoked)
    ));
    // Record unchanged by the refused enrolment.
    assert_eq!(store.device("alice", "phone").unwrap(), Some(rec));
    // Other ids are fine.
    store
        .enrol_device("alice", "phone2", "03", T0 + 200, None)
        .unwrap();
}

#[test]
fn devices_prefix_isolation() {
    let (_dir, store, _) = open_tmp();
    for u in ["ab", "abc", "a"] {
        store.create_user(u, "password1").unwrap();
    }
    store.enrol_device("ab", "x", "1", 1, None).unwrap();
    store.enrol_device("ab", "y", "2", 1, None).unwrap();
    store.enrol_device("abc", "x", "3", 1, None).unwrap();
    store.enrol_device("abc", "z", "4", 1, None).unwrap();
    let ab: Vec<_> = store
        .devices("ab")
        .unwrap()
        .into_iter()
        .map(|d| (d.user_id, d.device_id))
        .collect();
    assert_eq!(
        ab,
        vec![("ab".into(), "x".into()), ("ab".into(), "y".into())]
    );
    assert_eq!(store.devices("abc").unwrap().len(), 2);
    assert!(store.devices("a").unwrap().is_empty());
    assert!(store.devices("nobody").unwrap().is_empty());
    assert!(store.devices("").unwrap().is_empty());
    assert!(!store.device_active("ab", "z").unwrap());
}

#[test]
fn device_active_cases() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    store
        .enrol_device("alice", "phone", "01", T0 + 100, None)
        .unwrap();
    store
        .enrol_device("alice", "tablet", "02", T0 + 100, None)
        .unwrap();
    assert!(store.device_active("alice", "phone").unwrap());
    assert!(!store.device_active("alice", "unknown").unwrap());
    assert!(!store.device_active("bob", "phone").unwrap());
    assert!(!store.device_active("", "").unwrap());
    assert!(!store.device_active("ALICE", "phone").unwrap());

    store.set_user_disabled("alice", true).unwrap();
    assert!(!store.device_active("alice", "phone").unwrap());
    store.set_user_disabled("alice", false).unwrap();
    assert!(store.device_active("alice", "phone").unwrap());

    store.revoke_device("alice", "tablet").unwrap();
    assert!(!store.device_active("alice", "tablet").unwrap());

    // User record gone (not possible through the API today) => inactive.
    store.inner.users.remove("alice").unwrap();
    assert!(!store.device_active("alice", "phone").unwrap());
}

#[test]
fn enrol_input_checks() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    assert!(matches!(
        store.enrol_device("bob", "phone", "01", 1, None),
        Err(StoreError::NotFound(_))
    ));
    for (u, d, s) in [
        ("alice", "Phone", "01"),
        ("alice", "", "01"),
        ("al ice", "phone", "01"),
        ("alice", "phone", ""),
        ("alice", "phone", "has space"),
        ("alice", "phone", &"f".repeat(129)),
    ] {
        assert!(
            matches!(
                store.enrol_device(u, d, s, 1, None),
                Err(StoreError::InvalidInput(_))
            ),
            "{u:?} {d:?} {s:?}"
        );
    }
    assert!(store.devices("alice").unwrap().is_empty());
}

#[test]
fn corrupt_device_record_is_an_error() {
    let (_dir, store, _) = open_tmp();
    store.create_user("alice", "password1").unwrap();
    store
        .inner
        .devices
        .insert(crate::codec::pair_key("alice", b"phone"), &b"{"[..])
        .unwrap();
    assert!(matches!(
        store.device_active("alice", "phone"),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.devices("alice"),
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.enrol_device("alice", "phone", "01", 1, None),
        Err(StoreError::Corrupt(_))
    ));
}
