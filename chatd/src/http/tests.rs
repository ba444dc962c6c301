//! Router tests (no socket, `tower::ServiceExt::oneshot`) and one TLS test
//! of `serve` on a real socket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use chat_certs::{Authority, CertsConfig};
use chat_store::{Store, StoreConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt as _;

use super::{router, serve, AdminConfig, AppState, HttpConfig};
use crate::ops::{NoPush, Ops};

/// The admin token of the harness.
pub(super) const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

type Revoked = Arc<Mutex<Vec<(String, String)>>>;

/// A router over a real store and authority in a temporary directory.
pub(super) struct Harness {
    _dir: TempDir,
    pub(super) state: AppState,
    pub(super) revoked: Revoked,
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with_config(HttpConfig::default())
    }

    pub(super) fn with_config(config: HttpConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store_cfg = StoreConfig {
            password_memory_kib: 256,
            password_iterations: 1,
            ..StoreConfig::default()
        };
        let store = Store::open(&dir.path().join("db"), &store_cfg).unwrap();
        let authority =
            Authority::load_or_create(&dir.path().join("certs"), &CertsConfig::default()).unwrap();
        let revoked: Revoked = Arc::default();
        let sink = revoked.clone();
        let flusher = chat_bridge::Flusher::new(
            store.clone(),
            Arc::new(chat_bridge::BridgeStats::new(store.config().shards)),
        );
        let state = AppState {
            store: store.clone(),
            flusher,
            authority: Arc::new(authority),
            config: Arc::new(config),
            on_device_revoked: Arc::new(move |user: &str, device: &str| {
                sink.lock()
                    .unwrap()
                    .push((user.to_owned(), device.to_owned()));
            }),
            blobs: crate::http::media::MediaConfig::default()
                .open(dir.path())
                .unwrap(),
            media: Arc::default(),
            admin: Arc::new(AdminConfig {
                token: ADMIN_TOKEN.into(),
                ..AdminConfig::default()
            }),
            ops: Arc::new(Ops::new(0, store.clone(), None, Arc::new(NoPush))),
            bridge: None,
        };
        Harness {
            _dir: dir,
            state,
            revoked,
        }
    }

    pub(super) fn app(&self) -> Router {
        router(self.state.clone())
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub(super) async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = match body {
            Some(body) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => req.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    pub(super) async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let (status, _headers, body) = self.send_raw(req).await;
        (status, body)
    }

    pub(super) async fn send_raw(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, header::HeaderMap, Value) {
        let resp = self.app().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, headers, body)
    }

    pub(super) async fn register(&self, user: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({ "user_id": user, "password": password });
        self.call(Method::POST, "/v1/users", None, Some(body)).await
    }

    pub(super) async fn login(&self, user: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({ "user_id": user, "password": password });
        self.call(Method::POST, "/v1/sessions", None, Some(body))
            .await
    }

    /// Registers `user` and returns a session token.
    pub(super) async fn user_with_token(&self, user: &str) -> String {
        let (status, _) = self.register(user, "correct horse").await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = self.login(user, "correct horse").await;
        assert_eq!(status, StatusCode::OK);
        body["token"].as_str().unwrap().to_owned()
    }

    pub(super) async fn enrol(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/v1/devices", Some(token), Some(body))
            .await
    }

    pub(super) async fn revoke(&self, token: &str, device: &str) -> (StatusCode, Value) {
        let uri = format!("/v1/devices/{device}");
        self.call(Method::DELETE, &uri, Some(token), None).await
    }

    fn serial(&self, user: &str, device: &str) -> String {
        let record = self.state.store.device(user, device).unwrap().unwrap();
        record.cert_serial
    }
}

/// Asserts the JSON error shape and returns the message.
pub(super) fn assert_error(body: &Value, code: &str) -> String {
    let error = body.get("error").expect("error object");
    assert_eq!(error["code"], code, "body: {body}");
    let message = error["message"].as_str().expect("message string");
    assert!(!message.is_empty());
    assert_eq!(body.as_object().unwrap().len(), 1, "body: {body}");
    message.to_owned()
}

