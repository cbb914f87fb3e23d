//! The validated configuration: what the rest of the agent reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocol::schema::{GateId, LaneId};
use serde::Deserialize;

use crate::decider::{Policy, Routes};

/// How long a read may precede the presence that opens its transaction (the default of
/// a lane's `pre_open_grace`).
pub const PRE_OPEN_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);
/// How long every loop must stay clear before the transaction closes on departure (the
/// default of a lane's `departure_grace`).
pub const DEPARTURE_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// The whole agent configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub gate: GateConfig,
    pub lanes: Vec<LaneConfig>,
    pub devices: Vec<DeviceConfig>,
    /// Fixed network UHF readers read over LLRP (`[[llrp]]`).
    pub llrp: Vec<LlrpReaderConfig>,
    pub mqtt: Option<MqttConfig>,
    pub store: StoreConfig,
    pub central: Option<CentralConfig>,
    pub policy: Policy,
    pub console: ConsoleConfig,
    pub clock: ClockConfig,
}

/// How far the gate's clock may be from central's (`[clock]`, docs/clock.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockConfig {
    /// An offset measured beyond this never yields FAST (`CLOCK_UNTRUSTED`); default 2 s.
    pub max_offset: Duration,
}

/// The gate this agent runs.
#[derive(Debug, Clone, PartialEq)]
pub struct GateConfig {
    pub id: GateId,
    pub name: String,
    /// Port of entry code, the replication scope, e.g. `PORT-A`.
    pub port: String,
}

/// One lane.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneConfig {
    pub id: LaneId,
    pub name: String,
    pub routes: Routes,
    /// Whether the lane has a vehicle presence loop; without one, the first read opens a
    /// transaction and `quiet_close` closes it.
    pub presence_loop: bool,
    /// Longest a transaction may stay open.
    pub transaction_timeout: Duration,
    /// Close a loop-less transaction after this long without reads.
    pub quiet_close: Duration,
    /// How long a read may precede the presence that opens its transaction.
    pub pre_open_grace: Duration,
    /// How long every loop must stay clear before the transaction closes on departure.
    pub departure_grace: Duration,
}

/// A serial device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub name: String,
    pub lane: LaneId,
    pub kind: DeviceKind,
    /// The device is reported down after this long without a byte.
    pub silence_timeout: Duration,
    /// Upper bound of the exponential back-off between reopen attempts.
    pub reopen_backoff_max: Duration,
}

/// Kind of a serial device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// An aeogate lane I/O board speaking the link protocol.
    LaneBoard { path: PathBuf, baud: u32 },
    /// A BB-7E UART UHF module read directly, without a board.
    UhfModule { path: PathBuf, baud: u32 },
}

/// One LLRP reader, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LlrpReaderConfig {
    /// Device name (health, journal, reads); unique among all devices.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Antenna id → the lane its reads belong to.
    pub antennas: BTreeMap<u16, LaneId>,
    /// Transmit power asked for, in dBm; the reader's nearest table entry not above it is
    /// used. `None`: the reader's highest power.
    pub tx_power_dbm: Option<f64>,
    /// The keepalive period asked of the reader.
    pub keepalive: Duration,
    /// The reader is reported down, and the connection reopened, after this long without
    /// any message from it (keepalives included).
    pub silence_timeout: Duration,
    /// Report filtering: a tag seen on a lane is forwarded once, then again only after it
    /// has been out of the field this long (one read per truck rather than one per
    /// inventory round). Zero forwards every report.
    pub unique_window: Duration,
    /// Upper bound of the exponential back-off between reconnect attempts.
    pub reconnect_backoff_max: Duration,
    /// LLRP header version to speak: 1 (LLRP 1.0.1, the default) or 2 (negotiate LLRP
    /// 1.1, falling back to 1.0.1).
    pub version: u8,
}

impl LlrpReaderConfig {
    /// The lanes this reader's antennas serve, each once.
    #[must_use]
    pub fn lanes(&self) -> Vec<LaneId> {
        let mut lanes: Vec<LaneId> = self.antennas.values().cloned().collect();
        lanes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        lanes.dedup();
        lanes
    }
}

