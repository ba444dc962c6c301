//! Who is on the other end of a TLS connection: the user from the client certificate's
//! subject O, the device from its CN. rustls has already verified the chain and validity.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The identity a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject O: the user id.
    pub user: String,
    /// Subject CN: the device id, which is also the MQTT client id.
    pub device: String,
}

/// Reads O and CN from a DER certificate. `None` when either is missing or not UTF-8.
pub fn from_certificate(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_organization()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    let device = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(PeerIdentity { user, device })
}
