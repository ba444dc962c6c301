use super::{open_in, test_config, T0};
use crate::{valid_id, Store, StoreConfig, StoreError};

#[test]
fn store_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Store>();
}

#[test]
fn valid_id_rule() {
    for ok in ["a", "0", "abc123", &"z".repeat(32)] {
        assert!(valid_id(ok), "{ok:?}");
    }
    for bad in ["", "A", "a_b", "a-b", "a.b", "a\0b", "ä", &"z".repeat(33)] {
        assert!(!valid_id(bad), "{bad:?}");
    }
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config();
    let token = {
        let (store, _) = open_in(dir.path(), &cfg);
        store.create_user("alice", "password1").unwrap();
        store.create_user("bob", "password2").unwrap();
        store.set_user_disabled("bob", true).unwrap();
        store
            .enrol_device("alice", "phone", "01", T0 + 100, None)
            .unwrap();
        store
            .enrol_device("alice", "old", "02", T0 + 100, None)
            .unwrap();
        store.revoke_device("alice", "old").unwrap();
        let token = store.create_session("alice").unwrap().token;
        assert!(store.size_on_disk().unwrap() > 0);
        token
        // store dropped here
    };
    let (store, _) = open_in(dir.path(), &cfg);
    assert_eq!(store.user_count(), 2);
    assert!(store.verify_password("alice", "password1").unwrap());
    assert!(store.user("bob").unwrap().unwrap().disabled);
    assert_eq!(store.check_session(&token).unwrap(), Some("alice".into()));
    assert!(store.device_active("alice", "phone").unwrap());
    assert!(!store.device_active("alice", "old").unwrap());
    assert!(matches!(
        store.enrol_device("alice", "old", "03", T0 + 100, None),
        Err(StoreError::DeviceRevoked)
    ));
    assert_eq!(store.revoke_user_sessions("alice").unwrap(), 1);
}

#[test]
fn reopen_with_other_shard_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config();
    drop(open_in(dir.path(), &cfg));
    let other = StoreConfig {
        shards: 32,
        ..test_config()
    };
    let err = Store::open(dir.path(), &other).unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    // Other settings may change freely.
    let changed = StoreConfig {
        session_ttl_secs: 60,
        cache_capacity_mb: 4,
        ..test_config()
    };
    Store::open(dir.path(), &changed).unwrap();
}

#[test]
fn validate_rejects_bad_values() {
    assert!(StoreConfig::default().validate().is_ok());
    assert!(test_config().validate().is_ok());
    let bad = [
        StoreConfig {
            shards: 1025,
            ..test_config()
        },
        StoreConfig {
            cache_capacity_mb: 0,
            ..test_config()
        },
        StoreConfig {
            cache_capacity_mb: u64::MAX,
            ..test_config()
        },
        StoreConfig {
            password_memory_kib: 1,
            ..test_config()
        },
        StoreConfig {
            password_iterations: 0,
            ..test_config()
        },
        StoreConfig {
            session_ttl_secs: 0,
            ..test_config()
        },
    ];
    for cfg in bad {
        assert!(
            matches!(cfg.validate(), Err(StoreError::Config(_))),
            "{cfg:?}"
        );
    }
    for shards in [0, 1, 1024] {
        let cfg = StoreConfig {
            shards,
            ..test_config()
        };
        assert!(cfg.validate().is_ok());
    }
}

#[test]
fn open_rejects_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        shards: 1025,
        ..test_config()
    };
    assert!(matches!(
        Store::open(dir.path(), &cfg),
        Err(StoreError::Config(_))
    ));
}

#[test]
fn config_serde_defaults_and_unknown_fields() {
    let cfg: StoreConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, StoreConfig::default());
    assert_eq!(cfg.shards, 0);
    assert_eq!(cfg.cache_capacity_mb, 256);
    assert_eq!(cfg.password_memory_kib, 19_456);
    assert_eq!(cfg.password_iterations, 2);
    assert_eq!(cfg.session_ttl_secs, 30 * 24 * 60 * 60);
    let cfg: StoreConfig = serde_json::from_str(r#"{"shards": 4}"#).unwrap();
    assert_eq!(cfg.shards, 4);
    assert!(serde_json::from_str::<StoreConfig>(r#"{"shard": 4}"#).is_err());
    let round: StoreConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(round, cfg);
}

#[test]
fn auto_shards_take_the_database_count_or_the_machine_default() {
    let dir = tempfile::tempdir().unwrap();
    let auto = StoreConfig {
        shards: 0,
        ..test_config()
    };
    let (store, _) = open_in(dir.path(), &auto);
    assert_eq!(store.config().shards, crate::default_shards());
    assert!((1..=16).contains(&store.config().shards));
    drop(store);
    // A database created with another count keeps it under "auto".
    let dir = tempfile::tempdir().unwrap();
    drop(open_in(dir.path(), &test_config()));
    let (store, _) = open_in(dir.path(), &auto);
    assert_eq!(store.config().shards, 16);
}

#[test]
fn shard_trees() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), &test_config());
    let t = store.shard_tree("msg", 15).unwrap();
    t.insert("k", "v").unwrap();
    assert_eq!(store.db().open_tree("msg.15").unwrap().len(), 1);
    assert!(matches!(
        store.shard_tree("msg", 16),
        Err(StoreError::InvalidInput(_))
    ));
    for kind in ["", "users", "meta", "a.b", "Msg"] {
        assert!(
            matches!(store.shard_tree(kind, 0), Err(StoreError::InvalidInput(_))),
            "{kind:?}"
        );
    }
    store.flush().unwrap();
    assert_eq!(store.config().shards, 16);
    assert!(format!("{store:?}").contains("shards: 16"));
}
