//! Live reconfiguration: SIGHUP, or `edge-agent reload` over the control socket, reads
//! the configuration file again, validates it exactly as at start-up and applies what
//! changed without restarting the journal or the lane pipeline.
//!
//! [`plan`] is the sans-IO core: it compares the running and the new configuration
//! section by section and either lists the changes to apply or refuses, naming every
//! changed key that only a restart can apply. Every section of [`Config`] is
//! destructured without `..`, so a section added later does not compile until it is
//! classified here.
//!
//! | applied live | needs a restart |
//! |---|---|
//! | `[policy]` (every key) | `[gate]` |
//! | `[[lanes]]`: added, removed, any key changed | `[store]` |
//! | `[[devices]]`: added, removed, any key changed | `[console]` (bind, TLS) |
//! | `[[llrp]]`: added, removed, any key changed | `[central]` |
//! | `[mqtt]` `topics` (mappings added, removed, changed) | `[mqtt]` (connection) |
//! | `[clock]` `max_offset` | |
//!
//! [`Reloader`] is the shell: it loads the file, plans, hands the new lanes and policy
//! to the pipeline ([`crate::pipeline::Reconfigure`]; the pipeline journals
//! `CONFIG_APPLIED` between the last decision under the old policy and the first under
//! the new one), then has the [`DeviceSupervisor`] stop, start and restart the devices
//! that changed, counts the outcome in `aeogate_config_reloads_total{outcome}` and keeps
//! the last outcome for the console. [`serve_control`] answers `edge-agent reload` on a
//! Unix socket beside the store (`<store path>.control`, mode 0600).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::{
    CentralConfig, Config, ConfigError, ConsoleConfig, DeviceConfig, DeviceKind, GateConfig,
    LaneConfig, LlrpReaderConfig, MqttConfig, StoreConfig, TopicMap,
};
use crate::decider::Policy;
use crate::devices::DeviceSupervisor;
use crate::live::Lanes;
use crate::pipeline::Reconfigure;
use crate::sources::mqtt::TopicMappings;

/// Longest a reload waits for the pipeline to take the new configuration.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `edge-agent reload` waits for the agent's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The keys listed in the first braces whose values differ between `$old` and `$new`,
/// each as `$prefix` and the key. `$new` is destructured without `..`, so a field added
/// to the section later does not compile until it is listed: compared, or skipped (a key
/// compared by hand, or one that changes live).
macro_rules! changed_keys {
    ($prefix:literal, $old:expr, $new:expr,
     $section:ident { $($key:ident),* $(,)? } skip { $($skip:ident),* $(,)? }) => {{
        let $section { $($key,)* $($skip: _,)* } = $new;
        let mut keys = Vec::new();
        $(
            if &$old.$key != $key {
                keys.push(concat!($prefix, stringify!($key)).into());
            }
        )*
        keys
    }};
}

/// What a new configuration changes, all of it applicable live.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// One line per change, for the journal, the log and the answer.
    pub changes: Vec<String>,
    /// Policy id before and after (equal when the policy did not change).
    pub old_policy: String,
    pub new_policy: String,
    /// The lanes to run with from now on.
    pub lanes: Vec<LaneConfig>,
    /// The policy to decide with from now on.
    pub policy: Policy,
    /// The MQTT topic mappings from now on, when they change.
    pub mqtt_topics: Option<Vec<TopicMap>>,
    /// The clock's bound (`clock.max_offset`) from now on, when it changes.
    pub clock_max_offset: Option<std::time::Duration>,
    /// The serial devices and LLRP readers from now on, when any of them changes.
    pub devices: Option<(Vec<DeviceConfig>, Vec<LlrpReaderConfig>)>,
}