/// Parses a PEM certificate and checks its subject.
fn assert_device_cert(cert_pem: &str, user: &str, device: &str) -> String {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let identity = chat_certs::peer_identity(&der).unwrap();
    assert_eq!(identity.organization, user);
    assert_eq!(identity.common_name, device);
    identity.serial
}

#[tokio::test]
async fn healthz_answers_ok() {
    let h = Harness::new();
    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "ok" }));
}

#[tokio::test]
async fn register_creates_user_and_refuses_duplicates() {
    let h = Harness::new();
    let (status, body) = h.register("alice", "correct horse").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, json!({ "user_id": "alice" }));
    assert!(h.state.store.user("alice").unwrap().is_some());

    let (status, body) = h.register("alice", "another password").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict");
}

#[tokio::test]
async fn register_validates_input() {
    let h = Harness::new();
    for bad_id in ["", "Alice", "al-ice", "a234567890123456789012345678901234"] {
        let (status, body) = h.register(bad_id, "correct horse").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "id {bad_id:?}");
        assert!(assert_error(&body, "bad_request").contains("user_id"));
    }
    let (status, body) = h.register("bob", "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "bad_request").contains("password"));
    let (status, body) = h.register("bob", &"x".repeat(257)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
    assert!(h.state.store.user("bob").unwrap().is_none());
}

#[tokio::test]
async fn register_refused_when_closed() {
    let h = Harness::with_config(HttpConfig {
        registration_open: false,
        ..HttpConfig::default()
    });
    let (status, body) = h.register("alice", "correct horse").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "forbidden");
    // Refused before the body is even looked at.
    let req = Request::post("/v1/users")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, _) = h.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn login_returns_token_and_refuses_bad_credentials() {
    let h = Harness::new();
    h.register("alice", "correct horse").await;
    let (status, body) = h.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::OK);
    let token = body["token"].as_str().unwrap();
    assert!(!token.is_empty());
    assert!(body["expires_at"].as_u64().unwrap() > 0);
    assert_eq!(
        h.state.store.check_session(token).unwrap().as_deref(),
        Some("alice")
    );

    let (status, wrong) = h.login("alice", "wrong horse").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, unknown) = h.login("nobody", "correct horse").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, malformed) = h.login("No Body", "x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let message = assert_error(&wrong, "unauthorized");
    assert_eq!(assert_error(&unknown, "unauthorized"), message);
    assert_eq!(assert_error(&malformed, "unauthorized"), message);
}

#[tokio::test]
async fn login_refuses_disabled_user() {
    let h = Harness::new();
    h.register("alice", "correct horse").await;
    h.state.store.set_user_disabled("alice", true).unwrap();
    // The right password learns why; a wrong one learns nothing.
    let (status, body) = h.login("alice", "correct horse").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(assert_error(&body, "forbidden").contains("disabled"));
    let (status, body) = h.login("alice", "wrong horse!").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
}

