//! `ApiJson<T>`: the JSON body extractor whose rejections use the API's
//! error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A JSON request body, like [`axum::Json`], but every rejection is an
/// [`ApiError`]:
///
/// * wrong or missing `Content-Type` -> 415 `unsupported_media_type`
/// * invalid JSON syntax, missing fields, wrong types -> 400 `bad_request`
/// * body over `max_body_bytes` -> 413 `too_large`
///
/// Unknown fields are ignored (as long as the target type does not deny them).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let limit = AppState::from_ref(state).config.max_body_bytes;
                Err(map_rejection(&rejection, limit))
            }
        }
    }
}

/// Maps axum's JSON rejection to an [`ApiError`] whose message names the problem.
fn map_rejection(rejection: &JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(err) => ApiError::BadRequest(format!(
            "request body does not match the expected fields: {}",
            inner_message(&err.body_text())
        )),
        JsonRejection::JsonSyntaxError(err) => ApiError::BadRequest(format!(
            "request body is not valid JSON: {}",
            inner_message(&err.body_text())
        )),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a request with `Content-Type: application/json`".into(),
        ),
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("request body exceeds the limit of {limit} bytes"))
        }
        JsonRejection::BytesRejection(_) => {
            ApiError::BadRequest("failed to read the request body".into())
        }
        // `JsonRejection` is non-exhaustive: keep the status class, never a 5xx.
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("request body exceeds the limit of {limit} bytes"))
        }
        _ if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType(
                "expected a request with `Content-Type: application/json`".into(),
            )
        }
        _ => ApiError::BadRequest("invalid JSON request body".into()),
    }
}

/// axum's body texts look like `"Failed to ...: <serde message>"`; keep the
/// serde part, which says which field and what went wrong.
fn inner_message(body_text: &str) -> &str {
    body_text
        .split_once(": ")
        .map_or(body_text, |(_, detail)| detail)
}
