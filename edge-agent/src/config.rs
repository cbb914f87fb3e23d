//! Agent configuration: one TOML file, validated into typed structs at load.
//!
//! Every key is documented in `docs/configuration.md`; `edge-agent/agent.example.toml`
//! is a complete, loadable example. Parsing happens in two steps: serde (with
//! `deny_unknown_fields`) turns the text into private raw structs, catching unknown
//! keys and wrong types with the span toml reports; then [`Config::from_toml_str`]
//! checks what serde cannot (duplicate lane ids, references to unknown lanes, zero
//! timeouts, rates outside (0, 1), …) and builds the public types. Either way an error
//! names the file, the line and the key path, e.g.
//! `agent.toml line 12: lanes[1].routes.fast: must not be empty`. The line of a
//! semantic error is found by walking toml's spanned document ([`toml::de::DeTable`])
//! along the key path.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::operator::Programme;
use protocol::schema::{GateId, LaneId, PartyRole};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};

pub use crate::decider::{Policy, Routes};

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
    /// Whether the lane has a vehicle presence loop; without one, the first read opens a
    /// transaction and `quiet_close` closes it.
    pub presence_loop: bool,
    /// Longest a transaction may stay open.
    pub transaction_timeout: Duration,
    /// Close a loop-less transaction after this long without reads.
    pub quiet_close: Duration,
}

/// A serial device.
#[derive(Debug, Clone)]
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

/// MQTT broker connection and topic mappings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub topics: Vec<TopicMap>,
    /// Prefix of the lane command topics; default `aeogate/<gate>/lanes`.
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
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Journal size above which acknowledged routine entries are pruned, oldest first.
    pub max_journal_bytes: u64,
}

