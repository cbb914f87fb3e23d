//! The `[[llrp]]` section: fixed network UHF readers the agent reads over LLRP
//! (`docs/configuration.md`, "[[llrp]]"). A self-contained raw struct and its validator,
//! called from [`super::Validator::build`] in one place.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use protocol::schema::LaneId;
use serde::Deserialize;

use super::{ConfigError, DeviceConfig, LaneConfig, Seg, Validator};

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLlrpReader {
    name: String,
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    antennas: BTreeMap<String, LaneId>,
    tx_power_dbm: Option<f64>,
    #[serde(with = "humantime_serde", default = "default_keepalive")]
    keepalive: Duration,
    #[serde(with = "humantime_serde", default = "default_silence_timeout")]
    silence_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_unique_window")]
    unique_window: Duration,
    #[serde(with = "humantime_serde", default = "default_reconnect_backoff_max")]
    reconnect_backoff_max: Duration,
    #[serde(default = "default_version")]
    version: String,
}

fn default_version() -> String {
    "1.0.1".into()
}

fn default_port() -> u16 {
    protocol::llrp::PORT
}
fn default_keepalive() -> Duration {
    Duration::from_secs(1)
}
fn default_silence_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_unique_window() -> Duration {
    Duration::from_secs(5)
}
fn default_reconnect_backoff_max() -> Duration {
    Duration::from_secs(10)
}

/// Transmit power range accepted (dBm): UHF RFID regulations allow at most about 33 dBm
/// conducted (4 W EIRP in FCC regions), and no reader goes below 0.
const TX_POWER_DBM: std::ops::RangeInclusive<f64> = 0.0..=33.0;
/// Longest keepalive period: LLRP's field is in ms and a gate wants to notice within seconds.
const MAX_KEEPALIVE: Duration = Duration::from_secs(60);

/// Validates the `[[llrp]]` entries against the lanes and the serial device names.
pub(super) fn build(
    v: &Validator<'_>,
    raw: Vec<RawLlrpReader>,
    lanes: &[LaneConfig],
    devices: &[DeviceConfig],
) -> Result<Vec<LlrpReaderConfig>, ConfigError> {
    use Seg::{Index, Key};
    let mut names: HashSet<String> = devices.iter().map(|d| d.name.clone()).collect();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |k: &'static str| vec![Key("llrp"), Index(i), Key(k)];
        let name = v.non_empty(at("name"), &r.name)?;
        if !names.insert(name.clone()) {
            return Err(v.err(at("name"), format!("duplicate device name {name:?}")));
        }
        let host = v.non_empty(at("host"), &r.host)?;
        if r.port == 0 {
            return Err(v.err(at("port"), "must be greater than zero"));
        }
        if r.antennas.is_empty() {
            return Err(v.err(
                at("antennas"),
                "must map at least one antenna to a lane, e.g. { 1 = \"L1\" }",
            ));
        }
        let mut antennas = BTreeMap::new();
        for (key, lane) in r.antennas {
            let id = match key.trim().parse::<u16>() {
                Ok(id) if id > 0 => id,
                _ => {
                    return Err(v.err(
                        at("antennas"),
                        format!("{key:?} is not an antenna number (1 to 65535)"),
                    ));
                }
            };
            if !lanes.iter().any(|l| l.id == lane) {
                return Err(v.err(
                    at("antennas"),
                    format!(
                        "antenna {id} names lane {:?}, which no [[lanes]] entry defines",
                        lane.as_str()
                    ),
                ));
            }
            antennas.insert(id, lane);
        }
        if let Some(p) = r.tx_power_dbm
            && !TX_POWER_DBM.contains(&p)
        {
            return Err(v.err(
                at("tx_power_dbm"),
                format!("must be between 0 and 33 dBm; found {p}"),
            ));
        }
        let keepalive = v.positive(at("keepalive"), r.keepalive)?;
        if keepalive > MAX_KEEPALIVE || keepalive < Duration::from_millis(100) {
            return Err(v.err(at("keepalive"), "must be between 100ms and 60s"));
        }
        let silence_timeout = v.positive(at("silence_timeout"), r.silence_timeout)?;
        if silence_timeout <= keepalive {
            return Err(v.err(
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
                return Err(v.err(
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
            reconnect_backoff_max: v
                .positive(at("reconnect_backoff_max"), r.reconnect_backoff_max)?,
        });
    }
    Ok(out)
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
        let e = error("[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 1 = \"L9\" }\n");
        assert!(e.contains("llrp[0].antennas"), "{e}");
        assert!(e.contains("\"L9\""), "{e}");
        assert!(e.contains("line 18"), "{e}");
    }

    #[test]
    fn antenna_zero_is_rejected() {
        let e = error("[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 0 = \"L1\" }\n");
        assert!(e.contains("not an antenna number"), "{e}");
    }

    #[test]
    fn silence_timeout_must_exceed_keepalive() {
        let e = error(
            "[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 1 = \"L1\" }\nkeepalive = \"2s\"\nsilence_timeout = \"2s\"\n",
        );
        assert!(e.contains("llrp[0].silence_timeout"), "{e}");
    }

    #[test]
    fn tx_power_out_of_range_is_rejected() {
        let e = error(
            "[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 1 = \"L1\" }\ntx_power_dbm = 40.0\n",
        );
        assert!(e.contains("llrp[0].tx_power_dbm"), "{e}");
    }

    #[test]
    fn name_clashing_with_a_serial_device_is_rejected() {
        let e = error(
            "[[devices]]\nname = \"r1\"\nlane = \"L1\"\nkind = \"uhf_module\"\npath = \"/dev/ttyUSB0\"\n\n\
             [[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 1 = \"L1\" }\n",
        );
        assert!(e.contains("duplicate device name"), "{e}");
    }

    #[test]
    fn version_must_be_one_of_the_two_llrp_versions() {
        let e = error(
            "[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 1 = \"L1\" }\nversion = \"2.0\"\n",
        );
        assert!(e.contains("llrp[0].version"), "{e}");
        let ok = load(
            "[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 1 = \"L1\" }\nversion = \"1.1\"\n",
        )
        .expect("1.1 loads");
        assert_eq!(ok.llrp[0].version, 2);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let e =
            error("[[llrp]]\nname = \"r1\"\nhost = \"h\"\nantennas = { 1 = \"L1\" }\npower = 3\n");
        assert!(e.contains("power"), "{e}");
    }
}
