//! The HTTP API of the chat node (PROTOCOL v1).
//!
//! All bodies are JSON, except the text of `/metrics` and the dashboard's files. Every error is
//! answered as
//! `{"error":{"code":"...","message":"..."}}` (see [`ApiError`]).
//!
//! | method and path                   | auth   | answer                                          |
//! |-----------------------------------|--------|-------------------------------------------------|
//! | `POST /v1/users`                  | none   | 201 `{user_id}` (403 when registration is closed) |
//! | `POST /v1/sessions`               | none   | 200 `{token, expires_at}`; 403 for a disabled user |
//! | `POST /v1/sessions/logout`        | Bearer | 204; the token stops working                    |
//! | `POST /v1/users/me/password`      | Bearer | 204; other sessions end; 400 bad new password, 401 wrong old one |
//! | `DELETE /v1/users/me`             | Bearer | 204; the account is deleted; 401 wrong password |
//! | `GET /v1/users/me/export`         | Bearer | 200 the account as a JSON attachment (`export.rs`), streamed |
//! | `POST /v1/devices`                | Bearer | 201 `{device_id, cert_pem, key_pem?, ca_pem, expires_at}` |
//! | `DELETE /v1/devices/{device_id}`  | Bearer | 204; 404 when no such active device             |
//! | `GET /v1/conversations/{conv}/messages` | Bearer | 200 `{messages, more}` newest first; 403 for non-members |
//! | `GET /healthz`                    | none   | 200 `{"status":"ok"}`                           |
//! | `GET /readyz`                     | none   | 200 `{"ready":true}`; 503 `{"ready":false,"reason":...}` while draining or storage failed |
//! | `GET /metrics`                    | admin  | Prometheus text (no token with `admin.metrics_public`) |
//! | `/admin/v1/...`                   | admin  | the admin API (`admin.rs`)                      |
//! | `GET /dashboard`                  | none*  | the operator dashboard (`dashboard.rs`); *403 when no admin token is configured |
//!
//! `POST /v1/sessions/logout` is an extension of the protocol: it revokes the
//! bearer token it is called with. Unknown routes answer 404 `not_found`,
//! known routes with another method 405 `method_not_allowed` (with `Allow`).
//! Every answer carries `Cache-Control: no-store` (tokens and private keys
//! must not be cached). Answers are counted by route and status for
//! `chatd_http_requests_total`.

mod accounts;
mod admin;
mod auth;
mod dashboard;
mod devices;
mod error;
mod export;
mod history;
mod json;
pub mod media;
mod server;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_account;
#[cfg(test)]
mod tests_admin;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub use accounts::{Credentials, PasswordChange, PasswordConfirm, SessionCreated, UserCreated};
pub use admin::{Admin, AdminConfig};
pub use auth::{AuthSession, AuthUser};
pub use devices::{DeviceEnrolled, EnrolRequest};
pub use error::ApiError;
pub use json::ApiJson;
pub use server::{load_tls_config, serve};

/// Smallest accepted `max_body_bytes` (a CSR has to fit).
const MIN_BODY_BYTES: usize = 1024;
/// Largest accepted `max_body_bytes`.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Configuration of the HTTP API listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, `host:port` (default `127.0.0.1:8080`).
    pub listen: String,
    /// Whether `POST /v1/users` accepts new registrations (default `true`);
    /// when `false` it answers 403 `forbidden`.
    pub registration_open: bool,
    /// Largest accepted request body in bytes (default 65536); larger bodies
    /// are answered 413 `too_large`.
    pub max_body_bytes: usize,
    /// PEM certificate chain for HTTPS. HTTPS is served when both `tls_cert`
    /// and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (PKCS#8, PKCS#1 or SEC1), paired with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with the node's generated server certificate (default
    /// `false`). Cannot be combined with `tls_cert`/`tls_key`.
    pub tls_from_node_cert: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".to_owned(),
            registration_open: true,
            max_body_bytes: 64 * 1024,
            tls_cert: None,
            tls_key: None,
            tls_from_node_cert: false,
        }
    }
}

