//! The admin API (`/admin/v1/...`) and `GET /metrics`, behind the admin token of `[admin]`.
//!
//! Every admin request carries `Authorization: Bearer ADMIN_TOKEN`. The token is compared in
//! constant time (SHA-256 of both sides, then `subtle`). With no token configured the admin
//! API and the dashboard answer 403 `forbidden` ("disabled"); a missing or wrong token is 401
//! `unauthorized`. The endpoints are documented with curl examples in `docs/OPERATIONS.md`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::auth::bearer_token;
use super::error::{blocking, ApiError};
use super::AppState;

/// Shortest admin token accepted in the configuration.
pub const MIN_TOKEN_LEN: usize = 16;
/// Default and largest `limit` of `GET /admin/v1/push/dead-letters`.
const DEAD_LETTERS_DEFAULT: usize = 100;
const DEAD_LETTERS_MAX: usize = 1000;

/// `[admin]` settings: the admin API, the dashboard and `/metrics`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for the admin API, the dashboard and `/metrics`, at least 16 characters.
    /// Empty (the default): the admin API and the dashboard are off.
    pub token: String,
    /// Serve `/metrics` without the token, for a scraper on a private network (default
    /// `false`).
    pub metrics_public: bool,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_empty() {
            "<none>"
        } else {
            "<redacted>"
        };
        f.debug_struct("AdminConfig")
            .field("token", &token)
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

impl AdminConfig {
    /// Checks the token's form; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.token;
        if !t.is_empty() && (t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(format!(
                "admin.token must be empty (admin API off) or at least {MIN_TOKEN_LEN} printable \
                 ASCII characters without spaces"
            ));
        }
        Ok(())
    }

    /// Whether the admin API and the dashboard are on.
    pub fn enabled(&self) -> bool {
        !self.token.is_empty()
    }

    /// Checks the request's bearer token against the configured one.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.enabled() {
            return Err(ApiError::Forbidden(DISABLED.into()));
        }
        let given = bearer_token(headers)
            .ok_or_else(|| ApiError::Unauthorized("missing admin bearer token".into()))?;
        let (given, wanted) = (Sha256::digest(given), Sha256::digest(&self.token));
        if bool::from(given.ct_eq(&wanted)) {
            Ok(())
        } else {
            tracing::warn!("admin request with a wrong token refused");
            Err(ApiError::Unauthorized("invalid admin token".into()))
        }
    }
}

/// Why an admin request is refused when no token is configured.
pub(crate) const DISABLED: &str =
    "the admin API and dashboard are disabled: set admin.token in the configuration";

/// Proof that the request carried the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        AppState::from_ref(state).admin.check(&parts.headers)?;
        Ok(Admin)
    }
}

