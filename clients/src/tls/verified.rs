//! The SDK's check of the node's certificate: webpki's, remembering the chains it accepted.
//!
//! A verified chain is remembered process-wide, keyed by everything the result depends on (the
//! trusted CA, the server name and the exact certificates presented), together with the
//! validity window of those certificates. A later handshake presenting the same chain for the
//! same name under the same CA, inside that window, skips the CA signature check (one ECDSA
//! verification, about a tenth of a client's handshake CPU); everything else gets webpki's full
//! check. The server's handshake signature, which proves it holds the certificate's key, is
//! checked by webpki on every connection. Browsers keep such a cache for the same reason: most
//! connections of a process go to a few servers with the same certificate.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Chains remembered at once; the oldest goes first.
const REMEMBERED: usize = 16;

/// A chain that passed webpki's check, and the window in which the check holds.
struct Accepted {
    key: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

/// Chains accepted by webpki: [`ACCEPTED`] for the whole process.
#[derive(Default)]
pub(super) struct AcceptedChains(Mutex<VecDeque<Accepted>>);

impl AcceptedChains {
    fn holds(&self, key: &[u8], now: i64) -> bool {
        let list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .any(|a| a.key == key && a.not_before <= now && now <= a.not_after)
    }

    fn remember(&self, accepted: Accepted) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|a| a.key != accepted.key);
        if list.len() == REMEMBERED {
            list.pop_front();
        }
        list.push_back(accepted);
    }
}

/// The chains accepted by the verifiers of [`super::client_config`], shared by the process.
pub(super) static ACCEPTED: LazyLock<Arc<AcceptedChains>> = LazyLock::new(Arc::default);

/// A server certificate check for one CA (webpki's in the SDK), remembered chains first.
pub(super) struct Remembering<V = WebPkiServerVerifier> {
    inner: Arc<V>,
    /// The CA PEM the roots came from: part of every key.
    ca_pem: Vec<u8>,
    accepted: Arc<AcceptedChains>,
}

impl<V> std::fmt::Debug for Remembering<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembering").finish_non_exhaustive()
    }
}

impl<V> Remembering<V> {
    pub(super) fn new(inner: Arc<V>, ca_pem: &str, accepted: Arc<AcceptedChains>) -> Self {
        Remembering {
            inner,
            ca_pem: ca_pem.as_bytes().to_vec(),
            accepted,
        }
    }

    /// Length-prefixed CA, name and certificates: equal keys mean equal inputs to webpki.
    fn key(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
    ) -> Vec<u8> {
        let name = name.to_str();
        let parts = [self.ca_pem.as_slice(), name.as_bytes(), end_entity.as_ref()]
            .into_iter()
            .chain(intermediates.iter().map(|c| c.as_ref()));
        let mut key = Vec::with_capacity(2048);
        for part in parts {
            key.extend_from_slice(&(part.len() as u64).to_be_bytes());
            key.extend_from_slice(part);
        }
        key
    }
}

/// The window in which every certificate of the chain is valid (webpki checks those of the
/// path it builds, a subset of these), or `None` if one does not parse.
fn window(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> Option<(i64, i64)> {
    let mut window = (i64::MIN, i64::MAX);
    for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        window.0 = window.0.max(validity.not_before.timestamp());
        window.1 = window.1.min(validity.not_after.timestamp());
    }
    Some(window)
}

impl<V: ServerCertVerifier> ServerCertVerifier for Remembering<V> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = self.key(end_entity, intermediates, server_name);
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if self.accepted.holds(&key, secs) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some((not_before, not_after)) = window(end_entity, intermediates) {
            self.accepted.remember(Accepted {
                key,
                not_before,
                not_after,
            });
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// webpki, counting its calls.
    #[derive(Debug)]
    struct Counting {
        webpki: Arc<WebPkiServerVerifier>,
        calls: AtomicUsize,
    }

    impl ServerCertVerifier for Counting {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.webpki.supported_verify_schemes()
        }
    }

    /// A CA (PEM) and a chain `[leaf for localhost, CA]` valid from an hour ago for a day.
    fn chain() -> (String, Vec<CertificateDer<'static>>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(1);
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        (ca.pem(), vec![leaf.der().clone(), ca.der().clone()])
    }

    fn remembering(ca_pem: &str, accepted: &Arc<AcceptedChains>) -> Remembering<Counting> {
        let roots = Arc::new(super::super::roots(ca_pem).unwrap());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap();
        let counting = Counting {
            webpki,
            calls: AtomicUsize::new(0),
        };
        Remembering::new(Arc::new(counting), ca_pem, accepted.clone())
    }

    fn check(
        v: &Remembering<Counting>,
        chain: &[CertificateDer<'static>],
        name: &str,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
            .map(|_| ())
    }

    fn calls(v: &Remembering<Counting>) -> usize {
        v.inner.calls.load(Ordering::Relaxed)
    }

    #[test]
    fn a_chain_gets_the_full_check_once_per_name_and_ca() {
        let accepted = Arc::new(AcceptedChains::default());
        let (ca_pem, ours) = chain();
        let v = remembering(&ca_pem, &accepted);
        let now = UnixTime::now();
        check(&v, &ours, "localhost", now).unwrap();
        check(&v, &ours, "localhost", now).unwrap();
        assert_eq!(calls(&v), 1, "the second handshake was remembered");
        // Another name: full check, refused, and a refusal is never remembered.
        for _ in 0..2 {
            check(&v, &ours, "example.com", now).unwrap_err();
        }
        assert_eq!(calls(&v), 3);
        // Another CA sharing the same memory: full check, refused.
        let (other_pem, other_chain) = chain();
        let other = remembering(&other_pem, &accepted);
        check(&other, &ours, "localhost", now).unwrap_err();
        assert_eq!(calls(&other), 1);
        // Another chain for the same name under the first CA: full check, refused.
        check(&v, &other_chain, "localhost", now).unwrap_err();
        assert_eq!(calls(&v), 4);
    }

    #[test]
    fn outside_the_validity_window_the_full_check_runs_again() {
        let accepted = Arc::new(AcceptedChains::default());
        let (ca_pem, chain) = chain();
        let v = remembering(&ca_pem, &accepted);
        check(&v, &chain, "localhost", UnixTime::now()).unwrap();
        let later =
            UnixTime::since_unix_epoch(Duration::from_secs(UnixTime::now().as_secs() + 2 * 86_400));
        let err = check(&v, &chain, "localhost", later).unwrap_err();
        assert!(format!("{err:?}").contains("Expired"), "{err:?}");
        assert_eq!(calls(&v), 2);
    }

    #[test]
    fn the_oldest_chain_is_forgotten_first() {
        let accepted = AcceptedChains::default();
        let entry = |i: u8| Accepted {
            key: vec![i],
            not_before: 0,
            not_after: 10,
        };
        for i in 0..=REMEMBERED as u8 {
            accepted.remember(entry(i));
        }
        assert!(!accepted.holds(&[0], 5), "evicted");
        assert!(accepted.holds(&[1], 5) && accepted.holds(&[REMEMBERED as u8], 5));
        assert!(!accepted.holds(&[1], 11), "outside its window");
    }
}