impl Plan {
    /// Nothing changes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Why a new configuration cannot be applied to the running agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("needs a restart to change: {}", keys.join(", "))]
pub struct Refused {
    /// The changed keys (or sections) that only a restart applies.
    pub keys: Vec<String>,
}

/// Compares the running configuration with a new one (both validated).
///
/// # Errors
/// [`Refused`] naming every changed key that needs a restart; nothing is applied then.
pub fn plan(old: &Config, new: &Config) -> Result<Plan, Refused> {
    let Config {
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
    } = new;
    let mut restart: Vec<String> =
        changed_keys!("gate.", old.gate, gate, GateConfig { id, name, port } skip {});
    restart.extend(changed_keys!("store.", old.store, store,
        StoreConfig { path, max_journal_bytes, replica_cache_bytes } skip {}));
    restart.extend(changed_keys!("console.", old.console, console,
        ConsoleConfig { bind, tls } skip {}));
    restart.extend(central_keys(old.central.as_ref(), central.as_ref()));
    restart.extend(mqtt_keys(old.mqtt.as_ref(), mqtt.as_ref()));
    // Each lane's will connection is opened at start: the set of lanes is fixed then.
    let ids = |l: &[LaneConfig]| l.iter().map(|l| l.id.clone()).collect::<Vec<_>>();
    if mqtt.as_ref().is_some_and(|m| m.lane_wills) && ids(&old.lanes) != ids(lanes) {
        restart.push("lanes (added or removed, with mqtt.lane_wills)".to_string());
    }
    if !restart.is_empty() {
        return Err(Refused { keys: restart });
    }

    let mut changes = Vec::new();
    let mqtt_topics = match (&old.mqtt, mqtt) {
        (Some(o), Some(n)) if o.topics != n.topics => {
            changes.extend(topic_changes(&o.topics, &n.topics));
            Some(n.topics.clone())
        }
        _ => None,
    };
    // `[clock]`: the bound applies live (the clock judges its samples against it).
    let clock_max_offset = (old.clock != *clock).then(|| {
        changes.push(format!(
            "clock.max_offset {:?} → {:?}",
            old.clock.max_offset, clock.max_offset
        ));
        clock.max_offset
    });
    let old_policy = old.policy.id();
    let new_policy = policy.id();
    if old.policy != *policy {
        changes.push(format!("policy {old_policy} → {new_policy}"));
    }
    changes.extend(item_changes(
        "lane",
        &old.lanes,
        lanes,
        |l| l.id.as_str(),
        lane_keys,
    ));
    changes.extend(item_changes(
        "device",
        &old.devices,
        devices,
        |d| d.name.as_str(),
        device_keys,
    ));
    changes.extend(item_changes(
        "llrp reader",
        &old.llrp,
        llrp,
        |r| r.name.as_str(),
        llrp_keys,
    ));
    let devices =
        (old.devices != *devices || old.llrp != *llrp).then(|| (devices.clone(), llrp.clone()));
    Ok(Plan {
        changes,
        old_policy,
        new_policy,
        lanes: lanes.clone(),
        policy: policy.clone(),
        mqtt_topics,
        clock_max_offset,
        devices,
    })
}

/// One line per named item (lane, device, LLRP reader) removed, added or changed, naming
/// the changed keys: the removed ones first, then the new list in its order.
fn item_changes<T>(
    what: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &str,
    keys: impl Fn(&T, &T) -> Vec<&'static str>,
) -> Vec<String> {
    let mut out: Vec<String> = old
        .iter()
        .filter(|o| !new.iter().any(|n| name(n) == name(o)))
        .map(|o| format!("{what} {} removed", name(o)))
        .collect();
    for n in new {
        match old.iter().find(|o| name(o) == name(n)) {
            None => out.push(format!("{what} {} added", name(n))),
            Some(o) => {
                let keys = keys(o, n);
                if !keys.is_empty() {
                    out.push(format!("{what} {} changed: {}", name(n), keys.join(", ")));
                }
            }
        }
    }
    out
}

fn device_keys(old: &DeviceConfig, new: &DeviceConfig) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = changed_keys!("", old, new,
        DeviceConfig { lane, silence_timeout, reopen_backoff_max } skip { name, kind });
    let (DeviceKind::LaneBoard { path, baud } | DeviceKind::UhfModule { path, baud }) = &new.kind;
    let (DeviceKind::LaneBoard {
        path: old_path,
        baud: old_baud,
    }
    | DeviceKind::UhfModule {
        path: old_path,
        baud: old_baud,
    }) = &old.kind;
    if std::mem::discriminant(&old.kind) != std::mem::discriminant(&new.kind) {
        keys.push("kind");
    }
    if old_path != path {
        keys.push("path");
    }
    if old_baud != baud {
        keys.push("baud");
    }
    keys
}

