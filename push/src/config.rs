//! `[push]` settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[push]`: what is sent, how often it is retried, and the two providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Put the sender and the message text in notifications. Off by default: the notification
    /// then only says that there is a new message (the app fetches the rest).
    pub preview: bool,
    /// A new job waits this long before it is sent, so a burst collapses into one.
    pub collapse_ms: u64,
    /// Attempts before a job goes to the dead letters (1-100).
    pub max_attempts: u32,
    /// First retry delay; it doubles with each attempt (with jitter).
    pub backoff_initial_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Firebase Cloud Messaging (Android, web).
    pub fcm: FcmConfig,
    /// Apple Push Notification service.
    pub apns: ApnsConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            preview: false,
            collapse_ms: 300,
            max_attempts: 8,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 600_000,
            concurrency: 16,
            fcm: FcmConfig::default(),
            apns: ApnsConfig::default(),
        }
    }
}

/// `[push.fcm]`: FCM HTTP v1. Off while `credentials_file` is unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    /// The Google service-account JSON (`client_email`, `private_key`, `token_uri`).
    pub credentials_file: Option<PathBuf>,
    /// The Firebase project id.
    pub project_id: String,
    /// Where `/v1/projects/{project}/messages:send` lives.
    pub base_url: String,
    /// OAuth2 token endpoint; empty: the `token_uri` of the credentials.
    pub token_url: String,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            credentials_file: None,
            project_id: String::new(),
            base_url: "https://fcm.googleapis.com".to_owned(),
            token_url: String::new(),
        }
    }
}

/// `[push.apns]`: APNs with a token signing key (`.p8`). Off while `key_file` is unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsConfig {
    /// The ES256 signing key from the Apple developer account (PEM, PKCS#8).
    pub key_file: Option<PathBuf>,
    /// Its key id.
    pub key_id: String,
    /// The team id.
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// `https://api.push.apple.com` (or the sandbox). An `http://` URL speaks HTTP/2 without
    /// TLS (prior knowledge), for test servers.
    pub base_url: String,
    /// How long APNs keeps trying an undelivered notification, in seconds.
    pub expiration_secs: u64,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        ApnsConfig {
            key_file: None,
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            base_url: "https://api.push.apple.com".to_owned(),
            expiration_secs: 86_400,
        }
    }
}

impl PushConfig {
    /// Checks ranges and that each enabled provider has what it needs.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err("push.max_attempts must be between 1 and 100".into());
        }
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err("push.concurrency must be between 1 and 1024".into());
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(
                "push.backoff_initial_ms must be positive and at most backoff_max_ms".into(),
            );
        }
        if self.fcm.credentials_file.is_some() && self.fcm.project_id.is_empty() {
            return Err("push.fcm.project_id is required with push.fcm.credentials_file".into());
        }
        let a = &self.apns;
        if a.key_file.is_some()
            && (a.key_id.is_empty() || a.team_id.is_empty() || a.topic.is_empty())
        {
            return Err(
                "push.apns.key_id, team_id and topic are required with push.apns.key_file".into(),
            );
        }
        Ok(())
    }
}
