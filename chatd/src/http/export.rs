//! `GET /v1/users/me/export`: everything the account holds, as one JSON document:
//!
//! ```text
//! {"user": {"user_id", "created_at"},
//!  "devices": [{"device_id", "created_at", "cert_expires_at", "revoked_at"}],
//!  "groups": [{"id", "name", "role"}],
//!  "events": [...]}
//! ```
//!
//! `events` is the user's inbox in order, as `sync` gives it: `sent` (their own messages),
//! `msg` (messages to them), `group` (membership changes) and `receipt` events, each with its
//! inbox number `n`. The head is read before the answer starts (so its failures get a proper
//! status); the events follow page by page, each page read on the blocking pool, so the
//! document is never held in memory whole. A store failure in the middle cuts the body short
//! (the client sees invalid JSON, never a truncated document that parses).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use chat_store::{GroupRole, Store};
use serde_json::{json, Value};

use super::auth::AuthUser;
use super::error::{blocking, ApiError};
use super::AppState;

/// Inbox entries per page (a page is also cut at `chat_bridge::reads::MAX_ANSWER_BYTES`).
const PAGE: usize = 200;

/// Where the stream is.
enum Stage {
    /// The inbox after this `n` is still to come.
    Events { after: u64, first: bool },
    /// The closing `]}` is sent.
    Done,
}

/// Answers the export as a streamed attachment `chatd-export-{user}.json`.
pub async fn export(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let u = user.clone();
    let head = blocking(move || head(&store, &u)).await??;
    let mut head = serde_json::to_vec(&head).map_err(ApiError::internal)?;
    // `{..."groups":[...]}` becomes `{..."groups":[...],"events":[`.
    head.pop();
    head.extend_from_slice(br#","events":["#);
    let first =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) });
    let (store, flusher) = (state.store.clone(), state.flusher.clone());
    let u = user.clone();
    let events = futures_util::stream::unfold(
        Stage::Events {
            after: 0,
            first: true,
        },
        move |stage| {
            let (store, flusher, user) = (store.clone(), flusher.clone(), u.clone());
            async move { next_chunk(store, flusher, user, stage).await }
        },
    );
    let body = Body::from_stream(futures_util::StreamExt::chain(first, events));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The user id is [a-z0-9]{1,32}: always a valid header value.
    let disposition = format!("attachment; filename=\"chatd-export-{user}.json\"");
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(ApiError::internal)?,
    );
    tracing::info!(user = %user, "account export started");
    Ok(response)
}

/// The next piece of the body after the head: a page of events, or the closing brackets. Like
/// every read, a page leaves the node only once what it saw is on disk.
async fn next_chunk(
    store: Store,
    flusher: chat_bridge::Flusher,
    user: String,
    stage: Stage,
) -> Option<(Result<Bytes, std::io::Error>, Stage)> {
    let (after, first) = match stage {
        Stage::Events { after, first } => (after, first),
        Stage::Done => return None,
    };
    let page = tokio::task::spawn_blocking(move || {
        let page = chat_bridge::reads::sync_events(&store, &user, after, PAGE)
            .map_err(|e| e.to_string())?;
        flusher.cover_read()?;
        Ok::<_, String>(page)
    })
    .await;
    let (events, last, more) = match page {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => return Some((Err(cut_short(&e)), Stage::Done)),
        Err(e) => return Some((Err(cut_short(&e)), Stage::Done)),
    };
    let mut chunk = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if !(first && i == 0) {
            chunk.push(b',');
        }
        if let Err(e) = serde_json::to_writer(&mut chunk, event) {
            return Some((Err(cut_short(&e)), Stage::Done));
        }
    }
    let next = if more {
        Stage::Events {
            after: last,
            first: first && events.is_empty(),
        }
    } else {
        chunk.extend_from_slice(b"]}");
        Stage::Done
    };
    Some((Ok(Bytes::from(chunk)), next))
}

/// Logs a failure in the middle of the stream; the error ends the body.
fn cut_short(e: &dyn std::fmt::Display) -> std::io::Error {
    tracing::error!(error = %e, "account export failed; body cut short");
    std::io::Error::other("export failed")
}

/// The user, devices and groups of the export.
fn head(store: &Store, user: &str) -> Result<Value, ApiError> {
    let record = store
        .user(user)?
        .ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    let devices: Vec<Value> = store
        .devices(user)?
        .into_iter()
        .map(|d| {
            json!({
                "device_id": d.device_id,
                "created_at": d.created_at,
                "cert_expires_at": d.cert_expires_at,
                "revoked_at": d.revoked_at,
            })
        })
        .collect();
    let mut groups = Vec::new();
    for id in store.user_groups(user)? {
        let Some(group) = store.group(&id)? else {
            continue;
        };
        let Some(role) = group.role(user) else {
            continue;
        };
        let role = match role {
            GroupRole::Admin => "admin",
            GroupRole::Member => "member",
        };
        groups.push(json!({"id": group.id, "name": group.name, "role": role}));
    }
    Ok(json!({
        "user": {"user_id": record.user_id, "created_at": record.created_at},
        "devices": devices,
        "groups": groups,
    }))
}
