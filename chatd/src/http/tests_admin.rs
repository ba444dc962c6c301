//! Router tests of the admin API, `/metrics`, `/readyz` and the dashboard (no socket). The
//! end-to-end suite (`tests/tests/ops.rs`) covers them on a real node with traffic.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::tests::{assert_error, Harness, ADMIN_TOKEN};
use super::AdminConfig;

/// Sends a request with an optional bearer token; returns status, headers and the raw body.
async fn raw(
    h: &Harness,
    method: Method,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, header::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let resp = h
        .app()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn admin(h: &Harness, method: Method, uri: &str) -> (StatusCode, Value) {
    h.call(method, uri, Some(ADMIN_TOKEN), None).await
}

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/admin/v1/stats"),
    ("GET", "/admin/v1/users/alice"),
    ("POST", "/admin/v1/users/alice/disable"),
    ("POST", "/admin/v1/users/alice/enable"),
    ("DELETE", "/admin/v1/users/alice/devices/phone"),
    ("GET", "/admin/v1/push/dead-letters"),
    ("POST", "/admin/v1/push/dead-letters/x1/retry"),
    ("DELETE", "/admin/v1/push/dead-letters/x1"),
];

#[tokio::test]
async fn admin_routes_refuse_missing_and_wrong_tokens() {
    let h = Harness::new();
    let user_token = h.user_with_token("alice").await;
    for (method, uri) in ADMIN_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for token in [
            None,
            Some("wrong-token-0123456789"),
            Some(user_token.as_str()),
        ] {
            let (status, headers, body) = raw(&h, method.clone(), uri, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_error(&body, "unauthorized");
        }
    }
    // Nothing was done: alice is still enabled.
    assert!(!h.state.store.user("alice").unwrap().unwrap().disabled);
}

#[tokio::test]
async fn without_a_configured_token_admin_and_dashboard_are_off() {
    let mut h = Harness::new();
    h.state.admin = Arc::new(AdminConfig::default());
    let routes = ADMIN_ROUTES
        .iter()
        .chain(&[("GET", "/dashboard"), ("GET", "/dashboard/app.js")]);
    for (method, uri) in routes {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, _, body) = raw(&h, method.clone(), uri, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(assert_error(&body, "forbidden").contains("admin.token"));
    }
    // metrics_public opens /metrics alone.
    h.state.admin = Arc::new(AdminConfig {
        metrics_public: true,
        ..AdminConfig::default()
    });
    let (status, headers, text) = raw(&h, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(
        text.contains("# TYPE chatd_ready gauge\nchatd_ready 1\n"),
        "{text}"
    );
    let (status, _, _) = raw(&h, Method::GET, "/admin/v1/stats", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn lookup_disable_enable_and_revoke() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (status, _) = h.enrol(&token, json!({"device_id": "phone"})).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, user) = admin(&h, Method::GET, "/admin/v1/users/alice").await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["user_id"], "alice");
    assert_eq!(user["disabled"], false);
    assert_eq!(user["online"], false);
    assert_eq!(user["last_seen"], Value::Null);
    assert_eq!(user["devices"][0]["device_id"], "phone");
    assert_eq!(user["devices"][0]["revoked_at"], Value::Null);
    assert_eq!(user["devices"][0]["connected"], false);

    let (status, body) = admin(&h, Method::POST, "/admin/v1/users/alice/disable").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    // A disabled user cannot log in, and the old session cannot enrol.
    let (status, body) = h.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(assert_error(&body, "forbidden").contains("disabled"));
    let (status, body) = h.enrol(&token, json!({"device_id": "tablet"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(assert_error(&body, "forbidden").contains("disabled"));
    assert!(!h.state.store.device_active("alice", "phone").unwrap());
    let (_, user) = admin(&h, Method::GET, "/admin/v1/users/alice").await;
    assert_eq!(user["disabled"], true);

    let (status, body) = admin(&h, Method::POST, "/admin/v1/users/alice/enable").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = h.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = admin(&h, Method::DELETE, "/admin/v1/users/alice/devices/phone").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], true);
    assert_eq!(
        h.revoked.lock().unwrap().as_slice(),
        &[("alice".to_owned(), "phone".to_owned())],
        "the hook closes the connection"
    );
    let (status, body) = admin(&h, Method::DELETE, "/admin/v1/users/alice/devices/phone").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn bad_admin_input_gets_json_errors() {
    let h = Harness::new();
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (
            "GET",
            "/admin/v1/users/Alice",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/admin/v1/users/nobody",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "POST",
            "/admin/v1/users/nobody/disable",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "POST",
            "/admin/v1/users/a%20b/enable",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "DELETE",
            "/admin/v1/users/alice/devices/no!",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "DELETE",
            "/admin/v1/users/nobody/devices/phone",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/admin/v1/push/dead-letters?limit=0",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/admin/v1/push/dead-letters?limit=abc",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/admin/v1/push/dead-letters?limit=5000",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/admin/v1/push/dead-letters/none/retry",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "DELETE",
            "/admin/v1/push/dead-letters/a%2Fb",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "PUT",
            "/admin/v1/stats",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, want, code) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = admin(&h, method.clone(), uri).await;
        assert_eq!(status, *want, "{method} {uri}: {body}");
        assert_error(&body, code);
    }
    let (status, body) = admin(&h, Method::GET, "/admin/v1/push/dead-letters?limit=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"push_enabled": false, "dead_letters": []}),
        "no push delivery yet"
    );
}

#[tokio::test]
async fn readyz_turns_503_when_draining_and_stats_say_so() {
    let h = Harness::new();
    let (status, body) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ready": true})));
    h.state.ops.set_draining();
    let (status, body) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": "draining"})
        )
    );
    let (status, stats) = admin(&h, Method::GET, "/admin/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["ready"], false);
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["push"]["enabled"], false);
}

#[tokio::test]
async fn dashboard_is_served_with_a_strict_policy() {
    let h = Harness::new();
    for (uri, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let (status, headers, body) = raw(&h, Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(!body.is_empty());
    }
    let (_, _, html) = raw(&h, Method::GET, "/dashboard", None).await;
    assert!(
        html.contains("/dashboard/app.js")
            && !html.contains("http://")
            && !html.contains("https://")
    );
}

#[tokio::test]
async fn http_answers_are_counted_by_route() {
    let h = Harness::new();
    h.call(Method::GET, "/healthz", None, None).await;
    h.call(Method::GET, "/no/such/route", None, None).await;
    let (_, _, text) = raw(&h, Method::GET, "/metrics", Some(ADMIN_TOKEN)).await;
    assert!(
        text.contains("chatd_http_requests_total{route=\"/healthz\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("chatd_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"));
}