#[tokio::test]
async fn logout_invalidates_token() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (status, body) = h
        .call(Method::POST, "/v1/sessions/logout", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    let (status, body) = h.enrol(&token, json!({ "device_id": "phone" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let (status, _) = h
        .call(Method::POST, "/v1/sessions/logout", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn enrol_with_csr_returns_cert_without_key() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (csr_pem, _key_pem) = chat_certs::make_csr("alice", "phone").unwrap();
    let (status, body) = h
        .enrol(&token, json!({ "device_id": "phone", "csr_pem": csr_pem }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "body: {body}");
    assert_eq!(body["device_id"], "phone");
    assert!(body.get("key_pem").is_none(), "body: {body}");
    assert_eq!(body["ca_pem"], h.state.authority.ca_pem());
    let serial = assert_device_cert(body["cert_pem"].as_str().unwrap(), "alice", "phone");
    let record = h.state.store.device("alice", "phone").unwrap().unwrap();
    assert_eq!(record.cert_serial, serial);
    assert_eq!(Some(record.cert_expires_at), body["expires_at"].as_u64());
    // The fingerprint the MQTT listener matches to skip the CA signature check.
    let der =
        CertificateDer::from_pem_slice(body["cert_pem"].as_str().unwrap().as_bytes()).unwrap();
    let fingerprint = h.state.authority.fingerprint(&der);
    assert_eq!(record.cert_fingerprint, Some(fingerprint));
}

#[tokio::test]
async fn enrol_without_csr_returns_key_and_renew_changes_serial() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (status, first) = h.enrol(&token, json!({ "device_id": "laptop" })).await;
    assert_eq!(status, StatusCode::CREATED, "body: {first}");
    assert!(first["key_pem"].as_str().unwrap().contains("PRIVATE KEY"));
    assert_device_cert(first["cert_pem"].as_str().unwrap(), "alice", "laptop");
    let first_serial = h.serial("alice", "laptop");

    let (status, second) = h
        .enrol(
            &token,
            json!({ "device_id": "laptop", "csr_pem": null, "extra": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "body: {second}");
    assert_ne!(h.serial("alice", "laptop"), first_serial);
    assert_ne!(first["cert_pem"], second["cert_pem"]);
}

#[tokio::test]
async fn enrol_refuses_bad_input() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let bad_csr = json!({ "device_id": "phone", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" });
    let (status, body) = h.enrol(&token, bad_csr).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "bad_request").contains("csr_pem"));
    let (status, _) = h
        .enrol(
            &token,
            json!({ "device_id": "phone", "csr_pem": "garbage" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = h.enrol(&token, json!({ "device_id": "My Phone" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "bad_request").contains("device_id"));
    assert!(h.state.store.device("alice", "phone").unwrap().is_none());
}

#[tokio::test]
async fn enrol_requires_valid_bearer_token() {
    let h = Harness::new();
    let body = json!({ "device_id": "phone" });
    for auth in [
        None,
        Some("Bearer not-a-token"),
        Some("Basic YWxpY2U6cHc="),
        Some("Bearer "),
    ] {
        let mut req = Request::post("/v1/devices").header(header::CONTENT_TYPE, "application/json");
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let (status, headers, body) = h.send_raw(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "auth {auth:?}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_error(&body, "unauthorized");
    }
    let token = "0".repeat(64);
    let (status, _) = h.enrol(&token, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoke_calls_hook_and_retires_device() {
    let h = Harness::new();
    let token = h.user_with_token("alice").await;
    let (status, _) = h.enrol(&token, json!({ "device_id": "phone" })).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = h.revoke(&token, "phone").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    assert_eq!(
        *h.revoked.lock().unwrap(),
        vec![("alice".to_owned(), "phone".to_owned())]
    );

    let (status, body) = h.revoke(&token, "phone").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    assert_eq!(h.revoked.lock().unwrap().len(), 1);

    let (status, body) = h.enrol(&token, json!({ "device_id": "phone" })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(assert_error(&body, "conflict").contains("revoked"));
}

#[tokio::test]
async fn revoke_is_scoped_to_the_caller() {
    let h = Harness::new();
    let alice = h.user_with_token("alice").await;
    let bob = h.user_with_token("bob").await;
    h.enrol(&alice, json!({ "device_id": "phone" })).await;
    let (status, _) = h.revoke(&bob, "phone").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.revoke(&bob, "unknown").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.revoke(&alice, "Bad%20Id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
    let (status, _) = h
        .call(Method::DELETE, "/v1/devices/phone", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.revoked.lock().unwrap().is_empty());
    assert!(h.state.store.device_active("alice", "phone").unwrap());
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let h = Harness::new();
    let post = |content_type: Option<&str>, body: &str| {
        let mut req = Request::post("/v1/sessions");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Body::from(body.to_owned())).unwrap()
    };
    let (status, body) = h.send(post(Some("application/json"), "{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "bad_request").contains("not valid JSON"));

    let wrong_type = r#"{"user_id": 5, "password": "correct horse"}"#;
    let (status, body) = h.send(post(Some("application/json"), wrong_type)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "bad_request").contains("user_id"));

    let missing = r#"{"user_id": "alice"}"#;
    let (status, body) = h.send(post(Some("application/json"), missing)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_error(&body, "bad_request").contains("password"));

    let (status, body) = h
        .send(post(None, r#"{"user_id":"a","password":"b"}"#))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&body, "unsupported_media_type");
    let (status, _) = h.send(post(Some("text/plain"), "{}")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let h = Harness::with_config(HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::default()
    });
    let big = json!({ "user_id": "alice", "password": "x".repeat(2000) });
    let (status, body) = h.register("alice", &"x".repeat(2000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "body: {body}");
    assert_error(&body, "too_large");
    // Also without a Content-Length (streamed body).
    let stream = chunked_body(big.to_string().into_bytes());
    let req = Request::post("/v1/users")
        .header(header::CONTENT_TYPE, "application/json")
        .body(stream)
        .unwrap();
    let (status, body) = h.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "too_large");
}

/// A body of unknown length (no size hint), in 100-byte chunks.
fn chunked_body(bytes: Vec<u8>) -> Body {
    let chunks = bytes
        .chunks(100)
        .map(axum::body::Bytes::copy_from_slice)
        .collect();
    Body::new(Chunked(chunks))
}

struct Chunked(std::collections::VecDeque<axum::body::Bytes>);

impl hyper::body::Body for Chunked {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

#[tokio::test]
async fn unknown_route_and_wrong_method_get_json_errors() {
    let h = Harness::new();
    let (status, body) = h.call(Method::GET, "/v1/nothing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    let req = Request::get("/v1/users").body(Body::empty()).unwrap();
    let (status, headers, body) = h.send_raw(req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
    assert_eq!(headers[header::ALLOW], "POST");
    let (status, body) = h.call(Method::GET, "/v1/devices/phone", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
}

#[test]
fn config_defaults_and_validation() {
    let cfg = HttpConfig::default();
    assert_eq!(cfg.listen, "127.0.0.1:8080");
    assert!(cfg.registration_open);
    assert_eq!(cfg.max_body_bytes, 65536);
    assert!(!cfg.tls_enabled());
    cfg.validate().unwrap();

    let parsed: HttpConfig = serde_json::from_value(json!({ "listen": "localhost:9000" })).unwrap();
    assert_eq!(parsed.max_body_bytes, 65536);
    parsed.validate().unwrap();

    let bad = |cfg: HttpConfig| cfg.validate().unwrap_err();
    assert!(bad(HttpConfig {
        listen: "nonsense".into(),
        ..cfg.clone()
    })
    .contains("listen"));
    assert!(bad(HttpConfig {
        listen: ":80".into(),
        ..cfg.clone()
    })
    .contains("listen"));
    assert!(bad(HttpConfig {
        max_body_bytes: 0,
        ..cfg.clone()
    })
    .contains("max_body_bytes"));
    let cert_only = HttpConfig {
        tls_cert: Some("c.pem".into()),
        ..cfg.clone()
    };
    assert!(bad(cert_only).contains("tls_key"));
    let both = HttpConfig {
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        ..cfg.clone()
    };
    both.validate().unwrap();
    assert!(both.tls_enabled());
    assert!(bad(HttpConfig {
        tls_from_node_cert: true,
        ..both
    })
    .contains("tls_from_node_cert"));
}

#[tokio::test]
async fn serve_speaks_https_and_shuts_down() {
    let h = Harness::new();
    let tls = h.state.authority.server_tls_config(false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, h.app(), Some(tls), async move {
        let _ = stop_rx.await;
    }));

    let ca = reqwest::Certificate::from_pem(h.state.authority.ca_pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", addr.port());
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({ "status": "ok" }));

    // A JSON error over the wire too.
    let resp = client
        .get(format!("https://localhost:{}/nope", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::NOT_FOUND);

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("server stops after shutdown")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn internal_errors_are_generic() {
    use axum::response::IntoResponse as _;
    let err = super::ApiError::internal(anyhow::anyhow!("sled failed at /secret/path"));
    assert_eq!(err.code(), "internal");
    let resp = err.into_response();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let message = assert_error(&body, "internal");
    assert!(!message.contains("secret"), "{message}");
}
