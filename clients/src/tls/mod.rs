//! Keys, CSRs and the rustls client configuration (ring provider) for the MQTT connection;
//! `verified`: the check of the node's certificate, remembering the chains it accepted.

mod verified;

use std::sync::Arc;

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, Result};

/// A new P-256 private key, as PKCS#8 PEM.
pub fn new_key_pem() -> Result<String> {
    rcgen::KeyPair::generate()
        .map(|key| key.serialize_pem())
        .map_err(|e| Error::Tls(format!("making a key pair: {e}")))
}

/// A CSR (PEM) for the key in `key_pem`, subject `CN = device, O = user`. The server sets the
/// subject itself; this one only says what the device expects.
pub fn csr_pem(key_pem: &str, user: &str, device: &str) -> Result<String> {
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|e| Error::Tls(format!("reading the device key: {e}")))?;
    let mut params = rcgen::CertificateParams::default();
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, device);
    name.push(rcgen::DnType::OrganizationName, user);
    params.distinguished_name = name;
    params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| Error::Tls(format!("making a CSR: {e}")))
}

/// A root store with the certificates of `ca_pem`.
pub fn roots(ca_pem: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| Error::Tls(format!("reading the CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls("no CA certificate in the CA PEM".into()));
    }
    Ok(roots)
}

/// ring's provider with AES-128-GCM (SHA-256) first among the cipher suites, where ring puts
/// AES-256-GCM (SHA-384) first. Both are TLS 1.3's own suites and secure; the handshake's
/// hashing and key schedule with SHA-256 use the CPU's SHA extensions where SHA-384 has none
/// on common x86 and ARM cores, and AES-128 takes 10 rounds per block to AES-256's 14. The
/// node honours the client's order, so this picks the suite of every connection the SDK makes.
fn crypto_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    let first = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    // A stable sort: the rest keep ring's order.
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != first);
    provider
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3, AES-128-GCM preferred) trusting
/// `ca_pem` and presenting `client` = `(cert_pem, key_pem)` when given. It keeps no session
/// cache: the node never resumes sessions (a resumed session would skip its check of the
/// device certificate), and an unused cache costs every connection about 14 KiB. The node's
/// certificate gets webpki's check, except that a chain this process accepted before for the
/// same name and CA, still inside its validity, skips the CA signature (module `verified`).
pub fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(crypto_provider());
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone())
            .build()
            .map_err(|e| Error::Tls(format!("server certificate verifier: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verified::Remembering::new(
            webpki,
            ca_pem,
            verified::ACCEPTED.clone(),
        )));
    let mut config = match client {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| Error::Tls(format!("reading the device certificate: {e}")))?;
            if chain.is_empty() {
                return Err(Error::Tls("no device certificate in its PEM".into()));
            }
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
                .map_err(|e| Error::Tls(format!("reading the device key: {e}")))?
                .ok_or_else(|| Error::Tls("no private key in the key PEM".into()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls(format!("certificate and key do not match: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn csr_from_a_fresh_key_parses_and_names_the_device() {
        let key = new_key_pem().unwrap();
        let csr = csr_pem(&key, "alice", "laptop").unwrap();
        assert!(
            csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{csr}"
        );
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let dn = format!("{:?}", parsed.params.distinguished_name);
        assert!(dn.contains("laptop") && dn.contains("alice"), "{dn}");
    }

    /// A CA (PEM), a chain `[leaf for localhost, CA]` and the leaf's key.
    fn localhost_chain() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (ca.pem(), vec![leaf.der().clone(), ca.der().clone()], key)
    }

    #[derive(Debug)]
    struct Presents(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Presents {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A server presenting `chain`, signing its handshakes with `key` (matching or not).
    fn server_with(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signer = provider.key_provider.load_private_key(key).unwrap();
        let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signer));
        let resolver = Presents(certified);
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        assert!(!server.ignore_client_order);
        Arc::new(server)
    }

    /// A server that honours the client's order of cipher suites, as the node does.
    fn server_for_localhost() -> (String, Arc<rustls::ServerConfig>) {
        let (ca_pem, chain, key) = localhost_chain();
        (ca_pem, server_with(chain, key))
    }

    /// An in-memory handshake of `client` with `server`; the client's error if any.
    fn handshake(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) -> std::result::Result<(), rustls::Error> {
        let mut wire = Vec::new();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            server.read_tls(&mut wire.as_slice()).unwrap();
            let _ = server.process_new_packets();
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets()?;
            wire.clear();
        }
        Err(rustls::Error::General(
            "the handshake did not finish".into(),
        ))
    }

    #[test]
    fn a_remembered_chain_still_needs_the_servers_key() {
        let (ca_pem, chain, key) = localhost_chain();
        let impostor_key =
            PrivateKeyDer::try_from(rcgen::KeyPair::generate().unwrap().serialize_der()).unwrap();
        let config = client_config(&ca_pem, None).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        for (key, ok) in [(key, true), (impostor_key, false)] {
            let mut client = rustls::ClientConnection::new(config.clone(), name.clone()).unwrap();
            let mut server =
                rustls::ServerConnection::new(server_with(chain.clone(), key)).unwrap();
            let result = handshake(&mut client, &mut server);
            assert_eq!(result.is_ok(), ok, "{result:?}");
        }
    }

    #[test]
    fn a_handshake_settles_on_tls13_aes_128_gcm() {
        let (ca_pem, server) = server_for_localhost();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client =
            rustls::ClientConnection::new(client_config(&ca_pem, None).unwrap(), name).unwrap();
        let mut server = rustls::ServerConnection::new(server).unwrap();
        handshake(&mut client, &mut server).unwrap();
        assert_eq!(
            client.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let suite = client.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(server.negotiated_cipher_suite().unwrap().suite(), suite);
    }

    #[test]
    fn the_provider_only_reorders_rings_suites() {
        let ring = rustls::crypto::ring::default_provider();
        let ours = crypto_provider();
        let names = |p: &CryptoProvider| {
            let mut v: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
            v.sort_by_key(|s| u16::from(*s));
            v
        };
        assert_eq!(names(&ours), names(&ring));
        assert_eq!(ours.kx_groups.len(), ring.kx_groups.len());
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(csr_pem("nope", "a", "b").is_err());
        assert!(roots("nope").is_err());
        assert!(client_config("nope", None).is_err());
    }
}