fn llrp_keys(old: &LlrpReaderConfig, new: &LlrpReaderConfig) -> Vec<&'static str> {
    changed_keys!("", old, new, LlrpReaderConfig {
        host, port, antennas, tx_power_dbm, keepalive, silence_timeout, unique_window,
        reconnect_backoff_max, version,
    } skip { name })
}

/// One line per MQTT topic mapping removed or added (a changed mapping is both).
fn topic_changes(old: &[TopicMap], new: &[TopicMap]) -> Vec<String> {
    let line = |m: &TopicMap, what: &str| {
        format!(
            "mqtt topic {} ({:?}, {:?}) → lane {} {what}",
            m.filter, m.kind, m.format, m.lane
        )
    };
    let mut out: Vec<String> = old
        .iter()
        .filter(|m| !new.contains(m))
        .map(|m| line(m, "removed"))
        .collect();
    out.extend(
        new.iter()
            .filter(|m| !old.contains(m))
            .map(|m| line(m, "added")),
    );
    out
}

fn lane_keys(old: &LaneConfig, new: &LaneConfig) -> Vec<&'static str> {
    changed_keys!("", old, new, LaneConfig {
        name, routes, presence_loop, transaction_timeout, quiet_close, pre_open_grace,
        departure_grace,
    } skip { id })
}

/// An optional section in both configurations, or the keys its presence changed: none
/// when absent from both, the section itself when added or removed.
fn both<'a, T>(
    old: Option<&'a T>,
    new: Option<&'a T>,
    section: &str,
) -> Result<(&'a T, &'a T), Vec<String>> {
    match (old, new) {
        (Some(o), Some(n)) => Ok((o, n)),
        (None, None) => Err(Vec::new()),
        _ => Err(vec![section.to_string()]),
    }
}

fn central_keys(old: Option<&CentralConfig>, new: Option<&CentralConfig>) -> Vec<String> {
    let (old, new) = match both(old, new, "central") {
        Ok(pair) => pair,
        Err(keys) => return keys,
    };
    let mut keys: Vec<String> = changed_keys!("central.", old, new, CentralConfig {
        token, ca_cert, client_cert, client_key, registry_keys, uplink_batch,
        heartbeat_every, poll_wait,
    } skip { url, urls });
    // `url` is the one-address spelling of `urls`.
    if old.url != new.url || old.urls != new.urls {
        keys.insert(0, "central.urls".to_string());
    }
    keys
}

fn mqtt_keys(old: Option<&MqttConfig>, new: Option<&MqttConfig>) -> Vec<String> {
    let (old, new) = match both(old, new, "mqtt") {
        Ok(pair) => pair,
        Err(keys) => return keys,
    };
    // Topic mappings change live (`plan`); one will connection per lane is opened at start.
    let mut keys: Vec<String> = changed_keys!("mqtt.", old, new, MqttConfig {
        host, port, client_id, username, password, lane_topic_prefix, availability_topic,
        lane_wills,
    } skip { tls, topics });
    // The TLS settings are named by their file key.
    if old.tls != new.tls {
        keys.push("mqtt.ca_cert".to_string());
    }
    keys
}

