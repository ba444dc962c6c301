//! APNs: `POST {base}/3/device/{token}` over HTTP/2 with a provider token: an ES256 JWT
//! (`kid` = key id, `iss` = team id, `iat`) reused for 50 minutes (Apple refuses tokens older
//! than an hour and throttles ones refreshed more often than every 20 minutes).

use std::time::{Duration, Instant};

use chat_store::PushJob;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use crate::config::ApnsConfig;
use crate::sender::{classify_retry, notification_text, Outcome};
use crate::PushError;

const TOKEN_LIFE: Duration = Duration::from_secs(50 * 60);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

#[derive(Deserialize)]
struct Reason {
    reason: String,
}

pub(crate) struct Apns {
    http: reqwest::Client,
    base: String,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    expiration_secs: u64,
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    /// `None` when APNs is not configured.
    pub(crate) fn new(cfg: &ApnsConfig) -> Result<Option<Apns>, PushError> {
        let Some(path) = &cfg.key_file else {
            return Ok(None);
        };
        let bad = |what: String| PushError::Config(format!("{}: {what}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let key =
            EncodingKey::from_ec_pem(&pem).map_err(|e| bad(format!("not an ES256 key: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(600));
        if cfg.base_url.starts_with("http://") {
            builder = builder.http2_prior_knowledge();
        }
        let http = builder
            .build()
            .map_err(|e| PushError::Config(format!("APNs client: {e}")))?;
        Ok(Some(Apns {
            http,
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            key,
            key_id: cfg.key_id.clone(),
            team_id: cfg.team_id.clone(),
            topic: cfg.topic.clone(),
            expiration_secs: cfg.expiration_secs,
            token: Mutex::new(None),
        }))
    }

    async fn provider_token(&self, renew: bool) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let (false, Some((token, made))) = (renew, &*cached) {
            if made.elapsed() < TOKEN_LIFE {
                return Ok(token.clone());
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: crate::now_ms() / 1000,
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::Failed(format!("signing the APNs token: {e}")))?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    pub(crate) async fn send(&self, job: &PushJob) -> Outcome {
        let token = match self.provider_token(false).await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let (title, body) = notification_text(job);
        let payload = json!({
            "aps": {"alert": {"title": title, "body": body}, "thread-id": job.conv, "sound": "default"},
            "conv": job.conv,
            "count": job.count,
        });
        let expiration = crate::now_ms() / 1000 + self.expiration_secs;
        let answer = match self
            .http
            .post(format!("{}/3/device/{}", self.base, job.token))
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-collapse-id", &job.conv)
            .header("apns-expiration", expiration.to_string())
            .json(&payload)
            .send()
            .await
        {
            Ok(a) => a,
            Err(e) => return Outcome::retry(format!("APNs: {e}")),
        };
        let status = answer.status();
        if status.is_success() {
            return Outcome::Sent;
        }
        if let Some(retry) = classify_retry(status, answer.headers()) {
            return retry;
        }
        let reason = answer
            .json::<Reason>()
            .await
            .map(|r| r.reason)
            .unwrap_or_default();
        match (status.as_u16(), reason.as_str()) {
            (410, _) | (400, "BadDeviceToken") | (400, "DeviceTokenNotForTopic") => {
                Outcome::InvalidToken(format!("APNs {status} {reason}"))
            }
            (403, "ExpiredProviderToken") | (403, "InvalidProviderToken") => {
                // Sign a fresh token for the next attempt.
                let _ = self.provider_token(true).await;
                Outcome::retry(format!("APNs {status} {reason}"))
            }
            _ => Outcome::Failed(format!("APNs {status} {reason}")),
        }
    }
}
