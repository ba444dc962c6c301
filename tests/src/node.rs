//! [`TestNode`]: a real node on free loopback ports in a temporary directory, and the HTTP
//! helpers that act as a client of its API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The password every helper registers users with (8..=256 bytes, as the API requires).
pub const TEST_PASSWORD: &str = "correct horse battery";

/// The admin token of every [`TestNode`] (`[admin] token`).
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-for-the-suites";

/// A node started in a temporary data directory with fast password hashing, listening on
/// `127.0.0.1:0` for HTTP, MQTT over TLS and plaintext MQTT.
///
/// Stop it with [`TestNode::stop`]. Dropping a node that was not stopped is fine: its tasks
/// end with the test's runtime and the [`tempfile::TempDir`] removes the files.
pub struct TestNode {
    /// The node; `None` once stopped.
    pub node: Option<chatd::Node>,
    /// The data directory (`db/`, `certs/`).
    pub dir: tempfile::TempDir,
    /// Base URL of the HTTP API, `http://127.0.0.1:PORT`.
    pub http: String,
    /// The MQTT-over-TLS listener.
    pub mqtt: SocketAddr,
    /// The plaintext MQTT listener (username = user, password = session token).
    pub mqtt_plain: SocketAddr,
    /// The CA certificate (PEM) clients trust.
    pub ca_pem: String,
    /// The HTTP client used by the helpers (30 s timeout).
    pub client: reqwest::Client,
}

/// An answer of the HTTP API: status, headers and the body parsed as JSON (`Value::Null` when
/// the body is empty or not JSON; the raw text is kept in `text`).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl ApiResponse {
    /// `error.code` of an error answer, if the body has the API's error shape.
    pub fn error_code(&self) -> Option<&str> {
        self.body.pointer("/error/code").and_then(Value::as_str)
    }

    /// Panics unless this is an error answer of the API's shape
    /// `{"error":{"code":"...","message":"..."}}` with the given status and code.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.error_code(),
            Some(code),
            "unexpected error code; body: {}",
            self.text
        );
        let message = self.body.pointer("/error/message").and_then(Value::as_str);
        assert!(
            message.is_some_and(|m| !m.is_empty()),
            "error answer without a message: {}",
            self.text
        );
        let content_type = self
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "error answer with content-type {content_type:?}"
        );
    }
}

/// What `POST /v1/devices` gave a device, plus the private key it connects with.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The user the device belongs to.
    pub user: String,
    pub device_id: String,
    pub cert_pem: String,
    /// The private key: the server's `key_pem`, or the locally made key when a CSR was sent.
    pub key_pem: String,
    pub ca_pem: String,
    pub expires_at: u64,
}

impl Enrolment {
    /// The certificate's O, CN, serial and not_after.
    pub fn identity(&self) -> chat_certs::PeerIdentity {
        let der = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .next()
            .expect("cert_pem holds no certificate")
            .expect("cert_pem is not valid PEM");
        chat_certs::peer_identity(der.as_ref()).expect("certificate has no O/CN")
    }

    /// A rustls client configuration presenting this device's certificate.
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        crate::client_tls_config(&self.ca_pem, Some((&self.cert_pem, &self.key_pem)))
    }
}

impl TestNode {
    /// Starts a node with the test defaults (see [`TestNode::start_with`]).
    pub async fn start() -> TestNode {
        TestNode::start_with(|_| {}).await
    }

    /// Starts a node: `Config::default()` with the data directory in a fresh temp dir, every
    /// listener (HTTP, MQTT TLS, MQTT plaintext) on `127.0.0.1:0`, cheap argon2 parameters and
    /// a small sled cache, no rate limits, the admin API on with [`TEST_ADMIN_TOKEN`]; then
    /// `adjust` may change anything before `Node::start`.
    pub async fn start_with(adjust: impl FnOnce(&mut chatd::Config)) -> TestNode {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let mut cfg = chatd::Config::default();
        cfg.node.data_dir = dir.path().to_path_buf();
        cfg.node.shutdown_grace_secs = 5;
        cfg.http.listen = "127.0.0.1:0".into();
        cfg.mqtt.listen = "127.0.0.1:0".into();
        cfg.mqtt.plaintext_listen = Some("127.0.0.1:0".into());
        cfg.store.password_memory_kib = 256;
        cfg.store.password_iterations = 1;
        cfg.store.cache_capacity_mb = 16;
        // Several shard workers and router partitions whatever the machine (the defaults follow
        // the CPU count, one shard on 2 cores), so that the suites cross shards and partitions.
        cfg.store.shards = 4;
        cfg.mqtt.partitions = 4;
        // Suites push thousands of messages from one user; the rate-limit suite turns them on.
        cfg.limits.requests_per_sec = 0.0;
        cfg.limits.sends_per_sec = 0.0;
        cfg.admin.token = TEST_ADMIN_TOKEN.into();
        adjust(&mut cfg);
        TestNode::start_in(dir, cfg).await
    }

