//! The node's configuration: defaults, then a TOML file, then `CHATD__SECTION__KEY`
//! environment variables, then command-line flags (each layer overrides the one before).

use std::path::{Path, PathBuf};

use chat_broker::BrokerConfig;
use chat_certs::CertsConfig;
use chat_store::StoreConfig;
use serde::{Deserialize, Serialize};

use crate::http::{AdminConfig, HttpConfig};

/// The whole configuration, one TOML section per part of the node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[node]`: data directory, node id, logging, shutdown.
    pub node: NodeConfig,
    /// `[http]`: the HTTP API listener.
    pub http: HttpConfig,
    /// `[mqtt]`: the MQTT front end.
    pub mqtt: BrokerConfig,
    /// `[certs]`: the certificate authority and device certificates.
    pub certs: CertsConfig,
    /// `[store]`: the sled database and password hashing.
    pub store: StoreConfig,
    /// `[limits]`: group size and per-user rate limits.
    pub limits: LimitsConfig,
    /// `[push]`: push notifications to FCM and APNs.
    pub push: chat_push::PushConfig,
    /// `[media]`: uploads and where their bytes are kept.
    pub media: crate::http::media::MediaConfig,
    /// `[admin]`: the admin API, the dashboard and `/metrics`.
    pub admin: AdminConfig,
}

/// `[limits]` settings: group size and per-user rate limits (token buckets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most members of a group, creator included (2-1024).
    pub max_group_members: usize,
    /// Requests of any kind one user may make per second, sustained (0: no limit).
    pub requests_per_sec: f64,
    /// Requests one user may make in a burst after a quiet period.
    pub requests_burst: f64,
    /// `send` requests one user may make per second, sustained (0: no limit).
    pub sends_per_sec: f64,
    /// `send` requests one user may make in a burst.
    pub sends_burst: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let bridge = chat_bridge::BridgeConfig::default();
        LimitsConfig {
            max_group_members: bridge.max_group_members,
            requests_per_sec: bridge.requests.per_sec,
            requests_burst: bridge.requests.burst,
            sends_per_sec: bridge.sends.per_sec,
            sends_burst: bridge.sends.burst,
        }
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), String> {
        let cap = chat_bridge::MAX_MEMBERS_CAP;
        if !(2..=cap).contains(&self.max_group_members) {
            return Err(format!(
                "limits.max_group_members must be between 2 and {cap}"
            ));
        }
        for (name, rate, burst) in [
            ("requests", self.requests_per_sec, self.requests_burst),
            ("sends", self.sends_per_sec, self.sends_burst),
        ] {
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(format!("limits.{name}_per_sec must be 0 or more"));
            }
            if rate > 0.0 && !(burst.is_finite() && burst >= 1.0) {
                return Err(format!("limits.{name}_burst must be at least 1"));
            }
        }
        Ok(())
    }

    /// The bridge's view of these settings.
    pub fn bridge(&self) -> chat_bridge::BridgeConfig {
        chat_bridge::BridgeConfig {
            max_group_members: self.max_group_members,
            requests: chat_bridge::Rate {
                per_sec: self.requests_per_sec,
                burst: self.requests_burst,
            },
            sends: chat_bridge::Rate {
                per_sec: self.sends_per_sec,
                burst: self.sends_burst,
            },
        }
    }
}

/// `[node]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the database (`db/`) and certificates (`certs/`) live.
    pub data_dir: PathBuf,
    /// This node's id (0-1023), part of every message id; unique per node of a cluster.
    pub node_id: u16,
    /// Log format: `text` (human) or `json` (one object per line).
    pub log_format: String,
    /// Log filter in `RUST_LOG` syntax, used when `RUST_LOG` is not set.
    pub log_level: String,
    /// Most seconds a shutdown waits for open connections and requests to finish.
    pub shutdown_grace_secs: u64,
    /// Milliseconds between the shutdown signal and closing the listeners, while `/readyz`
    /// already answers 503 (so a load balancer stops sending new clients); 0: close at once.
    pub drain_delay_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./data"),
            node_id: 0,
            log_format: "text".to_owned(),
            log_level: "info,rumqttd=warn,rustls=error".to_owned(),
            shutdown_grace_secs: 10,
            drain_delay_ms: 0,
        }
    }
}

/// Longest accepted `node.drain_delay_ms` (5 minutes).
pub const MAX_DRAIN_DELAY_MS: u64 = 300_000;

/// Settings given on the command line; they override file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http: Option<String>,
    pub mqtt: Option<String>,
    pub mqtt_plaintext: Option<String>,
}