/// The result of one reload, as answered to `edge-agent reload` and shown on the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// When the reload was asked for.
    pub at: Timestamp,
    /// The file read.
    pub file: String,
    #[serde(flatten)]
    pub result: OutcomeKind,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The changes are in effect.
    Applied {
        old_policy: String,
        new_policy: String,
        changes: Vec<String>,
    },
    /// The file holds the configuration already running.
    Unchanged,
    /// Nothing was applied; the running configuration stays.
    Refused {
        /// The whole message (file, line, key, what is wrong).
        error: String,
        /// The key at fault, when one is.
        key: Option<String>,
        /// Its line in the file, when known.
        line: Option<usize>,
    },
}

impl Outcome {
    /// Whether nothing was applied because the file was refused.
    #[must_use]
    pub fn is_refused(&self) -> bool {
        matches!(self.result, OutcomeKind::Refused { .. })
    }

    /// The answer printed by `edge-agent reload`, several lines.
    #[must_use]
    pub fn to_text(&self) -> String {
        match &self.result {
            OutcomeKind::Applied {
                old_policy,
                new_policy,
                changes,
            } => {
                let mut s = format!(
                    "applied {} ({} change{}); policy {old_policy} → {new_policy}",
                    self.file,
                    changes.len(),
                    if changes.len() == 1 { "" } else { "s" }
                );
                for c in changes {
                    s.push_str("\n  ");
                    s.push_str(c);
                }
                s
            }
            OutcomeKind::Unchanged => format!("{}: no change", self.file),
            OutcomeKind::Refused { error, .. } => {
                format!("refused: {error}; the running configuration stays")
            }
        }
    }
}

/// The last reload's outcome, for the console.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    last: Mutex<Option<Outcome>>,
    /// The policy's staleness bound since the last applied reload (the console shows
    /// replica freshness against the bound the decider uses).
    staleness_bound: Mutex<Option<Duration>>,
}

impl ReloadStatus {
    /// The last outcome, if any reload happened since start.
    #[must_use]
    pub fn last(&self) -> Option<Outcome> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    fn set(&self, outcome: Outcome) {
        if let Ok(mut l) = self.last.lock() {
            *l = Some(outcome);
        }
    }

    /// The staleness bound of the policy applied by the last reload, if any.
    #[must_use]
    pub fn staleness_bound(&self) -> Option<Duration> {
        self.staleness_bound.lock().ok().and_then(|b| *b)
    }
}

/// Re-reads and applies the configuration of the running agent.
#[derive(Debug)]
pub struct Reloader {
    /// The file the agent was started with.
    path: PathBuf,
    /// The configuration running now; the lock also makes reloads one at a time.
    current: tokio::sync::Mutex<Config>,
    pipeline: mpsc::Sender<Reconfigure>,
    status: Arc<ReloadStatus>,
    /// The console's lanes.
    lanes: Lanes,
    /// The MQTT connection's topic mappings, when MQTT is configured.
    mqtt: Option<TopicMappings>,
    /// The clock whose bound `clock.max_offset` sets.
    clock: Arc<crate::clock::Clock>,
    /// Runs the serial devices and LLRP readers.
    devices: Option<Arc<DeviceSupervisor>>,
}

