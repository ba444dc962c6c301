use std::fs;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use time::{Duration, OffsetDateTime};

use super::{load, new_authority, pem_to_der, verify_server};
use crate::{
    ca, CertError, CertsConfig, CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE,
};

const ALL_FILES: [&str; 4] = [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE];

#[test]
fn first_call_creates_files_second_reuses_them() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("nested").join("certs");
    let first = load(&dir, &CertsConfig::default());
    for name in ALL_FILES {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    let stored_ca = fs::read_to_string(dir.join(CA_CERT_FILE)).expect("ca.pem");
    assert_eq!(first.ca_pem(), stored_ca);
    assert_eq!(first.ca_der(), pem_to_der(&stored_ca));

    let second = load(&dir, &CertsConfig::default());
    assert_eq!(second.ca_pem(), first.ca_pem());
    assert_eq!(second.server_cert_chain(), first.server_cert_chain());
    assert_eq!(
        second.server_key().secret_der(),
        first.server_key().secret_der()
    );
    // A certificate issued after the reload chains to the original CA.
    let device = second.issue("alice", "phone").expect("issue");
    super::verify_client(&first, &device.cert_pem).expect("verifies against the original CA");
}

#[cfg(unix)]
#[test]
fn file_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _auth) = new_authority();
    let mode = |name: &str| {
        fs::metadata(dir.path().join(name))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(CA_KEY_FILE), 0o600);
    assert_eq!(mode(SERVER_KEY_FILE), 0o600);
    assert_eq!(mode(CA_CERT_FILE), 0o644);
    assert_eq!(mode(SERVER_CERT_FILE), 0o644);
}

#[test]
fn operator_ca_is_used() {
    let (dir_a, auth_a) = new_authority();
    let dir_b = tempfile::tempdir().expect("temp dir");
    let cfg = CertsConfig {
        ca_cert: Some(dir_a.path().join(CA_CERT_FILE)),
        ca_key: Some(dir_a.path().join(CA_KEY_FILE)),
        ..CertsConfig::default()
    };
    let auth_b = load(dir_b.path(), &cfg);
    assert_eq!(auth_b.ca_pem(), auth_a.ca_pem());
    assert!(
        !dir_b.path().join(CA_CERT_FILE).exists(),
        "no CA generated in B"
    );
    assert!(
        !dir_b.path().join(CA_KEY_FILE).exists(),
        "no CA key generated in B"
    );
    // B's server certificate and device certificates chain to A's CA.
    verify_server(&auth_a, "localhost").expect("A's server cert");
    let chain_b = auth_b.server_cert_chain();
    assert_ne!(chain_b[0], auth_a.server_cert_chain()[0]);
    verify_server(&auth_b, "localhost").expect("B's server cert verifies against A's CA");
    let device = auth_b.issue("alice", "laptop").expect("issue");
    super::verify_client(&auth_a, &device.cert_pem).expect("device cert chains to A's CA");
}

#[test]
fn operator_ca_with_wrong_key_is_rejected() {
    let (dir_a, _a) = new_authority();
    let (dir_b, _b) = new_authority();
    let dir_c = tempfile::tempdir().expect("temp dir");
    let cfg = CertsConfig {
        ca_cert: Some(dir_a.path().join(CA_CERT_FILE)),
        ca_key: Some(dir_b.path().join(CA_KEY_FILE)),
        ..CertsConfig::default()
    };
    let err = crate::Authority::load_or_create(dir_c.path(), &cfg).expect_err("mismatched key");
    assert!(
        matches!(err, CertError::Config(ref m) if m.contains("does not belong")),
        "{err}"
    );
}

#[test]
fn operator_server_cert_is_used() {
    let (dir_a, auth_a) = new_authority();
    let dir_b = tempfile::tempdir().expect("temp dir");
    let cfg = CertsConfig {
        server_cert: Some(dir_a.path().join(SERVER_CERT_FILE)),
        server_key: Some(dir_a.path().join(SERVER_KEY_FILE)),
        ..CertsConfig::default()
    };
    let auth_b = load(dir_b.path(), &cfg);
    assert_eq!(auth_b.server_cert_chain()[0], auth_a.server_cert_chain()[0]);
    assert!(!dir_b.path().join(SERVER_CERT_FILE).exists());
    assert!(
        dir_b.path().join(CA_CERT_FILE).exists(),
        "a CA is still generated"
    );
    auth_b.server_tls_config(true).expect("tls config");
}

