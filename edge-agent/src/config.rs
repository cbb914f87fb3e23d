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
//!
//! # Layout
//! - `types`: the validated configuration (re-exported here).
//! - `raw`: the serde form with its defaults.
//! - `span`: key paths and the lines they are on.
//! - `validate`: the checks, one method per section.

mod raw;
mod span;
mod types;
mod validate;

use std::path::Path;

use protocol::schema::LaneId;
use toml::de::DeTable;

use self::raw::RawConfig;
use self::span::{line_of, path_at};
pub use self::types::{
    CentralConfig, ClientIdentity, ClockConfig, Config, ConfigError, ConsoleConfig, ConsoleTls,
    DEPARTURE_GRACE, DeviceConfig, DeviceKind, GateConfig, LaneConfig, LlrpReaderConfig,
    MqttConfig, MqttKind, MqttTls, PRE_OPEN_GRACE, PayloadFormat, PinnedKey, Secret, StoreConfig,
    TopicMap,
};
use self::validate::Validator;
pub use self::validate::is_loopback_url;
pub use crate::decider::{Policy, Routes};

/// `[store] path` when the file does not set it.
pub const DEFAULT_STORE_PATH: &str = "/var/lib/aeogate/agent.redb";

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

/// A valid configuration of one gate with one lane (`L1`), for the crate's tests to build on.
#[cfg(test)]
pub(crate) mod test_config {
    use super::Config;

    /// The configuration's text.
    pub(crate) const BASE: &str = r#"
[gate]
id = "G1"
name = "Gate one"
port = "PORT-A"

[[lanes]]
id = "L1"
name = "Lane one"
routes = { fast = "Exit A", standard = "Booth 2", inspect = "Bay 4" }

[policy]
name = "p1"
random_key = "reload-test-random-key"

[store]
path = "/var/lib/aeogate/agent.redb"
"#;

    /// The configuration `text` (a valid one).
    pub(crate) fn cfg(text: &str) -> Config {
        Config::from_toml_str(text, "test.toml").expect("valid test configuration")
    }

    /// [`BASE`] with `extra` after it.
    pub(crate) fn with(extra: &str) -> Config {
        cfg(&format!("{BASE}{extra}"))
    }
}