impl Reloader {
    /// A reloader for an agent started from `path` with `running`.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: PathBuf,
        running: Config,
        pipeline: mpsc::Sender<Reconfigure>,
        status: Arc<ReloadStatus>,
        lanes: Lanes,
        mqtt: Option<TopicMappings>,
        clock: Arc<crate::clock::Clock>,
        devices: Option<Arc<DeviceSupervisor>>,
    ) -> Self {
        Self {
            path,
            current: tokio::sync::Mutex::new(running),
            pipeline,
            status,
            lanes,
            mqtt,
            clock,
            devices,
        }
    }

    /// Reads `file` (the agent's own file when `None`), validates it and applies it.
    pub async fn reload(&self, file: Option<&Path>) -> Outcome {
        let path = file.unwrap_or(&self.path).to_path_buf();
        let at = Timestamp::now();
        let mut current = self.current.lock().await;
        let result = self.apply(&path, &mut current).await;
        let outcome = Outcome {
            at,
            file: path.display().to_string(),
            result,
        };
        let label = match &outcome.result {
            OutcomeKind::Applied { changes, .. } => {
                tracing::info!(file = %outcome.file, ?changes, "configuration reloaded");
                "applied"
            }
            OutcomeKind::Unchanged => {
                tracing::info!(file = %outcome.file, "configuration reloaded: no change");
                "unchanged"
            }
            OutcomeKind::Refused { error, .. } => {
                tracing::error!(file = %outcome.file, %error, "configuration reload refused; the running configuration stays");
                "refused"
            }
        };
        metrics::counter!("aeogate_config_reloads_total", "outcome" => label).increment(1);
        self.status.set(outcome.clone());
        outcome
    }

    async fn apply(&self, path: &Path, current: &mut Config) -> OutcomeKind {
        let load_path = path.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&load_path)).await;
        let new = match loaded {
            Ok(Ok(cfg)) => cfg,
            Ok(Err(e)) => return refused_by(&e),
            Err(e) => {
                return OutcomeKind::Refused {
                    error: format!("loading the configuration failed: {e}"),
                    key: None,
                    line: None,
                };
            }
        };
        let plan = match plan(current, &new) {
            Ok(p) => p,
            Err(e) => {
                return OutcomeKind::Refused {
                    error: format!("{}: {e}", path.display()),
                    key: e.keys.first().cloned(),
                    line: None,
                };
            }
        };
        if plan.is_empty() {
            return OutcomeKind::Unchanged;
        }
        let (done, applied) = oneshot::channel();
        let msg = Reconfigure {
            lanes: plan.lanes.clone(),
            policy: plan.policy.clone(),
            old_policy: plan.old_policy.clone(),
            changes: plan.changes.clone(),
            done,
        };
        // Once the pipeline has the message it applies it between two events, so the
        // answer is awaited without a bound: it comes, or the pipeline stopped (shutdown)
        // and dropped the message unapplied.
        let sent = tokio::time::timeout(APPLY_TIMEOUT, self.pipeline.send(msg)).await;
        if !matches!(sent, Ok(Ok(()))) || applied.await.is_err() {
            return OutcomeKind::Refused {
                error: "the lane pipeline did not take the new configuration (stopping?)".into(),
                key: None,
                line: None,
            };
        }
        if let (Some(maps), Some(link)) = (plan.mqtt_topics, &self.mqtt)
            && let Err(e) = link.replace(maps).await
        {
            tracing::warn!(error = %format!("{e:#}"), "new MQTT topic mappings not subscribed");
        }
        if let Some(bound) = plan.clock_max_offset {
            self.clock.set_max_offset(bound);
        }
        // After the pipeline took the new lanes: a device's lane is always configured
        // (validation refuses a device naming a lane that no [[lanes]] entry defines).
        if let (Some((serial, llrp)), Some(supervisor)) = (&plan.devices, &self.devices) {
            supervisor.apply(serial, llrp).await;
        }
        self.lanes.set(&plan.lanes);
        if let Ok(mut b) = self.status.staleness_bound.lock() {
            *b = Some(plan.policy.staleness_bound);
        }
        *current = new;
        OutcomeKind::Applied {
            old_policy: plan.old_policy,
            new_policy: plan.new_policy,
            changes: plan.changes,
        }
    }
}

fn refused_by(e: &ConfigError) -> OutcomeKind {
    match e {
        ConfigError::Invalid { line, key, .. } => OutcomeKind::Refused {
            error: e.to_string(),
            key: (!key.is_empty()).then(|| key.clone()),
            line: Some(*line),
        },
        ConfigError::Io { .. } => OutcomeKind::Refused {
            error: e.to_string(),
            key: None,
            line: None,
        },
    }
}

