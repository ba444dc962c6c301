use std::path::PathBuf;

use crate::{CertError, CertsConfig};

#[test]
fn default_is_valid_and_seven_days() {
    let cfg = CertsConfig::default();
    assert_eq!(cfg.device_validity_hours, 168);
    cfg.validate().expect("default config is valid");
}

#[test]
fn rejects_half_pairs() {
    let cfg = CertsConfig {
        ca_cert: Some(PathBuf::from("/x/ca.pem")),
        ..CertsConfig::default()
    };
    let err = cfg.validate().expect_err("ca_cert without ca_key");
    assert!(
        matches!(err, CertError::Config(ref m) if m.contains("ca_key")),
        "{err}"
    );

    let cfg = CertsConfig {
        server_key: Some(PathBuf::from("/x/server.key")),
        ..CertsConfig::default()
    };
    let err = cfg.validate().expect_err("server_key without server_cert");
    assert!(
        matches!(err, CertError::Config(ref m) if m.contains("server_cert")),
        "{err}"
    );

    let cfg = CertsConfig {
        ca_cert: Some(PathBuf::from("/x/ca.pem")),
        ca_key: Some(PathBuf::from("/x/ca.key")),
        server_cert: Some(PathBuf::from("/x/s.pem")),
        server_key: Some(PathBuf::from("/x/s.key")),
        ..CertsConfig::default()
    };
    cfg.validate().expect("full pairs are valid");
}

#[test]
fn rejects_out_of_range_validity() {
    for hours in [0, 8761] {
        let cfg = CertsConfig {
            device_validity_hours: hours,
            ..CertsConfig::default()
        };
        let err = cfg.validate().expect_err("validity out of range");
        assert!(matches!(err, CertError::Config(_)), "{err}");
    }
    for hours in [1, 8760] {
        let cfg = CertsConfig {
            device_validity_hours: hours,
            ..CertsConfig::default()
        };
        cfg.validate().expect("validity in range");
    }
}

#[test]
fn checks_server_names() {
    let good = [
        "chat.example.com",
        "10.0.0.5",
        "fe80::1",
        "*.example.org",
        "node-1",
    ];
    let cfg = CertsConfig {
        server_names: good.iter().map(|s| s.to_string()).collect(),
        ..CertsConfig::default()
    };
    cfg.validate().expect("good names");
    for bad in ["", "has space", "a..b", "é.example", "http://x"] {
        let cfg = CertsConfig {
            server_names: vec![bad.to_string()],
            ..CertsConfig::default()
        };
        assert!(cfg.validate().is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn serde_defaults_and_round_trip() {
    let cfg: CertsConfig = serde_json::from_str("{}").expect("empty section");
    assert_eq!(cfg, CertsConfig::default());

    let cfg: CertsConfig = serde_json::from_str(
        r#"{"device_validity_hours": 24, "server_names": ["chat.example.com"]}"#,
    )
    .expect("partial section");
    assert_eq!(cfg.device_validity_hours, 24);
    assert_eq!(cfg.server_names, vec!["chat.example.com".to_string()]);
    assert_eq!(cfg.ca_cert, None);

    let text = serde_json::to_string(&cfg).expect("serialize");
    let back: CertsConfig = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, cfg);
}
