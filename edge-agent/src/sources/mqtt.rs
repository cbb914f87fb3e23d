//! MQTT: networked readers in, lane topics out (rumqttc, MQTT 3.1.1).
//!
//! One connection per agent, two tasks:
//!
//! - the **poll task** owns the rumqttc `EventLoop` and does nothing but poll it:
//!   keepalive, acks, outgoing publishes and reconnection all happen inside `poll()`. It
//!   never awaits the client's request channel (that is how rumqttc deadlocks are
//!   avoided). Each `ConnAck` bumps a connection number the outbox task watches. After a
//!   lost connection it waits as [`Reconnect`] says: the backoff starts over only after a
//!   connection stayed up for [`STABLE_AFTER`], so a broker that drops the agent right after
//!   accepting it does not get a reconnect storm.
//! - the **outbox task** ([`run_outbox`]) sends everything the agent publishes or
//!   subscribes, awaiting the request channel (back-pressure, never a dropped request). On
//!   every connection it subscribes to every mapped filter (in packets of
//!   [`SUBSCRIBE_CHUNK`]; thousands of lanes are fine), republishes every lane's retained
//!   state, then publishes `online` on the availability topic. Lane states wait in an
//!   [`Outbox`] that keeps the newest state per lane: a state replaced before it went out
//!   is counted as superseded (`aeogate_mqtt_lane_states_superseded_total`), never lost
//!   silently. On a clean stop it publishes every lane `OFFLINE` (closed), closes the
//!   lane will connections, publishes `offline`, then disconnects. The broker publishes
//!   `offline` itself (the Last Will) when the agent dies without a word, and, with
//!   `mqtt.lane_wills`, every lane's `OFFLINE` state from the lane's own will connection
//!   ([`super::lane_wills`]).
//!
//! Incoming messages: a message the broker delivers with the retain flag is an old
//! message replayed on subscription, not a fresh read: it is counted
//! (`aeogate_mqtt_retained_ignored_total`) and ignored. Payloads are parsed by
//! [`super::vendor::parse_mapped`] in the topic's format (aeogate's own,
//! [`super::payload`], or a vendor's) with limits. A payload that does not parse — too
//! large included (`aeogate_mqtt_oversized_total`; the client accepts packets up to
//! [`MAX_INCOMING_PACKET`] so that an oversized reader message never costs the connection)
//! — is counted (`aeogate_mqtt_malformed_total`), logged with its topic and passed on as
//! an `UNREADABLE` read, so the officer sees that a reader said something the agent did
//! not understand. MQTT is a transport, not a store: what must not be lost goes through
//! the journal.
//!
//! With a read log ([`MqttLink::start_logged`]) the connection uses manual acks and a
//! persistent session (`clean_session = false`, so the client id must be stable): a
//! publish is written to the read log before its PUBACK, and one the agent did not
//! acknowledge before a crash is delivered again by the broker when it reconnects. Every
//! publish is acknowledged, the ignored ones (unmapped, retained) included. The writing
//! is done by a third task, the **logged ingest** ([`run_logged_ingest`]): the poll task
//! passes it each parsed publish and goes on polling; the ingest writes everything that
//! arrived during the previous write in one read-log request (so a busy broker costs one
//! commit per group, not one per read), then acks and forwards in arrival order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use protocol::schema::{LaneId, SignState};
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter,
    TlsConfiguration, Transport,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::lane_wills::LaneWills;
use super::{AssemblerEvent, Backoff, HealthReporter};
use crate::backoff::Reconnect;
use crate::config::{MqttConfig, TopicMap};
use crate::readlog::ReadLog;

/// Largest MQTT packet accepted. Reader payloads are parsed only up to
/// [`super::payload::MAX_PAYLOAD`]; anything between that and this limit becomes an
/// `UNREADABLE` read. A larger packet cannot be skipped by the client and costs the
/// connection, so the broker should refuse publishes above it (`max_packet_size` in the
/// shipped mosquitto configuration).
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;
/// Largest packet sent (a SUBSCRIBE of [`SUBSCRIBE_CHUNK`] filters, a lane state).
pub const MAX_OUTGOING_PACKET: usize = 256 * 1024;
/// Topic filters per SUBSCRIBE packet.
pub const SUBSCRIBE_CHUNK: usize = 100;
pub use crate::backoff::STABLE_AFTER;
/// Capacity of the client's request channel (the outbox waits when it is full). The
/// broker's reads' PUBACKs go through the same channel, behind whatever lane states are
/// queued there, and the broker sends the agent no more reads than its in-flight window
/// while they wait: a short queue keeps them near its front (the outbox coalesces a lane's
/// states meanwhile). 64 against 1,024: 8,260–9,746 against 7,488–8,217 decisions/s at
/// saturation (docs/benchmarks.md, figure 10).
const REQUEST_QUEUE: usize = 64;
/// QoS 1 publishes the agent may have sent and not yet had acknowledged by the broker.
/// While that many are out the client takes no request at all, the PUBACKs of the
/// broker's reads included, so the broker's own window to the agent stalls behind the
/// lane states: with 64, two or three lane states a decision held the agent at 6,440
/// decisions/s at saturation; with 1,000, 9,201 (docs/benchmarks.md, figure 10). A lane
/// state is a few hundred bytes: 1,000 of them held for a resend are well under 1 MB.
pub const OUTGOING_INFLIGHT: u16 = 1_000;
/// How long a clean stop may take to close the lanes and say `offline`.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long a clean stop waits for the broker to confirm the lanes' `OFFLINE` states
/// before it closes the lane will connections.
const FLUSH_WITHIN: Duration = Duration::from_secs(1);

