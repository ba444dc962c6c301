//! Bearer-token authentication extractors.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use chat_store::SessionCheck;

use super::error::ApiError;
use super::AppState;

/// The message for every failed Bearer authentication.
const INVALID_TOKEN: &str = "missing, invalid or expired bearer token";

/// The message for a disabled account (login, or a session made before it was disabled).
pub(crate) const ACCOUNT_DISABLED: &str = "this account is disabled; contact the operator";

/// The user id behind a valid `Authorization: Bearer TOKEN` header.
///
/// Rejects with 401 `unauthorized` (and `WWW-Authenticate: Bearer`) when the
/// header is missing or malformed, or the session is unknown or expired, and
/// with 403 `forbidden` when the user has been disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser(pub String);

/// Like [`AuthUser`], but also keeps the token (for logout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSession {
    /// The authenticated user id.
    pub user: String,
    /// The bearer token the request carried.
    pub token: String,
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = AuthSession::from_request_parts(parts, state).await?;
        Ok(AuthUser(session.user))
    }
}

impl<S> FromRequestParts<S> for AuthSession
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer_token(&parts.headers)
            .ok_or_else(|| ApiError::Unauthorized(INVALID_TOKEN.into()))?
            .to_owned();
        // A session lookup is a single key read: cheap enough to run inline.
        match state.store.session_check(&token)? {
            SessionCheck::Valid(user) => Ok(AuthSession { user, token }),
            SessionCheck::Disabled(_) => Err(ApiError::Forbidden(ACCOUNT_DISABLED.into())),
            SessionCheck::Invalid => Err(ApiError::Unauthorized(INVALID_TOKEN.into())),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme matched
/// case-insensitively), or `None` when the header is absent or malformed.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let well_formed =
        !token.is_empty() && token.len() <= 512 && token.bytes().all(|b| b.is_ascii_graphic());
    well_formed.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearer a b")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
