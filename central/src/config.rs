//! Central's configuration: a typed [`Config`], loadable from TOML (`central serve
//! --config FILE`). Unknown keys are refused with the key and line, so a misspelt setting
//! never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// PEM files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert_pem: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
    /// CA(s) that sign agents' client certificates. When set, central asks every client
    /// for a certificate (browsers may still connect without one) and an agent token
    /// registered with a certificate is accepted only with that certificate.
    #[serde(default)]
    pub client_ca_pem: Option<PathBuf>,
}

/// A public key central publishes besides its own signing key (the next key during a
/// rotation, or the previous one while agents move over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedKey {
    pub key_id: String,
    /// Hex of the 32-byte ed25519 public key.
    pub public_key: String,
}

/// `[store]`: where central keeps its data when it is not the redb file `store_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database` (or `postgresql://…`, with the
    /// usual query parameters such as `sslmode`).
    pub url: PgUrl,
    /// Months of events to keep: whole monthly partitions older than this many months
    /// before the current one are dropped (checked at start and hourly). Absent: events
    /// are kept for ever. Cases, alerts, the registry, audit, hourly figures and the
    /// chain keys that make ingest idempotent are kept regardless (docs/scale-out.md).
    #[serde(default)]
    pub retention_months: Option<std::num::NonZeroU32>,
    /// PEM file of the CA that signed the database server's certificate: connections
    /// then use TLS (as the URL's `sslmode` says; `prefer` by default) and trust only
    /// this CA. Absent: plain connections (`sslmode=require` is refused).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

/// A PostgreSQL connection URL; checked for its scheme when the configuration is read,
/// and shown without its password.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PgUrl(String);

impl PgUrl {
    /// The URL as written, password included (for connecting).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the scheme and that the rest parses as a PostgreSQL connection string.
    ///
    /// # Errors
    /// Saying what is wrong, without echoing a password.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("expected a URL starting with postgres:// or postgresql://".into());
        }
        url.parse::<postgres::Config>()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        Ok(Self(url.to_owned()))
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // postgres://user:secret@host/db → postgres://user:***@host/db
        let s = &self.0;
        let shown = match (s.find("://"), s.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &s[scheme + 3..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        format!("{}{}:***{}", &s[..scheme + 3], &userinfo[..colon], &s[at..])
                    }
                    None => s.clone(),
                }
            }
            _ => s.clone(),
        };
        f.write_str(&shown)
    }
}

impl<'de> Deserialize<'de> for PgUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PgUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn default_stale_after() -> Duration {
    Duration::from_secs(60)
}
fn default_gap_alert_after() -> Duration {
    Duration::from_secs(300)
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_argon2_m_cost_kib() -> u32 {
    19 * 1024
}
fn default_argon2_t_cost() -> u32 {
    2
}

/// Everything `central serve` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// The redb store file (the embedded default). Leave it out when `[store] url`
    /// names a PostgreSQL database instead.
    #[serde(default)]
    pub store_path: PathBuf,
    /// `[store]`: a PostgreSQL database instead of the redb file.
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// The ed25519 key file written by `central keys generate`.
    pub signing_key_path: PathBuf,
    /// HTTPS certificate and key. Required unless plain HTTP is explicitly allowed.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve plain HTTP; only honoured when `listen` is a loopback address.
    #[serde(default)]
    pub allow_plain_http_on_loopback: bool,
    /// A gate without a heartbeat for this long is reported stale.
    #[serde(default = "default_stale_after", with = "humantime_serde")]
    pub stale_after: Duration,
    /// A hole in an agent's sequence older than this raises a `GAP` alert.
    #[serde(default = "default_gap_alert_after", with = "humantime_serde")]
    pub gap_alert_after: Duration,
    /// Lifetime of a staff login session.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Argon2id memory cost for staff passwords, KiB (OWASP minimum: 19 MiB with t=2).
    #[serde(default = "default_argon2_m_cost_kib")]
    pub argon2_m_cost_kib: u32,
    /// Argon2id iterations.
    #[serde(default = "default_argon2_t_cost")]
    pub argon2_t_cost: u32,
    /// Extra public keys listed at `GET /api/v1/registry/keys`.
    #[serde(default)]
    pub published_keys: Vec<PublishedKey>,
    /// Locations and time zones for the EPCIS export (`[export]`, see
    /// [`crate::export::ExportConfig`]).
    #[serde(default)]
    pub export: crate::export::ExportConfig,
    /// Requests per second each client address may make to the staff API and the
    /// dashboard (a token bucket; `0` turns the limit off). Agents' ingest and heartbeats
    /// are not counted: they are authenticated per gate and bounded by batch size.
    #[serde(default = "default_rate_limit_per_s")]
    pub rate_limit_per_s: u32,
    /// Burst allowance of that bucket.
    #[serde(default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// Folder under which chunked snapshots' files are written (about the port's
    /// registry as JSON per snapshot kept, at most [`crate::snapshots::MAX_KEPT`]); the
    /// system's temporary folder when left out.
    #[serde(default)]
    pub snapshot_dir: Option<PathBuf>,
}