/// The control socket of the agent whose store is at `store`: `<store path>.control`.
#[must_use]
pub fn control_socket_path(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_owned();
    s.push(".control");
    PathBuf::from(s)
}

/// A request on the control socket (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Reload, from `config` or else the agent's own file.
    Reload { config: Option<PathBuf> },
}

/// Answers `edge-agent reload` on the control socket until `shutdown`; the socket file is
/// removed at the end.
///
/// # Errors
/// The socket cannot be bound or given mode 0600.
#[cfg(unix)]
pub fn serve_control(
    path: &Path,
    reloader: Arc<Reloader>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use std::os::unix::fs::PermissionsExt as _;

    use anyhow::Context as _;
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

    // The store is locked by this process, so a socket file left here is a stale one.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the control socket {}", path.display()))?;
    let path = path.to_path_buf();
    Ok(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                () = shutdown.cancelled() => break,
            };
            let Ok((stream, _)) = conn else { continue };
            let reloader = reloader.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut read = tokio::io::BufReader::new(read.take(64 * 1024));
                let got = tokio::select! {
                    r = tokio::time::timeout(Duration::from_secs(10), read.read_line(&mut line)) => r,
                    () = shutdown.cancelled() => return,
                };
                if !matches!(got, Ok(Ok(n)) if n > 0) {
                    return;
                }
                let answer = match serde_json::from_str::<ControlRequest>(&line) {
                    Ok(ControlRequest::Reload { config }) => {
                        serde_json::to_string(&reloader.reload(config.as_deref()).await)
                            .unwrap_or_default()
                    }
                    Err(e) => {
                        serde_json::json!({ "error": format!("bad request: {e}") }).to_string()
                    }
                };
                let _ = write.write_all(answer.as_bytes()).await;
                let _ = write.write_all(b"\n").await;
                let _ = write.shutdown().await;
            });
        }
        let _ = std::fs::remove_file(&path);
    })
}

