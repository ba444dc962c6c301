//! Fake push providers on 127.0.0.1, speaking as FCM and APNs do, for the push suite: the OAuth2
//! token endpoint (checks the RS256 grant JWT with the test key), FCM's `messages:send` (checks
//! the access token and the message), and APNs's `/3/device/{token}` over HTTP/2 (checks the
//! ES256 provider token and the `apns-*` headers). Every request is recorded; answers come from
//! a script (status, `Retry-After`, body) and are 200 when the script is empty.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

/// Where the fixture keys are.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The FCM project the fake serves.
pub const PROJECT: &str = "demo-project";
/// The service account's e-mail.
pub const CLIENT_EMAIL: &str = "chatd@demo-project.iam.gserviceaccount.com";
/// APNs key id, team id and topic the fake expects.
pub const KEY_ID: &str = "KEY1234567";
pub const TEAM_ID: &str = "TEAM123456";
pub const TOPIC: &str = "com.example.chat";

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Value,
}

impl Answer {
    pub fn status(status: u16, body: Value) -> Answer {
        Answer {
            status,
            retry_after: None,
            body,
        }
    }
}

/// A request the fake accepted as well-formed (its auth checked).
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    /// `fcm` or `apns`.
    pub provider: &'static str,
    /// The device token the notification was for.
    pub token: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The status the fake answered.
    pub answered: u16,
}

#[derive(Default)]
struct State {
    fcm_script: VecDeque<Answer>,
    apns_script: VecDeque<Answer>,
    seen: Vec<Seen>,
    /// Problems with requests (bad auth, missing headers): the test fails on any.
    problems: Vec<String>,
    token_grants: usize,
}

