//! Checks what serde cannot (duplicate ids, references to unknown lanes, zero timeouts,
//! rates outside (0, 1), …) and builds the public types, one section at a time. A new
//! source kind adds its raw form in [`super::raw`], its public form in [`super::types`]
//! and its checks in a section method here.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeTable;

use super::raw::{
    RawCentral, RawClock, RawConfig, RawConsole, RawDevice, RawDeviceKind, RawGate, RawLane,
    RawLlrpReader, RawMqtt, RawPolicy, RawStore,
};
use super::span::{KeyPath, Seg, line_of, offset_of};
use super::types::{
    CentralConfig, ClientIdentity, ClockConfig, Config, ConfigError, ConsoleConfig, ConsoleTls,
    DeviceConfig, DeviceKind, GateConfig, LaneConfig, LlrpReaderConfig, MqttConfig, MqttKind,
    MqttTls, PayloadFormat, PinnedKey, Secret, StoreConfig, TopicMap,
};
use crate::decider::{Policy, Routes};

/// Words that mark a value as the example's placeholder rather than a real secret.
const PLACEHOLDERS: [&str; 4] = ["replace-with", "change-me", "changeme", "placeholder"];

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `::1`): the only hosts
/// plain http may go to.
#[must_use]
pub fn is_loopback_url(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

use protocol::schema::{GateId, LaneId};

/// Smallest accepted journal bound: below this the agent would prune constantly.
const MIN_JOURNAL_BYTES: u64 = 1 << 20;
/// Bounds of `[store] replica_cache_bytes`: below 1 MiB the replica's branch pages do
/// not stay cached; above 64 GiB is a unit mistake on a gate box.
const MIN_REPLICA_CACHE_BYTES: u64 = 1 << 20;
const MAX_REPLICA_CACHE_BYTES: u64 = 64 << 30;
/// Longest long-poll central accepts (docs/delivery.md: `wait` ≤ 60 s).
const MAX_POLL_WAIT: Duration = Duration::from_secs(60);
/// Shortest random-selection key: shorter keys are guessable.
const MIN_RANDOM_KEY_LEN: usize = 16;
/// Transmit power range accepted (dBm): UHF RFID regulations allow at most about 33 dBm
/// conducted (4 W EIRP in FCC regions), and no reader goes below 0.
const TX_POWER_DBM: std::ops::RangeInclusive<f64> = 0.0..=33.0;
/// Longest keepalive period: LLRP's field is in ms and a gate wants to notice within seconds.
const MAX_KEEPALIVE: Duration = Duration::from_secs(60);

/// Whether `host` is this box (`localhost` or a loopback address).
fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    pub(super) doc: Option<&'a DeTable<'a>>,
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

    /// `client_cert` and `client_key` of `section` (whether each is set): both or neither.
    fn client_pair(&self, section: &'static str, cert: bool, key: bool) -> Result<(), ConfigError> {
        if cert == key {
            return Ok(());
        }
        let missing = if cert { "client_key" } else { "client_cert" };
        Err(self.err(
            vec![Seg::Key(section), Seg::Key(missing)],
            "client_cert and client_key go together (the agent's certificate and its key)",
        ))
    }

    fn positive(&self, path: Vec<Seg>, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(self.err(path, "must be longer than zero"))
        } else {
            Ok(d)
        }
    }

    pub(super) fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let gate = self.gate(raw.gate)?;
        let lanes = self.lanes(raw.lanes)?;
        let devices = self.devices(raw.devices, &lanes)?;
        let llrp = self.llrp(raw.llrp, &lanes, &devices)?;
        let mqtt = self.mqtt(raw.mqtt, &lanes, &gate.id)?;
        let store = self.store(raw.store)?;
        let central = self.central(raw.central)?;
        let policy = self.policy(raw.policy)?;
        // A signed statement refreshes the replica about once a long poll: a bound no
        // longer than that would read a healthy replica stale between two of them.
        if let Some(c) = &central
            && policy.staleness_bound <= c.poll_wait
        {
            return Err(self.err(
                vec![Seg::Key("policy"), Seg::Key("staleness_bound")],
                format!(
                    "must be longer than central.poll_wait ({}s): the replica is refreshed about once a poll",
                    c.poll_wait.as_secs()
                ),
            ));
        }
        let console = self.console(&raw.console)?;
        let clock = self.clock(&raw.clock)?;
        Ok(Config {
            gate,
            lanes,
            devices,
            llrp,
            mqtt,
            store,
            central,
            policy,
            console,
            clock,
        })
    }

    /// `[clock]`: a positive bound of at most an hour (beyond that the check means
    /// nothing: a gate an hour off would still be trusted).
    fn clock(&self, c: &RawClock) -> Result<ClockConfig, ConfigError> {
        use Seg::Key;
        let path = || vec![Key("clock"), Key("max_offset")];
        let max_offset = self.positive(path(), c.max_offset)?;
        if max_offset > Duration::from_secs(3600) {
            return Err(self.err(path(), "must be at most 1h (a larger bound checks nothing)"));
        }
        Ok(ClockConfig { max_offset })
    }

    fn gate(&self, g: RawGate) -> Result<GateConfig, ConfigError> {
        use Seg::Key;
        Ok(GateConfig {
            name: match &g.name {
                Some(n) => self.non_empty(vec![Key("gate"), Key("name")], n)?,
                None => g.id.to_string(),
            },
            port: {
                let p = self.non_empty(vec![Key("gate"), Key("port")], &g.port)?;
                if p.chars().any(char::is_whitespace) {
                    return Err(self.err(
                        vec![Key("gate"), Key("port")],
                        "must not contain spaces (it is the replication scope code, e.g. PORT-A)",
                    ));
                }
                p
            },
            id: g.id,
        })
    }

    fn lanes(&self, raw: Vec<RawLane>) -> Result<Vec<LaneConfig>, ConfigError> {
        use Seg::{Index, Key};
        if raw.is_empty() {
            return Err(self.err(
                vec![Key("lanes")],
                "at least one [[lanes]] entry is required",
            ));
        }
        let mut lanes = Vec::with_capacity(raw.len());
        let mut seen = HashSet::new();
        for (i, l) in raw.into_iter().enumerate() {
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
                // Zero holds no read for a presence to come.
                pre_open_grace: l.pre_open_grace,
                departure_grace: self.positive(at("departure_grace"), l.departure_grace)?,
                id: l.id,
            });
        }
        Ok(lanes)
    }

    /// Refuses a `lane` that no `[[lanes]]` entry defines; `who` opens the message (e.g.
    /// "antenna 2 ").
    fn lane_defined(
        &self,
        path: Vec<Seg>,
        lanes: &[LaneConfig],
        lane: &LaneId,
        who: &str,
    ) -> Result<(), ConfigError> {
        if lanes.iter().any(|l| l.id == *lane) {
            return Ok(());
        }
        Err(self.err(
            path,
            format!(
                "{who}names lane {:?}, which no [[lanes]] entry defines",
                lane.as_str()
            ),
        ))
    }

    fn devices(
        &self,
        raw: Vec<RawDevice>,
        lanes: &[LaneConfig],
    ) -> Result<Vec<DeviceConfig>, ConfigError> {
        use Seg::{Index, Key};
        let mut devices = Vec::with_capacity(raw.len());
        let mut names = HashSet::new();
        for (i, d) in raw.into_iter().enumerate() {
            let at = |k: &'static str| vec![Key("devices"), Index(i), Key(k)];
            let name = self.non_empty(at("name"), &d.name)?;
            if !names.insert(name.clone()) {
                return Err(self.err(at("name"), format!("duplicate device name {name:?}")));
            }
            self.lane_defined(at("lane"), lanes, &d.lane, "")?;
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
        Ok(devices)
    }

    /// Validates the `[[llrp]]` entries against the lanes and the serial device names.
    fn llrp(
        &self,
        raw: Vec<RawLlrpReader>,
        lanes: &[LaneConfig],
        devices: &[DeviceConfig],
    ) -> Result<Vec<LlrpReaderConfig>, ConfigError> {
        use Seg::{Index, Key};
        let mut names: HashSet<String> = devices.iter().map(|d| d.name.clone()).collect();
        let mut out = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let at = |k: &'static str| vec![Key("llrp"), Index(i), Key(k)];
            let name = self.non_empty(at("name"), &r.name)?;
            if !names.insert(name.clone()) {
                return Err(self.err(at("name"), format!("duplicate device name {name:?}")));
            }
            let host = self.non_empty(at("host"), &r.host)?;
            if r.port == 0 {
                return Err(self.err(at("port"), "must be greater than zero"));
            }
            if r.antennas.is_empty() {
                return Err(self.err(
                    at("antennas"),
                    "must map at least one antenna to a lane, e.g. { 1 = \"L1\" }",
                ));
            }
            let mut antennas = BTreeMap::new();
            for (key, lane) in r.antennas {
                let id = match key.trim().parse::<u16>() {
                    Ok(id) if id > 0 => id,
                    _ => {
                        return Err(self.err(
                            at("antennas"),
                            format!("{key:?} is not an antenna number (1 to 65535)"),
                        ));
                    }
                };
                self.lane_defined(at("antennas"), lanes, &lane, &format!("antenna {id} "))?;
                antennas.insert(id, lane);
            }
            if let Some(p) = r.tx_power_dbm
                && !TX_POWER_DBM.contains(&p)
            {
                return Err(self.err(
                    at("tx_power_dbm"),
                    format!("must be between 0 and 33 dBm; found {p}"),
                ));
            }
            let keepalive = self.positive(at("keepalive"), r.keepalive)?;
            if keepalive > MAX_KEEPALIVE || keepalive < Duration::from_millis(100) {
                return Err(self.err(at("keepalive"), "must be between 100ms and 60s"));
            }
            let silence_timeout = self.positive(at("silence_timeout"), r.silence_timeout)?;
            if silence_timeout <= keepalive {
                return Err(self.err(
                    at("silence_timeout"),
                    format!(
                        "must be longer than keepalive ({}): a reader is silent only after missing keepalives",
                        humantime::format_duration(keepalive)
                    ),
                ));
            }
            let version = match r.version.trim() {
                "1.0.1" => protocol::llrp::VERSION_1_0_1,
                "1.1" => protocol::llrp::VERSION_1_1,
                other => {
                    return Err(self.err(
                        at("version"),
                        format!("{other:?}: must be \"1.0.1\" or \"1.1\""),
                    ));
                }
            };
            out.push(LlrpReaderConfig {
                version,
                name,
                host,
                port: r.port,
                antennas,
                tx_power_dbm: r.tx_power_dbm,
                keepalive,
                silence_timeout,
                unique_window: r.unique_window,
                reconnect_backoff_max: self
                    .positive(at("reconnect_backoff_max"), r.reconnect_backoff_max)?,
            });
        }
        Ok(out)
    }

    fn mqtt(
        &self,
        raw: Option<RawMqtt>,
        lanes: &[LaneConfig],
        gate: &GateId,
    ) -> Result<Option<MqttConfig>, ConfigError> {
        use Seg::{Index, Key};
        let Some(mut m) = raw else { return Ok(None) };
        let at = |k: &'static str| vec![Key("mqtt"), Key(k)];
        if m.port == 0 {
            return Err(self.err(at("port"), "must be greater than zero"));
        }
        let host = self.non_empty(at("host"), &m.host)?;
        let mut topics = Vec::with_capacity(m.topics.len());
        for (i, t) in std::mem::take(&mut m.topics).into_iter().enumerate() {
            let tat = |k: &'static str| vec![Key("mqtt"), Key("topics"), Index(i), Key(k)];
            let filter = self.non_empty(tat("filter"), &t.filter)?;
            if !rumqttc::valid_filter(&filter) {
                return Err(self.err(
                    tat("filter"),
                    format!(
                        "{filter:?} is not an MQTT topic filter ('#' only as the last level, '+' and '#' only as whole levels)"
                    ),
                ));
            }
            self.lane_defined(tat("lane"), lanes, &t.lane, "")?;
            if t.format != PayloadFormat::Aeogate && t.kind != MqttKind::Rfid {
                return Err(self.err(
                    tat("format"),
                    "vendor formats (impinj, zebra) carry tag events: kind must be \"rfid\"",
                ));
            }
            topics.push(TopicMap {
                filter,
                lane: t.lane,
                kind: t.kind,
                format: t.format,
            });
        }
        let topic_name = |k: &'static str, v: &str| -> Result<String, ConfigError> {
            let v = self.non_empty(at(k), v)?.trim_end_matches('/').to_string();
            if v.is_empty() || !rumqttc::valid_topic(&v) {
                return Err(self.err(
                    at(k),
                    format!("{v:?} must be a topic name to publish to (no '+' or '#')"),
                ));
            }
            Ok(v)
        };
        let lane_topic_prefix = match &m.lane_topic_prefix {
            Some(p) => topic_name("lane_topic_prefix", p)?,
            None => format!("aeogate/{gate}/lanes"),
        };
        let availability_topic = match &m.availability_topic {
            Some(p) => topic_name("availability_topic", p)?,
            None => format!("aeogate/{gate}/availability"),
        };
        let password = self.mqtt_password(&m)?;
        if password.is_some() && m.username.is_none() {
            return Err(self.err(
                at("username"),
                "a broker password needs mqtt.username (MQTT sends no password without a user name)",
            ));
        }
        let username = match &m.username {
            Some(u) => Some(self.non_empty(at("username"), u)?),
            None => None,
        };
        let tls = self.mqtt_tls(&m)?;
        if password.is_some() && tls.is_none() && !is_loopback_host(&host) {
            return Err(self.err(
                at("ca_cert"),
                format!(
                    "a password to the broker {host} over plain TCP travels in clear: set mqtt.ca_cert (TLS), or use a broker on this box (127.0.0.1)"
                ),
            ));
        }
        Ok(Some(MqttConfig {
            host,
            port: m.port,
            client_id: match &m.client_id {
                Some(c) => self.non_empty(at("client_id"), c)?,
                None => format!("aeogate-agent-{gate}"),
            },
            username,
            password,
            tls,
            topics,
            lane_topic_prefix,
            availability_topic,
            lane_wills: m.lane_wills,
        }))
    }

    /// The broker password from exactly one of `password`, `password_file` (its first
    /// line) and `password_env`.
    fn mqtt_password(&self, m: &RawMqtt) -> Result<Option<Secret>, ConfigError> {
        use Seg::Key;
        let at = |k: &'static str| vec![Key("mqtt"), Key(k)];
        let given = [
            m.password.is_some(),
            m.password_file.is_some(),
            m.password_env.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            let key = if m.password_env.is_some() {
                "password_env"
            } else {
                "password_file"
            };
            return Err(self.err(
                at(key),
                "give the broker password once: password, password_file or password_env",
            ));
        }
        let secret = if let Some(p) = &m.password {
            p.clone()
        } else if let Some(path) = &m.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                self.err(
                    at("password_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            text.lines().next().unwrap_or_default().to_owned()
        } else if let Some(var) = &m.password_env {
            std::env::var(var.trim()).map_err(|_| {
                self.err(
                    at("password_env"),
                    format!("the environment variable {var:?} is not set (or not UTF-8)"),
                )
            })?
        } else {
            return Ok(None);
        };
        if secret.is_empty() {
            let key = if m.password_file.is_some() {
                "password_file"
            } else if m.password_env.is_some() {
                "password_env"
            } else {
                "password"
            };
            return Err(self.err(at(key), "the broker password is empty"));
        }
        Ok(Some(Secret::new(secret)))
    }

    /// TLS material: the pinned CA (`ca_cert`) and the optional client certificate.
    fn mqtt_tls(&self, m: &RawMqtt) -> Result<Option<MqttTls>, ConfigError> {
        use Seg::Key;
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let at = |k: &'static str| vec![Key("mqtt"), Key(k)];
        self.client_pair("mqtt", m.client_cert.is_some(), m.client_key.is_some())?;
        let Some(ca) = &m.ca_cert else {
            if m.client_cert.is_some() {
                return Err(self.err(
                    at("client_cert"),
                    "a client certificate is for TLS: set mqtt.ca_cert too",
                ));
            }
            return Ok(None);
        };
        let certs = |k: &'static str, path: &std::path::Path| {
            let pem = std::fs::read(path)
                .map_err(|e| self.err(at(k), format!("cannot read {}: {e}", path.display())))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    self.err(
                        at(k),
                        format!("{} is not a PEM certificate bundle: {e}", path.display()),
                    )
                })?;
            if certs.is_empty() {
                return Err(self.err(at(k), format!("{} holds no certificate", path.display())));
            }
            Ok(certs)
        };
        let roots = certs("ca_cert", ca)?;
        let client = match (&m.client_cert, &m.client_key) {
            (Some(cert), Some(key)) => {
                let chain = certs("client_cert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    self.err(
                        at("client_key"),
                        format!("{} holds no PEM private key: {e}", key.display()),
                    )
                })?;
                Some(Arc::new(ClientIdentity { chain, key }))
            }
            _ => None,
        };
        let tls = MqttTls {
            ca_cert: ca.clone(),
            roots,
            client,
        };
        // What the connection will do at start, done now, so check-config refuses it too.
        if let Err(e) = tls.client_config() {
            let key = if tls.client.is_some() {
                "client_key"
            } else {
                "ca_cert"
            };
            return Err(self.err(at(key), format!("rustls refuses the TLS settings: {e}")));
        }
        Ok(Some(tls))
    }

    fn store(&self, s: RawStore) -> Result<StoreConfig, ConfigError> {
        use Seg::Key;
        if s.path.as_os_str().is_empty() {
            return Err(self.err(vec![Key("store"), Key("path")], "must not be empty"));
        }
        if s.max_journal_bytes < MIN_JOURNAL_BYTES {
            return Err(self.err(
                vec![Key("store"), Key("max_journal_bytes")],
                format!("must be at least {MIN_JOURNAL_BYTES} (1 MiB)"),
            ));
        }
        let replica_cache_bytes = usize::try_from(s.replica_cache_bytes)
            .ok()
            .filter(|_| {
                (MIN_REPLICA_CACHE_BYTES..=MAX_REPLICA_CACHE_BYTES).contains(&s.replica_cache_bytes)
            })
            .ok_or_else(|| {
                self.err(
                    vec![Key("store"), Key("replica_cache_bytes")],
                    format!(
                        "must be between {MIN_REPLICA_CACHE_BYTES} (1 MiB) and {MAX_REPLICA_CACHE_BYTES} (64 GiB), found {}",
                        s.replica_cache_bytes
                    ),
                )
            })?;
        Ok(StoreConfig {
            path: s.path,
            max_journal_bytes: s.max_journal_bytes,
            replica_cache_bytes,
        })
    }

    fn central(&self, raw: Option<RawCentral>) -> Result<Option<CentralConfig>, ConfigError> {
        use Seg::{Index, Key};
        Ok(match raw {
            None => None,
            Some(c) => {
                let at = |k: &'static str| vec![Key("central"), Key(k)];
                let urls = self.central_urls(c.url.as_deref(), c.urls.as_deref())?;
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
                self.client_pair("central", c.client_cert.is_some(), c.client_key.is_some())?;
                // Where central is and how it is trusted: checked last, so the other keys'
                // errors come first.
                for (i, url) in urls.iter().enumerate() {
                    let key = || {
                        if c.urls.is_some() {
                            vec![Key("central"), Key("urls"), Seg::Index(i)]
                        } else {
                            at("url")
                        }
                    };
                    let parsed = reqwest::Url::parse(url)
                        .map_err(|e| self.err(key(), format!("is not a URL: {e}")))?;
                    if parsed.scheme() == "http" && !is_loopback_url(&parsed) {
                        return Err(self.err(
                            key(),
                            "plain http is only allowed to a loopback host; use https with central.ca_cert",
                        ));
                    }
                    if parsed.scheme() == "https" && c.ca_cert.is_none() {
                        return Err(self.err(
                            key(),
                            "is https but central.ca_cert is not set (the agent trusts only central's CA)",
                        ));
                    }
                }
                Some(CentralConfig {
                    url: urls[0].clone(),
                    urls,
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
        })
    }

    /// `central.url`, or `central.urls` (one or more instances): exactly one of them,
    /// each `http://` or `https://`, no instance twice. Trailing slashes are dropped.
    fn central_urls(
        &self,
        url: Option<&str>,
        urls: Option<&[String]>,
    ) -> Result<Vec<String>, ConfigError> {
        use Seg::{Index, Key};
        let one = |path: Vec<Seg>, u: &str| -> Result<String, ConfigError> {
            let u = self.non_empty(path.clone(), u)?;
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(self.err(path, "must start with http:// or https://"));
            }
            Ok(u.trim_end_matches('/').to_string())
        };
        match (url, urls) {
            (Some(u), None) => Ok(vec![one(vec![Key("central"), Key("url")], u)?]),
            (None, Some(list)) => {
                if list.is_empty() {
                    return Err(self.err(
                        vec![Key("central"), Key("urls")],
                        "must name at least one central instance",
                    ));
                }
                let mut out: Vec<String> = Vec::with_capacity(list.len());
                for (i, u) in list.iter().enumerate() {
                    let path = vec![Key("central"), Key("urls"), Index(i)];
                    let u = one(path.clone(), u)?;
                    if out.contains(&u) {
                        return Err(self.err(path, format!("{u} is listed twice")));
                    }
                    out.push(u);
                }
                Ok(out)
            }
            (Some(_), Some(_)) => Err(self.err(
                vec![Key("central"), Key("urls")],
                "set either url (one central) or urls (several instances), not both",
            )),
            (None, None) => Err(self.err(
                vec![Key("central")],
                "missing url (central's base URL) or urls (several central instances)",
            )),
        }
    }

    fn policy(&self, p: RawPolicy) -> Result<Policy, ConfigError> {
        use Seg::Key;
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
        let lower = p.random_key.to_ascii_lowercase();
        if PLACEHOLDERS.iter().any(|w| lower.contains(w)) {
            return Err(self.err(
                pat("random_key"),
                "is still a placeholder: set a long random secret of this gate (e.g. `openssl rand -hex 32`)",
            ));
        }
        if p.required_roles.is_empty() {
            return Err(self.err(pat("required_roles"), "must name at least one role"));
        }
        if p.home_programmes.is_empty() {
            return Err(self.err(pat("home_programmes"), "must name at least one programme"));
        }
        Ok(Policy {
            name: self.non_empty(pat("name"), &p.name)?,
            staleness_bound: self.positive(pat("staleness_bound"), p.staleness_bound)?,
            required_roles: p.required_roles,
            home_programmes: p.home_programmes,
            random_rate_aeo,
            random_rate_other,
            random_key: p.random_key,
            eseal_low_battery_is_reason: p.eseal_low_battery_is_reason,
        })
    }

    fn console(&self, c: &RawConsole) -> Result<ConsoleConfig, ConfigError> {
        use Seg::Key;
        let bind = c.bind.trim().parse::<SocketAddr>().map_err(|_| {
            self.err(
                vec![Key("console"), Key("bind")],
                format!("{:?} is not a socket address (e.g. 127.0.0.1:8080)", c.bind),
            )
        })?;
        let tls = match (&c.tls_cert, &c.tls_key) {
            (Some(cert), Some(key)) => Some(ConsoleTls {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.err(
                    vec![Key("console"), Key("tls_cert")],
                    "tls_cert needs tls_key (the certificate's private key, PEM)",
                ));
            }
            (None, Some(_)) => {
                return Err(self.err(
                    vec![Key("console"), Key("tls_key")],
                    "tls_key needs tls_cert (the certificate chain, PEM)",
                ));
            }
        };
        Ok(ConsoleConfig { bind, tls })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    const BASE: &str = "[gate]\nid = \"PORT1-G1\"\nport = \"PORT1\"\n\n\
        [[lanes]]\nid = \"L1\"\n[lanes.routes]\nfast = \"a\"\nstandard = \"b\"\ninspect = \"c\"\n\n\
        [policy]\nrandom_key = \"a-random-key-of-enough-length\"\n\n";

    fn load(llrp: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(&format!("{BASE}{llrp}"), "agent.toml")
    }

    fn error(llrp: &str) -> String {
        load(llrp).expect_err("invalid").to_string()
    }

    /// Fails unless `extra` is refused with a message saying every one of `says`.
    fn refused(extra: &str, says: &[&str]) {
        let e = error(extra);
        for s in says {
            assert!(e.contains(s), "does not say {s:?}: {e}");
        }
    }

    /// An LLRP reader `r1` at host `h` with `antennas`, then `extra` keys.
    fn reader(antennas: &str, extra: &str) -> String {
        format!("[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = {{ {antennas} }}\n{extra}")
    }

    #[test]
    fn clock_bound_defaults_to_two_seconds_and_is_checked() {
        let cfg = load("").expect("loads");
        assert_eq!(cfg.clock.max_offset, std::time::Duration::from_secs(2));
        let cfg = load("[clock]\nmax_offset = \"500ms\"\n").expect("loads");
        assert_eq!(cfg.clock.max_offset, std::time::Duration::from_millis(500));
        refused(
            "[clock]\nmax_offset = \"0s\"\n",
            &["clock.max_offset", "line"],
        );
        refused(
            "[clock]\nmax_offset = \"2h\"\n",
            &["clock.max_offset", "at most 1h"],
        );
        refused("[clock]\nmax_offset = \"soon\"\n", &["max_offset"]);
    }

    #[test]
    fn console_tls_needs_both_certificate_and_key() {
        let cfg = load("[console]\ntls_cert = \"/etc/aeogate/console.crt\"\ntls_key = \"/etc/aeogate/console.key\"\n")
            .expect("loads");
        let tls = cfg.console.tls.expect("tls");
        assert_eq!(tls.cert, std::path::Path::new("/etc/aeogate/console.crt"));
        assert!(load("").expect("loads").console.tls.is_none());
        refused(
            "[console]\ntls_cert = \"/etc/aeogate/console.crt\"\n",
            &["console.tls_cert", "needs tls_key"],
        );
        refused(
            "[console]\ntls_key = \"/etc/aeogate/console.key\"\n",
            &["needs tls_cert"],
        );
    }

    #[test]
    fn a_reader_with_defaults_loads() {
        let cfg = load("[[llrp]]\nname = \"r1\"\nhost = \"192.0.2.7\"\nantennas = { 1 = \"L1\", 2 = \"L1\" }\n")
            .expect("loads");
        let r = &cfg.llrp[0];
        assert_eq!(r.port, 5084);
        assert_eq!(r.antennas.len(), 2);
        assert_eq!(r.keepalive, std::time::Duration::from_secs(1));
        assert!(r.silence_timeout > r.keepalive);
    }

    #[test]
    fn unknown_lane_is_named_with_its_line() {
        refused(
            &reader("1 = \"L9\"", ""),
            &[
                "llrp[0].antennas",
                "antenna 1 names lane \"L9\", which no [[lanes]] entry defines",
                "line 18",
            ],
        );
    }

    #[test]
    fn antenna_zero_is_rejected() {
        refused(&reader("0 = \"L1\"", ""), &["not an antenna number"]);
    }

    #[test]
    fn silence_timeout_must_exceed_keepalive() {
        let timing = "keepalive = \"2s\"\nsilence_timeout = \"2s\"\n";
        refused(&reader("1 = \"L1\"", timing), &["llrp[0].silence_timeout"]);
    }

    #[test]
    fn tx_power_out_of_range_is_rejected() {
        refused(
            &reader("1 = \"L1\"", "tx_power_dbm = 40.0\n"),
            &["llrp[0].tx_power_dbm"],
        );
    }

    #[test]
    fn name_clashing_with_a_serial_device_is_rejected() {
        let device = "[[devices]]\nname = \"r1\"\nlane = \"L1\"\nkind = \"uhf_module\"\npath = \"/dev/ttyUSB0\"\n\n";
        refused(
            &format!("{device}{}", reader("1 = \"L1\"", "")),
            &["duplicate device name"],
        );
    }

    #[test]
    fn version_must_be_one_of_the_two_llrp_versions() {
        refused(
            &reader("1 = \"L1\"", "version = \"2.0\"\n"),
            &["llrp[0].version"],
        );
        let ok = load(&reader("1 = \"L1\"", "version = \"1.1\"\n")).expect("1.1 loads");
        assert_eq!(ok.llrp[0].version, 2);
    }

    #[test]
    fn unknown_key_is_rejected() {
        refused(&reader("1 = \"L1\"", "power = 3\n"), &["power"]);
    }
    const KEY: &str = "[[central.registry_keys]]\nkey_id = \"k1\"\npublic_key = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";

    /// A `[central]` section of `keys` with a token and one registry key.
    fn central(keys: &str) -> String {
        format!("[central]\n{keys}\ntoken = \"t\"\n{KEY}")
    }

    /// The `[central]` section loaded from [`central`] with `keys` and a CA certificate.
    fn loaded_central(keys: &str) -> crate::config::CentralConfig {
        let cfg = load(&central(&format!("{keys}\nca_cert = \"ca.pem\""))).expect("loads");
        cfg.central.expect("central")
    }

    #[test]
    fn central_url_alone_is_the_one_instance() {
        let c = loaded_central("url = \"https://c.example/\"");
        assert_eq!(c.urls, vec!["https://c.example".to_string()]);
        assert_eq!(c.url, "https://c.example");
    }

    #[test]
    fn central_urls_list_the_instances_in_order() {
        let c = loaded_central("urls = [\"https://a.example\", \"https://b.example/\"]");
        assert_eq!(
            c.urls,
            vec![
                "https://a.example".to_string(),
                "https://b.example".to_string()
            ]
        );
        assert_eq!(c.url, "https://a.example");
    }

    #[test]
    fn central_urls_are_checked_and_named_by_position() {
        let cases: [(&str, &[&str]); 5] = [
            (
                "urls = [\"https://a.example\", \"ftp://b\"]",
                &["central.urls[1]", "http:// or https://"],
            ),
            (
                "urls = [\"https://a.example\", \"https://a.example/\"]",
                &["listed twice"],
            ),
            ("urls = []", &["at least one central instance"]),
            (
                "url = \"https://a.example\"\nurls = [\"https://b.example\"]",
                &["not both"],
            ),
            ("", &["missing url"]),
        ];
        for (keys, says) in cases {
            refused(&central(keys), says);
        }
    }
}
