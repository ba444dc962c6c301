//! [`Api`]: the HTTP side of the protocol: accounts, sessions, device enrolment (a key made
//! here, a CSR sent), history pages and media.

use std::time::Duration;

use chat_proto::{Conv, Media, MsgEvent};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::state::{version, Session};
use crate::tls;

/// An HTTP client for one server's API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

/// `POST /v1/sessions` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    /// The bearer token.
    pub token: String,
    /// When it expires, unix seconds.
    pub expires_at: u64,
}

/// `POST /v1/devices` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceCert {
    /// The device id.
    pub device_id: String,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The CA (PEM).
    pub ca_pem: String,
    /// When the certificate expires, unix seconds.
    pub expires_at: u64,
}

/// A page of a conversation, newest first (`GET /v1/conversations/{conv}/messages`).
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryPage {
    /// `msg` events without `n`, newest first.
    pub messages: Vec<MsgEvent>,
    /// Whether older messages exist.
    pub more: bool,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    error: ApiErrorInner,
}

#[derive(Deserialize)]
struct ApiErrorInner {
    code: String,
    message: String,
}

impl Api {
    /// A client for the API at `base` (`http://host:port` or `https://...`). `extra_ca_pem`
    /// adds a trusted root for an HTTPS API signed by the deployment's own CA.
    pub fn new(base: &str, extra_ca_pem: Option<&str>) -> Result<Api> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Invalid(format!(
                "server address {base:?} must start with http:// or https://"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = extra_ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| Error::Tls(format!("reading the CA for HTTPS: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| Error::Http {
            url: base.clone(),
            cause: e.to_string(),
        })?;
        Ok(Api { base, http })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/users`: registers `user`.
    pub async fn register(&self, user: &str, password: &str) -> Result<()> {
        check_id(user, "user id")?;
        let body = json!({"user_id": user, "password": password});
        let req = self.request(Method::POST, "/v1/users", None).json(&body);
        self.call::<serde_json::Value>(req, "/v1/users").await?;
        Ok(())
    }

    /// `POST /v1/sessions`: a session token for `user`.
    pub async fn login(&self, user: &str, password: &str) -> Result<Login> {
        check_id(user, "user id")?;
        let body = json!({"user_id": user, "password": password});
        let req = self.request(Method::POST, "/v1/sessions", None).json(&body);
        self.call(req, "/v1/sessions").await
    }

    /// `POST /v1/devices` with a CSR for `key_pem`: a new or renewed certificate.
    pub async fn certify(
        &self,
        token: &str,
        user: &str,
        device: &str,
        key_pem: &str,
    ) -> Result<DeviceCert> {
        check_id(device, "device id")?;
        let csr = tls::csr_pem(key_pem, user, device)?;
        let body = json!({"device_id": device, "csr_pem": csr});
        let req = self
            .request(Method::POST, "/v1/devices", Some(token))
            .json(&body);
        self.call(req, "/v1/devices").await
    }

    /// Logs in as `user` and enrols `device` with a key made here (it never leaves the
    /// device): the whole [`Session`] a client connects with. `mqtt` is the broker's
    /// `host:port`.
    pub async fn enrol(
        &self,
        mqtt: &str,
        user: &str,
        password: &str,
        device: &str,
    ) -> Result<Session> {
        check_id(device, "device id")?;
        let login = self.login(user, password).await?;
        let key_pem = tls::new_key_pem()?;
        let cert = self.certify(&login.token, user, device, &key_pem).await?;
        Ok(Session {
            version: version(),
            http: self.base.clone(),
            mqtt: mqtt.to_owned(),
            user: user.to_owned(),
            device: cert.device_id,
            token: login.token,
            token_expires_at: login.expires_at,
            key_pem,
            cert_pem: cert.cert_pem,
            ca_pem: cert.ca_pem,
            cert_issued_at: crate::now_secs(),
            cert_expires_at: cert.expires_at,
            last_n: 0,
            outbox: Vec::new(),
        })
    }

    /// Renews the session's certificate with a CSR for its key and updates the session.
    pub async fn renew(&self, session: &mut Session) -> Result<()> {
        let cert = self
            .certify(
                &session.token,
                &session.user,
                &session.device,
                &session.key_pem,
            )
            .await?;
        session.cert_pem = cert.cert_pem;
        session.ca_pem = cert.ca_pem;
        session.cert_issued_at = crate::now_secs();
        session.cert_expires_at = cert.expires_at;
        Ok(())
    }

    /// `DELETE /v1/devices/{device}`: retires a device for good.
    pub async fn revoke(&self, token: &str, device: &str) -> Result<()> {
        check_id(device, "device id")?;
        let path = format!("/v1/devices/{device}");
        let req = self.request(Method::DELETE, &path, Some(token));
        self.call::<serde_json::Value>(req, &path).await?;
        Ok(())
    }

    /// `GET /v1/conversations/{conv}/messages`: messages with `seq < before` (newest when
    /// absent), at most `limit`, newest first.
    pub async fn history(
        &self,
        token: &str,
        conv: &Conv,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<HistoryPage> {
        let path = format!("/v1/conversations/{conv}/messages");
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let req = self.request(Method::GET, &path, Some(token)).query(&query);
        self.call(req, &path).await
    }

    /// `POST /v1/media`: uploads `bytes` as `mime`; the answer is what a `send` attaches.
    pub async fn upload(&self, token: &str, bytes: Vec<u8>, mime: &str) -> Result<Media> {
        let req = self
            .request(Method::POST, "/v1/media", Some(token))
            .header(reqwest::header::CONTENT_TYPE, mime)
            .body(bytes);
        self.call(req, "/v1/media").await
    }

    /// `GET /v1/media/{media_id}`: the bytes and their content type.
    pub async fn download(&self, token: &str, media_id: &str) -> Result<(Vec<u8>, String)> {
        if media_id.is_empty() || !media_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Invalid(format!(
                "media id {media_id:?} is not a hex SHA-256"
            )));
        }
        let path = format!("/v1/media/{media_id}");
        let resp = self
            .send(self.request(Method::GET, &path, Some(token)), &path)
            .await?;
        let mime = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let bytes = resp.bytes().await.map_err(|e| self.http_error(&path, e))?;
        Ok((bytes.to_vec(), mime))
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends, and turns an error status into [`Error::Api`].
    async fn send(&self, req: RequestBuilder, path: &str) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| self.http_error(path, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ApiErrorBody>(&text) {
            Ok(body) => Error::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => Error::Api {
                status: status.as_u16(),
                code: status_code_name(status),
                message: text.chars().take(200).collect(),
            },
        })
    }

    /// Sends and reads a JSON answer (an empty body reads as JSON `null`).
    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder, path: &str) -> Result<T> {
        let resp = self.send(req, path).await?;
        let text = resp.text().await.map_err(|e| self.http_error(path, e))?;
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|e| Error::BadAnswer {
            url: format!("{}{path}", self.base),
            cause: e.to_string(),
        })
    }

    fn http_error(&self, path: &str, e: reqwest::Error) -> Error {
        // reqwest's Display hides the cause ("error sending request"); walk the chain.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        Error::Http {
            url: format!("{}{path}", self.base),
            cause,
        }
    }
}

fn status_code_name(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_lowercase()
        .replace(' ', "_")
}

fn check_id(id: &str, what: &str) -> Result<()> {
    if chat_proto::valid_id(id) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {id:?} is not valid: 1-32 characters of a-z and 0-9"
        )))
    }
}
