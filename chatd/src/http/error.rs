//! The API error type and its single mapping to an HTTP answer.
//!
//! Every failure the HTTP API reports goes through [`ApiError`] and is
//! rendered by its one [`IntoResponse`] implementation as
//! `{"error":{"code":"...","message":"..."}}` with the matching status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Message sent to the client for every internal error (details go to the log).
const INTERNAL_MESSAGE: &str = "internal server error";

/// An error answered by the HTTP API.
///
/// The `String` payloads are client-facing messages: they must never carry
/// internal details. Internal failures use [`ApiError::Internal`], whose
/// payload is only logged.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: the request is malformed or fails validation.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401 `unauthorized`: missing or invalid credentials. Answered with
    /// `WWW-Authenticate: Bearer`.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the request is understood but not allowed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404 `not_found`: no such resource or route.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405 `method_not_allowed`: the route exists but not for this method.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// 409 `conflict`: the request conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413 `too_large`: the request body exceeds the configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// 415 `unsupported_media_type`: the body is not `application/json`.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 416 `range_not_satisfiable`: the `Range` is outside the file.
    #[error("range not satisfiable: {0}")]
    RangeNotSatisfiable(String),
    /// 429 `rate_limited`: too many requests.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// 503 `unavailable`: the service cannot answer right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 500 `internal`: a server-side failure. The error is logged, the client
    /// only sees a generic message.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// Wraps any error as an internal (500) error.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The machine-readable `error.code` this error is answered with.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::RangeNotSatisfiable(_) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error in HTTP API");
                INTERNAL_MESSAGE
            }
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::Conflict(m)
            | ApiError::TooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::RangeNotSatisfiable(m)
            | ApiError::RateLimited(m)
            | ApiError::Unavailable(m) => m.as_str(),
        };
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<chat_store::StoreError> for ApiError {
    /// Store failures the client can act on keep their meaning; a database
    /// that cannot read or write (disk full, read-only, I/O error) is 503
    /// `unavailable`, to be retried; everything else (corruption, hashing,
    /// configuration) is internal.
    fn from(err: chat_store::StoreError) -> Self {
        use chat_store::StoreError;
        match err {
            StoreError::Conflict(_) => ApiError::Conflict("the resource already exists".into()),
            StoreError::DeviceRevoked => ApiError::Conflict(DEVICE_REVOKED_MESSAGE.into()),
            StoreError::NotFound(_) => ApiError::NotFound("no such resource".into()),
            // The handlers validate their input first, so this is rare; the
            // store's message only describes the caller's input.
            StoreError::InvalidInput(message) => ApiError::BadRequest(message),
            e if e.is_io() => {
                tracing::error!(error = %e, "storage failure in HTTP API");
                ApiError::Unavailable("storage unavailable; retry later".into())
            }
            // Corruption, hashing, configuration.
            other => ApiError::internal(other),
        }
    }
}

impl From<chat_certs::CertError> for ApiError {
    /// An invalid CSR is the client's fault; every other certificate failure
    /// is internal.
    fn from(err: chat_certs::CertError) -> Self {
        match err {
            chat_certs::CertError::BadCsr(detail) => ApiError::BadRequest(format!(
                "csr_pem is not a valid certificate signing request: {detail}"
            )),
            other => ApiError::internal(other),
        }
    }
}

impl From<chat_bridge::HandleError> for ApiError {
    /// The bridge stopping or failing to store is 503 `unavailable` (retry); any other refusal
    /// would be a fault of ours, so internal.
    fn from(err: chat_bridge::HandleError) -> Self {
        use chat_bridge::HandleError;
        use chat_proto::ErrorCode;
        match err {
            HandleError::Stopped => {
                ApiError::Unavailable("the message service is stopping; retry later".into())
            }
            HandleError::Refused {
                code: ErrorCode::Unavailable,
                ..
            } => ApiError::Unavailable("storage unavailable; retry later".into()),
            other => ApiError::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> Self {
        ApiError::internal(anyhow::Error::new(err).context("blocking task failed"))
    }
}

/// Runs blocking work (password hashing, certificate signing, store writes,
/// which flush to disk) on tokio's blocking pool.
pub(crate) async fn blocking<F, R>(work: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Ok(tokio::task::spawn_blocking(work).await?)
}

/// The message for enrolling (or renewing) a device that was revoked.
pub const DEVICE_REVOKED_MESSAGE: &str = "device was revoked; enrol under a new device_id";
