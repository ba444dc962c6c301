//! `chat-certs` is the certificate authority of a chatd deployment. On the first start of a node
//! it creates a development CA (ECDSA P-256, 10 years) and a server certificate (1 year) under a
//! directory (the node passes `DATA_DIR/certs`) and reuses them on later starts; operators may
//! point [`CertsConfig`] at their own CA and/or server certificate instead. The authority signs
//! device CSRs (or generates a key pair for devices that sent none), issuing short-lived client
//! certificates whose subject is `O = user_id, CN = device_id`, and builds the rustls server
//! configuration that verifies those certificates. The entry point is
//! [`Authority::load_or_create`].
//!
//! Layout:
//! - `config`: [`CertsConfig`], the `[certs]` section of the node configuration.
//! - `authority`: [`Authority`]: loading/creating the material, accessors, rustls config.
//! - `ca`: loading an existing CA (generated or the operator's) and generating the development CA.
//! - `server`: the generated server certificate and the checks that decide when to regenerate it.
//! - `device`: device certificates ([`Authority::sign_csr`], [`Authority::issue`]), [`make_csr`]
//!   and [`peer_identity`].
//! - `verifier`: the MQTT listener's device certificate check, which skips the CA signature
//!   for a certificate whose fingerprint was recorded at enrolment ([`IssuedCerts`]).
//! - `files`: reading PEM files and writing files atomically with the right permissions.

mod authority;
mod ca;
mod config;
mod device;
mod files;
mod server;
mod verifier;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use authority::Authority;
pub use config::{CertsConfig, DEFAULT_DEVICE_VALIDITY_HOURS, MAX_DEVICE_VALIDITY_HOURS};
pub use device::{make_csr, peer_identity, MAX_ID_LEN};
pub use verifier::IssuedCerts;

/// File name of the generated CA certificate inside the certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the generated CA private key inside the certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the generated server certificate inside the certificate directory.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the generated server private key inside the certificate directory.
pub const SERVER_KEY_FILE: &str = "server.key";

/// A certificate issued to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCert {
    /// The certificate, PEM encoded.
    pub cert_pem: String,
    /// The device's private key (PKCS#8 PEM) when the authority generated it ([`Authority::issue`]);
    /// `None` when the device sent a CSR and keeps its own key.
    pub key_pem: Option<String>,
    /// The certificate serial number, lower-case hex of its DER bytes.
    pub serial: String,
    /// End of validity, unix seconds.
    pub expires_at: u64,
    /// Lower-case hex SHA-256 over this CA's certificate and this one (64 characters), for
    /// the node to record at enrolment: the MQTT listener skips the CA signature check for a
    /// certificate whose fingerprint is the one recorded for its device ([`IssuedCerts`]).
    pub fingerprint: String,
}

/// The identity carried by a device certificate, as read by [`peer_identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject organization (O): the user id.
    pub organization: String,
    /// Subject common name (CN): the device id.
    pub common_name: String,
    /// Serial number, lower-case hex of its DER bytes (same format as [`DeviceCert::serial`]).
    pub serial: String,
    /// Start of validity, unix seconds (0 for a date before 1970).
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
}

/// Errors of this crate. Every message carries its cause.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Reading, writing or creating a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate signing request could not be parsed, or its signature does not verify.
    #[error("bad certificate signing request: {0}")]
    BadCsr(String),
    /// A PEM file does not hold what it should (no certificate, no key, undecodable content).
    #[error("{}: bad PEM: {reason}", path.display())]
    BadPem {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A DER certificate could not be parsed or lacks something required.
    #[error("bad certificate: {0}")]
    BadCert(String),
    /// A user or device id cannot be put in a certificate subject.
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// Generating a key or a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// The configuration, or the material it points at, is unusable.
    #[error("certificate configuration: {0}")]
    Config(String),
    /// Building a rustls configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl CertError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CertError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_pem(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CertError::BadPem {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