/// The availability payloads (retained; `offline` is also the Last Will).
pub const ONLINE: &str = "online";
/// See [`ONLINE`].
pub const OFFLINE: &str = "offline";

/// The JSON sent on `<prefix>/<lane>/decision` (officer-facing, with reason codes).
pub use protocol::schema::LaneState;

/// What waits to go out for one lane.
#[derive(Debug)]
struct Slot {
    /// The lane's newest state (what a new connection republishes).
    current: LaneState,
    /// `current` has not yet been handed to the client.
    state_due: bool,
    /// A decision event not yet handed to the client.
    decision: Option<LaneState>,
    /// The lane is in the ready queue.
    queued: bool,
}

/// Lane states waiting to go out, the newest per lane (sans-IO).
#[derive(Debug, Default)]
pub struct Outbox {
    slots: HashMap<LaneId, Slot>,
    ready: VecDeque<LaneId>,
}

/// What [`Outbox::put`] replaced before it went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Superseded {
    /// An unsent state of the lane was replaced by this one.
    pub state: bool,
    /// An unsent decision event of the lane was replaced by this one.
    pub decision: bool,
}

/// One lane's due messages, taken from the [`Outbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The state to retain on the sign topic.
    pub state: Option<LaneState>,
    /// The decision event for the officer topic.
    pub decision: Option<LaneState>,
}

impl Outbox {
    /// An outbox whose lanes start in the safe state (`WAITING`, no transaction): the
    /// first connection replaces whatever an earlier run left retained.
    #[must_use]
    pub fn new(lanes: &[LaneId], at: Timestamp) -> Self {
        let mut o = Self::default();
        for lane in lanes {
            o.put(&LaneState::waiting(lane, None, at));
        }
        o
    }

    /// `state` becomes its lane's newest state; a decision (not `WAITING`, `CLOSED` or
    /// `OFFLINE`) is also an event for the officer topic.
    pub fn put(&mut self, state: &LaneState) -> Superseded {
        let decided = state.decision.decided().is_some();
        let mut sup = Superseded::default();
        match self.slots.get_mut(&state.lane) {
            Some(slot) => {
                sup.state = slot.state_due;
                slot.current = state.clone();
                slot.state_due = true;
                if decided {
                    sup.decision = slot.decision.replace(state.clone()).is_some();
                }
                if !slot.queued {
                    slot.queued = true;
                    self.ready.push_back(state.lane.clone());
                }
            }
            None => {
                self.slots.insert(
                    state.lane.clone(),
                    Slot {
                        current: state.clone(),
                        state_due: true,
                        decision: decided.then(|| state.clone()),
                        queued: true,
                    },
                );
                self.ready.push_back(state.lane.clone());
            }
        }
        sup
    }

    /// The next lane's due messages, in the order lanes became due.
    pub fn take(&mut self) -> Option<Due> {
        while let Some(lane) = self.ready.pop_front() {
            let Some(slot) = self.slots.get_mut(&lane) else {
                continue;
            };
            slot.queued = false;
            let state = std::mem::take(&mut slot.state_due).then(|| slot.current.clone());
            let decision = slot.decision.take();
            if state.is_some() || decision.is_some() {
                return Some(Due { state, decision });
            }
        }
        None
    }

    /// After a new connection: every lane's current state is due again (the broker may
    /// have lost its retained messages). Pending decision events stay as they are.
    pub fn all_due(&mut self) {
        let mut lanes: Vec<&LaneId> = self.slots.keys().collect();
        lanes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let lanes: Vec<LaneId> = lanes.into_iter().cloned().collect();
        for lane in lanes {
            if let Some(slot) = self.slots.get_mut(&lane) {
                slot.state_due = true;
                if !slot.queued {
                    slot.queued = true;
                    self.ready.push_back(lane);
                }
            }
        }
    }