/// The running fake.
#[derive(Clone)]
pub struct FakePush {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakePush {
    pub async fn start() -> FakePush {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake push server");
        let addr = listener.local_addr().expect("fake push address");
        let s = state.clone();
        let app = axum::Router::new().fallback(move |method, uri, version, headers, body| {
            handle(s.clone(), method, uri, version, headers, body)
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePush { addr, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn script_fcm(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().fcm_script.extend(answers);
    }

    pub fn script_apns(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().apns_script.extend(answers);
    }

    /// Everything seen so far; panics if any request was malformed.
    pub fn seen(&self) -> Vec<Seen> {
        let state = self.lock();
        assert!(
            state.problems.is_empty(),
            "bad push requests: {:?}",
            state.problems
        );
        state.seen.clone()
    }

    /// OAuth2 grants exchanged so far.
    pub fn token_grants(&self) -> usize {
        self.lock().token_grants
    }

    /// Waits up to `wait` until `count` requests were seen; returns them.
    pub async fn wait_for(&self, count: usize, wait: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + wait;
        loop {
            let seen = self.seen();
            if seen.len() >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} push requests within {wait:?}: {seen:?}",
                seen.len()
            );
            // Polling a recorder: the requests arrive from the node's own sender.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes the node's `[push]` settings for this fake (service-account file into `dir`).
    pub fn configure(&self, push: &mut chatd::PushConfig, dir: &Path) {
        let key = std::fs::read_to_string(fixtures().join("fcm-test-key.pem")).expect("fixture");
        let account = json!({
            "type": "service_account",
            "project_id": PROJECT,
            "client_email": CLIENT_EMAIL,
            "private_key": key,
            "token_uri": format!("http://{}/token", self.addr),
        });
        let file = dir.join("service-account.json");
        std::fs::write(&file, account.to_string()).expect("writing the service account");
        push.fcm.credentials_file = Some(file);
        push.fcm.project_id = PROJECT.into();
        push.fcm.base_url = format!("http://{}", self.addr);
        push.apns.key_file = Some(fixtures().join("apns-test-key.p8"));
        push.apns.key_id = KEY_ID.into();
        push.apns.team_id = TEAM_ID.into();
        push.apns.topic = TOPIC.into();
        push.apns.base_url = format!("http://{}", self.addr);
        push.collapse_ms = 50;
        push.backoff_initial_ms = 50;
        push.backoff_max_ms = 2_000;
    }
}

fn reply(answer: &Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(answer.body.clone())).into_response();
    if let Some(secs) = answer.retry_after {
        response.headers_mut().insert(
            "retry-after",
            secs.to_string().parse().expect("header value"),
        );
    }
    response
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    if method != Method::POST {
        s.problems.push(format!("{method} {path}"));
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if path == "/token" {
        return token(&mut s, &body);
    }
    let fcm_path = format!("/v1/projects/{PROJECT}/messages:send");
    if path == fcm_path {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some("Bearer fake-access-1") {
            s.problems
                .push(format!("FCM send with authorization {auth:?}"));
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = body["message"]["token"].as_str().unwrap_or("").to_owned();
        if token.is_empty()
            || body["message"]["android"]["collapse_key"]
                .as_str()
                .is_none()
        {
            s.problems
                .push(format!("FCM message without token or collapse_key: {body}"));
        }
        let answer = s.fcm_script.pop_front().unwrap_or_else(|| {
            Answer::status(200, json!({"name": "projects/demo-project/messages/1"}))
        });
        s.seen.push(Seen {
            at: Instant::now(),
            provider: "fcm",
            token,
            headers,
            body,
            answered: answer.status,
        });
        return reply(&answer);
    }
    if let Some(token) = path.strip_prefix("/3/device/") {
        if let Err(problem) = check_apns(version, &headers) {
            s.problems.push(problem);
            return StatusCode::FORBIDDEN.into_response();
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        let answer = s
            .apns_script
            .pop_front()
            .unwrap_or_else(|| Answer::status(200, json!({})));
        s.seen.push(Seen {
            at: Instant::now(),
            provider: "apns",
            token: token.to_owned(),
            headers,
            body,
            answered: answer.status,
        });
        return reply(&answer);
    }
    s.problems.push(format!("POST {path}"));
    StatusCode::NOT_FOUND.into_response()
}

/// The OAuth2 token endpoint: a `jwt-bearer` grant signed with the service account's key.
fn token(s: &mut State, body: &[u8]) -> Response {
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_bytes(body).unwrap_or_default();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        s.problems
            .push(format!("token grant_type {:?}", form.get("grant_type")));
        return StatusCode::BAD_REQUEST.into_response();
    }
    let public = std::fs::read(fixtures().join("fcm-test-key.pub.pem")).expect("fixture");
    let key = DecodingKey::from_rsa_pem(&public).expect("test public key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false; // checked below: the node's token endpoint
    validation.set_required_spec_claims(&["exp", "iss"]);
    match jsonwebtoken::decode::<Value>(form.get("assertion").map_or("", |a| a), &key, &validation)
    {
        Ok(data) => {
            let c = &data.claims;
            let aud_ok = c["aud"].as_str().is_some_and(|a| a.ends_with("/token"));
            if c["iss"] != CLIENT_EMAIL
                || c["scope"] != "https://www.googleapis.com/auth/firebase.messaging"
                || !aud_ok
            {
                s.problems.push(format!("grant claims {c}"));
                return StatusCode::BAD_REQUEST.into_response();
            }
            s.token_grants += 1;
            axum::Json(json!({"access_token": "fake-access-1", "expires_in": 3600, "token_type": "Bearer"}))
                .into_response()
        }
        Err(e) => {
            s.problems.push(format!("grant JWT: {e}"));
            StatusCode::BAD_REQUEST.into_response()
        }
    }
}

/// APNs checks: HTTP/2, a valid ES256 provider token, and the headers.
fn check_apns(version: Version, headers: &HeaderMap) -> Result<(), String> {
    if version != Version::HTTP_2 {
        return Err(format!("APNs request over {version:?}"));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let jwt = header("authorization")
        .strip_prefix("bearer ")
        .ok_or_else(|| format!("APNs authorization {:?}", header("authorization")))?;
    let public = std::fs::read(fixtures().join("apns-test-key.pub.pem")).expect("fixture");
    let key = DecodingKey::from_ec_pem(&public).expect("test public key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_required_spec_claims(&["iss"]);
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map_err(|e| format!("APNs provider token: {e}"))?;
    if data.header.kid.as_deref() != Some(KEY_ID) || data.claims["iss"] != TEAM_ID {
        return Err(format!(
            "APNs token header {:?} claims {}",
            data.header, data.claims
        ));
    }
    let iat = data.claims["iat"].as_u64().unwrap_or(0);
    let now = crate::now_secs();
    if iat + 3600 < now || iat > now + 60 {
        return Err(format!("APNs token iat {iat} vs now {now}"));
    }
    if header("apns-topic") != TOPIC
        || header("apns-push-type") != "alert"
        || header("apns-collapse-id").is_empty()
        || header("apns-expiration")
            .parse::<u64>()
            .map_or(true, |e| e < now)
    {
        return Err(format!("APNs headers {headers:?}"));
    }
    Ok(())
}
