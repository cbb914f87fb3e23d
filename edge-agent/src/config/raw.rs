//! The configuration as serde reads it (`deny_unknown_fields`), with the defaults of
//! docs/configuration.md. [`super::validate`] turns it into [`super::types`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use protocol::operator::Programme;
use protocol::schema::{GateId, LaneId, PartyRole};
use serde::Deserialize;

use super::types::{MqttKind, PayloadFormat};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) gate: RawGate,
    #[serde(default)]
    pub(super) lanes: Vec<RawLane>,
    #[serde(default)]
    pub(super) devices: Vec<RawDevice>,
    #[serde(default)]
    pub(super) llrp: Vec<RawLlrpReader>,
    pub(super) mqtt: Option<RawMqtt>,
    #[serde(default)]
    pub(super) store: RawStore,
    pub(super) central: Option<RawCentral>,
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) console: RawConsole,
    #[serde(default)]
    pub(super) clock: RawClock,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGate {
    pub(super) id: GateId,
    pub(super) name: Option<String>,
    pub(super) port: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLane {
    pub(super) id: LaneId,
    pub(super) name: Option<String>,
    pub(super) routes: RawRoutes,
    #[serde(default = "default_true")]
    pub(super) presence_loop: bool,
    #[serde(with = "humantime_serde", default = "default_transaction_timeout")]
    pub(super) transaction_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_quiet_close")]
    pub(super) quiet_close: Duration,
    #[serde(with = "humantime_serde", default = "default_pre_open_grace")]
    pub(super) pre_open_grace: Duration,
    #[serde(with = "humantime_serde", default = "default_departure_grace")]
    pub(super) departure_grace: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoutes {
    pub(super) fast: String,
    pub(super) standard: String,
    pub(super) inspect: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawDeviceKind {
    LaneBoard,
    UhfModule,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub(super) name: String,
    pub(super) lane: LaneId,
    pub(super) kind: RawDeviceKind,
    pub(super) path: PathBuf,
    #[serde(default = "default_baud")]
    pub(super) baud: u32,
    #[serde(with = "humantime_serde", default = "default_silence_timeout")]
    pub(super) silence_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_reopen_backoff_max")]
    pub(super) reopen_backoff_max: Duration,
}

/// One `[[llrp]]` entry: a fixed network UHF reader.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLlrpReader {
    pub(super) name: String,
    pub(super) host: String,
    #[serde(default = "default_llrp_port")]
    pub(super) port: u16,
    pub(super) antennas: BTreeMap<String, LaneId>,
    pub(super) tx_power_dbm: Option<f64>,
    #[serde(with = "humantime_serde", default = "default_llrp_keepalive")]
    pub(super) keepalive: Duration,
    #[serde(with = "humantime_serde", default = "default_llrp_silence_timeout")]
    pub(super) silence_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_llrp_unique_window")]
    pub(super) unique_window: Duration,
    #[serde(
        with = "humantime_serde",
        default = "default_llrp_reconnect_backoff_max"
    )]
    pub(super) reconnect_backoff_max: Duration,
    #[serde(default = "default_llrp_version")]
    pub(super) version: String,
}

fn default_llrp_version() -> String {
    "1.0.1".into()
}

fn default_llrp_port() -> u16 {
    protocol::llrp::PORT
}
fn default_llrp_keepalive() -> Duration {
    Duration::from_secs(1)
}
fn default_llrp_silence_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_llrp_unique_window() -> Duration {
    Duration::from_secs(5)
}
fn default_llrp_reconnect_backoff_max() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqtt {
    #[serde(default = "default_mqtt_host")]
    pub(super) host: String,
    #[serde(default = "default_mqtt_port")]
    pub(super) port: u16,
    pub(super) client_id: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) password_env: Option<String>,
    pub(super) ca_cert: Option<PathBuf>,
    pub(super) client_cert: Option<PathBuf>,
    pub(super) client_key: Option<PathBuf>,
    #[serde(default)]
    pub(super) topics: Vec<RawTopic>,
    pub(super) lane_topic_prefix: Option<String>,
    pub(super) availability_topic: Option<String>,
    #[serde(default = "default_true")]
    pub(super) lane_wills: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopic {
    pub(super) filter: String,
    pub(super) lane: LaneId,
    pub(super) kind: MqttKind,
    #[serde(default)]
    pub(super) format: PayloadFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(default = "default_store_path")]
    pub(super) path: PathBuf,
    #[serde(default = "default_max_journal_bytes")]
    pub(super) max_journal_bytes: u64,
    #[serde(default = "default_replica_cache_bytes")]
    pub(super) replica_cache_bytes: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            max_journal_bytes: default_max_journal_bytes(),
            replica_cache_bytes: default_replica_cache_bytes(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCentral {
    #[serde(default)]
    pub(super) url: Option<String>,
    /// Several central instances on one database, tried in turn (failover).
    #[serde(default)]
    pub(super) urls: Option<Vec<String>>,
    pub(super) token: String,
    pub(super) ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub(super) client_cert: Option<PathBuf>,
    #[serde(default)]
    pub(super) client_key: Option<PathBuf>,
    #[serde(default)]
    pub(super) registry_keys: Vec<RawKey>,
    #[serde(default = "default_uplink_batch")]
    pub(super) uplink_batch: usize,
    #[serde(with = "humantime_serde", default = "default_heartbeat_every")]
    pub(super) heartbeat_every: Duration,
    #[serde(with = "humantime_serde", default = "default_poll_wait")]
    pub(super) poll_wait: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) key_id: String,
    pub(super) public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default = "default_policy_name")]
    pub(super) name: String,
    #[serde(with = "humantime_serde", default = "default_staleness_bound")]
    pub(super) staleness_bound: Duration,
    #[serde(default = "default_required_roles")]
    pub(super) required_roles: Vec<PartyRole>,
    #[serde(default = "default_home_programmes")]
    pub(super) home_programmes: Vec<Programme>,
    #[serde(default = "default_random_rate_aeo")]
    pub(super) random_rate_aeo: f64,
    #[serde(default = "default_random_rate_other")]
    pub(super) random_rate_other: f64,
    pub(super) random_key: String,
    #[serde(default)]
    pub(super) eseal_low_battery_is_reason: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    #[serde(default = "default_bind")]
    pub(super) bind: String,
    #[serde(default)]
    pub(super) tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub(super) tls_key: Option<PathBuf>,
}

impl Default for RawConsole {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClock {
    #[serde(with = "humantime_serde", default = "default_max_offset")]
    pub(super) max_offset: Duration,
}

impl Default for RawClock {
    fn default() -> Self {
        Self {
            max_offset: default_max_offset(),
        }
    }
}

fn default_max_offset() -> Duration {
    Duration::from_secs(2)
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
fn default_pre_open_grace() -> Duration {
    super::types::PRE_OPEN_GRACE.unsigned_abs()
}
fn default_departure_grace() -> Duration {
    super::types::DEPARTURE_GRACE.unsigned_abs()
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
    PathBuf::from(super::DEFAULT_STORE_PATH)
}
fn default_max_journal_bytes() -> u64 {
    1 << 30
}
fn default_replica_cache_bytes() -> u64 {
    crate::store::DEFAULT_REPLICA_CACHE_BYTES as u64
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