    /// `lane`'s current state is due again (something else may have replaced it on the
    /// broker: its will connection's `OFFLINE`). No effect for an unknown lane.
    pub fn due(&mut self, lane: &LaneId) {
        if let Some(slot) = self.slots.get_mut(lane) {
            slot.state_due = true;
            if !slot.queued {
                slot.queued = true;
                self.ready.push_back(lane.clone());
            }
        }
    }

    /// Every lane known, in id order.
    #[must_use]
    pub fn lanes(&self) -> Vec<LaneId> {
        let mut lanes: Vec<LaneId> = self.slots.keys().cloned().collect();
        lanes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        lanes
    }
}

/// Publishes lane topics. Clone freely; publishing never blocks: the state waits in the
/// outbox (the newest per lane) until the outbox task hands it to the connection.
#[derive(Debug, Clone)]
pub struct LaneTopics {
    prefix: String,
    availability: String,
    outbox: Arc<Mutex<Outbox>>,
    wake: Arc<Notify>,
    /// Told by the poll task when an UNSUBACK arrives: on a clean stop, the broker has
    /// processed every publish sent before the UNSUBSCRIBE (see [`close`]).
    unsubacked: Arc<Notify>,
}

impl LaneTopics {
    /// `<prefix>/<lane>/state`: the sign's state ([`SignState`]), retained.
    #[must_use]
    pub fn state_topic(&self, lane: &LaneId) -> String {
        format!("{}/{lane}/state", self.prefix)
    }

    /// `<prefix>/<lane>/decision`: the officer-facing decision ([`LaneState`], with
    /// reasons), not retained.
    #[must_use]
    pub fn decision_topic(&self, lane: &LaneId) -> String {
        format!("{}/{lane}/decision", self.prefix)
    }

    /// The availability topic (`online` / `offline`, retained; the Last Will).
    #[must_use]
    pub fn availability_topic(&self) -> &str {
        &self.availability
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `state` as the lane's retained state and, unless it is the waiting state,
    /// as a decision event.
    pub fn publish(&self, state: &LaneState) {
        let sup = self.outbox().put(state);
        if sup.state {
            metrics::counter!("aeogate_mqtt_lane_states_superseded_total", "topic" => "state")
                .increment(1);
        }
        if sup.decision {
            metrics::counter!("aeogate_mqtt_lane_states_superseded_total", "topic" => "decision")
                .increment(1);
        }
        self.wake.notify_one();
    }

    /// Publishes `lane`'s current state again (after its will connection came back: the
    /// broker may have published its `OFFLINE` will meanwhile).
    pub fn republish(&self, lane: &LaneId) {
        self.outbox().due(lane);
        self.wake.notify_one();
    }
}

impl super::lane_wills::WillTopics for LaneTopics {
    fn state_topic(&self, lane: &LaneId) -> String {
        LaneTopics::state_topic(self, lane)
    }
    fn republish(&self, lane: &LaneId) {
        LaneTopics::republish(self, lane);
    }
}

impl crate::actuators::LanePublisher for LaneTopics {
    fn publish(&self, state: &LaneState) {
        LaneTopics::publish(self, state);
    }
}

/// Topic mappings with an index: a publish is mapped by the first mapping (in
/// configuration order) whose filter matches its topic; filters without wildcards (one
/// per lane, the usual case) are found by a hash lookup instead of matching every filter.
#[derive(Debug)]
struct Mapped {
    maps: Vec<TopicMap>,
    /// Filter without wildcards → position of its first mapping.
    exact: HashMap<String, usize>,
    /// Positions of the mappings whose filters have wildcards, in order.
    wild: Vec<usize>,
}

impl Mapped {
    fn new(maps: Vec<TopicMap>) -> Self {
        let mut exact = HashMap::new();
        let mut wild = Vec::new();
        for (i, m) in maps.iter().enumerate() {
            if m.filter.contains(['+', '#']) {
                wild.push(i);
            } else {
                exact.entry(m.filter.clone()).or_insert(i);
            }
        }
        Self { maps, exact, wild }
    }

