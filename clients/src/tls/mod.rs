//! Keys, CSRs and the rustls client configuration (ring provider) for the MQTT connection:
//! one base configuration per deployment (CA) and process, and per device certificate a copy
//! of it that presents the certificate; `verified`: the check of the node's certificate,
//! remembering the chains it accepted.

mod verified;

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};

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

/// Deployments whose base configuration ([`base_config`]) a process keeps; the oldest goes
/// first. A device talks to one deployment, `chat-bench` to one per run.
const BASES: usize = 4;

/// Base configurations by CA PEM: [`BASE_CONFIGS`] for the whole process.
#[derive(Default)]
struct Bases(Mutex<VecDeque<(String, Arc<ClientConfig>)>>);

impl Bases {
    /// The base for `ca_pem`: the one kept, or `make()`'s, then kept.
    fn get(
        &self,
        ca_pem: &str,
        make: impl FnOnce() -> Result<ClientConfig>,
    ) -> Result<Arc<ClientConfig>> {
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, base)) = lock().iter().find(|(ca, _)| ca == ca_pem) {
            return Ok(base.clone());
        }
        // Made outside the lock; two threads may both make one, and the first kept wins.
        let made = Arc::new(make()?);
        let mut bases = lock();
        if let Some((_, base)) = bases.iter().find(|(ca, _)| ca == ca_pem) {
            return Ok(base.clone());
        }
        if bases.len() == BASES {
            bases.pop_front();
        }
        bases.push_back((ca_pem.to_owned(), made.clone()));
        Ok(made)
    }
}

static BASE_CONFIGS: LazyLock<Bases> = LazyLock::new(Bases::default);

/// The configuration every device of the deployment behind `ca_pem` shares: the provider, the
/// check of the node's certificate (module `verified`), no client certificate and no session
/// cache. Made once per CA and process ([`BASE_CONFIGS`]): parsing the trusted roots, making
/// the verifier and the session cache the builder allocates (which the SDK then turns off)
/// were about a tenth of a client's CPU per connection in a connect storm
/// (`docs/BENCHMARKS-HISTORY.md`).
fn base_config(ca_pem: &str) -> Result<Arc<ClientConfig>> {
    BASE_CONFIGS.get(ca_pem, || make_base_config(ca_pem))
}

fn make_base_config(ca_pem: &str) -> Result<ClientConfig> {
    let provider = Arc::new(crypto_provider());
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone())
            .build()
            .map_err(|e| Error::Tls(format!("server certificate verifier: {e}")))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verified::Remembering::new(
            webpki,
            ca_pem,
            verified::ACCEPTED.clone(),
        )))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// Presents the device's certificate to every server that asks for one.
#[derive(Debug)]
struct DeviceCert(Arc<CertifiedKey>);