/// Connection to central.
#[derive(Debug, Clone)]
pub struct CentralConfig {
    pub url: String,
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
#[derive(Debug, Clone)]
pub struct PinnedKey {
    pub key_id: String,
    /// Hex ed25519 public key (64 hex digits).
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

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError::Io`] when the file cannot be read; [`ConfigError::Invalid`] naming
    /// the file, line and key otherwise.
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
    /// [`ConfigError::Invalid`] naming the line and key.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let doc = DeTable::parse(text).ok();
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let key = doc
                .as_ref()
                .map(|d| path_at(d.get_ref(), &span))
                .unwrap_or_default();
            ConfigError::Invalid {
                origin: origin.into(),
                line: line_of(text, span.start),
                key,
                message: e.message().trim().to_string(),
            }
        })?;
        let v = Validator {
            text,
            origin,
            doc: doc.as_ref().map(|d| d.get_ref()),
        };
        v.build(raw)
    }

    /// The lane with this id.
    #[must_use]
    pub fn lane(&self, id: &LaneId) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| &l.id == id)
    }
}

// ---------------------------------------------------------------------------------------
// Raw (serde) form
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gate: RawGate,
    #[serde(default)]
    lanes: Vec<RawLane>,
    #[serde(default)]
    devices: Vec<RawDevice>,
    mqtt: Option<RawMqtt>,
    #[serde(default)]
    store: RawStore,
    central: Option<RawCentral>,
    policy: RawPolicy,
    #[serde(default)]
    console: RawConsole,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    id: GateId,
    name: Option<String>,
    port: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLane {
    id: LaneId,
    name: Option<String>,
    routes: RawRoutes,
    #[serde(default = "default_true")]
    presence_loop: bool,
    #[serde(with = "humantime_serde", default = "default_transaction_timeout")]
    transaction_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_quiet_close")]
    quiet_close: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoutes {
    fast: String,
    standard: String,
    inspect: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawDeviceKind {
    LaneBoard,
    UhfModule,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    lane: LaneId,
    kind: RawDeviceKind,
    path: PathBuf,
    #[serde(default = "default_baud")]
    baud: u32,
    #[serde(with = "humantime_serde", default = "default_silence_timeout")]
    silence_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_reopen_backoff_max")]
    reopen_backoff_max: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    #[serde(default = "default_mqtt_host")]
    host: String,
    #[serde(default = "default_mqtt_port")]
    port: u16,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    topics: Vec<RawTopic>,
    lane_topic_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    filter: String,
    lane: LaneId,
    kind: MqttKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default = "default_store_path")]
    path: PathBuf,
    #[serde(default = "default_max_journal_bytes")]
    max_journal_bytes: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            max_journal_bytes: default_max_journal_bytes(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCentral {
    url: String,
    token: String,
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    client_cert: Option<PathBuf>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    registry_keys: Vec<RawKey>,
    #[serde(default = "default_uplink_batch")]
    uplink_batch: usize,
    #[serde(with = "humantime_serde", default = "default_heartbeat_every")]
    heartbeat_every: Duration,
    #[serde(with = "humantime_serde", default = "default_poll_wait")]
    poll_wait: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key_id: String,
    public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "default_policy_name")]
    name: String,
    #[serde(with = "humantime_serde", default = "default_staleness_bound")]
    staleness_bound: Duration,
    #[serde(default = "default_required_roles")]
    required_roles: Vec<PartyRole>,
    #[serde(default = "default_home_programmes")]
    home_programmes: Vec<Programme>,
    #[serde(default = "default_random_rate_aeo")]
    random_rate_aeo: f64,
    #[serde(default = "default_random_rate_other")]
    random_rate_other: f64,
    random_key: String,
    #[serde(default)]
    eseal_low_battery_is_reason: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    #[serde(default = "default_bind")]
    bind: String,
}

impl Default for RawConsole {
    fn default() -> Self {
        Self {
            bind: default_bind(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_transaction_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_quiet_close() -> Duration {
    Duration::from_secs(10)
}
fn default_baud() -> u32 {
    115_200
}
fn default_silence_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_reopen_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_mqtt_host() -> String {
    "127.0.0.1".into()
}
fn default_mqtt_port() -> u16 {
    1883
}
fn default_store_path() -> PathBuf {
    PathBuf::from("/var/lib/aeogate/agent.redb")
}
fn default_max_journal_bytes() -> u64 {
    1 << 30
}
fn default_uplink_batch() -> usize {
    200
}
fn default_heartbeat_every() -> Duration {
    Duration::from_secs(30)
}
fn default_poll_wait() -> Duration {
    Duration::from_secs(25)
}
fn default_policy_name() -> String {
    "default".into()
}
fn default_staleness_bound() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_required_roles() -> Vec<PartyRole> {
    vec![PartyRole::Importer, PartyRole::Carrier]
}
fn default_home_programmes() -> Vec<Programme> {
    vec![Programme::EuAeo]
}
fn default_random_rate_aeo() -> f64 {
    0.005
}
fn default_random_rate_other() -> f64 {
    0.03
}
fn default_bind() -> String {
    "127.0.0.1:8080".into()
}

/// Smallest accepted journal bound: below this the agent would prune constantly.
const MIN_JOURNAL_BYTES: u64 = 1 << 20;
/// Longest long-poll central accepts (docs/delivery.md: `wait` ≤ 60 s).
const MAX_POLL_WAIT: Duration = Duration::from_secs(60);
/// Shortest random-selection key: shorter keys are guessable.
const MIN_RANDOM_KEY_LEN: usize = 16;

// ---------------------------------------------------------------------------------------
// Key paths and lines
// ---------------------------------------------------------------------------------------

/// One step of a key path.
#[derive(Debug, Clone)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

struct KeyPath(Vec<Seg>);

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn contains(span: &Range<usize>, at: &Range<usize>) -> bool {
    span.start <= at.start && at.start < span.end.max(span.start + 1)
}

/// The key path of the deepest key whose key or value span contains `at`.
fn path_at(table: &DeTable<'_>, at: &Range<usize>) -> String {
    fn walk_value(v: &DeValue<'_>, at: &Range<usize>, out: &mut String) -> bool {
        match v {
            DeValue::Table(t) => walk_table(t, at, out),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    let mark = out.len();
                    out.push_str(&format!("[{i}]"));
                    if walk_value(item.get_ref(), at, out) || contains(&item.span(), at) {
                        return true;
                    }
                    out.truncate(mark);
                }
                false
            }
            _ => false,
        }
    }
    fn walk_table(t: &DeTable<'_>, at: &Range<usize>, out: &mut String) -> bool {
        for (k, v) in t.iter() {
            let mark = out.len();
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(k.get_ref());
            if contains(&k.span(), at) {
                return true;
            }
            if walk_value(v.get_ref(), at, out) || contains(&v.span(), at) {
                return true;
            }
            out.truncate(mark);
        }
        false
    }
    let mut out = String::new();
    if walk_table(table, at, &mut out) {
        out
    } else {
        String::new()
    }
}

/// Byte offset of the key at `path`, or of its closest present ancestor.
fn offset_of(table: &DeTable<'_>, path: &[Seg]) -> usize {
    let mut best = 0;
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table_ref = Some(table);
    for seg in path {
        match seg {
            Seg::Key(k) => {
                let Some(t) = table_ref.or_else(|| cur.and_then(DeValue::as_table)) else {
                    break;
                };
                let Some((key, val)) = t.iter().find(|(key, _)| key.get_ref() == k) else {
                    break;
                };
                best = key.span().start;
                cur = Some(val.get_ref());
                table_ref = None;
            }
            Seg::Index(i) => {
                let Some(item) = cur.and_then(DeValue::as_array).and_then(|a| a.get(*i)) else {
                    break;
                };
                let span = item.span();
                // An array-of-tables entry may carry an empty span: use its first key.
                let first_key = item
                    .get_ref()
                    .as_table()
                    .and_then(|t| t.iter().map(|(k, _)| k.span().start).min());
                best = if span.is_empty() {
                    first_key.unwrap_or(best)
                } else {
                    span.start
                };
                cur = Some(item.get_ref());
            }
        }
    }
    best
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

struct Validator<'a> {
    text: &'a str,
    origin: &'a str,
    doc: Option<&'a DeTable<'a>>,
}

impl Validator<'_> {
    fn err(&self, path: Vec<Seg>, message: impl Into<String>) -> ConfigError {
        let offset = self.doc.map_or(0, |d| offset_of(d, &path));
        ConfigError::Invalid {
            origin: self.origin.into(),
            line: line_of(self.text, offset),
            key: KeyPath(path).to_string(),
            message: message.into(),
        }
    }

    fn non_empty(&self, path: Vec<Seg>, value: &str) -> Result<String, ConfigError> {
        let v = value.trim();
        if v.is_empty() {
            Err(self.err(path, "must not be empty"))
        } else {
            Ok(v.to_string())
        }
    }

    fn positive(&self, path: Vec<Seg>, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(self.err(path, "must be longer than zero"))
        } else {
            Ok(d)
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        use Seg::{Index, Key};

        let gate = GateConfig {
            name: match &raw.gate.name {
                Some(n) => self.non_empty(vec![Key("gate"), Key("name")], n)?,
                None => raw.gate.id.to_string(),
            },
            port: {
                let p = self.non_empty(vec![Key("gate"), Key("port")], &raw.gate.port)?;
                if p.chars().any(char::is_whitespace) {
                    return Err(self.err(
                        vec![Key("gate"), Key("port")],
                        "must not contain spaces (it is the replication scope code, e.g. PORT-A)",
                    ));
                }
                p
            },
            id: raw.gate.id,
        };

        if raw.lanes.is_empty() {
            return Err(self.err(
                vec![Key("lanes")],
                "at least one [[lanes]] entry is required",
            ));
        }
        let mut lanes = Vec::with_capacity(raw.lanes.len());
        let mut seen = HashSet::new();
        for (i, l) in raw.lanes.into_iter().enumerate() {
            let at = |k: &'static str| vec![Key("lanes"), Index(i), Key(k)];
            if !seen.insert(l.id.clone()) {
                return Err(self.err(at("id"), format!("duplicate lane id {:?}", l.id.as_str())));
            }
            let route = |k: &'static str, v: &str| {
                self.non_empty(vec![Key("lanes"), Index(i), Key("routes"), Key(k)], v)
            };
            lanes.push(LaneConfig {
                name: match &l.name {
                    Some(n) => self.non_empty(at("name"), n)?,
                    None => l.id.to_string(),
                },
                routes: Routes {
                    fast: route("fast", &l.routes.fast)?,
                    standard: route("standard", &l.routes.standard)?,
                    inspect: route("inspect", &l.routes.inspect)?,
                },
                presence_loop: l.presence_loop,
                transaction_timeout: self
                    .positive(at("transaction_timeout"), l.transaction_timeout)?,
                quiet_close: self.positive(at("quiet_close"), l.quiet_close)?,
                id: l.id,
            });
        }
        let lane_known = |id: &LaneId| lanes.iter().any(|l| &l.id == id);

        let mut devices = Vec::with_capacity(raw.devices.len());
        let mut names = HashSet::new();
        for (i, d) in raw.devices.into_iter().enumerate() {
            let at = |k: &'static str| vec![Key("devices"), Index(i), Key(k)];
            let name = self.non_empty(at("name"), &d.name)?;
            if !names.insert(name.clone()) {
                return Err(self.err(at("name"), format!("duplicate device name {name:?}")));
            }
            if !lane_known(&d.lane) {
                return Err(self.err(
                    at("lane"),
                    format!(
                        "names lane {:?}, which no [[lanes]] entry defines",
                        d.lane.as_str()
                    ),
                ));
            }
            if d.path.as_os_str().is_empty() {
                return Err(self.err(at("path"), "must not be empty"));
            }
            if d.baud == 0 {
                return Err(self.err(at("baud"), "must be greater than zero"));
            }
            let kind = match d.kind {
                RawDeviceKind::LaneBoard => DeviceKind::LaneBoard {
                    path: d.path,
                    baud: d.baud,
                },
                RawDeviceKind::UhfModule => DeviceKind::UhfModule {
                    path: d.path,
                    baud: d.baud,
                },
            };
            devices.push(DeviceConfig {
                name,
                lane: d.lane,
                kind,
                silence_timeout: self.positive(at("silence_timeout"), d.silence_timeout)?,
                reopen_backoff_max: self
                    .positive(at("reopen_backoff_max"), d.reopen_backoff_max)?,
            });
        }

        let mqtt = match raw.mqtt {
            None => None,
            Some(m) => {
                let at = |k: &'static str| vec![Key("mqtt"), Key(k)];
                if m.port == 0 {
                    return Err(self.err(at("port"), "must be greater than zero"));
                }
                let mut topics = Vec::with_capacity(m.topics.len());
                for (i, t) in m.topics.into_iter().enumerate() {
                    let tat = |k: &'static str| vec![Key("mqtt"), Key("topics"), Index(i), Key(k)];
                    let filter = self.non_empty(tat("filter"), &t.filter)?;
                    if !lane_known(&t.lane) {
                        return Err(self.err(
                            tat("lane"),
                            format!(
                                "names lane {:?}, which no [[lanes]] entry defines",
                                t.lane.as_str()
                            ),
                        ));
                    }
                    topics.push(TopicMap {
                        filter,
                        lane: t.lane,
                        kind: t.kind,
                    });
                }
                Some(MqttConfig {
                    host: self.non_empty(at("host"), &m.host)?,
                    port: m.port,
                    client_id: match &m.client_id {
                        Some(c) => self.non_empty(at("client_id"), c)?,
                        None => format!("aeogate-agent-{}", gate.id),
                    },
                    username: m.username,
                    password: m.password,
                    topics,
                    lane_topic_prefix: match &m.lane_topic_prefix {
                        Some(p) => self
                            .non_empty(at("lane_topic_prefix"), p)?
                            .trim_end_matches('/')
                            .to_string(),
                        None => format!("aeogate/{}/lanes", gate.id),
                    },
                })
            }
        };

        if raw.store.path.as_os_str().is_empty() {
            return Err(self.err(vec![Key("store"), Key("path")], "must not be empty"));
        }
        if raw.store.max_journal_bytes < MIN_JOURNAL_BYTES {
            return Err(self.err(
                vec![Key("store"), Key("max_journal_bytes")],
                format!("must be at least {MIN_JOURNAL_BYTES} (1 MiB)"),
            ));
        }
        let store = StoreConfig {
            path: raw.store.path,
            max_journal_bytes: raw.store.max_journal_bytes,
        };

        let central = match raw.central {
            None => None,
            Some(c) => {
                let at = |k: &'static str| vec![Key("central"), Key(k)];
                let url = self.non_empty(at("url"), &c.url)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(self.err(at("url"), "must start with http:// or https://"));
                }
                let token = self.non_empty(at("token"), &c.token)?;
                let mut keys = Vec::with_capacity(c.registry_keys.len());
                let mut ids = HashSet::new();
                for (i, k) in c.registry_keys.into_iter().enumerate() {
                    let kat = |f: &'static str| {
                        vec![Key("central"), Key("registry_keys"), Index(i), Key(f)]
                    };
                    let key_id = self.non_empty(kat("key_id"), &k.key_id)?;
                    if !ids.insert(key_id.clone()) {
                        return Err(self.err(kat("key_id"), format!("duplicate key id {key_id:?}")));
                    }
                    let pk = k.public_key.trim().to_ascii_lowercase();
                    if pk.len() != 64 || !pk.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(self.err(
                            kat("public_key"),
                            format!("must be 64 hex digits (an ed25519 public key); found {} characters", pk.len()),
                        ));
                    }
                    keys.push(PinnedKey {
                        key_id,
                        public_key: pk,
                    });
                }
                if keys.is_empty() {
                    return Err(self.err(
                        at("registry_keys"),
                        "at least one pinned registry key is required to accept registry batches",
                    ));
                }
                if c.uplink_batch == 0 || c.uplink_batch > 1_000 {
                    return Err(self.err(at("uplink_batch"), "must be between 1 and 1000 (central accepts at most 1,000 entries a batch)"));
                }
                let poll_wait = self.positive(at("poll_wait"), c.poll_wait)?;
                if poll_wait > MAX_POLL_WAIT {
                    return Err(self.err(at("poll_wait"), "must be at most 60s (central's limit)"));
                }
                if c.client_cert.is_some() != c.client_key.is_some() {
                    let key = if c.client_cert.is_some() {
                        "client_key"
                    } else {
                        "client_cert"
                    };
                    return Err(self.err(
                        at(key),
                        "client_cert and client_key go together (the agent's certificate and its key)",
                    ));
                }
                Some(CentralConfig {
                    url: url.trim_end_matches('/').to_string(),
                    token,
                    ca_cert: c.ca_cert,
                    client_cert: c.client_cert,
                    client_key: c.client_key,
                    registry_keys: keys,
                    uplink_batch: c.uplink_batch,
                    heartbeat_every: self.positive(at("heartbeat_every"), c.heartbeat_every)?,
                    poll_wait,
                })
            }
        };

        let p = raw.policy;
        let pat = |k: &'static str| vec![Key("policy"), Key(k)];
        let rate = |k: &'static str, r: f64| {
            if r > 0.0 && r < 1.0 {
                Ok(r)
            } else {
                Err(self.err(
                    pat(k),
                    format!("must be a probability strictly between 0 and 1; found {r}"),
                ))
            }
        };
        let random_rate_aeo = rate("random_rate_aeo", p.random_rate_aeo)?;
        let random_rate_other = rate("random_rate_other", p.random_rate_other)?;
        if random_rate_aeo > random_rate_other {
            return Err(self.err(
                pat("random_rate_aeo"),
                format!(
                    "must not exceed random_rate_other ({random_rate_other}): AEO traffic gets fewer inspections"
                ),
            ));
        }
        if p.random_key.trim().len() < MIN_RANDOM_KEY_LEN {
            return Err(self.err(
                pat("random_key"),
                format!("must be a secret of at least {MIN_RANDOM_KEY_LEN} characters"),
            ));
        }
        if p.required_roles.is_empty() {
            return Err(self.err(pat("required_roles"), "must name at least one role"));
        }
        if p.home_programmes.is_empty() {
            return Err(self.err(pat("home_programmes"), "must name at least one programme"));
        }
        let policy = Policy {
            name: self.non_empty(pat("name"), &p.name)?,
            staleness_bound: self.positive(pat("staleness_bound"), p.staleness_bound)?,
            required_roles: p.required_roles,
            home_programmes: p.home_programmes,
            random_rate_aeo,
            random_rate_other,
            random_key: p.random_key,
            eseal_low_battery_is_reason: p.eseal_low_battery_is_reason,
        };

        let bind = raw.console.bind.trim().parse::<SocketAddr>().map_err(|_| {
            self.err(
                vec![Key("console"), Key("bind")],
                format!(
                    "{:?} is not a socket address (e.g. 127.0.0.1:8080)",
                    raw.console.bind
                ),
            )
        })?;

        Ok(Config {
            gate,
            lanes,
            devices,
            mqtt,
            store,
            central,
            policy,
            console: ConsoleConfig { bind },
        })
    }
}
