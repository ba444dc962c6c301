//! What a device keeps between runs: [`Session`] (identity, credentials, the last inbox `n`
//! and the outbox), and [`StateStore`], where it lives: a JSON file written atomically, or
//! memory only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Format version of the state file.
const VERSION: u32 = 1;

/// One enrolled device: who it is, how it proves it, how far it has read its inbox, and the
/// sends that have no `sent` yet.
///
/// It holds a private key and a session token: the state file is created readable by its
/// owner only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Format version (1).
    pub version: u32,
    /// Base URL of the HTTP API it was enrolled with (`http://127.0.0.1:8080`).
    pub http: String,
    /// MQTT broker address, `host:port`.
    pub mqtt: String,
    /// The user id.
    pub user: String,
    /// The device id (the certificate's CN, and the MQTT client id).
    pub device: String,
    /// Session token for the HTTP API (renewals, media, history over HTTP).
    pub token: String,
    /// When the token expires, unix seconds.
    pub token_expires_at: u64,
    /// The device's private key (PKCS#8 PEM); it never leaves the device.
    pub key_pem: String,
    /// The device certificate (PEM).
    pub cert_pem: String,
    /// The CA that signed it and the server certificate (PEM).
    pub ca_pem: String,
    /// When the certificate was obtained, unix seconds (renewal is due at two thirds of its
    /// lifetime).
    pub cert_issued_at: u64,
    /// When the certificate expires, unix seconds.
    pub cert_expires_at: u64,
    /// The last inbox number processed: the next `sync` starts after it.
    pub last_n: u64,
    /// Sends without a `sent` yet, oldest first; re-published with the same id after every
    /// reconnect and after a restart of the client.
    #[serde(default)]
    pub outbox: Vec<OutboxEntry>,
}

/// A `send` waiting for its `sent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The message's client id (the `send`'s `id`).
    pub id: String,
    /// The request exactly as published on `/tenants/{u}/out` (JSON text).
    pub request: String,
}

impl Session {
    /// Whether the certificate is due for renewal at `now` (unix seconds): two thirds of its
    /// lifetime have passed, or it expires within an hour.
    pub fn renewal_due(&self, now: u64) -> bool {
        let lifetime = self.cert_expires_at.saturating_sub(self.cert_issued_at);
        let due = self.cert_issued_at + lifetime * 2 / 3;
        now >= due || now + 3600 >= self.cert_expires_at
    }

    /// `/tenants/{user}/{rest}`.
    pub fn topic(&self, rest: &str) -> String {
        format!("/tenants/{}/{rest}", self.user)
    }
}

/// Where a [`Session`] is kept.
#[derive(Debug, Clone)]
pub enum StateStore {
    /// A JSON file, replaced atomically (temporary file, fsync, rename) on every save.
    File(PathBuf),
    /// Memory only: nothing survives the process (load generators, tests).
    Memory,
}

impl StateStore {
    /// Reads the session from the file (`None` when there is no file; `Memory` has none).
    pub fn load(&self) -> Result<Option<Session>> {
        let StateStore::File(path) = self else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_error(path, e)),
        };
        let session: Session = serde_json::from_str(&text)
            .map_err(|e| state_error(path, format!("not a chat state file: {e}")))?;
        if session.version != VERSION {
            return Err(state_error(
                path,
                format!("format version {} is not {VERSION}", session.version),
            ));
        }
        Ok(Some(session))
    }

    /// Writes the session (a no-op for `Memory`).
    pub fn save(&self, session: &Session) -> Result<()> {
        let StateStore::File(path) = self else {
            return Ok(());
        };
        write_atomically(
            path,
            &serde_json::to_vec_pretty(session).unwrap_or_default(),
        )
        .map_err(|e| state_error(path, e))
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            StateStore::File(path) => Some(path),
            StateStore::Memory => None,
        }
    }
}

/// The current format version, for building a [`Session`].
pub(crate) fn version() -> u32 {
    VERSION
}

fn state_error(path: &Path, cause: impl ToString) -> Error {
    Error::State {
        path: path.display().to_string(),
        cause: cause.to_string(),
    }
}

/// Writes `bytes` to `path.tmp` (mode 0600 on Unix), flushes it to disk, and renames it over
/// `path`, so a crash leaves either the old file or the new one. Creates the parent directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(crate) fn sample() -> Session {
        Session {
            version: VERSION,
            http: "http://127.0.0.1:8080".into(),
            mqtt: "127.0.0.1:8883".into(),
            user: "alice".into(),
            device: "laptop".into(),
            token: "t".into(),
            token_expires_at: 10,
            key_pem: "k".into(),
            cert_pem: "c".into(),
            ca_pem: "ca".into(),
            cert_issued_at: 1_000,
            cert_expires_at: 1_000 + 7 * 86_400,
            last_n: 7,
            outbox: vec![OutboxEntry {
                id: "m1".into(),
                request: r#"{"type":"send"}"#.into(),
            }],
        }
    }

    #[test]
    fn file_round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::File(dir.path().join("sub").join("state.json"));
        assert_eq!(store.load().unwrap(), None);
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "state file readable by others: {mode:o}");
        }
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "not json").unwrap();
        let err = StateStore::File(path.clone()).load().unwrap_err();
        assert!(err.to_string().contains("not a chat state file"), "{err}");
        let mut s = sample();
        s.version = 99;
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let err = StateStore::File(path).load().unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let s = sample();
        let lifetime = s.cert_expires_at - s.cert_issued_at;
        assert!(!s.renewal_due(s.cert_issued_at + 1));
        assert!(!s.renewal_due(s.cert_issued_at + lifetime * 2 / 3 - 1));
        assert!(s.renewal_due(s.cert_issued_at + lifetime * 2 / 3));
        let mut short = sample();
        short.cert_expires_at = short.cert_issued_at + 1800;
        assert!(
            short.renewal_due(short.cert_issued_at),
            "expires within an hour"
        );
    }
}