impl ResolvesClientCert for DeviceCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3, AES-128-GCM preferred) trusting
/// `ca_pem` and presenting `client` = `(cert_pem, key_pem)` when given: the deployment's base
/// configuration (made once per CA and process, and shared) with the device's certificate and
/// key, which are checked to match. It keeps no session cache: the node never resumes sessions (a resumed
/// session would skip its check of the device certificate), and an unused cache costs every
/// connection about 14 KiB. The node's certificate gets webpki's check, except that a chain
/// this process accepted before for the same name and CA, still inside its validity, skips
/// the CA signature (module `verified`). Build it once per certificate, not per connection:
/// loading the key costs a scalar multiplication.
pub fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let base = base_config(ca_pem)?;
    let Some((cert_pem, key_pem)) = client else {
        return Ok(base);
    };
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("reading the device certificate: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls("no device certificate in its PEM".into()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("reading the device key: {e}")))?
        .ok_or_else(|| Error::Tls("no private key in the key PEM".into()))?;
    let certified = CertifiedKey::from_der(chain, key, base.crypto_provider())
        .map_err(|e| Error::Tls(format!("certificate and key do not match: {e}")))?;
    let mut config = (*base).clone();
    config.client_auth_cert_resolver = Arc::new(DeviceCert(Arc::new(certified)));
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

    /// A CA: its certificate and key.
    struct Ca {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl Ca {
        fn new() -> Ca {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            Ca {
                cert: params.self_signed(&key).unwrap(),
                key,
            }
        }

        /// A leaf for `names` signed by this CA, and its key.
        fn issue(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
            let key = rcgen::KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let leaf = rcgen::CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &self.cert, &self.key)
                .unwrap();
            (leaf, key)
        }
    }

    fn der_key(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
        PrivateKeyDer::try_from(key.serialize_der()).unwrap()
    }

    /// A CA (PEM), a chain `[leaf for localhost, CA]` and the leaf's key.
    fn localhost_chain() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let ca = Ca::new();
        let (leaf, key) = ca.issue(&["localhost"]);
        let chain = vec![leaf.der().clone(), ca.cert.der().clone()];
        (ca.cert.pem(), chain, der_key(&key))
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
    fn the_device_certificate_is_presented_to_a_server_that_checks_it() {
        let ca = Ca::new();
        let (server_leaf, server_key) = ca.issue(&["localhost"]);
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![server_leaf.der().clone()], der_key(&server_key))
                .unwrap(),
        );
        let (device_leaf, device_key) = ca.issue(&["phone"]);
        let cert_pem = device_leaf.pem();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connect = |config: Arc<ClientConfig>| {
            let mut client = rustls::ClientConnection::new(config, name.clone()).unwrap();
            let mut server = rustls::ServerConnection::new(server.clone()).unwrap();
            let result = handshake(&mut client, &mut server);
            (result, server.peer_certificates().map(<[_]>::to_vec))
        };
        let device = client_config(
            &ca.cert.pem(),
            Some((&cert_pem, &device_key.serialize_pem())),
        );
        let (result, presented) = connect(device.unwrap());
        result.unwrap();
        assert_eq!(presented, Some(vec![device_leaf.der().clone()]));
        // Without a certificate the server refuses the handshake (the client sees its alert).
        let (result, _) = connect(client_config(&ca.cert.pem(), None).unwrap());
        assert!(result.is_err(), "{result:?}");
        // A key that is not the certificate's is refused before any connection.
        let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let err = client_config(&ca.cert.pem(), Some((&cert_pem, &other))).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
    }

    #[test]
    fn devices_of_one_deployment_share_its_base_configuration() {
        let ca = Ca::new();
        let ca_pem = ca.cert.pem();
        let base = base_config(&ca_pem).unwrap();
        let (leaf, key) = ca.issue(&["phone"]);
        let device = client_config(&ca_pem, Some((&leaf.pem(), &key.serialize_pem()))).unwrap();
        assert!(Arc::ptr_eq(
            base.crypto_provider(),
            device.crypto_provider()
        ));
        assert!(device.client_auth_cert_resolver.has_certs());
        assert!(!base.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn bases_are_kept_per_ca_and_the_oldest_goes_first() {
        let bases = Bases::default();
        let made = std::sync::atomic::AtomicUsize::new(0);
        let get = |ca: &str| {
            bases
                .get(ca, || {
                    made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    make_base_config(ca)
                })
                .unwrap()
        };
        let cas: Vec<String> = (0..=BASES).map(|_| Ca::new().cert.pem()).collect();
        let first = get(&cas[0]);
        assert!(Arc::ptr_eq(&first, &get(&cas[0])));
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 1);
        for ca in &cas[1..] {
            assert!(!Arc::ptr_eq(&first, &get(ca)));
        }
        // BASES + 1 deployments: the first was forgotten and is made again.
        let again = get(&cas[0]);
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), BASES + 2);
        // A failing make keeps nothing.
        assert!(bases.get("nope", || make_base_config("nope")).is_err());
        assert!(Arc::ptr_eq(&again, &get(&cas[0])));
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(csr_pem("nope", "a", "b").is_err());
        assert!(roots("nope").is_err());
        assert!(client_config("nope", None).is_err());
    }
}
