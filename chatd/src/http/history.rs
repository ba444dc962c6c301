//! `GET /v1/conversations/{conv}/messages?before={seq}&limit={n}`: a page of a conversation's
//! messages, newest first, for its members (of a group: the entries of their memberships).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chat_bridge::reads::{history_page, HistoryError, ReadError};
use chat_proto::Conv;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::AuthUser;
use super::error::{blocking, ApiError};
use super::AppState;

/// Default and largest page sizes (the same as the MQTT `history` request).
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

/// Query string of the history endpoint.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Only messages with a smaller `seq` (the next page: the smallest `seq` seen so far).
    pub before: Option<u64>,
    /// Page size, 1 to 200 (larger values are clamped); default 50.
    pub limit: Option<usize>,
}

/// Answers `{messages: [msg...], more}`: `msg` events without `n`, newest first.
pub async fn messages(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    conv: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(conv) =
        conv.map_err(|_| ApiError::BadRequest("invalid conversation id in path".into()))?;
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let conv = Conv::parse(&conv).map_err(|_| {
        ApiError::BadRequest(format!(
            "{conv:?} is not a conversation id (d.{{a}}.{{b}} or g.{{group}})"
        ))
    })?;
    let limit = match query.limit {
        Some(0) => return Err(ApiError::BadRequest("limit: must be at least 1".into())),
        Some(n) => n.min(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    if query.before == Some(0) {
        return Err(ApiError::BadRequest("before: must be at least 1".into()));
    }
    let (store, flusher) = (state.store.clone(), state.flusher.clone());
    let page =
        blocking(move || history_page(&store, &flusher, &user, &conv, query.before, limit)).await?;
    match page {
        Ok((messages, more)) => Ok(Json(json!({ "messages": messages, "more": more }))),
        Err(HistoryError::Forbidden) => Err(ApiError::Forbidden(
            "not a member of this conversation".into(),
        )),
        Err(HistoryError::Store(ReadError::Store(e))) => Err(e.into()),
        Err(HistoryError::Store(ReadError::Flush(e))) => {
            tracing::error!(error = %e, "flush after a history read failed");
            Err(ApiError::Unavailable("storage unavailable".into()))
        }
    }
}
