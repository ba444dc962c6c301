//! FCM HTTP v1: `POST {base}/v1/projects/{project}/messages:send` with an OAuth2 access token.
//! The token comes from the service account: an RS256-signed JWT (`iss` = client email,
//! `scope` = firebase.messaging, `aud` = token endpoint) exchanged at the token endpoint with
//! the `jwt-bearer` grant, and is cached until a minute before it expires.

use std::time::{Duration, Instant};

use chat_store::PushJob;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use crate::config::FcmConfig;
use crate::sender::{classify_retry, notification_text, Outcome};
use crate::PushError;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

pub(crate) struct Fcm {
    http: reqwest::Client,
    send_url: String,
    token_url: String,
    email: String,
    key: EncodingKey,
    token: Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    /// `None` when FCM is not configured.
    pub(crate) fn new(cfg: &FcmConfig, http: reqwest::Client) -> Result<Option<Fcm>, PushError> {
        let Some(path) = &cfg.credentials_file else {
            return Ok(None);
        };
        let bad = |what: String| PushError::Config(format!("{}: {what}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let account: ServiceAccount =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a service account: {e}")))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| bad(format!("private_key: {e}")))?;
        let token_url = if cfg.token_url.is_empty() {
            account.token_uri
        } else {
            cfg.token_url.clone()
        };
        if token_url.is_empty() {
            return Err(bad("no token_uri and no push.fcm.token_url".into()));
        }
        Ok(Some(Fcm {
            http,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                cfg.base_url.trim_end_matches('/'),
                cfg.project_id
            ),
            token_url,
            email: account.client_email,
            key,
            token: Mutex::new(None),
        }))
    }

    async fn access_token(&self) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = &*cached {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let iat = crate::now_ms() / 1000;
        let claims = Claims {
            iss: &self.email,
            scope: SCOPE,
            aud: &self.token_url,
            iat,
            exp: iat + 3600,
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| Outcome::Failed(format!("signing the FCM grant: {e}")))?;
        let answer = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", jwt.as_str()),
            ])
            .send()
            .await
            .map_err(|e| Outcome::retry(format!("FCM token endpoint: {e}")))?;
        let status = answer.status();
        if !status.is_success() {
            let retry = classify_retry(status, answer.headers());
            return Err(retry.unwrap_or_else(|| {
                Outcome::Failed(format!("FCM token endpoint answered {status}"))
            }));
        }
        let token: TokenAnswer = answer
            .json()
            .await
            .map_err(|e| Outcome::retry(format!("FCM token answer: {e}")))?;
        let life = Duration::from_secs(token.expires_in.saturating_sub(60).max(1));
        *cached = Some((token.access_token.clone(), Instant::now() + life));
        Ok(token.access_token)
    }

    pub(crate) async fn send(&self, job: &PushJob) -> Outcome {
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let (title, body) = notification_text(job);
        let message = json!({"message": {
            "token": job.token,
            "notification": {"title": title, "body": body},
            "data": {"conv": job.conv, "count": job.count.to_string()},
            "android": {"collapse_key": job.conv, "priority": "high"},
        }});
        let answer = match self
            .http
            .post(&self.send_url)
            .bearer_auth(token)
            .json(&message)
            .send()
            .await
        {
            Ok(a) => a,
            Err(e) => return Outcome::retry(format!("FCM: {e}")),
        };
        let status = answer.status();
        if status.is_success() {
            return Outcome::Sent;
        }
        if let Some(retry) = classify_retry(status, answer.headers()) {
            return retry;
        }
        let text = answer.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND || text.contains("UNREGISTERED") {
            return Outcome::InvalidToken(format!("FCM {status}: token no longer valid"));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            // The access token was refused: get a new one next time.
            *self.token.lock().await = None;
            return Outcome::retry(format!("FCM {status}"));
        }
        let shown: String = text.chars().take(200).collect();
        Outcome::Failed(format!("FCM {status}: {shown}"))
    }
}