/// A configuration that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// Layers defaults, the optional TOML file, `CHATD__SECTION__KEY` variables from `env`
    /// (pass `std::env::vars()`), and `overrides`; then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Config::default())?);
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("CHATD__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("CHATD")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("certs.server_names")
                .source(Some(env)),
        );
        let set = |b: config::ConfigBuilder<_>, key: &str, v: &Option<String>| match v {
            Some(v) => b.set_override(key, v.as_str()),
            None => Ok(b),
        };
        let data_dir = overrides.data_dir.as_ref().map(|d| d.display().to_string());
        builder = set(builder, "node.data_dir", &data_dir)?;
        builder = set(builder, "http.listen", &overrides.http)?;
        builder = set(builder, "mqtt.listen", &overrides.mqtt)?;
        builder = set(builder, "mqtt.plaintext_listen", &overrides.mqtt_plaintext)?;
        let cfg: Config = builder.build()?.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every section; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = ConfigError::Invalid;
        if self.node.node_id > 1023 {
            return Err(invalid("node.node_id must be between 0 and 1023".into()));
        }
        if !matches!(self.node.log_format.as_str(), "text" | "json") {
            return Err(invalid(
                "node.log_format must be \"text\" or \"json\"".into(),
            ));
        }
        self.http.validate().map_err(invalid)?;
        self.mqtt.validate().map_err(invalid)?;
        self.certs.validate().map_err(|e| invalid(e.to_string()))?;
        self.store.validate().map_err(|e| invalid(e.to_string()))?;
        self.limits.validate().map_err(invalid)?;
        self.push.validate().map_err(invalid)?;
        self.media.validate().map_err(invalid)?;
        self.admin.validate().map_err(invalid)?;
        if self.node.drain_delay_ms > MAX_DRAIN_DELAY_MS {
            return Err(invalid(format!(
                "node.drain_delay_ms must be at most {MAX_DRAIN_DELAY_MS}"
            )));
        }
        Ok(())
    }

    /// The effective configuration as TOML (what `chatd config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(cfg.node.data_dir, PathBuf::from("./data"));
        assert_eq!(cfg.mqtt.listen, "127.0.0.1:8883");
        assert_eq!(cfg.http.listen, "127.0.0.1:8080");
        assert!(cfg.mqtt.plaintext_listen.is_none());
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("chatd.toml");
        std::fs::write(
            &file,
            "[mqtt]\nlisten = \"127.0.0.1:1\"\npartitions = 2\n[http]\nlisten = \"127.0.0.1:2\"\n",
        )
        .unwrap();
        let vars = env(&[
            ("CHATD__MQTT__PARTITIONS", "8"),
            ("CHATD__HTTP__LISTEN", "127.0.0.1:3"),
            ("CHATD__CERTS__SERVER_NAMES", "chat.example.com,10.0.0.1"),
            ("OTHER", "ignored"),
        ]);
        let over = Overrides {
            http: Some("127.0.0.1:4".into()),
            ..Overrides::default()
        };
        let cfg = Config::load(Some(&file), vars, &over).unwrap();
        assert_eq!(cfg.mqtt.listen, "127.0.0.1:1", "file beats default");
        assert_eq!(cfg.mqtt.partitions, 8, "env beats file");
        assert_eq!(cfg.http.listen, "127.0.0.1:4", "flag beats env");
        assert_eq!(cfg.certs.server_names, vec!["chat.example.com", "10.0.0.1"]);
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        let over = Overrides::default();
        let e = Config::load(None, env(&[("CHATD__MQTT__PARTITIONS", "0")]), &over).unwrap_err();
        assert!(e.to_string().contains("partitions"), "{e}");
        let e = Config::load(None, env(&[("CHATD__MQTT__PARTITIONS", "many")]), &over).unwrap_err();
        assert!(e.to_string().contains("partitions"), "{e}");
        let e = Config::load(None, env(&[("CHATD__NODE__NODE_ID", "5000")]), &over).unwrap_err();
        assert!(e.to_string().contains("node_id"), "{e}");
        let big = env(&[("CHATD__LIMITS__MAX_GROUP_MEMBERS", "5000")]);
        let e = Config::load(None, big, &over).unwrap_err();
        assert!(e.to_string().contains("max_group_members"), "{e}");
        let e =
            Config::load(None, env(&[("CHATD__LIMITS__SENDS_PER_SEC", "-1")]), &over).unwrap_err();
        assert!(e.to_string().contains("sends_per_sec"), "{e}");
        let e = Config::load(None, env(&[("CHATD__ADMIN__TOKEN", "short")]), &over).unwrap_err();
        assert!(e.to_string().contains("admin.token"), "{e}");
        let long = env(&[("CHATD__NODE__DRAIN_DELAY_MS", "900000")]);
        let e = Config::load(None, long, &over).unwrap_err();
        assert!(e.to_string().contains("drain_delay_ms"), "{e}");
        let ok = env(&[("CHATD__ADMIN__TOKEN", "an-admin-token-of-some-length")]);
        assert!(Config::load(None, ok, &over).unwrap().admin.enabled());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[mqtt]\nlisten_typo = \"x\"\n").unwrap();
        assert!(Config::load(Some(&file), env(&[]), &over).is_err());
    }

    #[test]
    fn shipped_example_config_parses() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../chatd.example.toml");
        let cfg = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        // The example documents the defaults: it must stay in step with them.
        assert_eq!(cfg.to_toml(), Config::default().to_toml());
    }
}
