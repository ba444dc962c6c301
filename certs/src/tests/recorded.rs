//! The MQTT listener's device certificate check: recorded fingerprints first, webpki for the rest.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::ResolvesClientCert;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, ServerConfig,
    ServerConnection, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

use super::tls::handshake;
use super::{new_authority, pem_to_der};
use crate::authority::crypto_provider;
use crate::verifier::RecordedFirst;
use crate::{Authority, DeviceCert, IssuedCerts};

/// Fingerprints by (user, device), as the node's store keeps them; counts lookups.
#[derive(Debug, Default)]
struct Recorded {
    map: Mutex<HashMap<(String, String), String>>,
    lookups: AtomicUsize,
}

impl Recorded {
    fn record(&self, user: &str, device: &str, cert: &DeviceCert) {
        self.map.lock().unwrap().insert(
            (user.to_owned(), device.to_owned()),
            cert.fingerprint.clone(),
        );
    }
}

impl IssuedCerts for Recorded {
    fn recorded_fingerprint(&self, user: &str, device: &str) -> Option<String> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let map = self.map.lock().unwrap();
        map.get(&(user.to_owned(), device.to_owned())).cloned()
    }
}

/// A verifier that refuses every certificate: behind [`RecordedFirst`], whatever passes was
/// accepted by the fast path alone.
#[derive(Debug)]
struct RefuseAll;

impl ClientCertVerifier for RefuseAll {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Err(rustls::Error::General("refused by the full check".into()))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no signatures here".into()))
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no signatures here".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ECDSA_NISTP256_SHA256]
    }
}

fn fast_path_only(auth: &Authority, recorded: Arc<Recorded>) -> RecordedFirst {
    RecordedFirst::new(Arc::new(RefuseAll), recorded, auth.ca_der().to_vec())
}

fn check(verifier: &impl ClientCertVerifier, cert: &DeviceCert) -> Result<(), rustls::Error> {
    verifier
        .verify_client_cert(&pem_to_der(&cert.cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn only_the_recorded_certificate_of_the_device_it_names_skips_the_full_check() {
    let (_dir, auth) = new_authority();
    let recorded = Arc::new(Recorded::default());
    let verifier = fast_path_only(&auth, recorded.clone());
    let first = auth.issue("alice", "phone").unwrap();
    recorded.record("alice", "phone", &first);
    check(&verifier, &first).expect("recorded: accepted without the full check");

    // A certificate of this CA never recorded, and one recorded for another device.
    let bob = auth.issue("bob", "phone").unwrap();
    check(&verifier, &bob).expect_err("not recorded");
    recorded.record("carol", "phone", &bob);
    check(&verifier, &bob).expect_err("recorded for carol, names bob");

    // After a renewal the record names the new certificate; the old one needs the full check.
    let renewed = auth.issue("alice", "phone").unwrap();
    assert_ne!(renewed.fingerprint, first.fingerprint);
    recorded.record("alice", "phone", &renewed);
    check(&verifier, &renewed).expect("renewed: accepted");
    check(&verifier, &first).expect_err("the certificate before the renewal");
    assert_eq!(recorded.lookups.load(Ordering::Relaxed), 5);
}

#[test]
fn a_recorded_certificate_outside_its_validity_is_refused() {
    let (_dir, auth) = new_authority();
    let recorded = Arc::new(Recorded::default());
    let verifier = fast_path_only(&auth, recorded.clone());
    let now = OffsetDateTime::now_utc();
    for (device, from, to) in [
        ("expired", now - Duration::days(2), now - Duration::days(1)),
        ("future", now + Duration::days(1), now + Duration::days(2)),
    ] {
        let cert = auth.issue_with_validity("alice", device, from, to).unwrap();
        recorded.record("alice", device, &cert);
        check(&verifier, &cert).expect_err(device);
    }
}

#[test]
fn a_foreign_ca_or_a_new_ca_never_matches_a_record() {
    let (_dir, auth) = new_authority();
    let (_other_dir, other) = new_authority();
    let recorded = Arc::new(Recorded::default());
    let ours = auth.issue("alice", "phone").unwrap();
    recorded.record("alice", "phone", &ours);
    // Another CA's certificate for the same device: its fingerprint differs, and webpki
    // refuses it in the handshake.
    let foreign = other.issue("alice", "phone").unwrap();
    assert_ne!(foreign.fingerprint, ours.fingerprint);
    let server_config = auth.device_tls_config(recorded.clone()).unwrap();
    for (cert, ok) in [(&ours, true), (&foreign, false)] {
        let key = cert.key_pem.as_deref().unwrap();
        let result = connect(server_config.clone(), presenting(&auth, cert, key));
        assert_eq!(result.is_ok(), ok, "{result:?}");
    }
    // The deployment moved to another CA: the old CA's recorded certificate matches nothing.
    let moved = fast_path_only(&other, recorded);
    check(&moved, &ours).expect_err("recorded under the old CA");
}

/// Presents `cert` with the given private key (PEM), matching or not.
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesClientCert for Presents {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn presenting(auth: &Authority, cert: &DeviceCert, key_pem: &str) -> Arc<ClientConfig> {
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let signer = crypto_provider()
        .key_provider
        .load_private_key(key)
        .unwrap();
    let certified = CertifiedKey::new(vec![pem_to_der(&cert.cert_pem)], signer);
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(auth.root_store().unwrap())
        .with_client_cert_resolver(Arc::new(Presents(Arc::new(certified))));
    Arc::new(config)
}

/// An in-memory handshake; the server's error if any.
fn connect(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Result<(), rustls::Error> {
    let mut server = ServerConnection::new(server).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(client, name).unwrap();
    handshake(&mut client, &mut server)
}

#[test]
fn the_device_still_proves_it_holds_the_key_of_a_recorded_certificate() {
    let (_dir, auth) = new_authority();
    let recorded = Arc::new(Recorded::default());
    let cert = auth.issue("alice", "phone").unwrap();
    recorded.record("alice", "phone", &cert);
    let server_config = auth.device_tls_config(recorded.clone()).unwrap();
    let stolen_without_key = auth.issue("mallory", "laptop").unwrap();
    for (key, ok) in [
        (cert.key_pem.as_deref().unwrap(), true),
        (stolen_without_key.key_pem.as_deref().unwrap(), false),
    ] {
        let result = connect(server_config.clone(), presenting(&auth, &cert, key));
        assert_eq!(result.is_ok(), ok, "{result:?}");
    }
    assert_eq!(recorded.lookups.load(Ordering::Relaxed), 2);
}
