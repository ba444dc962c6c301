//! Device certificates: signing CSRs, issuing key pairs, making CSRs, reading peer identities.

use rcgen::{
    Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, PublicKeyData, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateSigningRequestDer;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::x509::AttributeTypeAndValue;

use crate::ca::{self, BACKDATE};
use crate::{Authority, CertError, DeviceCert, PeerIdentity};

/// Longest user or device id (the X.509 upper bound for O and CN).
pub const MAX_ID_LEN: usize = 64;

impl Authority {
    /// Signs a device CSR (PEM). The CSR's self-signature must verify (else
    /// [`CertError::BadCsr`]); whatever subject, names or extensions it requests are ignored. The
    /// certificate has subject `O = user, CN = device`, validity from 5 minutes ago to
    /// [`Authority::device_validity`] from now, a random 16-byte serial, key usage
    /// digitalSignature, extended key usage clientAuth and basicConstraints CA:false.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        user: &str,
        device: &str,
    ) -> Result<DeviceCert, CertError> {
        check_identity(user, device)?;
        let public_key = csr_public_key(csr_pem)?;
        let (not_before, not_after) = self.default_validity()?;
        let cert = self.sign_device(&public_key, user, device, not_before, not_after)?;
        self.device_cert(&cert, None)
    }

    /// Like [`Authority::sign_csr`], but generates a fresh P-256 key pair and returns its
    /// private key (PKCS#8 PEM) in [`DeviceCert::key_pem`].
    pub fn issue(&self, user: &str, device: &str) -> Result<DeviceCert, CertError> {
        let (not_before, not_after) = self.default_validity()?;
        self.issue_with_validity(user, device, not_before, not_after)
    }

    /// Like [`Authority::issue`] with explicit validity bounds (`not_before < not_after`).
    pub fn issue_with_validity(
        &self,
        user: &str,
        device: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<DeviceCert, CertError> {
        check_identity(user, device)?;
        if not_before >= not_after {
            return Err(CertError::Generate(format!(
                "not_before ({not_before}) must be before not_after ({not_after})"
            )));
        }
        let key = ca::new_key()?;
        let cert = self.sign_device(&key, user, device, not_before, not_after)?;
        self.device_cert(&cert, Some(key.serialize_pem()))
    }

    fn default_validity(&self) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
        let validity = time::Duration::try_from(self.device_validity())
            .map_err(|e| CertError::Config(format!("device validity: {e}")))?;
        let now = OffsetDateTime::now_utc();
        Ok((now - BACKDATE, now + validity))
    }

    fn sign_device(
        &self,
        public_key: &impl PublicKeyData,
        user: &str,
        device: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Certificate, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(user, device);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(ca::random_serial());
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = self.ca.sign(params, public_key)?;
        tracing::debug!(user, device, %not_after, "issued a device certificate");
        Ok(cert)
    }

    fn device_cert(
        &self,
        cert: &Certificate,
        key_pem: Option<String>,
    ) -> Result<DeviceCert, CertError> {
        let identity = peer_identity(cert.der())?;
        Ok(DeviceCert {
            cert_pem: cert.pem(),
            key_pem,
            serial: identity.serial,
            expires_at: identity.not_after,
            fingerprint: self.fingerprint(cert.der()),
        })
    }
}

fn subject(user: &str, device: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, user);
    dn.push(DnType::CommonName, device);
    dn
}

/// User and device ids: 1 to 64 characters, no control characters.
fn check_identity(user: &str, device: &str) -> Result<(), CertError> {
    for (what, id) in [("user id", user), ("device id", device)] {
        let len = id.chars().count();
        if len == 0 || len > MAX_ID_LEN || id.chars().any(char::is_control) {
            return Err(CertError::InvalidIdentity(format!(
                "{what} {id:?} must be 1 to {MAX_ID_LEN} characters without control characters"
            )));
        }
    }
    Ok(())
}

/// Decodes a PEM CSR, verifies its self-signature and returns its public key (nothing else of
/// the request is used).
fn csr_public_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo, CertError> {
    let der = first_csr_block(csr_pem)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| CertError::BadCsr(format!("cannot parse: {e}")))?;
    if !rest.is_empty() {
        return Err(CertError::BadCsr("trailing bytes after the request".into()));
    }
    csr.verify_signature()
        .map_err(|e| CertError::BadCsr(format!("signature does not verify: {e}")))?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| CertError::BadCsr(format!("unsupported public key: {e}")))
}

fn first_csr_block(csr_pem: &str) -> Result<CertificateSigningRequestDer<'static>, CertError> {
    for item in rustls_pemfile::read_all(&mut csr_pem.as_bytes()) {
        match item {
            Ok(rustls_pemfile::Item::Csr(der)) => return Ok(der),
            Ok(_) => continue,
            Err(e) => return Err(CertError::BadCsr(format!("cannot decode PEM: {e}"))),
        }
    }
    Err(CertError::BadCsr(
        "no CERTIFICATE REQUEST block found".into(),
    ))
}

/// Makes a P-256 key pair and a CSR (subject `CN = device, O = user`) for it: a helper for
/// clients and tests. Returns `(csr_pem, key_pem)`, the key as PKCS#8 PEM.
pub fn make_csr(user: &str, device: &str) -> Result<(String, String), CertError> {
    check_identity(user, device)?;
    let key = ca::new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(user, device);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| CertError::Generate(format!("making a CSR: {e}")))?;
    Ok((csr, key.serialize_pem()))
}

/// Parses a DER certificate and returns its subject's O and CN, its serial (hex) and its
/// validity bounds (unix seconds). It checks nothing about trust: call it on a certificate rustls
/// has already verified. A subject without exactly one O and one CN is rejected.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, CertError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| CertError::BadCert(format!("cannot parse: {e}")))?;
    let subject = x509.subject();
    let organization = single_attr(subject.iter_organization(), "organization (O)")?;
    let common_name = single_attr(subject.iter_common_name(), "common name (CN)")?;
    let validity = x509.validity();
    let not_after = u64::try_from(validity.not_after.timestamp())
        .map_err(|_| CertError::BadCert("not_after is before 1970".into()))?;
    Ok(PeerIdentity {
        organization,
        common_name,
        serial: hex::encode(x509.raw_serial()),
        not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(0),
        not_after,
    })
}

fn single_attr<'a, 'b: 'a>(
    mut attrs: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
    what: &str,
) -> Result<String, CertError> {
    let attr = attrs
        .next()
        .ok_or_else(|| CertError::BadCert(format!("subject has no {what}")))?;
    if attrs.next().is_some() {
        return Err(CertError::BadCert(format!("subject has several {what}")));
    }
    attr.as_str()
        .map(str::to_owned)
        .map_err(|e| CertError::BadCert(format!("subject {what} is not a string: {e}")))
}
