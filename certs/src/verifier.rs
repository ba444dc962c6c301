//! The device certificate check of the MQTT listener: [`IssuedCerts`] and [`RecordedFirst`].
//!
//! A connect storm makes the node check thousands of device certificates at once, and the CA's
//! signature on each costs an ECDSA P-256 verification (about 9% of the node's CPU in a storm
//! of 10,000 devices, `docs/BENCHMARKS-HISTORY.md`). Every certificate this node issued was
//! recorded at enrolment by its fingerprint ([`DeviceCert::fingerprint`](crate::DeviceCert)): a
//! SHA-256 over this CA's certificate and the device certificate's exact bytes. A presented
//! certificate whose fingerprint equals the one recorded for the device it names is one this
//! CA signed, so its signature needs no second check; its validity period is still checked
//! against the handshake's time. Anything else (a certificate from before a renewal, from
//! another CA, or one never recorded) gets webpki's full check. The handshake's own signature
//! (the device proving it holds the key) is checked by webpki on every connection.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

use crate::peer_identity;

/// Where the MQTT listener finds the fingerprints recorded at enrolment (the node's store).
pub trait IssuedCerts: Send + Sync + fmt::Debug {
    /// The fingerprint recorded for the current certificate of `device` of `user`
    /// ([`DeviceCert::fingerprint`](crate::DeviceCert)), or `None` when there is none: unknown
    /// or revoked device, an enrolment from before fingerprints were recorded, or a failed
    /// lookup. `None` only costs the full check.
    fn recorded_fingerprint(&self, user: &str, device: &str) -> Option<String>;
}

/// Lower-case hex SHA-256 over a label, the CA certificate and the device certificate (DER).
/// The CA is part of it so that a fingerprint recorded under one CA never matches once the
/// deployment has moved to another.
pub(crate) fn fingerprint(ca_der: &[u8], cert_der: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"chatd device certificate v1\0");
    hash.update((ca_der.len() as u64).to_be_bytes());
    hash.update(ca_der);
    hash.update(cert_der);
    hex::encode(hash.finalize())
}

/// A client certificate verifier that accepts a certificate recorded at enrolment (see the
/// module docs) after checking its validity period, and hands every other one to `inner`.
pub(crate) struct RecordedFirst {
    inner: Arc<dyn ClientCertVerifier>,
    issued: Arc<dyn IssuedCerts>,
    ca_der: Vec<u8>,
}

impl RecordedFirst {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        issued: Arc<dyn IssuedCerts>,
        ca_der: Vec<u8>,
    ) -> RecordedFirst {
        RecordedFirst {
            inner,
            issued,
            ca_der,
        }
    }

    /// Whether `cert` is the recorded certificate of the device it names and valid at `now`.
    fn recorded_and_current(&self, cert: &[u8], now: UnixTime) -> bool {
        let Ok(id) = peer_identity(cert) else {
            return false;
        };
        let Some(recorded) = self
            .issued
            .recorded_fingerprint(&id.organization, &id.common_name)
        else {
            return false;
        };
        let now = now.as_secs();
        // webpki's bounds: valid from not_before through not_after, both inclusive.
        recorded == fingerprint(&self.ca_der, cert) && id.not_before <= now && now <= id.not_after
    }
}

impl fmt::Debug for RecordedFirst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedFirst")
            .field("inner", &self.inner)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for RecordedFirst {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.recorded_and_current(end_entity, now) {
            return Ok(ClientCertVerified::assertion());
        }
        // Expired, foreign, renewed since or never recorded: webpki decides, with its errors.
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
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
