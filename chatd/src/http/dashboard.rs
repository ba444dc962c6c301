//! The operator dashboard: one HTML page, a stylesheet and a script, compiled into the binary
//! (`dashboard/`), no build step and nothing loaded from elsewhere. The page asks for the admin
//! token, keeps it in `sessionStorage`, and polls `GET /admin/v1/stats` every second; user
//! lookup and the actions call the same admin API that `docs/OPERATIONS.md` documents.
//!
//! The files themselves are not secret, but with no admin token configured they are not served
//! either (403, like the API).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::admin::DISABLED;
use super::error::ApiError;
use super::AppState;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// Only this origin's script, style and API; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /dashboard`.
pub async fn index(State(state): State<AppState>) -> Response {
    asset(&state, INDEX, "text/html; charset=utf-8")
}

/// `GET /dashboard/app.js`.
pub async fn script(State(state): State<AppState>) -> Response {
    asset(&state, SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /dashboard/app.css`.
pub async fn style(State(state): State<AppState>) -> Response {
    asset(&state, STYLE, "text/css; charset=utf-8")
}

fn asset(state: &AppState, body: &'static str, content_type: &'static str) -> Response {
    if !state.admin.enabled() {
        return ApiError::Forbidden(DISABLED.into()).into_response();
    }
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