/// `GET /metrics`: Prometheus text (admin token unless `admin.metrics_public`).
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.admin.metrics_public {
        if let Err(e) = state.admin.check(&headers) {
            return e.into_response();
        }
    }
    let mut response = state.ops.render_metrics().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /admin/v1/stats`: the node at a glance ([`crate::ops::Stats`]).
pub async fn stats(_: Admin, State(state): State<AppState>) -> Json<crate::ops::Stats> {
    Json(state.ops.stats())
}

/// One device in a user lookup.
#[derive(Debug, Serialize)]
struct DeviceView {
    device_id: String,
    created_at: u64,
    cert_expires_at: u64,
    revoked_at: Option<u64>,
    /// Has an open MQTT connection now.
    connected: bool,
    /// Connected but said it is away (`offline` on its status topic).
    away: bool,
}

/// `GET /admin/v1/users/{user_id}`: the account, its devices, online state and last seen.
pub async fn user(
    _: Admin,
    State(state): State<AppState>,
    user: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let user = user_in_path(user)?;
    let store = state.store.clone();
    let u = user.clone();
    let (record, devices, last_seen) = blocking(move || -> Result<_, ApiError> {
        let record = store.user(&u)?;
        let devices = store.devices(&u)?;
        let last_seen = store.last_seen(&u)?;
        Ok((record, devices, last_seen))
    })
    .await??;
    let record = record.ok_or_else(|| ApiError::NotFound(format!("no user {user:?}")))?;
    let connected = state.ops.connected_devices(&user);
    let devices: Vec<DeviceView> = devices
        .into_iter()
        .map(|d| {
            let live = connected.iter().find(|(id, _)| *id == d.device_id);
            DeviceView {
                connected: live.is_some(),
                away: live.is_some_and(|(_, away)| *away),
                device_id: d.device_id,
                created_at: d.created_at,
                cert_expires_at: d.cert_expires_at,
                revoked_at: d.revoked_at,
            }
        })
        .collect();
    Ok(Json(json!({
        "user_id": record.user_id,
        "created_at": record.created_at,
        "disabled": record.disabled,
        "online": state.ops.is_online(&user),
        "last_seen": last_seen,
        "devices": devices,
    })))
}

/// `POST /admin/v1/users/{user_id}/disable`: the user can no longer log in, enrol or connect;
/// their open connections are closed.
pub async fn disable_user(
    admin: Admin,
    state: State<AppState>,
    user: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(admin, state, user, true).await
}

/// `POST /admin/v1/users/{user_id}/enable`: undoes `disable`.
pub async fn enable_user(
    admin: Admin,
    state: State<AppState>,
    user: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(admin, state, user, false).await
}

async fn set_disabled(
    _: Admin,
    State(state): State<AppState>,
    user: Result<Path<String>, PathRejection>,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    let user = user_in_path(user)?;
    let (store, u) = (state.store.clone(), user.clone());
    if !blocking(move || store.set_user_disabled(&u, disabled)).await?? {
        return Err(ApiError::NotFound(format!("no user {user:?}")));
    }
    // Closed after the flag is stored, so a reconnect is already refused.
    let closed = if disabled {
        state.ops.disconnect_user(&user)
    } else {
        0
    };
    tracing::info!(user = %user, disabled, closed, "admin: user disabled flag set");
    Ok(Json(json!({
        "user_id": user,
        "disabled": disabled,
        "connections_closed": closed,
    })))
}

/// `DELETE /admin/v1/users/{user_id}/devices/{device_id}`: revokes a device (no more
/// certificates, connection closed). 404 when there is no such active device.
pub async fn revoke_device(
    _: Admin,
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((user, device)) =
        ids.map_err(|_| ApiError::BadRequest("invalid user_id or device_id in path".into()))?;
    if !chat_store::valid_id(&user) || !chat_store::valid_id(&device) {
        return Err(ApiError::BadRequest(
            "user_id and device_id must be 1 to 32 characters of [a-z0-9]".into(),
        ));
    }
    let (store, u, d) = (state.store.clone(), user.clone(), device.clone());
    if !blocking(move || store.revoke_device(&u, &d)).await?? {
        return Err(ApiError::NotFound("no such active device".into()));
    }
    tracing::info!(user = %user, device = %device, "admin: device revoked");
    (state.on_device_revoked)(&user, &device);
    Ok(Json(
        json!({ "user_id": user, "device_id": device, "revoked": true }),
    ))
}

/// Query of `GET /admin/v1/push/dead-letters`.
#[derive(Debug, Deserialize)]
pub struct DeadLetterQuery {
    /// Most dead letters returned (1-1000, default 100).
    limit: Option<usize>,
}

/// `GET /admin/v1/push/dead-letters`: pushes that gave up, oldest first.
pub async fn dead_letters(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::BadRequest("limit must be a number from 1 to 1000".into()))?;
    let limit = query.limit.unwrap_or(DEAD_LETTERS_DEFAULT);
    if !(1..=DEAD_LETTERS_MAX).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be a number from 1 to 1000".into(),
        ));
    }
    let push = state.ops.push();
    Ok(Json(json!({
        "push_enabled": push.enabled(),
        "dead_letters": push.dead_letters(limit),
    })))
}

/// `POST /admin/v1/push/dead-letters/{id}/retry`: queues a dead letter again.
pub async fn retry_dead_letter(
    _: Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = dead_letter_id(id)?;
    if !state.ops.push().retry_dead_letter(&id) {
        return Err(ApiError::NotFound(format!("no dead letter {id:?}")));
    }
    tracing::info!(id = %id, "admin: dead letter queued again");
    Ok(Json(json!({ "id": id, "retried": true })))
}

/// `DELETE /admin/v1/push/dead-letters/{id}`: deletes a dead letter.
pub async fn drop_dead_letter(
    _: Admin,
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = dead_letter_id(id)?;
    if !state.ops.push().drop_dead_letter(&id) {
        return Err(ApiError::NotFound(format!("no dead letter {id:?}")));
    }
    tracing::info!(id = %id, "admin: dead letter dropped");
    Ok(StatusCode::NO_CONTENT)
}

fn user_in_path(user: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(user) = user.map_err(|_| ApiError::BadRequest("invalid user_id in path".into()))?;
    if chat_store::valid_id(&user) {
        Ok(user)
    } else {
        Err(ApiError::BadRequest(
            "user_id must be 1 to 32 characters of [a-z0-9]".into(),
        ))
    }
}

fn dead_letter_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::BadRequest("invalid dead letter id".into()))?;
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(id)
    } else {
        Err(ApiError::BadRequest(
            "a dead letter id is 1 to 128 characters of [A-Za-z0-9._-]".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn token_checks() {
        let off = AdminConfig::default();
        assert!(matches!(
            off.check(&headers("Bearer anything")),
            Err(ApiError::Forbidden(_))
        ));
        let on = AdminConfig {
            token: "0123456789abcdef".into(),
            ..AdminConfig::default()
        };
        assert!(on.check(&headers("Bearer 0123456789abcdef")).is_ok());
        assert!(matches!(
            on.check(&headers("Bearer 0123456789abcdeF")),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            on.check(&HeaderMap::new()),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(on.validate().is_ok());
        let short = AdminConfig {
            token: "short".into(),
            ..AdminConfig::default()
        };
        assert!(short.validate().unwrap_err().contains("admin.token"));
        assert!(!format!("{on:?}").contains("0123456789abcdef"));
    }
}
