//! Keys, CSRs and the rustls client configuration (ring provider) for the MQTT connection.

use std::sync::Arc;

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

/// A rustls client configuration (ring, TLS 1.2 and 1.3) trusting `ca_pem` and presenting
/// `client` = `(cert_pem, key_pem)` when given.
pub fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("TLS versions: {e}")))?
            .with_root_certificates(roots(ca_pem)?);
    let config = match client {
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

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        assert!(csr_pem("nope", "a", "b").is_err());
        assert!(roots("nope").is_err());
        assert!(client_config("nope", None).is_err());
    }
}
