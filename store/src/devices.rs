//! Enrolled devices (tree `devices`, key `user_id 0x00 device_id`).

use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, pair_key, prefix_key};
use crate::{valid_id, Store, StoreError, TREE_DEVICES};

/// Longest certificate serial accepted by [`Store::enrol_device`].
pub const MAX_CERT_SERIAL_LEN: usize = 128;

/// A device of a user, with the serial, expiry and fingerprint of its current
/// client certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeviceRecord {
    /// Owner (see [`crate::valid_id`]).
    pub user_id: String,
    /// Device id, unique per user (see [`crate::valid_id`]).
    pub device_id: String,
    /// First enrolment, unix seconds; kept across renewals.
    pub created_at: u64,
    /// Serial of the most recently issued client certificate.
    pub cert_serial: String,
    /// Expiry of that certificate, unix seconds.
    pub cert_expires_at: u64,
    /// Fingerprint of that certificate as the issuer computed it (`chat-certs`
    /// `DeviceCert::fingerprint`); `None` in records written before
    /// fingerprints were kept, and for enrolments that gave none. The MQTT
    /// listener trusts a certificate with the recorded fingerprint without
    /// checking the CA's signature on it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_fingerprint: Option<String>,
    /// When the device was revoked, unix seconds. A revoked device id is
    /// retired for good.
    pub revoked_at: Option<u64>,
}

impl Store {
    /// Enrols a device, or renews it (same record, same `created_at`, new
    /// certificate serial, expiry and fingerprint) if it already exists.
    ///
    /// Errors: [`StoreError::DeviceRevoked`] if the device id was revoked,
    /// [`StoreError::NotFound`] if the user does not exist (or was deleted),
    /// [`StoreError::InvalidInput`] for malformed ids or a `cert_serial` or
    /// `cert_fingerprint` that is empty, longer than [`MAX_CERT_SERIAL_LEN`]
    /// or not printable ASCII.
    pub fn enrol_device(
        &self,
        user_id: &str,
        device_id: &str,
        cert_serial: &str,
        cert_expires_at: u64,
        cert_fingerprint: Option<&str>,
    ) -> Result<DeviceRecord, StoreError> {
        check_ids(user_id, device_id)?;
        check_cert_field("cert serial", cert_serial)?;
        if let Some(fingerprint) = cert_fingerprint {
            check_cert_field("cert fingerprint", fingerprint)?;
        }
        let cert_fingerprint = cert_fingerprint.map(str::to_owned);
        if self.load_live_user(user_id)?.is_none() {
            return Err(StoreError::NotFound(format!("user {user_id:?}")));
        }
        let key = pair_key(user_id, device_id.as_bytes());
        loop {
            let old = self.inner.devices.get(&key)?;
            let record = match &old {
                Some(bytes) => {
                    let mut rec: DeviceRecord = decode(TREE_DEVICES, &key, bytes)?;
                    if rec.revoked_at.is_some() {
                        return Err(StoreError::DeviceRevoked);
                    }
                    rec.cert_serial = cert_serial.to_owned();
                    rec.cert_expires_at = cert_expires_at;
                    rec.cert_fingerprint.clone_from(&cert_fingerprint);
                    rec
                }
                None => DeviceRecord {
                    user_id: user_id.to_owned(),
                    device_id: device_id.to_owned(),
                    created_at: self.now(),
                    cert_serial: cert_serial.to_owned(),
                    cert_expires_at,
                    cert_fingerprint: cert_fingerprint.clone(),
                    revoked_at: None,
                },
            };
            let new = encode(&record)?;
            if self
                .inner
                .devices
                .compare_and_swap(&key, old, Some(new))?
                .is_ok()
            {
                self.commit()?;
                tracing::info!(user_id, device_id, cert_serial, "device enrolled");
                return Ok(record);
            }
            // Lost a race (concurrent renew or revoke): reread and retry.
        }
    }

    /// Revokes a device: keeps the record with `revoked_at` set, retiring the
    /// id for good. Returns `true` if the device existed and was active,
    /// `false` if it is unknown or already revoked.
    pub fn revoke_device(&self, user_id: &str, device_id: &str) -> Result<bool, StoreError> {
        if !valid_id(user_id) || !valid_id(device_id) {
            return Ok(false);
        }
        let key = pair_key(user_id, device_id.as_bytes());
        loop {
            let Some(old) = self.inner.devices.get(&key)? else {
                return Ok(false);
            };
            let mut rec: DeviceRecord = decode(TREE_DEVICES, &key, &old)?;
            if rec.revoked_at.is_some() {
                return Ok(false);
            }
            rec.revoked_at = Some(self.now());
            let new = encode(&rec)?;
            if self
                .inner
                .devices
                .compare_and_swap(&key, Some(old), Some(new))?
                .is_ok()
            {
                self.commit()?;
                // A revoked device gets no more pushes.
                self.remove_push_token(user_id, device_id)?;
                tracing::info!(user_id, device_id, "device revoked");
                return Ok(true);
            }
        }
    }

    /// The device's record (active or revoked), if it exists.
    pub fn device(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        if !valid_id(user_id) || !valid_id(device_id) {
            return Ok(None);
        }
        let key = pair_key(user_id, device_id.as_bytes());
        match self.inner.devices.get(&key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode(TREE_DEVICES, &key, &bytes)?)),
        }
    }

    /// All devices of the user (active and revoked), ordered by device id.
    /// A prefix scan over `user_id 0x00`, so user `"ab"` never sees the
    /// devices of user `"abc"`.
    pub fn devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>, StoreError> {
        if !valid_id(user_id) {
            return Ok(Vec::new());
        }
        self.inner
            .devices
            .scan_prefix(prefix_key(user_id))
            .map(|entry| {
                let (key, bytes) = entry?;
                decode(TREE_DEVICES, &key, &bytes)
            })
            .collect()
    }

    /// True if the device exists and is not revoked, and its user exists and
    /// is not disabled. Two point reads, no hashing: cheap enough for every
    /// MQTT connect. Certificate validity (expiry, chain) is the TLS layer's
    /// job and is not checked here.
    pub fn device_active(&self, user_id: &str, device_id: &str) -> Result<bool, StoreError> {
        let Some(rec) = self.device(user_id, device_id)? else {
            return Ok(false);
        };
        if rec.revoked_at.is_some() {
            return Ok(false);
        }
        self.user_enabled(user_id)
    }
}

fn check_ids(user_id: &str, device_id: &str) -> Result<(), StoreError> {
    if !valid_id(user_id) {
        return Err(StoreError::InvalidInput(format!(
            "invalid user id {user_id:?}"
        )));
    }
    if !valid_id(device_id) {
        return Err(StoreError::InvalidInput(format!(
            "invalid device id {device_id:?}"
        )));
    }
    Ok(())
}

/// A certificate serial or fingerprint: 1 to [`MAX_CERT_SERIAL_LEN`] printable ASCII chars.
fn check_cert_field(what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty()
        || value.len() > MAX_CERT_SERIAL_LEN
        || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(StoreError::InvalidInput(format!(
            "{what} must be 1..={MAX_CERT_SERIAL_LEN} printable ASCII chars"
        )));
    }
    Ok(())
}
