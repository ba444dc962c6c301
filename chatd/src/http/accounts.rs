//! Accounts: registration (`POST /v1/users`), login (`POST /v1/sessions`),
//! logout (`POST /v1/sessions/logout`), password change (`POST /v1/users/me/password`) and
//! deletion (`DELETE /v1/users/me`).

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{AuthSession, AuthUser, ACCOUNT_DISABLED};
use super::error::{blocking, ApiError};
use super::json::ApiJson;
use super::AppState;

use chat_store::{PasswordCheck, Session, StoreError, PASSWORD_MAX_LEN, PASSWORD_MIN_LEN};

/// The one message for every failed login, whatever the reason.
const BAD_CREDENTIALS: &str = "invalid user_id or password";

/// Body of `POST /v1/users` and `POST /v1/sessions`.
#[derive(Deserialize)]
pub struct Credentials {
    /// The user id: 1 to 32 characters of `[a-z0-9]`.
    pub user_id: String,
    /// The password: 8 to 256 bytes.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Body of `POST /v1/users/me/password`.
#[derive(Deserialize)]
pub struct PasswordChange {
    /// The current password.
    pub old_password: String,
    /// The new password: 8 to 256 bytes.
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChange").finish_non_exhaustive()
    }
}

/// Body of `DELETE /v1/users/me`: the password, confirming the deletion.
#[derive(Deserialize)]
pub struct PasswordConfirm {
    /// The current password.
    pub password: String,
}

impl std::fmt::Debug for PasswordConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordConfirm").finish_non_exhaustive()
    }
}

/// Answer of `POST /v1/users`.
#[derive(Debug, Serialize)]
pub struct UserCreated {
    /// The id of the new user.
    pub user_id: String,
}

/// Answer of `POST /v1/sessions`.
#[derive(Debug, Serialize)]
pub struct SessionCreated {
    /// The bearer token for `Authorization: Bearer TOKEN`.
    pub token: String,
    /// When the token stops working, in unix seconds.
    pub expires_at: u64,
}

/// Guard that refuses the request with 403 `forbidden` when registration is
/// closed. As a parts extractor it runs before the body is read.
pub struct RegistrationOpen;

impl<S> FromRequestParts<S> for RegistrationOpen
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if AppState::from_ref(state).config.registration_open {
            Ok(RegistrationOpen)
        } else {
            Err(ApiError::Forbidden("registration is closed".into()))
        }
    }
}

/// `POST /v1/users`: creates a user. 201 `{user_id}`.
pub async fn register(
    State(state): State<AppState>,
    _open: RegistrationOpen,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let Credentials { user_id, password } = body;
    validate_user_id(&user_id)?;
    validate_password(&password)?;
    let store = state.store.clone();
    let id = user_id.clone();
    // argon2 hashing is CPU-heavy: keep it off the async workers.
    match blocking(move || store.create_user(&id, &password)).await? {
        Ok(()) => {
            tracing::info!(user = %user_id, "user registered");
            Ok((StatusCode::CREATED, Json(UserCreated { user_id })))
        }
        Err(StoreError::Conflict(_)) => {
            tracing::info!(user = %user_id, "registration refused: user_id taken");
            Err(ApiError::Conflict("user_id is already taken".into()))
        }
        Err(err) => Err(err.into()),
    }
}

/// `POST /v1/sessions`: logs in. 200 `{token, expires_at}`; 401 for a wrong
/// password or an unknown user alike; 403 for a disabled user with the right
/// password.
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Json<SessionCreated>, ApiError> {
    let Credentials { user_id, password } = body;
    // Ids or passwords that could never have been registered cannot match:
    // answer without spending a password hash on them.
    if !chat_store::valid_id(&user_id) || !password_len_ok(&password) {
        tracing::info!("login refused: malformed user_id or password");
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    }
    let store = state.store.clone();
    let id = user_id.clone();
    let session = blocking(
        move || -> Result<Result<Session, PasswordCheck>, StoreError> {
            match store.check_password(&id, &password)? {
                PasswordCheck::Valid => store.create_session(&id).map(Ok),
                refused => Ok(Err(refused)),
            }
        },
    )
    .await??;
    let session = match session {
        Ok(session) => session,
        Err(PasswordCheck::Disabled) => {
            tracing::info!(user = %user_id, "login refused: user disabled");
            return Err(ApiError::Forbidden(ACCOUNT_DISABLED.into()));
        }
        Err(_) => {
            tracing::info!(user = %user_id, "login refused: bad credentials");
            return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
        }
    };
    tracing::info!(user = %user_id, "session created");
    Ok(Json(SessionCreated {
        token: session.token,
        expires_at: session.expires_at,
    }))
}