    /// The first mapping whose filter matches `topic`.
    fn find(&self, topic: &str) -> Option<&TopicMap> {
        let exact = self.exact.get(topic).copied();
        let wild = self
            .wild
            .iter()
            .copied()
            .take_while(|&i| exact.is_none_or(|e| i < e))
            .find(|&i| rumqttc::matches(topic, &self.maps[i].filter));
        self.maps.get(wild.or(exact)?)
    }
}

/// The topic mappings of a running MQTT connection, replaceable while it runs (live
/// reconfiguration): new filters are subscribed and dropped ones unsubscribed on the same
/// connection; every reconnection subscribes the mappings of the moment.
#[derive(Debug, Clone)]
pub struct TopicMappings {
    client: AsyncClient,
    maps: Arc<Mutex<Arc<Mapped>>>,
}

impl TopicMappings {
    fn current(&self) -> Arc<Mapped> {
        match self.maps.lock() {
            Ok(m) => m.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    /// Every mapped filter, once each, in mapping order.
    fn filters(&self) -> Vec<String> {
        let mut filters: Vec<String> = Vec::new();
        for m in &self.current().maps {
            if !filters.contains(&m.filter) {
                filters.push(m.filter.clone());
            }
        }
        filters
    }

    /// Maps publishes by `maps` from now on; subscribes the filters that are new and
    /// unsubscribes those no longer mapped.
    ///
    /// # Errors
    /// The connection task is gone (the agent is stopping).
    pub async fn replace(&self, maps: Vec<TopicMap>) -> anyhow::Result<()> {
        let before = self.filters();
        match self.maps.lock() {
            Ok(mut m) => *m = Arc::new(Mapped::new(maps)),
            Err(e) => *e.into_inner() = Arc::new(Mapped::new(maps)),
        }
        let after = self.filters();
        let added: Vec<SubscribeFilter> = after
            .iter()
            .filter(|f| !before.contains(f))
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        for chunk in added.chunks(SUBSCRIBE_CHUNK) {
            self.client
                .subscribe_many(chunk.to_vec())
                .await
                .map_err(|e| anyhow::anyhow!("MQTT subscribe not sent: {e}"))?;
        }
        for gone in before.iter().filter(|f| !after.contains(f)) {
            self.client
                .unsubscribe(gone.clone())
                .await
                .map_err(|e| anyhow::anyhow!("MQTT unsubscribe not sent: {e}"))?;
        }
        Ok(())
    }
}

/// The running MQTT connection.
#[derive(Debug)]
pub struct MqttLink {
    /// Lane topic publisher.
    pub topics: LaneTopics,
    /// The topic mappings in force (live reconfiguration replaces them).
    pub mappings: TopicMappings,
    /// The polling task (it waits for the outbox task before it ends).
    pub task: tokio::task::JoinHandle<()>,
}

/// Checks what [`MqttLink::start`] could refuse, before anything is started.
///
/// # Errors
/// As [`MqttLink::start`].
pub fn check(cfg: &MqttConfig) -> anyhow::Result<()> {
    transport(cfg).map(|_| ())
}

/// The rustls client configuration for `cfg`'s TLS settings, if any.
fn transport(cfg: &MqttConfig) -> anyhow::Result<Option<Transport>> {
    let Some(tls) = &cfg.tls else {
        return Ok(None);
    };
    let config = tls.client_config().map_err(|e| {
        anyhow::anyhow!("mqtt TLS settings (ca_cert {}): {e}", tls.ca_cert.display())
    })?;
    Ok(Some(Transport::Tls(TlsConfiguration::Rustls(Arc::new(
        config,
    )))))
}

impl MqttLink {
    /// Connects (in the background) and starts forwarding mapped topics to `events`.
    /// `lanes` are the lanes whose topics the agent owns: each starts as `WAITING`.
    /// Reconnects with backoff until `shutdown`, resubscribing and republishing retained
    /// lane states on every connection.
    ///
    /// # Errors
    /// TLS settings rustls refuses (a client key that does not fit its certificate).
    pub fn start(
        cfg: &MqttConfig,
        lanes: &[LaneId],
        events: mpsc::Sender<AssemblerEvent>,
        health: HealthReporter,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::start_logged(cfg, lanes, events, None, health, shutdown)
    }

    /// [`MqttLink::start`] with a read log: each publish's events are written durably to
    /// `log` before the publish is acknowledged to the broker (manual acks, persistent
    /// session).
    ///
    /// # Errors
    /// As [`MqttLink::start`].
    pub fn start_logged(
        cfg: &MqttConfig,
        lanes: &[LaneId],
        events: mpsc::Sender<AssemblerEvent>,
        log: Option<Arc<ReadLog>>,
        health: HealthReporter,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(10))
            .set_clean_session(log.is_none())
            .set_manual_acks(log.is_some())
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
            .set_inflight(OUTGOING_INFLIGHT)
            .set_last_will(LastWill::new(
                cfg.availability_topic.clone(),
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(u) = &cfg.username {
            let p = cfg.password.as_ref().map_or("", |p| p.expose());
            opts.set_credentials(u.clone(), p);
        }
        let tls = transport(cfg)?;
        if let Some(t) = &tls {
            opts.set_transport(t.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_QUEUE);
        let mut net = eventloop.network_options();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(5);
        eventloop.set_network_options(net);

        let topics = LaneTopics {
            prefix: cfg.lane_topic_prefix.trim_end_matches('/').to_owned(),
            availability: cfg.availability_topic.clone(),
            outbox: Arc::new(Mutex::new(Outbox::new(lanes, Timestamp::now()))),
            wake: Arc::new(Notify::new()),
            unsubacked: Arc::new(Notify::new()),
        };
        let mappings = TopicMappings {
            client: client.clone(),
            maps: Arc::new(Mutex::new(Arc::new(Mapped::new(cfg.topics.clone())))),
        };
        let maps = mappings.clone();
        let broker = format!("{}:{}", cfg.host, cfg.port);
        let (epoch_tx, epoch_rx) = watch::channel(0u64);
        let wills = cfg.lane_wills.then(|| {
            let will_topics: Arc<dyn super::lane_wills::WillTopics> = Arc::new(topics.clone());
            LaneWills::start(cfg, tls.as_ref(), lanes, &will_topics)
        });
        let unsubacked = topics.unsubacked.clone();
        let outbox = tokio::spawn(run_outbox(
            client.clone(),
            topics.clone(),
            mappings.clone(),
            epoch_rx,
            wills,
            shutdown.clone(),
        ));
        // The broker sends a client at most its in-flight window of unacknowledged QoS 1
        // publishes (mosquitto's `max_inflight_messages`, 20 by default), so this channel
        // holds at most that many: unbounded, the poll task never waits on it.
        let (logged, ingest) = match log {
            Some(log) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let ingest =
                    tokio::spawn(run_logged_ingest(rx, log, client.clone(), events.clone()));
                (Some(tx), Some(ingest))
            }
            None => (None, None),
        };
        let task = tokio::spawn(async move {
            let mut reconnect = Reconnect::new(
                Backoff::new(Duration::from_millis(250), Duration::from_secs(10)),
                STABLE_AFTER,
            );
            let mut forward: VecDeque<AssemblerEvent> = VecDeque::new();
            // Set once the agent stops: keep polling so the outbox's last publishes and
            // DISCONNECT go out, until then at the latest.
            let mut stopping: Option<tokio::time::Instant> = None;
            'poll: loop {
                // Reads waiting for the assembler are delivered before polling again: the
                // broker then holds further publishes (TCP backpressure) rather than us
                // dropping them.
                while stopping.is_none()
                    && let Some(ev) = forward.pop_front()
                {
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            stopping = Some(tokio::time::Instant::now() + STOP_GRACE);
                        }
                        sent = events.send(ev) => if sent.is_err() {
                            stopping = Some(tokio::time::Instant::now() + STOP_GRACE);
                        },
                    }
                }
                let polled = match stopping {
                    Some(deadline) => {
                        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                            Ok(p) => p,
                            Err(_) => break 'poll,
                        }
                    }
                    None => tokio::select! {
                        () = shutdown.cancelled() => {
                            stopping = Some(tokio::time::Instant::now() + STOP_GRACE);
                            continue 'poll;
                        }
                        p = eventloop.poll() => p,
                    },
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        reconnect.connected(std::time::Instant::now());
                        metrics::counter!("aeogate_mqtt_connections_total").increment(1);
                        health.up(format!("connected to {broker}"));
                        epoch_tx.send_modify(|n| *n += 1);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) if stopping.is_some() => {
                        break 'poll;
                    }
                    Ok(Event::Incoming(Packet::UnsubAck(_))) => unsubacked.notify_one(),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if stopping.is_some() {
                            continue;
                        }
                        let current = maps.current();
                        let Some(map) = current.find(&p.topic) else {
                            tracing::debug!(topic = %p.topic, "publish on an unmapped topic ignored");
                            if logged.is_some() {
                                let _ = client.try_ack(&p);
                            }
                            continue;
                        };
                        let lane = map.lane.to_string();
                        if p.retain {
                            // Delivered because we subscribed, not because a reader spoke
                            // now (MQTT 3.1.1 §3.3.1.3): an old message, not a fresh read.
                            metrics::counter!("aeogate_mqtt_retained_ignored_total", "lane" => lane)
                                .increment(1);
                            tracing::info!(topic = %p.topic, bytes = p.payload.len(), "retained message ignored (not a fresh read)");
                            if logged.is_some() {
                                let _ = client.try_ack(&p);
                            }
                            continue;
                        }
                        if p.payload.len() > super::payload::MAX_PAYLOAD {
                            metrics::counter!("aeogate_mqtt_oversized_total", "lane" => lane.clone())
                                .increment(1);
                        }
                        let device = format!("mqtt:{}", p.topic);
                        let (evs, err) =
                            super::vendor::parse_mapped(map, &device, &p.payload, Timestamp::now());
                        if let Some(e) = err {
                            metrics::counter!("aeogate_mqtt_malformed_total", "lane" => lane)
                                .increment(1);
                            tracing::warn!(topic = %p.topic, error = %e, "malformed payload; recorded as an unreadable read");
                        }
                        // Durable before the broker hears the PUBACK: the logged ingest
                        // writes it (grouped with the publishes behind it), then acks.
                        match &logged {
                            Some(logged) => {
                                if logged.send((evs, p)).is_err() {
                                    stopping = Some(tokio::time::Instant::now() + STOP_GRACE);
                                }
                            }
                            None => forward.extend(evs),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if stopping.is_some() {
                            break 'poll;
                        }
                        health.down(format!("{broker}: {e}"));
                        let wait = reconnect.lost_now();
                        if let rumqttc::ConnectionError::MqttState(
                            rumqttc::StateError::Deserialization(
                                rumqttc::Error::PayloadSizeLimitExceeded(n),
                            ),
                        ) = &e
                        {
                            tracing::error!(%broker, bytes = n, limit = MAX_INCOMING_PACKET, ?wait,
                                "the broker sent a message larger than the agent accepts; set the broker's max_packet_size to at most the limit");
                        } else {
                            tracing::warn!(%broker, error = %e, ?wait, "MQTT connection lost; reconnecting");
                        }
                        tokio::select! {
                            () = shutdown.cancelled() => break 'poll,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            health.down("stopped");
            drop(eventloop);
            drop(logged);
            if let Some(ingest) = ingest {
                let _ = tokio::time::timeout(STOP_GRACE, ingest).await;
            }
            let _ = outbox.await;
        });
        Ok(Self {
            topics,
            mappings,
            task,
        })
    }
}

/// Most publishes the logged ingest writes to the read log in one go.
const INGEST_GROUP: usize = 512;

/// The logged ingest: takes every publish the poll task passed on since the last write,
/// writes their events to the read log in one request (one commit for all of them,
/// grouped further with the other sources by [`ReadLog`]), then, in the order received,
/// acknowledges each publish (MQTT 3.1.1 §4.6: PUBACKs in order) and forwards its events
/// to the assembler. A failed write is counted and logged by the read log; the publishes
/// are still acknowledged and forwarded, as without a log. Ends when the poll task stops
/// passing publishes or the assembler is gone.
async fn run_logged_ingest(
    mut rx: mpsc::UnboundedReceiver<(Vec<AssemblerEvent>, rumqttc::Publish)>,
    log: Arc<ReadLog>,
    client: AsyncClient,
    events: mpsc::Sender<AssemblerEvent>,
) {
    let mut group = Vec::new();
    while let Some(first) = rx.recv().await {
        group.push(first);
        while group.len() < INGEST_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let all: Vec<AssemblerEvent> = group
            .iter()
            .flat_map(|(evs, _)| evs.iter().cloned())
            .collect();
        let _ = log.log(&all).await;
        for (evs, p) in group.drain(..) {
            // Awaits room in the client's request channel; the poll task keeps polling,
            // so the channel drains.
            if let Err(e) = client.ack(&p).await {
                tracing::warn!(topic = %p.topic, error = %e, "PUBACK not sent (the connection task is gone); the broker delivers the publish again");
            }
            for ev in evs {
                if events.send(ev).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends lane states, subscriptions and availability through the client (see the module
/// documentation). Awaits the request channel, so it must not run in the poll task.
async fn run_outbox(
    client: AsyncClient,
    topics: LaneTopics,
    mappings: TopicMappings,
    mut epoch: watch::Receiver<u64>,
    wills: Option<LaneWills>,
    shutdown: CancellationToken,
) {
    let mut connected = false;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            changed = epoch.changed() => {
                if changed.is_err() {
                    return;
                }
                connected = true;
                if on_connect(&client, &topics, &mappings.filters(), &shutdown).await.is_err() {
                    break;
                }
                continue;
            }
            () = topics.wake.notified(), if connected => {}
        }
        if drain(&client, &topics, &shutdown).await.is_err() {
            break;
        }
    }
    if !shutdown.is_cancelled() {
        // The connection task is gone: nothing more can be sent; the broker publishes the
        // lanes' OFFLINE wills.
        return;
    }
    if connected {
        let grace = STOP_GRACE.saturating_sub(Duration::from_millis(500));
        let _ = tokio::time::timeout(grace, close(&client, &topics, wills)).await;
    } else {
        // The agent cannot say it itself: the lanes' wills say OFFLINE.
        drop(wills);
        let _ = client.try_disconnect();
    }
}

/// Why the outbox stopped sending.
#[derive(Debug)]
struct Stopped;

/// One publish, awaiting room in the request channel; `Stopped` on shutdown or when the
/// event loop is gone (counted as dropped then).
async fn send(
    client: &AsyncClient,
    shutdown: &CancellationToken,
    topic: String,
    retain: bool,
    body: Vec<u8>,
) -> Result<(), Stopped> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Err(Stopped),
        r = client.publish(topic.clone(), QoS::AtLeastOnce, retain, body) => r.map_err(|e| {
            metrics::counter!("aeogate_mqtt_publish_dropped_total").increment(1);
            tracing::warn!(%topic, error = %e, "lane topic publish dropped: the MQTT connection task is gone");
            Stopped
        }),
    }
}

/// A new connection: subscribe every filter, republish every lane's state, then say
/// `online` (after the states, so a sign never sees `online` beside a state left by an
/// earlier run).
async fn on_connect(
    client: &AsyncClient,
    topics: &LaneTopics,
    filters: &[String],
    shutdown: &CancellationToken,
) -> Result<(), Stopped> {
    for chunk in filters.chunks(SUBSCRIBE_CHUNK) {
        let subs: Vec<SubscribeFilter> = chunk
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        tokio::select! {
            () = shutdown.cancelled() => return Err(Stopped),
            r = client.subscribe_many(subs) => if let Err(e) = r {
                tracing::error!(error = %e, "subscribe request not sent: the MQTT connection task is gone");
                return Err(Stopped);
            },
        }
    }
    topics.outbox().all_due();
    drain(client, topics, shutdown).await?;
    send(
        client,
        shutdown,
        topics.availability.clone(),
        true,
        ONLINE.as_bytes().to_vec(),
    )
    .await
}

/// Hands every due lane message to the client.
async fn drain(
    client: &AsyncClient,
    topics: &LaneTopics,
    shutdown: &CancellationToken,
) -> Result<(), Stopped> {
    loop {
        let Some(due) = topics.outbox().take() else {
            return Ok(());
        };
        if let Some(state) = due.state {
            let sign = SignState::from_lane_state(&state);
            if let Ok(body) = serde_json::to_vec(&sign) {
                send(
                    client,
                    shutdown,
                    topics.state_topic(&state.lane),
                    true,
                    body,
                )
                .await?;
            }
        }
        if let Some(decision) = due.decision
            && let Ok(body) = serde_json::to_vec(&decision)
        {
            send(
                client,
                shutdown,
                topics.decision_topic(&decision.lane),
                false,
                body,
            )
            .await?;
        }
    }
}

/// A clean stop: every lane `OFFLINE`, then the lane will connections closed (their
/// DISCONNECT makes the broker discard their wills: `OFFLINE` is not published twice),
/// then `offline`, then DISCONNECT (after which the broker drops the Last Will: the agent
/// said it itself). The will connections close only once the broker has the `OFFLINE`
/// states: an UNSUBSCRIBE (of a filter never subscribed) follows them, and a broker
/// answers a connection's packets in order, so its UNSUBACK means the publishes before it
/// were processed. Should the publishes fail or the UNSUBACK not come within
/// [`FLUSH_WITHIN`], the will connections are dropped without DISCONNECT and the broker
/// publishes their wills.
async fn close(client: &AsyncClient, topics: &LaneTopics, wills: Option<LaneWills>) {
    let at = Timestamp::now();
    let lanes = topics.outbox().lanes();
    for lane in lanes {
        let Ok(body) = serde_json::to_vec(&SignState::offline(&lane, at)) else {
            continue;
        };
        if client
            .publish(topics.state_topic(&lane), QoS::AtLeastOnce, true, body)
            .await
            .is_err()
        {
            return;
        }
    }
    if let Some(w) = wills {
        let barrier = format!("{}/stopping", topics.availability);
        if client.unsubscribe(barrier).await.is_err()
            || tokio::time::timeout(FLUSH_WITHIN, topics.unsubacked.notified())
                .await
                .is_err()
        {
            tracing::warn!(
                "the broker did not confirm the lanes' OFFLINE states; their wills say it"
            );
            w.abandon();
        } else {
            w.close().await;
        }
    }
    let _ = client
        .publish(
            topics.availability.clone(),
            QoS::AtLeastOnce,
            true,
            OFFLINE.as_bytes().to_vec(),
        )
        .await;
    let _ = client.disconnect().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::{LaneDecision, LaneSignal};

    fn lane(n: usize) -> LaneId {
        LaneId::parse(&format!("L{n}")).expect("lane")
    }

    fn at() -> Timestamp {
        "2026-03-01T10:00:00Z".parse().expect("ts")
    }

    fn decided(lane: &LaneId, d: LaneDecision) -> LaneState {
        let mut s = LaneState::waiting(lane, Some(uuid::Uuid::now_v7()), at());
        s.decision = LaneSignal::Decided(d);
        s.route = "route".into();
        s
    }

    fn map(filter: &str, lane_no: usize) -> TopicMap {
        TopicMap {
            filter: filter.into(),
            lane: lane(lane_no),
            kind: crate::config::MqttKind::Ocr,
            format: crate::config::PayloadFormat::Aeogate,
        }
    }

    #[test]
    fn a_topic_goes_to_the_first_mapping_that_matches_it_exact_or_wildcard() {
        let m = Mapped::new(vec![
            map("readers/L1/ocr", 1),
            map("readers/+/rfid", 2),
            map("readers/L3/rfid", 3),
            map("readers/L1/ocr", 4),
            map("readers/#", 5),
        ]);
        let lane_of = |t: &str| m.find(t).map(|x| x.lane.to_string());
        assert_eq!(lane_of("readers/L1/ocr"), Some("L1".into()));
        assert_eq!(
            lane_of("readers/L3/rfid"),
            Some("L2".into()),
            "an earlier wildcard wins over a later exact filter"
        );
        assert_eq!(lane_of("readers/L9/ocr"), Some("L5".into()));
        assert_eq!(lane_of("other/L1/ocr"), None);
    }

    #[test]
    fn lanes_start_waiting_so_a_stale_retained_state_is_replaced() {
        let mut o = Outbox::new(&[lane(1), lane(2)], at());
        let a = o.take().expect("L1 due");
        let b = o.take().expect("L2 due");
        assert!(o.take().is_none());
        for due in [a, b] {
            assert!(due.state.expect("a state").is_waiting());
            assert_eq!(due.decision, None, "WAITING is not a decision event");
        }
    }

    #[test]
    fn a_closed_lane_goes_out_on_the_state_topic_only() {
        let mut o = Outbox::new(&[lane(1)], at());
        let _ = o.take();
        o.put(&LaneState::closed(&lane(1), at()));
        let due = o.take().expect("due");
        let sign = SignState::from_lane_state(&due.state.expect("a state"));
        assert_eq!((sign.open, sign.decision), (false, LaneSignal::Closed));
        assert_eq!(due.decision, None, "CLOSED is not a decision event");
    }

    #[test]
    fn a_state_replaced_before_it_went_out_is_superseded_and_the_newest_goes_out() {
        let mut o = Outbox::new(&[lane(1)], at());
        let _ = o.take();
        let first = decided(&lane(1), LaneDecision::Inspect);
        let second = decided(&lane(1), LaneDecision::Standard);
        assert_eq!(o.put(&first), Superseded::default());
        assert_eq!(
            o.put(&second),
            Superseded {
                state: true,
                decision: true
            }
        );
        let due = o.take().expect("due");
        assert_eq!(due.state.as_ref(), Some(&second));
        assert_eq!(due.decision.as_ref(), Some(&second));
        assert!(o.take().is_none());
    }

    #[test]
    fn every_lane_of_thousands_keeps_its_newest_state() {
        let lanes: Vec<LaneId> = (0..2_000).map(lane).collect();
        let mut o = Outbox::new(&lanes, at());
        let mut superseded = 0;
        for (i, l) in lanes.iter().enumerate() {
            let d = if i % 2 == 0 {
                LaneDecision::Fast
            } else {
                LaneDecision::Inspect
            };
            let s = o.put(&decided(l, d));
            superseded += usize::from(s.state);
        }
        assert_eq!(
            superseded, 2_000,
            "each WAITING not yet sent was superseded"
        );
        let mut seen = HashMap::new();
        while let Some(due) = o.take() {
            let s = due.state.expect("state");
            assert_eq!(due.decision.as_ref(), Some(&s));
            seen.insert(s.lane.clone(), s.decision);
        }
        assert_eq!(seen.len(), 2_000);
        assert!(seen.values().all(|d| !matches!(d, LaneSignal::Waiting)));
    }

    #[test]
    fn a_lane_will_reconnected_makes_only_its_lanes_current_state_due_again() {
        let mut o = Outbox::new(&[lane(1), lane(2)], at());
        let fast = decided(&lane(1), LaneDecision::Fast);
        o.put(&fast);
        while o.take().is_some() {}
        o.due(&lane(1));
        o.due(&lane(1));
        o.due(&lane(9));
        let due = o.take().expect("L1 due");
        assert_eq!(
            due.state.as_ref(),
            Some(&fast),
            "the live state, not OFFLINE"
        );
        assert_eq!(due.decision, None, "not a new decision event");
        assert!(o.take().is_none(), "once, and only L1");
    }

    #[test]
    fn a_new_connection_makes_every_state_due_again_but_not_old_events() {
        let mut o = Outbox::new(&[lane(1), lane(2)], at());
        o.put(&decided(&lane(1), LaneDecision::Fast));
        while o.take().is_some() {}
        o.all_due();
        let mut n = 0;
        while let Some(due) = o.take() {
            assert!(due.state.is_some());
            assert_eq!(due.decision, None, "a decision event is sent once");
            n += 1;
        }
        assert_eq!(n, 2);
    }
}
