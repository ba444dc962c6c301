//! [`Authority`]: the loaded CA and server certificate, and the rustls server configurations.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::{self, CaMaterial};
use crate::server::{self, ServerMaterial};
use crate::verifier::{IssuedCerts, RecordedFirst};
use crate::{files, CertError, CertsConfig};

/// The deployment's certificate authority: the CA (with its key, for signing device
/// certificates) and the server certificate. `Send + Sync`; share it behind an `Arc`.
pub struct Authority {
    pub(crate) ca: CaMaterial,
    server: ServerMaterial,
    device_validity: Duration,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print keys.
        f.debug_struct("Authority")
            .field("server_chain_len", &self.server.chain.len())
            .field("device_validity", &self.device_validity)
            .finish_non_exhaustive()
    }
}

/// The crypto provider used everywhere in this crate: ring.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Authority {
    /// Loads the authority from `dir` (`ca.pem`, `ca.key`, `server.pem`, `server.key`) or creates
    /// the missing parts there on first use: the directory, a development CA (ECDSA P-256, valid
    /// 10 years) and a server certificate (valid 1 year). Key files get mode 0600 on unix, the
    /// certificates 0644.
    ///
    /// Operator paths in `cfg` take precedence over the files in `dir`. The generated server
    /// certificate is regenerated when it does not cover `localhost`, `127.0.0.1`, `::1` and
    /// `cfg.server_names`, expires within 30 days, or was issued by another CA.
    pub fn load_or_create(dir: &Path, cfg: &CertsConfig) -> Result<Authority, CertError> {
        cfg.validate()?;
        files::ensure_dir(dir)?;
        let ca = ca::load_or_create(dir, cfg)?;
        let server = server::load_or_create(dir, cfg, &ca)?;
        Ok(Authority {
            ca,
            server,
            device_validity: Duration::from_secs(cfg.device_validity_hours * 3600),
        })
    }

    /// The CA certificate file, PEM, exactly as stored (what clients should trust).
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// The CA certificate, DER (the first certificate of the CA file).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der.clone()
    }

    /// The server certificate chain, leaf first.
    pub fn server_cert_chain(&self) -> Vec<CertificateDer<'static>> {
        self.server.chain.clone()
    }

    /// The server private key.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        self.server.key.clone_key()
    }

    /// Validity given to device certificates.
    pub fn device_validity(&self) -> Duration {
        self.device_validity
    }

    /// The fingerprint of a device certificate (DER) under this CA, as in
    /// [`DeviceCert::fingerprint`](crate::DeviceCert::fingerprint).
    pub fn fingerprint(&self, cert_der: &[u8]) -> String {
        crate::verifier::fingerprint(&self.ca.der, cert_der)
    }

    /// A root store holding only this authority's CA certificate.
    pub fn root_store(&self) -> Result<RootCertStore, CertError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der())
            .map_err(|e| CertError::Tls(format!("CA certificate unusable as trust anchor: {e}")))?;
        Ok(roots)
    }

    /// A rustls server configuration (ring provider, TLS 1.2 and 1.3, no ALPN, no session
    /// resumption) presenting the server certificate. With `require_client_cert`, every client
    /// must present a certificate issued by this CA and currently valid; otherwise clients are
    /// not asked for one.
    pub fn server_tls_config(
        &self,
        require_client_cert: bool,
    ) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let verifier = if require_client_cert {
            Some(self.client_verifier()?)
        } else {
            None
        };
        self.tls_config(verifier)
    }

    /// The MQTT listener's configuration: like `server_tls_config(true)`, but a device
    /// certificate whose fingerprint `issued` recorded at enrolment ([`DeviceCert::fingerprint`])
    /// skips the check of the CA's signature on it (its validity period is still checked).
    /// Every other certificate gets the full check.
    ///
    /// [`DeviceCert::fingerprint`]: crate::DeviceCert::fingerprint
    pub fn device_tls_config(
        &self,
        issued: Arc<dyn IssuedCerts>,
    ) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let verifier = RecordedFirst::new(self.client_verifier()?, issued, self.ca.der.to_vec());
        self.tls_config(Some(Arc::new(verifier)))
    }

    /// webpki's check of client certificates against this CA.
    fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
        WebPkiClientVerifier::builder_with_provider(Arc::new(self.root_store()?), crypto_provider())
            .build()
            .map_err(|e| CertError::Tls(format!("client certificate verifier: {e}")))
    }

    fn tls_config(
        &self,
        client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    ) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let builder = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CertError::Tls(format!("protocol versions: {e}")))?;
        let builder = match client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.server_cert_chain(), self.server_key())
            .map_err(|e| CertError::Tls(format!("server certificate: {e}")))?;
        // No session resumption: a resumed session skips the client certificate check, so a
        // certificate that expired since would keep working. It also saves the two session
        // tickets rustls would otherwise encrypt and send after every handshake.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(config))
    }
}