impl HttpConfig {
    /// Checks the settings for consistency; the error names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        validate_listen(&self.listen)?;
        if !(MIN_BODY_BYTES..=MAX_BODY_BYTES).contains(&self.max_body_bytes) {
            return Err(format!(
                "http.max_body_bytes must be between {MIN_BODY_BYTES} and {MAX_BODY_BYTES}, got {}",
                self.max_body_bytes
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("http.tls_cert is set but http.tls_key is not".into()),
            (None, Some(_)) => return Err("http.tls_key is set but http.tls_cert is not".into()),
            (Some(_), Some(_)) if self.tls_from_node_cert => {
                return Err(
                    "http.tls_from_node_cert cannot be combined with http.tls_cert/http.tls_key"
                        .into(),
                )
            }
            _ => {}
        }
        for (name, path) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(format!("http.{name} must not be empty"));
            }
        }
        Ok(())
    }

    /// Whether the listener speaks HTTPS (from files or the node certificate).
    pub fn tls_enabled(&self) -> bool {
        self.tls_from_node_cert || (self.tls_cert.is_some() && self.tls_key.is_some())
    }
}

/// `host:port` with a non-empty host and a numeric port.
fn validate_listen(listen: &str) -> Result<(), String> {
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("http.listen must be host:port, got {listen:?}");
    let (host, port) = listen.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// Hook called after a device was revoked, with `(user_id, device_id)`.
pub type DeviceRevokedHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// Users, sessions and devices.
    pub store: chat_store::Store,
    /// The bridge's group commit: reads flush through it before they answer, so nothing that
    /// is not on disk is ever shown.
    pub flusher: chat_bridge::Flusher,
    /// Signs device certificates.
    pub authority: Arc<chat_certs::Authority>,
    /// The HTTP settings.
    pub config: Arc<HttpConfig>,
    /// Called after a device is revoked, with `(user_id, device_id)` (the node
    /// closes the device's MQTT connection). Runs on an async worker: it must
    /// not block (hand the work to a channel or task).
    pub on_device_revoked: DeviceRevokedHook,
    /// Where media bytes are kept.
    pub blobs: chat_store::Blobs,
    /// The media settings.
    pub media: Arc<media::MediaConfig>,
    /// The admin token and `/metrics` access.
    pub admin: Arc<AdminConfig>,
    /// Live figures, readiness and push delivery, for `/metrics`, `/readyz` and the admin API.
    pub ops: Arc<crate::ops::Ops>,
    /// Asks the message service for group changes (an account deletion leaves the user's
    /// groups). `None` without a bridge (router tests): deleting a user who is in a group then
    /// answers 503.
    pub bridge: Option<chat_bridge::BridgeHandle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Builds the API router: every route, the JSON 404/405 fallbacks and the
/// body limit (`max_body_bytes`).
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let ops = state.ops.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(admin::metrics))
        .route("/dashboard", get(dashboard::index))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/app.css", get(dashboard::style))
        .route("/admin/v1/stats", get(admin::stats))
        .route("/admin/v1/users/{user_id}", get(admin::user))
        .route(
            "/admin/v1/users/{user_id}/disable",
            post(admin::disable_user),
        )
        .route("/admin/v1/users/{user_id}/enable", post(admin::enable_user))
        .route(
            "/admin/v1/users/{user_id}/devices/{device_id}",
            delete(admin::revoke_device),
        )
        .route("/admin/v1/push/dead-letters", get(admin::dead_letters))
        .route(
            "/admin/v1/push/dead-letters/{id}/retry",
            post(admin::retry_dead_letter),
        )
        .route(
            "/admin/v1/push/dead-letters/{id}",
            delete(admin::drop_dead_letter),
        )
        .route("/v1/users", post(accounts::register))
        .route("/v1/sessions", post(accounts::login))
        .route("/v1/sessions/logout", post(accounts::logout))
        .route("/v1/users/me", delete(accounts::delete_me))
        .route("/v1/users/me/password", post(accounts::change_password))
        .route("/v1/users/me/export", get(export::export))
        .route("/v1/devices", post(devices::enrol))
        .route("/v1/devices/{device_id}", delete(devices::revoke))
        .route("/v1/conversations/{conv}/messages", get(history::messages))
        .route("/v1/media", post(media::upload))
        .route("/v1/media/{media_id}", get(media::download))
        // Must come after the routes: it is applied to the routes added so far.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::from_fn_with_state(ops, count))
        .with_state(state)
}

/// `GET /healthz`: the process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while the node takes traffic; 503 with the reason once it is draining
/// for shutdown or while its storage has failed.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.ops.not_ready_reason() {
        None => (StatusCode::OK, Json(serde_json::json!({ "ready": true }))).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// Counts every answer by matched route (`unmatched` for the 404 fallback) and status.
async fn count(
    State(ops): State<Arc<crate::ops::Ops>>,
    path: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = path.map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    ops.count_http(&route, response.status().as_u16());
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("method {method} is not allowed on this route"))
}

async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
