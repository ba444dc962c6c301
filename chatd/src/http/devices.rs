//! Devices: enrolment and renewal (`POST /v1/devices`) and revocation
//! (`DELETE /v1/devices/{device_id}`).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::AuthUser;
use super::error::{blocking, ApiError};
use super::json::ApiJson;
use super::AppState;
use chat_certs::DeviceCert;
use chat_store::StoreError;

/// Body of `POST /v1/devices`.
#[derive(Debug, Deserialize)]
pub struct EnrolRequest {
    /// The device id: 1 to 32 characters of `[a-z0-9]`, unique per user.
    pub device_id: String,
    /// A PEM certificate signing request. Without it the server generates the
    /// key pair and returns the private key as `key_pem`.
    #[serde(default)]
    pub csr_pem: Option<String>,
}

/// Answer of `POST /v1/devices`.
#[derive(Debug, Serialize)]
pub struct DeviceEnrolled {
    /// The enrolled device id.
    pub device_id: String,
    /// The device's client certificate (PEM).
    pub cert_pem: String,
    /// The generated private key (PEM); only present when no CSR was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    /// The CA certificate that signed `cert_pem` (PEM).
    pub ca_pem: String,
    /// When the certificate expires, in unix seconds.
    pub expires_at: u64,
}

/// `POST /v1/devices`: enrols a device, or renews it (new certificate) when
/// it is already enrolled. 201 with the certificate; 409 for a revoked device.
pub async fn enrol(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<EnrolRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let EnrolRequest { device_id, csr_pem } = body;
    validate_device_id(&device_id)?;
    let (store, authority) = (state.store.clone(), state.authority.clone());
    let (u, d) = (user.clone(), device_id.clone());
    // Key generation, signing and the flushed store write are blocking work.
    let issued = blocking(move || -> Result<DeviceCert, ApiError> {
        // Refuse a retired device before spending CPU on a certificate;
        // `enrol_device` checks again, atomically.
        if store
            .device(&u, &d)?
            .is_some_and(|rec| rec.revoked_at.is_some())
        {
            return Err(StoreError::DeviceRevoked.into());
        }
        let cert = match csr_pem {
            Some(csr) => authority.sign_csr(&csr, &u, &d)?,
            None => authority.issue(&u, &d)?,
        };
        store.enrol_device(
            &u,
            &d,
            &cert.serial,
            cert.expires_at,
            Some(&cert.fingerprint),
        )?;
        Ok(cert)
    })
    .await?;
    let cert = issued.inspect_err(|err| {
        if err.status().is_client_error() {
            tracing::info!(user = %user, device = %device_id, code = err.code(), "enrolment refused");
        }
    })?;
    tracing::info!(
        user = %user,
        device = %device_id,
        serial = %cert.serial,
        expires_at = cert.expires_at,
        generated_key = cert.key_pem.is_some(),
        "device certificate issued"
    );
    let answer = DeviceEnrolled {
        device_id,
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        ca_pem: state.authority.ca_pem().to_owned(),
        expires_at: cert.expires_at,
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `DELETE /v1/devices/{device_id}`: revokes an active device of the caller
/// and closes its MQTT connection through the `on_device_revoked` hook. 204;
/// 404 when the caller has no such active device.
pub async fn revoke(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    device_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(device_id) =
        device_id.map_err(|_| ApiError::BadRequest("invalid device_id in path".into()))?;
    validate_device_id(&device_id)?;
    let store = state.store.clone();
    let (u, d) = (user.clone(), device_id.clone());
    if !blocking(move || store.revoke_device(&u, &d)).await?? {
        tracing::info!(user = %user, device = %device_id, "revocation refused: no such active device");
        return Err(ApiError::NotFound("no such active device".into()));
    }
    tracing::info!(user = %user, device = %device_id, "device revoked");
    (state.on_device_revoked)(&user, &device_id);
    Ok(StatusCode::NO_CONTENT)
}

fn validate_device_id(device_id: &str) -> Result<(), ApiError> {
    if chat_store::valid_id(device_id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "device_id must be 1 to 32 characters of [a-z0-9]".into(),
        ))
    }
}
