//! Agent configuration (TOML). See `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::schema::{GateId, LaneId};

pub use crate::decider::Policy;

/// The whole agent configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub gate: GateConfig,
    pub lanes: Vec<LaneConfig>,
    pub devices: Vec<DeviceConfig>,
    pub mqtt: Option<MqttConfig>,
    pub store: StoreConfig,
    pub central: Option<CentralConfig>,
    pub policy: Policy,
    pub console: ConsoleConfig,
}

/// The gate this agent runs.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub id: GateId,
    pub name: String,
    /// Port of entry code, the replication scope, e.g. `PORT-A`.
    pub port: String,
}

/// One lane.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub id: LaneId,
    pub name: String,
    pub routes: Routes,
    pub presence_loop: bool,
    pub transaction_timeout: Duration,
    /// Close a loop-less transaction after this long without reads.
    pub quiet_close: Duration,
}

/// Where each lane decision sends the truck (sign text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub fast: String,
    pub standard: String,
    pub inspect: String,
}

/// A serial device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub name: String,
    pub lane: LaneId,
    pub kind: DeviceKind,
    pub silence_timeout: Duration,
    pub reopen_backoff_max: Duration,
}

/// Kind of a serial device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    LaneBoard { path: PathBuf, baud: u32 },
    UhfModule { path: PathBuf, baud: u32 },
}

/// MQTT broker connection and topic mappings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub topics: Vec<TopicMap>,
    /// Default `aeogate/<gate>/lanes`.
    pub lane_topic_prefix: String,
}

/// One MQTT topic filter mapped to a lane and a reader kind.
#[derive(Debug, Clone)]
pub struct TopicMap {
    pub filter: String,
    pub lane: LaneId,
    pub kind: MqttKind,
}

/// What an MQTT topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttKind {
    Rfid,
    Ocr,
    ESeal,
    Presence,
}

/// Local storage.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub max_journal_bytes: u64,
}

/// Connection to central.
#[derive(Debug, Clone)]
pub struct CentralConfig {
    pub url: String,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
    pub registry_keys: Vec<PinnedKey>,
    pub uplink_batch: usize,
    pub heartbeat_every: Duration,
    pub poll_wait: Duration,
}

/// A registry signing key the agent trusts.
#[derive(Debug, Clone)]
pub struct PinnedKey {
    pub key_id: String,
    /// Hex ed25519 public key.
    pub public_key: String,
}

/// The officer console / API listener.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub bind: SocketAddr,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key is unknown, has the wrong type or an impossible value.
    #[error("{origin} line {line}: {key}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        Self::from_toml_str(&text, &origin)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let _ = text;
        Err(ConfigError::Invalid {
            origin: origin.into(),
            line: 1,
            key: String::new(),
            message: "not implemented yet".into(),
        })
    }

    /// The lane with this id.
    #[must_use]
    pub fn lane(&self, id: &LaneId) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| &l.id == id)
    }
}