#[test]
fn missing_files_and_bad_pem_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = CertsConfig {
        ca_cert: Some(dir.path().join("nope.pem")),
        ca_key: Some(dir.path().join("nope.key")),
        ..CertsConfig::default()
    };
    let err = crate::Authority::load_or_create(dir.path(), &cfg).expect_err("missing files");
    assert!(matches!(err, CertError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");

    let garbage = dir.path().join("garbage.pem");
    fs::write(&garbage, "not a certificate").expect("write");
    let cfg = CertsConfig {
        ca_cert: Some(garbage.clone()),
        ca_key: Some(garbage),
        ..CertsConfig::default()
    };
    let err = crate::Authority::load_or_create(dir.path(), &cfg).expect_err("bad pem");
    assert!(matches!(err, CertError::BadPem { .. }), "{err}");
}

#[test]
fn ca_cert_without_key_is_an_error_not_a_new_ca() {
    let (dir, auth) = new_authority();
    fs::remove_file(dir.path().join(CA_KEY_FILE)).expect("remove key");
    let err = crate::Authority::load_or_create(dir.path(), &CertsConfig::default())
        .expect_err("half a CA");
    assert!(matches!(err, CertError::Config(_)), "{err}");
    let stored = fs::read_to_string(dir.path().join(CA_CERT_FILE)).expect("ca.pem");
    assert_eq!(stored, auth.ca_pem(), "ca.pem left untouched");
}

#[test]
fn server_cert_regenerated_for_new_names_then_reused() {
    let (dir, first) = new_authority();
    let cfg = CertsConfig {
        server_names: vec!["chat.example.com".into(), "10.1.2.3".into()],
        ..CertsConfig::default()
    };
    let second = load(dir.path(), &cfg);
    assert_eq!(second.ca_pem(), first.ca_pem(), "CA kept");
    assert_ne!(second.server_cert_chain()[0], first.server_cert_chain()[0]);
    for name in [
        "chat.example.com",
        "10.1.2.3",
        "localhost",
        "127.0.0.1",
        "::1",
    ] {
        verify_server(&second, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let third = load(dir.path(), &cfg);
    assert_eq!(third.server_cert_chain(), second.server_cert_chain());
    // Dropping a name does not force a new certificate: the old one still covers the rest.
    let fourth = load(dir.path(), &CertsConfig::default());
    assert_eq!(fourth.server_cert_chain(), second.server_cert_chain());
}

#[test]
fn server_cert_regenerated_when_expiring_corrupt_or_foreign() {
    let (dir, auth) = new_authority();
    let cert_path = dir.path().join(SERVER_CERT_FILE);
    let key_path = dir.path().join(SERVER_KEY_FILE);

    // Expiring in 10 days.
    let key = ca::new_key().expect("key");
    let mut params =
        CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])
            .expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(300);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(10);
    let expiring = auth.ca.sign(params, &key).expect("sign");
    fs::write(&cert_path, expiring.pem()).expect("write cert");
    fs::write(&key_path, key.serialize_pem()).expect("write key");
    let reloaded = load(dir.path(), &CertsConfig::default());
    assert_ne!(reloaded.server_cert_chain()[0], *expiring.der());
    verify_server(&reloaded, "localhost").expect("fresh cert");

    // Corrupt certificate file.
    fs::write(&cert_path, "garbage").expect("write");
    let reloaded = load(dir.path(), &CertsConfig::default());
    verify_server(&reloaded, "localhost").expect("regenerated after corruption");

    // Key that does not match.
    fs::write(&key_path, KeyPair::generate().expect("key").serialize_pem()).expect("write");
    let reloaded = load(dir.path(), &CertsConfig::default());
    reloaded
        .server_tls_config(false)
        .expect("key matches again");

    // Issued by another CA (the server files of another authority).
    let (other_dir, _other) = new_authority();
    fs::copy(other_dir.path().join(SERVER_CERT_FILE), &cert_path).expect("copy");
    fs::copy(other_dir.path().join(SERVER_KEY_FILE), &key_path).expect("copy");
    let reloaded = load(dir.path(), &CertsConfig::default());
    verify_server(&reloaded, "localhost").expect("regenerated under our CA");
}

#[test]
fn generated_certificates_have_the_documented_lifetimes() {
    let (_dir, auth) = new_authority();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let ca_der = auth.ca_der();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
    let ca_days = (ca.validity().not_after.timestamp() - now) / 86_400;
    assert!((3649..=3650).contains(&ca_days), "CA lives {ca_days} days");
    assert!(ca.is_ca());
    let chain = auth.server_cert_chain();
    let (_, server) = x509_parser::parse_x509_certificate(&chain[0]).expect("server");
    let server_days = (server.validity().not_after.timestamp() - now) / 86_400;
    assert!(
        (364..=365).contains(&server_days),
        "server lives {server_days} days"
    );
    assert!(!server.is_ca());
    let eku = server.extended_key_usage().expect("eku").expect("present");
    assert!(eku.value.server_auth);
    assert_eq!(
        server
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok()),
        Some("localhost")
    );
}
