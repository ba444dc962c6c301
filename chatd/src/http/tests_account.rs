//! Router tests of the account lifecycle: password change, deletion, export (no socket). The
//! end-to-end suite (`tests/tests/account_lifecycle.rs`) covers them on a real node, groups,
//! live connections and the erasure on disk included.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use chat_store::{InboxItem, NewMessage};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::tests::{assert_error, Harness};

async fn change(h: &Harness, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    h.call(Method::POST, "/v1/users/me/password", token, Some(body))
        .await
}

async fn delete(h: &Harness, token: &str, password: &str) -> (StatusCode, Value) {
    let body = json!({ "password": password });
    h.call(Method::DELETE, "/v1/users/me", Some(token), Some(body))
        .await
}

#[tokio::test]
async fn password_change_answers_and_ends_other_sessions() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (_, other) = h.login("alice", "correct horse").await;
    let other = other["token"].as_str().unwrap().to_owned();

    let wrong = json!({"old_password": "wrong horse", "new_password": "new password"});
    let (status, body) = change(&h, Some(&token), wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let short = json!({"old_password": "correct horse", "new_password": "short"});
    let (status, body) = change(&h, Some(&token), short).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "bad_request").contains("password"));
    let (status, body) = change(&h, Some(&token), json!({"old_password": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
    let good = json!({"old_password": "correct horse", "new_password": "new password"});
    let (status, _) = change(&h, None, good.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.login("alice", "correct horse").await.0, StatusCode::OK);

    let (status, body) = change(&h, Some(&token), good).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(
        h.login("alice", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.login("alice", "new password").await.0, StatusCode::OK);
    assert_eq!(
        h.state.store.check_session(&token).unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(h.state.store.check_session(&other).unwrap(), None);
}

#[tokio::test]
async fn deletion_needs_the_password_and_retires_the_id() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (status, _) = h.enrol(&token, json!({"device_id": "phone"})).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = delete(&h, &token, "wrong horse").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    assert!(h.state.store.user("alice").unwrap().is_some());

    let (status, _) = delete(&h, &token, "correct horse").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.state.store.user("alice").unwrap().is_none());
    assert!(!h.state.store.device_active("alice", "phone").unwrap());
    assert!(h.state.store.erasure_pending().unwrap());
    let (status, _) = h.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = h.register("alice", "correct horse").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict");
    let (status, _) = delete(&h, &token, "correct horse").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deletion_of_a_group_member_without_a_bridge_is_unavailable_and_deletes_nothing() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    h.state.store.set_user_group("alice", "g1", true).unwrap();
    let (status, body) = delete(&h, &token, "correct horse").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_error(&body, "unavailable");
    assert!(h.state.store.user("alice").unwrap().is_some());
}

#[tokio::test]
async fn export_is_a_json_attachment_of_the_users_data() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    h.user_with_token("bob").await;
    let (status, _) = h.enrol(&token, json!({"device_id": "phone"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let store = &h.state.store;
    let conv = "d.alice.bob";
    let mut writer = store.conv_writer(store.conv_shard(conv)).unwrap();
    let msg = |from: &str, id: &str, body: &str| NewMessage {
        msg_id: 7,
        conv: conv.into(),
        from: from.into(),
        client_id: id.into(),
        ts: 1,
        content: json!({"body": body}),
    };
    let stored = writer
        .append(vec![
            msg("alice", "a1", "alice says"),
            msg("bob", "b1", "bob says"),
        ])
        .unwrap();
    store
        .inbox_append(
            "alice",
            vec![
                InboxItem::Sent {
                    conv: conv.into(),
                    seq: stored[0].seq,
                },
                InboxItem::Msg {
                    conv: conv.into(),
                    seq: stored[1].seq,
                },
            ],
        )
        .unwrap();

    let req = Request::get("/v1/users/me/export")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = h.app().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"chatd-export-alice.json\""
    );
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["user"]["user_id"], "alice");
    assert_eq!(doc["devices"][0]["device_id"], "phone");
    assert_eq!(doc["groups"], json!([]));
    let events: Vec<(&str, &str)> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["body"].as_str().unwrap()))
        .collect();
    assert_eq!(events, vec![("sent", "alice says"), ("msg", "bob says")]);
}

#[tokio::test]
async fn empty_export_is_valid_json() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (status, doc) = h
        .call(Method::GET, "/v1/users/me/export", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["events"], json!([]));
    assert_eq!(doc["devices"], json!([]));
}