fn default_rate_limit_per_s() -> u32 {
    50
}
fn default_rate_limit_burst() -> u32 {
    200
}

impl Config {
    /// A configuration with defaults for everything but the three paths and addresses;
    /// no TLS and no plain HTTP (set one of them).
    #[must_use]
    pub fn new(listen: SocketAddr, store_path: PathBuf, signing_key_path: PathBuf) -> Self {
        Self {
            listen,
            store_path,
            store: None,
            signing_key_path,
            tls: None,
            allow_plain_http_on_loopback: false,
            stale_after: default_stale_after(),
            gap_alert_after: default_gap_alert_after(),
            session_ttl: default_session_ttl(),
            argon2_m_cost_kib: default_argon2_m_cost_kib(),
            argon2_t_cost: default_argon2_t_cost(),
            published_keys: Vec::new(),
            export: crate::export::ExportConfig::default(),
            rate_limit_per_s: default_rate_limit_per_s(),
            rate_limit_burst: default_rate_limit_burst(),
            snapshot_dir: None,
        }
    }

    /// A configuration for a central listening on `listen` whose store is
    /// `dir/central.redb` and whose registry signing key is generated now at
    /// `dir/central-signing.key`; the rest is the defaults of [`Config::new`].
    ///
    /// # Errors
    /// The key cannot be generated or written.
    pub fn with_new_key_in(dir: &Path, listen: SocketAddr) -> anyhow::Result<Self> {
        let key = dir.join("central-signing.key");
        crate::signing::generate_signing_key(&key)?;
        Ok(Self::new(listen, dir.join("central.redb"), key))
    }

    /// Parses TOML text. Relative paths stay relative to the working directory.
    ///
    /// # Errors
    /// The TOML error, which names the offending key with its line and column.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("invalid central configuration: {e}"))?;
        match (&cfg.store, cfg.store_path.as_os_str().is_empty()) {
            (None, true) => anyhow::bail!(
                "invalid central configuration: missing field `store_path` (the redb store \
                 file), or a `[store]` table with `url` for PostgreSQL"
            ),
            (Some(_), false) => anyhow::bail!(
                "invalid central configuration: both `store_path` and `[store] url` are set; \
                 central uses one store, remove the other"
            ),
            _ => Ok(cfg),
        }
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// When the file cannot be read, or as [`Config::from_toml`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration central refuses, and what its message must name.
    #[test]
    fn refusals_name_what_is_wrong() {
        let cases: [(&str, &str, &[&str]); 4] = [
            (
                "an unknown key, with its line",
                "listen = \"127.0.0.1:1\"\nstore_path = \"s\"\nsigning_key_path = \"k\"\nstale_afterr = \"5s\"\n",
                &["stale_afterr", "line 4"],
            ),
            (
                "a store url that is not postgres, with its line",
                "listen = \"127.0.0.1:1\"\nsigning_key_path = \"k\"\n[store]\nurl = \"mysql://x@y/z\"\n",
                &["postgres://", "line 4", "url"],
            ),
            (
                "no store: exactly one is configured",
                "listen = \"127.0.0.1:1\"\nsigning_key_path = \"k\"\n",
                &["store_path", "[store]"],
            ),
            (
                "two stores: exactly one is configured",
                "listen = \"127.0.0.1:1\"\nstore_path = \"s\"\nsigning_key_path = \"k\"\n[store]\nurl = \"postgres://u@h/d\"\n",
                &["both"],
            ),
        ];
        for (case, text, named) in cases {
            let err = format!("{:#}", Config::from_toml(text).expect_err(case));
            for word in named {
                assert!(err.contains(word), "{case}: {word:?} not in {err}");
            }
        }
    }

    #[test]
    fn a_postgres_url_selects_postgresql_and_hides_its_password() {
        let text = "listen = \"127.0.0.1:1\"\nsigning_key_path = \"k\"\n[store]\nurl = \"postgres://central:s3cret@db.example:5432/central\"\n";
        let c = Config::from_toml(text).expect("config");
        let url = c.store.as_ref().expect("store").url.clone();
        assert_eq!(
            url.expose(),
            "postgres://central:s3cret@db.example:5432/central"
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://central:***@db.example:5432/central"),
            "{shown}"
        );
    }

    #[test]
    fn durations_are_human_readable_and_defaulted() {
        let text = "listen = \"127.0.0.1:1\"\nstore_path = \"s\"\nsigning_key_path = \"k\"\nstale_after = \"5s\"\n";
        let c = Config::from_toml(text).expect("config");
        assert_eq!(c.stale_after, Duration::from_secs(5));
        assert_eq!(c.gap_alert_after, Duration::from_secs(300));
        assert!(c.tls.is_none() && !c.allow_plain_http_on_loopback);
    }
}
