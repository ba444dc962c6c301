//! Tests of the crate (each uses its own temporary directories).

mod config;
mod devices;
mod recorded;
mod storage;
mod tls;

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::authority::crypto_provider;
use crate::{Authority, CertsConfig};

/// A fresh authority with the default configuration in a new temporary directory.
fn new_authority() -> (tempfile::TempDir, Authority) {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = Authority::load_or_create(dir.path(), &CertsConfig::default()).expect("authority");
    (dir, auth)
}

fn load(dir: &Path, cfg: &CertsConfig) -> Authority {
    Authority::load_or_create(dir, cfg).expect("authority")
}

/// The first certificate of a PEM text.
fn pem_to_der(pem: &str) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("decodable certificate")
}

/// A root store built independently of `Authority::root_store`: just the CA certificate.
fn roots(auth: &Authority) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(auth.ca_der()).expect("CA usable as trust anchor");
    roots
}

/// Verifies a client certificate the way the server does (WebPkiClientVerifier, now).
fn verify_client(auth: &Authority, cert_pem: &str) -> Result<(), rustls::Error> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(auth)), crypto_provider())
            .build()
            .expect("verifier");
    verifier
        .verify_client_cert(&pem_to_der(cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

/// Verifies the authority's server certificate for `name` against its CA.
fn verify_server(auth: &Authority, name: &str) -> Result<(), rustls::Error> {
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(auth)), crypto_provider())
            .build()
            .expect("verifier");
    let chain = auth.server_cert_chain();
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn authority_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authority>();
}