    /// Shuts the node down and starts a new one on the same data directory with the same
    /// configuration (listeners on new free ports); for "survives a restart" checks.
    pub async fn restart(self) -> TestNode {
        self.restart_with(|_| {}).await
    }

    /// [`TestNode::restart`], calling `between` with the stopped node's configuration (the
    /// data directory is `cfg.node.data_dir`) before the new node starts.
    pub async fn restart_with(mut self, between: impl FnOnce(&chatd::Config)) -> TestNode {
        let node = self.node.take().expect("node already stopped");
        let cfg = node.config().clone();
        node.shutdown().await.expect("node shutdown failed");
        between(&cfg);
        let mut cfg = cfg;
        cfg.http.listen = "127.0.0.1:0".into();
        cfg.mqtt.listen = "127.0.0.1:0".into();
        cfg.mqtt.plaintext_listen = Some("127.0.0.1:0".into());
        let dir = std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("creating a temp dir"),
        );
        TestNode::start_in(dir, cfg).await
    }

    async fn start_in(dir: tempfile::TempDir, cfg: chatd::Config) -> TestNode {
        cfg.validate().expect("test configuration is invalid");
        let node = chatd::Node::start(cfg).await.expect("node failed to start");
        assert!(
            !node.http_is_tls(),
            "the harness speaks plain HTTP to the API"
        );
        let http = format!("http://{}", node.http_addr());
        let mqtt = node.mqtt_addr();
        let mqtt_plain = node
            .mqtt_plaintext_addr()
            .expect("the plaintext listener is enabled by the harness");
        let ca_pem = node.ca_pem().to_owned();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the HTTP client");
        TestNode {
            node: Some(node),
            dir,
            http,
            mqtt,
            mqtt_plain,
            ca_pem,
            client,
        }
    }

    /// The running node (panics once stopped).
    pub fn node(&self) -> &chatd::Node {
        self.node.as_ref().expect("node already stopped")
    }

    /// Waits up to `wait` until the node counts exactly `n` users online; panics if it does
    /// not. Connections reach the online table through the broker's connection events, a
    /// moment after the CONNACK (and a dropped device goes offline a moment after it drops).
    pub async fn wait_online(&self, n: usize, wait: Duration) {
        let deadline = Instant::now() + wait;
        while self.node().online_users() != n {
            assert!(
                Instant::now() < deadline,
                "{} users online, not {n}",
                self.node().online_users()
            );
            // Polling: the online table has no event to await.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Shuts the node down (`Node::shutdown`) and panics if that fails.
    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.expect("node shutdown failed");
        }
    }

    /// Waits up to `wait` until the node has exactly `linked` connections past CONNECT and no
    /// other socket open (none handshaking, none refused but not yet closed); panics with both
    /// counts otherwise. After refusals, this proves no connection slot was left behind (a
    /// connection task that panicked would keep its slot).
    pub async fn wait_for_connections(&self, linked: usize, wait: Duration) {
        let broker = self.node().broker();
        let deadline = Instant::now() + wait;
        while (broker.connection_count(), broker.open_sockets()) != (linked, linked) {
            assert!(
                Instant::now() < deadline,
                "connections: {} linked, {} open sockets; expected {linked} of each",
                broker.connection_count(),
                broker.open_sockets()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `DATA_DIR/certs/ca.pem`.
    pub fn ca_path(&self) -> std::path::PathBuf {
        self.dir.path().join("certs").join(chat_certs::CA_CERT_FILE)
    }

    /// Full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// `GET /v1/media/{id}` as `token`, with an optional `Range` header.
    pub async fn download_media(
        &self,
        token: &str,
        id: &str,
        range: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .get(self.url(&format!("/v1/media/{id}")))
            .bearer_auth(token);
        if let Some(range) = range {
            req = req.header("range", range);
        }
        req.send().await.expect("GET /v1/media")
    }

    /// Sends one request and returns the answer, whatever its status. `body` is sent as JSON
    /// (with `Content-Type: application/json`); `token` as `Authorization: Bearer`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> ApiResponse {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        ApiResponse::from(req.send().await.expect("HTTP request failed")).await
    }

    /// Sends a prepared request (for raw bodies, odd headers) and returns the answer.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> ApiResponse {
        ApiResponse::from(req.send().await.expect("HTTP request failed")).await
    }

    /// An admin API request with [`TEST_ADMIN_TOKEN`], whatever the answer.
    pub async fn admin(&self, method: Method, path: &str) -> ApiResponse {
        self.request(method, path, Some(TEST_ADMIN_TOKEN), None)
            .await
    }

    /// `GET /metrics` with the admin token, checked with [`crate::parse_prometheus`] (panics
    /// unless 200 and well-formed).
    pub async fn metrics(&self) -> crate::Scrape {
        let r = self.admin(Method::GET, "/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "GET /metrics: {}", r.text);
        crate::parse_prometheus(&r.text)
            .unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}\n{}", r.text))
    }

    /// `POST /v1/users`, whatever the answer.
    pub async fn try_register(&self, user: &str, password: &str) -> ApiResponse {
        let body = json!({ "user_id": user, "password": password });
        self.request(Method::POST, "/v1/users", None, Some(&body))
            .await
    }

    /// `POST /v1/users`; panics unless 201.
    pub async fn register(&self, user: &str, password: &str) {
        let r = self.try_register(user, password).await;
        assert_eq!(r.status, StatusCode::CREATED, "register {user}: {}", r.text);
    }

    /// `POST /v1/sessions`, whatever the answer.
    pub async fn try_login(&self, user: &str, password: &str) -> ApiResponse {
        let body = json!({ "user_id": user, "password": password });
        self.request(Method::POST, "/v1/sessions", None, Some(&body))
            .await
    }

    /// `POST /v1/sessions`; panics unless 200. Returns the token.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self.try_login(user, password).await;
        assert_eq!(r.status, StatusCode::OK, "login {user}: {}", r.text);
        r.body["token"]
            .as_str()
            .expect("login answer without token")
            .to_owned()
    }

    /// `POST /v1/devices` with `{device_id, csr_pem?}`, whatever the answer.
    pub async fn try_enrol(&self, token: &str, device: &str, csr_pem: Option<&str>) -> ApiResponse {
        let mut body = json!({ "device_id": device });
        if let Some(csr) = csr_pem {
            body["csr_pem"] = json!(csr);
        }
        self.request(Method::POST, "/v1/devices", Some(token), Some(&body))
            .await
    }

    /// Enrols (or renews) a device without a CSR: the server makes the key. Panics unless 201
    /// with a `key_pem`.
    pub async fn enrol(&self, token: &str, device: &str) -> Enrolment {
        let r = self.try_enrol(token, device, None).await;
        assert_eq!(r.status, StatusCode::CREATED, "enrol {device}: {}", r.text);
        let key_pem = r.body["key_pem"]
            .as_str()
            .expect("enrolment without CSR must return key_pem")
            .to_owned();
        enrolment_from(&r, key_pem)
    }

    /// Enrols (or renews) a device with a CSR made locally ([`chat_certs::make_csr`]): the
    /// private key never leaves the test. Panics unless 201 without a `key_pem`.
    pub async fn enrol_csr(&self, token: &str, user: &str, device: &str) -> Enrolment {
        let (csr, key_pem) = chat_certs::make_csr(user, device).expect("make_csr");
        let r = self.try_enrol(token, device, Some(&csr)).await;
        assert_eq!(r.status, StatusCode::CREATED, "enrol {device}: {}", r.text);
        assert!(
            r.body.get("key_pem").is_none(),
            "enrolment with a CSR must not return key_pem: {}",
            r.text
        );
        enrolment_from(&r, key_pem)
    }

    /// `DELETE /v1/devices/{device}`; returns the status.
    pub async fn revoke(&self, token: &str, device: &str) -> StatusCode {
        self.request(
            Method::DELETE,
            &format!("/v1/devices/{device}"),
            Some(token),
            None,
        )
        .await
        .status
    }

    /// Registers `user` (password [`TEST_PASSWORD`]), logs in and enrols `device` (no CSR).
    pub async fn user_with_device(&self, user: &str, device: &str) -> (String, Enrolment) {
        self.register(user, TEST_PASSWORD).await;
        let token = self.login(user, TEST_PASSWORD).await;
        let enrolment = self.enrol(&token, device).await;
        (token, enrolment)
    }
}

impl ApiResponse {
    async fn from(resp: reqwest::Response) -> ApiResponse {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("reading the HTTP body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        ApiResponse {
            status,
            headers,
            body,
            text,
        }
    }
}

fn enrolment_from(r: &ApiResponse, key_pem: String) -> Enrolment {
    let field = |name: &str| {
        r.body[name]
            .as_str()
            .unwrap_or_else(|| panic!("enrolment answer without {name}: {}", r.text))
            .to_owned()
    };
    let mut e = Enrolment {
        user: String::new(),
        device_id: field("device_id"),
        cert_pem: field("cert_pem"),
        key_pem,
        ca_pem: field("ca_pem"),
        expires_at: r.body["expires_at"]
            .as_u64()
            .unwrap_or_else(|| panic!("enrolment answer without expires_at: {}", r.text)),
    };
    e.user = e.identity().organization;
    e
}
