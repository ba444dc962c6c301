use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::{new_authority, pem_to_der, verify_client};
use crate::{make_csr, peer_identity, CertError, CertsConfig};

/// A CSR asking for a different subject, SANs, server EKU, key usages and CA:true.
fn greedy_csr() -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["evil.example.com".to_string()]).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "admin");
    dn.push(DnType::CommonName, "root-device");
    params.distinguished_name = dn;
    params
        .subject_alt_names
        .push(SanType::IpAddress([10, 0, 0, 1].into()));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    // basicConstraints (2.5.29.19) = SEQUENCE { BOOLEAN TRUE }
    let mut bc =
        CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x03, 0x01, 0x01, 0xff]);
    bc.set_criticality(true);
    params.custom_extensions.push(bc);
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    (csr, key)
}

#[test]
fn signs_csr_with_forced_subject() {
    let (_dir, auth) = new_authority();
    let (csr, key_pem) = make_csr("alice", "phone").expect("make_csr");
    assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
    let device = auth.sign_csr(&csr, "alice", "phone").expect("sign");
    assert_eq!(device.key_pem, None);
    let id = peer_identity(&pem_to_der(&device.cert_pem)).expect("identity");
    assert_eq!(id.organization, "alice");
    assert_eq!(id.common_name, "phone");
    assert_eq!(id.serial, device.serial);
    assert_eq!(id.not_after, device.expires_at);
    // The certificate carries the CSR's key.
    let key = KeyPair::from_pem(&key_pem).expect("key");
    let der = pem_to_der(&device.cert_pem);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert_eq!(x509.public_key().raw, key.public_key_der().as_slice());
    verify_client(&auth, &device.cert_pem).expect("chains to CA");
}

#[test]
fn requested_subject_and_extensions_are_ignored() {
    let (_dir, auth) = new_authority();
    let (csr, _key) = greedy_csr();
    let device = auth.sign_csr(&csr, "bob", "tablet").expect("sign");
    let der = pem_to_der(&device.cert_pem);
    let id = peer_identity(&der).expect("identity");
    assert_eq!(
        (id.organization.as_str(), id.common_name.as_str()),
        ("bob", "tablet")
    );

    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert!(!x509.is_ca());
    assert!(
        x509.subject_alternative_name().expect("san").is_none(),
        "no SANs copied"
    );
    let eku = x509
        .extended_key_usage()
        .expect("eku")
        .expect("present")
        .value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    let ku = x509.key_usage().expect("ku").expect("present").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let subject = x509.subject().to_string();
    assert!(
        !subject.contains("admin") && !subject.contains("root-device"),
        "{subject}"
    );
    verify_client(&auth, &device.cert_pem).expect("chains to CA");
}

/// Changes one base64 character 20 characters before the end of the body: inside the
/// signature value, keeping the DER structure intact.
fn tamper(pem: &str) -> String {
    let begin = pem.find("-----\n").expect("header") + 6;
    let end = pem.rfind("-----END").expect("footer");
    let body = &pem[begin..end];
    let last = body.trim_end().trim_end_matches('=').len();
    let pos = begin + last - 20;
    let original = pem.as_bytes()[pos];
    let replacement = if original == b'A' { 'B' } else { 'A' };
    let mut out = pem.to_string();
    out.replace_range(pos..pos + 1, &replacement.to_string());
    out
}

#[test]
fn tampered_csr_is_rejected() {
    let (_dir, auth) = new_authority();
    let (csr, _key) = make_csr("alice", "phone").expect("make_csr");
    let bad = tamper(&csr);
    assert_ne!(bad, csr);
    let err = auth.sign_csr(&bad, "alice", "phone").expect_err("tampered");
    assert!(
        matches!(err, CertError::BadCsr(ref m) if m.contains("signature")),
        "{err}"
    );
}

#[test]
fn garbage_csr_is_rejected() {
    let (_dir, auth) = new_authority();
    for input in [
        "",
        "hello world",
        "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let err = auth.sign_csr(input, "alice", "phone").expect_err("garbage");
        assert!(matches!(err, CertError::BadCsr(_)), "{input:?}: {err}");
    }
    // A certificate is not a CSR.
    let err = auth
        .sign_csr(auth.ca_pem(), "alice", "phone")
        .expect_err("cert");
    assert!(matches!(err, CertError::BadCsr(_)), "{err}");
}