/// Asks the agent listening on `socket` to reload (from `config`, or its own file) and
/// returns its answer.
///
/// # Errors
/// No agent answers on the socket, or the answer is not one.
#[cfg(unix)]
pub async fn request_reload(socket: &Path, config: Option<PathBuf>) -> anyhow::Result<Outcome> {
    use anyhow::Context as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "no running agent answers on {} (is it running, with this configuration's store?)",
                socket.display()
            )
        })?;
    let mut req = serde_json::to_string(&ControlRequest::Reload { config })?;
    req.push('\n');
    stream.write_all(req.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_string(&mut answer))
        .await
        .context("the agent did not answer in time")??;
    serde_json::from_str(answer.trim())
        .with_context(|| format!("unexpected answer from the agent: {}", answer.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config::{BASE, cfg, with};

    #[test]
    fn the_same_configuration_changes_nothing() {
        let p = plan(&cfg(BASE), &cfg(BASE)).expect("live");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.old_policy, p.new_policy);
    }

    #[test]
    fn a_policy_change_is_live_and_names_both_ids() {
        let old = cfg(BASE);
        let new = cfg(&BASE.replace("name = \"p1\"", "name = \"p2\""));
        let p = plan(&old, &new).expect("live");
        assert_eq!(p.changes.len(), 1, "{p:?}");
        assert!(p.old_policy.starts_with("p1#") && p.new_policy.starts_with("p2#"));
        assert!(p.changes[0].contains(&p.old_policy) && p.changes[0].contains(&p.new_policy));
    }

    #[test]
    fn the_clock_bound_is_live() {
        let new = with(
            r#"
[clock]
max_offset = "5s"
"#,
        );
        let p = plan(&cfg(BASE), &new).expect("live");
        assert_eq!(p.clock_max_offset, Some(std::time::Duration::from_secs(5)));
        assert_eq!(p.changes, vec!["clock.max_offset 2s → 5s".to_string()]);
        let same = plan(&cfg(BASE), &cfg(BASE)).expect("live");
        assert_eq!(same.clock_max_offset, None);
    }

    #[test]
    fn lanes_added_removed_and_changed_are_live() {
        let old = with(
            r#"
[[lanes]]
id = "L2"
name = "Lane two"
routes = { fast = "Exit A", standard = "Booth 2", inspect = "Bay 4" }
"#,
        );
        let new = cfg(&format!(
            "{}{}",
            BASE.replace("Booth 2", "Booth 3"),
            r#"
[[lanes]]
id = "L3"
name = "Lane three"
routes = { fast = "Exit A", standard = "Booth 2", inspect = "Bay 4" }
"#
        ));
        let p = plan(&old, &new).expect("live");
        assert_eq!(
            p.changes,
            vec![
                "lane L2 removed".to_string(),
                "lane L1 changed: routes".to_string(),
                "lane L3 added".to_string(),
            ]
        );
        assert_eq!(p.lanes, new.lanes);
    }

    const BOARD: &str = "\n[[devices]]\nname = \"L1-board\"\nlane = \"L1\"\nkind = \"lane_board\"\npath = \"/dev/ttyUSB0\"\n";
    const READER: &str =
        "\n[[llrp]]\nname = \"R1\"\nhost = \"192.0.2.7\"\nantennas = { 1 = \"L1\" }\n";

    #[test]
    fn devices_added_removed_and_changed_are_live() {
        let none = cfg(BASE);
        let one = with(BOARD);
        let p = plan(&none, &one).expect("live");
        assert_eq!(p.changes, vec!["device L1-board added".to_string()]);
        assert_eq!(p.devices, Some((one.devices.clone(), Vec::new())));
        let moved = with(&BOARD.replace("ttyUSB0", "ttyUSB1"));
        let p = plan(&one, &moved).expect("live");
        assert_eq!(p.changes, vec!["device L1-board changed: path".to_string()]);
        let p = plan(&one, &none).expect("live");
        assert_eq!(p.changes, vec!["device L1-board removed".to_string()]);
        assert_eq!(p.devices, Some((Vec::new(), Vec::new())));
        assert_eq!(plan(&one, &one).expect("live").devices, None);
    }

    #[test]
    fn a_device_on_a_removed_lane_is_refused_before_planning() {
        let two = "\n[[lanes]]\nid = \"L2\"\nname = \"Lane two\"\nroutes = { fast = \"Exit A\", standard = \"Booth 2\", inspect = \"Bay 4\" }\n";
        let board_on_l2 = BOARD.replace("lane = \"L1\"", "lane = \"L2\"");
        assert!(Config::from_toml_str(&format!("{BASE}{two}{board_on_l2}"), "a.toml").is_ok());
        let e = Config::from_toml_str(&format!("{BASE}{board_on_l2}"), "a.toml")
            .expect_err("the board's lane is gone");
        let OutcomeKind::Refused { key, .. } = refused_by(&e) else {
            panic!("refused");
        };
        assert_eq!(key.as_deref(), Some("devices[0].lane"), "{e}");
    }

    #[test]
    fn llrp_readers_are_live() {
        let one = with(READER);
        let p = plan(&cfg(BASE), &one).expect("live");
        assert_eq!(p.changes, vec!["llrp reader R1 added".to_string()]);
        let more = with(&READER.replace("{ 1 = \"L1\" }", "{ 1 = \"L1\", 2 = \"L1\" }"));
        let p = plan(&one, &more).expect("live");
        assert_eq!(
            p.changes,
            vec!["llrp reader R1 changed: antennas".to_string()]
        );
        assert_eq!(p.devices, Some((Vec::new(), more.llrp.clone())));
        let p = plan(&one, &cfg(BASE)).expect("live");
        assert_eq!(p.changes, vec!["llrp reader R1 removed".to_string()]);
    }

    #[test]
    fn restart_only_keys_refuse_the_whole_reload() {
        let cases = [
            ("id = \"G1\"", "id = \"G2\"", "gate.id"),
            ("port = \"PORT-A\"", "port = \"PORT-B\"", "gate.port"),
            ("agent.redb", "other.redb", "store.path"),
        ];
        for (from, to, key) in cases {
            let new = cfg(&BASE
                .replace(from, to)
                .replace("name = \"p1\"", "name = \"p9\""));
            let e = plan(&cfg(BASE), &new).expect_err(key);
            assert_eq!(e.keys, vec![key.to_string()], "{from} → {to}");
        }
    }

    #[test]
    fn console_bind_and_sections_added_need_a_restart() {
        let e = plan(
            &cfg(BASE),
            &with("\n[console]\nbind = \"127.0.0.1:9999\"\n"),
        )
        .expect_err("bind");
        assert_eq!(e.keys, vec!["console.bind".to_string()]);
        let e = plan(
            &cfg(BASE),
            &with("\n[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"a\"\n"),
        )
        .expect_err("mqtt");
        assert_eq!(e.keys, vec!["mqtt".to_string()]);
        assert!(e.to_string().contains("needs a restart to change: mqtt"));
    }

    const MQTT: &str = "\n[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"a\"\n\n[[mqtt.topics]]\nfilter = \"readers/l1/rfid\"\nlane = \"L1\"\nkind = \"rfid\"\n";

    #[test]
    fn mqtt_topic_mappings_are_live_and_the_connection_is_not() {
        let old = with(MQTT);
        let new = with(&MQTT.replace("readers/l1/rfid", "gate/l1/tags"));
        let p = plan(&old, &new).expect("live");
        assert_eq!(p.changes.len(), 2, "{:?}", p.changes);
        assert!(p.changes[0].contains("readers/l1/rfid") && p.changes[0].ends_with("removed"));
        assert!(p.changes[1].contains("gate/l1/tags") && p.changes[1].ends_with("added"));
        assert_eq!(p.mqtt_topics, new.mqtt.map(|m| m.topics));
        let moved = with(&MQTT.replace("127.0.0.1", "127.0.0.2"));
        let e = plan(&old, &moved).expect_err("host");
        assert_eq!(e.keys, vec!["mqtt.host".to_string()]);
    }

    #[test]
    fn with_lane_wills_the_set_of_lanes_needs_a_restart() {
        let wills = MQTT.replace(
            "client_id = \"a\"\n",
            "client_id = \"a\"\nlane_wills = true\n",
        );
        let old = with(&wills);
        let lane2 = "\n[[lanes]]\nid = \"L2\"\nname = \"Lane two\"\nroutes = { fast = \"Exit A\", standard = \"Booth 2\", inspect = \"Bay 4\" }\n";
        let new = with(&format!("{wills}{lane2}"));
        let e = plan(&old, &new).expect_err("lane added with lane wills");
        assert_eq!(e.keys.len(), 1, "{e}");
        let routes = with(&wills.replace("readers/l1/rfid", "readers/l1/tags"));
        assert!(plan(&old, &routes).is_ok(), "topic changes stay live");
    }

    #[test]
    fn a_refused_outcome_names_key_and_line() {
        let e = Config::from_toml_str(
            &BASE.replace("random_key", "random_rate_aeo = 7.0\nrandom_key"),
            "agent.toml",
        )
        .expect_err("rate out of range");
        let OutcomeKind::Refused { key, line, error } = refused_by(&e) else {
            panic!("refused");
        };
        assert_eq!(key.as_deref(), Some("policy.random_rate_aeo"));
        assert!(line.is_some_and(|l| l > 1), "{line:?}");
        assert!(error.contains("agent.toml line"), "{error}");
    }
}