/// `POST /v1/sessions/logout`: revokes the bearer token of the request. 204.
pub async fn logout(
    State(state): State<AppState>,
    session: AuthSession,
) -> Result<StatusCode, ApiError> {
    let AuthSession { user, token } = session;
    let store = state.store.clone();
    // `false` means the session vanished since it was checked (expired or a
    // concurrent logout): the token is unusable either way.
    let _was_live = blocking(move || store.revoke_session(&token)).await??;
    tracing::info!(user = %user, "session revoked (logout)");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/users/me/password`: replaces the caller's password. 204; the session that asked
/// stays valid and every other session of the user ends. 400 for a new password that breaks
/// the rules, 401 for a wrong old password (the login answer).
pub async fn change_password(
    State(state): State<AppState>,
    session: AuthSession,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let AuthSession { user, token } = session;
    let PasswordChange {
        old_password,
        new_password,
    } = body;
    validate_password(&new_password)?;
    if !password_len_ok(&old_password) {
        tracing::info!(user = %user, "password change refused: bad credentials");
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    }
    let store = state.store.clone();
    let u = user.clone();
    // Two argon2 runs (check, new hash) and flushed writes: off the async workers.
    let ended = blocking(move || -> Result<Option<usize>, StoreError> {
        if !store.change_password(&u, &old_password, &new_password)? {
            return Ok(None);
        }
        store.revoke_user_sessions_except(&u, &token).map(Some)
    })
    .await??;
    let Some(ended) = ended else {
        tracing::info!(user = %user, "password change refused: bad credentials");
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    };
    tracing::info!(user = %user, other_sessions_ended = ended, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/users/me`: deletes the caller's account after checking the password (401 when
/// wrong). The user leaves each of their groups through the bridge (the other members get a
/// `left` entry), then the store retires the id and erases their data (see
/// `chat_store::Store::delete_user`), and their MQTT connections are closed. 204. 503 when a
/// group could not be left (nothing is deleted then; retry).
pub async fn delete_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<PasswordConfirm>,
) -> Result<StatusCode, ApiError> {
    let PasswordConfirm { password } = body;
    if !password_len_ok(&password) {
        tracing::info!(user = %user, "account deletion refused: bad credentials");
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    }
    let store = state.store.clone();
    let u = user.clone();
    let groups = blocking(move || -> Result<Option<Vec<String>>, StoreError> {
        match store.check_password(&u, &password)? {
            PasswordCheck::Valid => store.user_groups(&u).map(Some),
            _ => Ok(None),
        }
    })
    .await??;
    let Some(groups) = groups else {
        tracing::info!(user = %user, "account deletion refused: bad credentials");
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    };
    if !groups.is_empty() {
        let bridge = state.bridge.as_ref().ok_or_else(|| {
            ApiError::Unavailable("the message service is not running; retry later".into())
        })?;
        for group in &groups {
            bridge.leave_group(&user, group).await?;
        }
    }
    let store = state.store.clone();
    let u = user.clone();
    blocking(move || store.delete_user(&u)).await??;
    let closed = state.ops.disconnect_user(&user);
    tracing::info!(user = %user, groups_left = groups.len(), connections_closed = closed, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn validate_user_id(user_id: &str) -> Result<(), ApiError> {
    if chat_store::valid_id(user_id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "user_id must be 1 to 32 characters of [a-z0-9]".into(),
        ))
    }
}

fn password_len_ok(password: &str) -> bool {
    (PASSWORD_MIN_LEN..=PASSWORD_MAX_LEN).contains(&password.len())
}

fn validate_password(password: &str) -> Result<(), ApiError> {
    if password_len_ok(password) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "password must be {PASSWORD_MIN_LEN} to {PASSWORD_MAX_LEN} bytes long"
        )))
    }
}