#[test]
fn invalid_identities_are_rejected() {
    let (_dir, auth) = new_authority();
    let long = "x".repeat(65);
    for (user, device) in [("", "d"), ("u", ""), (long.as_str(), "d"), ("u", "a\nb")] {
        let err = auth.issue(user, device).expect_err("invalid id");
        assert!(matches!(err, CertError::InvalidIdentity(_)), "{err}");
    }
    auth.issue(&"x".repeat(64), "ünïcode-device")
        .expect("64 chars and unicode are fine");
}

#[test]
fn issued_key_matches_and_cert_chains() {
    let (_dir, auth) = new_authority();
    let device = auth.issue("carol", "watch").expect("issue");
    let key_pem = device.key_pem.as_deref().expect("generated key");
    assert!(key_pem.contains("BEGIN PRIVATE KEY"), "PKCS#8");
    let key = KeyPair::from_pem(key_pem).expect("key");
    let der = pem_to_der(&device.cert_pem);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert_eq!(x509.public_key().raw, key.public_key_der().as_slice());
    verify_client(&auth, &device.cert_pem).expect("chains to CA");

    // Serial: 16 random bytes, hex.
    assert_eq!(device.serial.len(), 32, "{}", device.serial);
    let other = auth.issue("carol", "watch").expect("issue");
    assert_ne!(other.serial, device.serial);
}

#[test]
fn validity_follows_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = CertsConfig {
        device_validity_hours: 2,
        ..CertsConfig::default()
    };
    let auth = crate::Authority::load_or_create(dir.path(), &cfg).expect("authority");
    assert_eq!(auth.device_validity().as_secs(), 7200);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let device = auth.issue("dave", "pc").expect("issue");
    let expires = i64::try_from(device.expires_at).expect("fits");
    assert!((now + 7200 - 5..=now + 7200 + 5).contains(&expires));
    let der = pem_to_der(&device.cert_pem);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("parse");
    let nb = x509.validity().not_before.timestamp();
    assert!(
        (now - 300 - 5..=now - 300 + 5).contains(&nb),
        "backdated 5 minutes"
    );
}

#[test]
fn expired_certificate_fails_verification() {
    let (_dir, auth) = new_authority();
    let now = OffsetDateTime::now_utc();
    let device = auth
        .issue_with_validity(
            "erin",
            "old",
            now - Duration::days(10),
            now - Duration::days(3),
        )
        .expect("issue");
    let err = verify_client(&auth, &device.cert_pem).expect_err("expired");
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");

    let future = auth
        .issue_with_validity(
            "erin",
            "new",
            now + Duration::days(1),
            now + Duration::days(3),
        )
        .expect("issue");
    verify_client(&auth, &future.cert_pem).expect_err("not yet valid");

    let err = auth
        .issue_with_validity("erin", "x", now, now - Duration::hours(1))
        .expect_err("inverted bounds");
    assert!(matches!(err, CertError::Generate(_)), "{err}");
}

#[test]
fn certificate_from_another_authority_fails_verification() {
    let (_dir, auth) = new_authority();
    let (_other_dir, other) = new_authority();
    let foreign = other.issue("mallory", "laptop").expect("issue");
    verify_client(&other, &foreign.cert_pem).expect("valid for its own CA");
    verify_client(&auth, &foreign.cert_pem).expect_err("unknown issuer");
}

#[test]
fn peer_identity_rejects_garbage_and_missing_fields() {
    let err = peer_identity(b"not der").expect_err("garbage");
    assert!(matches!(err, CertError::BadCert(_)), "{err}");
    // The CA certificate has an O but its CN is not a device; a server cert has no O.
    let (_dir, auth) = new_authority();
    let chain = auth.server_cert_chain();
    let err = peer_identity(&chain[0]).expect_err("no O");
    assert!(
        matches!(err, CertError::BadCert(ref m) if m.contains("organization")),
        "{err}"
    );
}