/// MQTT broker connection and topic mappings.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    /// From `password`, the file `password_file` or the variable `password_env`, read at
    /// load; its `Debug` shows nothing.
    pub password: Option<Secret>,
    /// TLS to the broker (when `ca_cert` is set): the agent trusts only that CA.
    pub tls: Option<MqttTls>,
    pub topics: Vec<TopicMap>,
    /// Prefix of the lane topics; default `aeogate/<gate>/lanes`.
    pub lane_topic_prefix: String,
    /// The agent's availability (`online` / `offline`, retained; `offline` is also its
    /// Last Will); default `aeogate/<gate>/availability`.
    pub availability_topic: String,
    /// One extra connection per lane whose Last Will is the lane's `OFFLINE` state
    /// (`crate::sources::lane_wills`); default `true`.
    pub lane_wills: bool,
}

/// A secret read from the configuration (a password): never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that sends it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// TLS settings of the broker connection, read and parsed at load.
#[derive(Clone)]
pub struct MqttTls {
    /// Where the pinned CA came from (for messages).
    pub ca_cert: PathBuf,
    /// The CA certificates the broker's certificate must chain to (the only roots
    /// trusted).
    pub roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The agent's client certificate chain and key, when the broker asks for one.
    pub client: Option<Arc<ClientIdentity>>,
}

/// A client certificate chain and its private key.
pub struct ClientIdentity {
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl MqttTls {
    /// The rustls client configuration: only [`MqttTls::roots`] are trusted (no system
    /// roots), with the ring provider, and the client certificate when configured.
    ///
    /// # Errors
    /// A CA certificate rustls cannot use, or a client key that does not fit.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.roots {
            roots.add(c.clone())?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        match &self.client {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key()),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

// Compared for live reconfiguration (a changed certificate or key is a change).
impl PartialEq for ClientIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.chain == other.chain && self.key.secret_der() == other.key.secret_der()
    }
}

impl PartialEq for MqttTls {
    fn eq(&self, other: &Self) -> bool {
        self.ca_cert == other.ca_cert && self.roots == other.roots && self.client == other.client
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for MqttTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttTls")
            .field("ca_cert", &self.ca_cert)
            .field("roots", &self.roots.len())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// One MQTT topic filter mapped to a lane and a reader kind.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMap {
    pub filter: String,
    pub lane: LaneId,
    pub kind: MqttKind,
    /// Whose JSON the topic carries (`sources/vendor.rs`).
    pub format: PayloadFormat,
}

/// The payload format of an MQTT topic: aeogate's own, or a reader vendor's tag events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    #[default]
    Aeogate,
    /// The Impinj IoT device interface's tag inventory events.
    Impinj,
    /// The Zebra IoT Connector's tag data events.
    Zebra,
}

/// What an MQTT topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MqttKind {
    Rfid,
    Ocr,
    #[serde(rename = "eseal")]
    ESeal,
    Presence,
}

/// Local storage.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Journal size above which acknowledged routine entries are pruned, oldest first.
    pub max_journal_bytes: u64,
    /// The replica file's redb page cache, in bytes (the agent's resident memory grows
    /// toward it and the journal file's cache together).
    pub replica_cache_bytes: usize,
}

/// Connection to central.
#[derive(Debug, Clone, PartialEq)]
pub struct CentralConfig {
    /// The first of [`CentralConfig::urls`].
    pub url: String,
    /// Every central instance the agent may use, in the order it tries them (`url`
    /// alone, or `urls`); all serve one database, so any takes any batch.
    pub urls: Vec<String>,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
    /// The agent's client certificate and key (PEM) for mutual TLS, when central binds
    /// this agent's token to a certificate.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub registry_keys: Vec<PinnedKey>,
    pub uplink_batch: usize,
    pub heartbeat_every: Duration,
    pub poll_wait: Duration,
}

/// A registry signing key the agent trusts.
#[derive(Debug, Clone, PartialEq)]
pub struct PinnedKey {
    pub key_id: String,
    /// Hex ed25519 public key (64 hex digits).
    pub public_key: String,
}

/// The officer console / API listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    pub bind: SocketAddr,
    /// Serve HTTPS with this certificate chain and key (PEM); plain HTTP when `None`.
    pub tls: Option<ConsoleTls>,
}

/// The console's TLS certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
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
    #[error("{origin} line {line}: {}{message}", key_prefix(key))]
    Invalid {
        origin: String,
        /// 1-based line of the key (or of its closest enclosing key when it is absent).
        line: usize,
        /// Key path, e.g. `lanes[1].routes.fast`; empty for a syntax error.
        key: String,
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}
