//! The signing CA: loading an existing one (generated earlier or the operator's) and generating
//! the development CA.

use std::path::Path;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::files::{self, CERT_MODE, KEY_MODE};
use crate::{CertError, CertsConfig, CA_CERT_FILE, CA_KEY_FILE};

/// Lifetime of the generated development CA: 10 years.
pub(crate) const CA_LIFETIME: Duration = Duration::days(3650);
/// Certificates start this long before "now" to tolerate clock skew between hosts.
pub(crate) const BACKDATE: Duration = Duration::minutes(5);
/// Warn (CA) or regenerate (server certificate) when this little validity is left.
pub(crate) const RENEW_BEFORE: Duration = Duration::days(30);

/// The CA used for signing.
pub(crate) struct CaMaterial {
    /// The CA certificate file as read (or written), served unchanged by `Authority::ca_pem`.
    pub(crate) pem: String,
    /// The CA certificate (the first of the file).
    pub(crate) der: CertificateDer<'static>,
    /// An rcgen certificate with the CA's subject, key identifier and key, needed by rcgen to
    /// sign. For a loaded CA it is a re-signed copy: certificates it signs verify against `der`.
    pub(crate) signer: Certificate,
    /// The CA private key.
    pub(crate) key: KeyPair,
}

impl CaMaterial {
    /// Signs `params` for `public_key` with this CA.
    pub(crate) fn sign(
        &self,
        params: CertificateParams,
        public_key: &impl PublicKeyData,
    ) -> Result<Certificate, CertError> {
        params
            .signed_by(public_key, &self.signer, &self.key)
            .map_err(|e| CertError::Generate(format!("signing a certificate: {e}")))
    }
}

/// The operator's CA if configured, else the development CA in `dir`, generated on first use.
pub(crate) fn load_or_create(dir: &Path, cfg: &CertsConfig) -> Result<CaMaterial, CertError> {
    if let (Some(cert), Some(key)) = (&cfg.ca_cert, &cfg.ca_key) {
        tracing::info!(cert = %cert.display(), "using the operator's CA");
        return load(cert, key);
    }
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match (files::exists(&cert_path), files::exists(&key_path)) {
        (true, true) => load(&cert_path, &key_path),
        (false, false) => generate(&cert_path, &key_path),
        (present, _) => {
            let (have, missing) = if present {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            Err(CertError::Config(format!(
                "{} exists but {} does not: restore it, or remove both to generate a new CA \
                 (every device then needs a new certificate)",
                have.display(),
                missing.display()
            )))
        }
    }
}

/// Loads a CA certificate (first certificate of the PEM file) and its PKCS#8 key.
pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<CaMaterial, CertError> {
    let pem = files::read_text(cert_path)?;
    let der = files::parse_certs(cert_path, &pem)?.swap_remove(0);
    let key_pem = files::read_text(key_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| {
        CertError::bad_pem(
            key_path,
            format!("cannot load the CA private key (PKCS#8 PEM expected): {e}"),
        )
    })?;
    let ca = from_parts(pem, der, key, cert_path, key_path)?;
    tracing::debug!(cert = %cert_path.display(), "loaded CA");
    Ok(ca)
}

/// Checks that `der` is a CA certificate matching `key`, and rebuilds an rcgen signer for it.
fn from_parts(
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CaMaterial, CertError> {
    let bad = |what: String| CertError::Config(format!("{}: {what}", cert_path.display()));
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CertError::bad_pem(cert_path, format!("cannot parse certificate: {e}")))?;
    if !x509.is_ca() {
        return Err(bad(
            "not a CA certificate (basicConstraints CA:true missing)".into(),
        ));
    }
    if x509.public_key().raw != key.public_key_der().as_slice() {
        return Err(bad(format!(
            "the private key {} does not belong to this certificate",
            key_path.display()
        )));
    }
    let params = CertificateParams::from_ca_cert_der(&der)
        .map_err(|e| bad(format!("cannot use this CA certificate for signing: {e}")))?;
    let signer = params
        .self_signed(&key)
        .map_err(|e| bad(format!("cannot rebuild the CA for signing: {e}")))?;
    // Issued certificates name their issuer with the signer's subject: it must equal the
    // original subject byte for byte or chains would not build.
    let (_, rebuilt) = x509_parser::parse_x509_certificate(signer.der())
        .map_err(|e| CertError::Generate(format!("re-parsing the rebuilt CA: {e}")))?;
    if rebuilt.subject().as_raw() != x509.subject().as_raw() {
        return Err(bad(
            "its subject name cannot be reproduced exactly (repeated or multi-valued attributes)"
                .into(),
        ));
    }
    warn_if_expiring(x509.validity().not_after.timestamp(), cert_path);
    Ok(CaMaterial {
        pem,
        der,
        signer,
        key,
    })
}

fn warn_if_expiring(not_after: i64, path: &Path) {
    let left = not_after - OffsetDateTime::now_utc().unix_timestamp();
    if left <= 0 {
        tracing::error!(cert = %path.display(), "the CA certificate has expired");
    } else if left < RENEW_BEFORE.whole_seconds() {
        tracing::warn!(cert = %path.display(), days_left = left / 86_400, "the CA certificate expires soon");
    }
}

/// Generates the development CA and stores it (key first, so that a crash never leaves a
/// certificate without its key).
fn generate(cert_path: &Path, key_path: &Path) -> Result<CaMaterial, CertError> {
    let key = new_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "chatd");
    // A random suffix keeps CAs of different deployments apart in trust stores.
    let tag = hex::encode(rand::random::<[u8; 4]>());
    dn.push(DnType::CommonName, format!("chatd development CA {tag}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_LIFETIME;
    let cert = params
        .self_signed(&key)
        .map_err(|e| CertError::Generate(format!("self-signing the CA: {e}")))?;
    let pem = cert.pem();
    files::write_atomic(key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    files::write_atomic(cert_path, pem.as_bytes(), CERT_MODE)?;
    tracing::info!(cert = %cert_path.display(), "generated a development CA");
    Ok(CaMaterial {
        pem,
        der: cert.der().clone(),
        signer: cert,
        key,
    })
}

/// A fresh ECDSA P-256 key pair.
pub(crate) fn new_key() -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CertError::Generate(format!("generating a P-256 key: {e}")))
}

/// A random positive 16-byte serial number whose DER encoding is exactly those 16 bytes
/// (top bit clear so no sign byte is added, first byte non-zero so none is stripped).
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = rand::random::<[u8; 16]>();
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    SerialNumber::from_slice(&bytes)
}
