//! MQTT: networked readers in, lane topics out (rumqttc, MQTT 3.1.1).
//!
//! One connection per agent. [`MqttLink::start`] spawns the task that owns the rumqttc
//! `EventLoop` and does nothing but poll it: keepalive, acks, outgoing publishes and
//! reconnection all happen inside `poll()`. On every `ConnAck` it resubscribes (when the
//! broker kept no session) and republishes each lane's retained state, so a broker restart
//! loses neither. It never awaits the request channel (`try_subscribe`/`try_publish` only),
//! which is how rumqttc deadlocks are avoided; lane topics are published from the
//! actuator's task through [`LaneTopics`].
//!
//! Payloads are parsed by [`super::vendor::parse_mapped`] in the topic's format
//! (aeogate's own, [`super::payload`], or a vendor's) with limits. A payload that does not
//! parse is counted
//! (`aeogate_mqtt_malformed_total`), logged with its topic and passed on as an
//! `UNREADABLE` read, so the officer sees that a reader said something the agent did not
//! understand. MQTT is a transport, not a store: what must not be lost goes through the
//! journal.
//!
//! With a read log ([`MqttLink::start_logged`]) the connection uses manual acks and a
//! persistent session (`clean_session = false`, so the client id must be stable): a
//! publish is written to the read log before its PUBACK, and one the agent did not
//! acknowledge before a crash is delivered again by the broker when it reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use protocol::schema::LaneId;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AssemblerEvent, Backoff, HealthReporter};
use crate::config::MqttConfig;
use crate::readlog::ReadLog;

/// Largest MQTT packet accepted or sent (rumqttc's default is 10 KiB).
pub const MAX_PACKET: usize = 64 * 1024;

/// The JSON retained on `<prefix>/<lane>/state` and sent on `<prefix>/<lane>/decision`.
pub use protocol::schema::LaneState;

/// Publishes lane topics. Clone freely; publishing never blocks (a full request queue
/// while the broker is away drops the publish and counts it: the retained state is
/// republished on reconnect, and the journal holds the record).
#[derive(Debug, Clone)]
pub struct LaneTopics {
    client: AsyncClient,
    prefix: String,
    retained: Arc<Mutex<HashMap<LaneId, Vec<u8>>>>,
}

impl LaneTopics {
    /// `<prefix>/<lane>/state`.
    #[must_use]
    pub fn state_topic(&self, lane: &LaneId) -> String {
        format!("{}/{lane}/state", self.prefix)
    }

    /// `<prefix>/<lane>/decision`.
    #[must_use]
    pub fn decision_topic(&self, lane: &LaneId) -> String {
        format!("{}/{lane}/decision", self.prefix)
    }

    /// Publishes `state` as the lane's retained state and, unless it is the waiting state,
    /// as a decision event.
    pub fn publish(&self, state: &LaneState) {
        let Ok(body) = serde_json::to_vec(state) else {
            return;
        };
        if let Ok(mut r) = self.retained.lock() {
            r.insert(state.lane.clone(), body.clone());
        }
        let state_topic = self.state_topic(&state.lane);
        let decision_topic = self.decision_topic(&state.lane);
        let decided = !state.is_waiting();
        for (topic, retain) in [(state_topic, true), (decision_topic, false)]
            .into_iter()
            .filter(|(_, retain)| *retain || decided)
        {
            if let Err(e) = self
                .client
                .try_publish(&topic, QoS::AtLeastOnce, retain, body.clone())
            {
                metrics::counter!("aeogate_mqtt_publish_dropped_total").increment(1);
                tracing::warn!(%topic, error = %e, "lane topic publish dropped (broker unreachable?)");
            }
        }
    }

    fn republish_retained(&self) {
        let Ok(r) = self.retained.lock() else { return };
        for (lane, body) in r.iter() {
            let _ = self.client.try_publish(
                self.state_topic(lane),
                QoS::AtLeastOnce,
                true,
                body.clone(),
            );
        }
    }
}

impl crate::actuators::LanePublisher for LaneTopics {
    fn publish(&self, state: &LaneState) {
        LaneTopics::publish(self, state);
    }
}

/// The running MQTT connection.
#[derive(Debug)]
pub struct MqttLink {
    /// Lane topic publisher.
    pub topics: LaneTopics,
    /// The polling task.
    pub task: tokio::task::JoinHandle<()>,
}

impl MqttLink {
    /// Connects (in the background) and starts forwarding mapped topics to `events`.
    /// Reconnects with backoff until `shutdown`, resubscribing and republishing retained
    /// lane states on every connection.
    #[must_use]
    pub fn start(
        cfg: &MqttConfig,
        events: mpsc::Sender<AssemblerEvent>,
        health: HealthReporter,
        shutdown: CancellationToken,
    ) -> Self {
        Self::start_logged(cfg, events, None, health, shutdown)
    }

    /// [`MqttLink::start`] with a read log: each publish's events are written durably to
    /// `log` before the publish is acknowledged to the broker (manual acks, persistent
    /// session).
    #[must_use]
    pub fn start_logged(
        cfg: &MqttConfig,
        events: mpsc::Sender<AssemblerEvent>,
        log: Option<Arc<ReadLog>>,
        health: HealthReporter,
        shutdown: CancellationToken,
    ) -> Self {
        let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(10))
            .set_clean_session(log.is_none())
            .set_manual_acks(log.is_some())
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_inflight(32);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts.set_credentials(u.clone(), p.clone());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut net = eventloop.network_options();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(5);
        eventloop.set_network_options(net);

        let topics = LaneTopics {
            client: client.clone(),
            prefix: cfg.lane_topic_prefix.trim_end_matches('/').to_owned(),
            retained: Arc::default(),
        };
        let maps = cfg.topics.clone();
        let broker = format!("{}:{}", cfg.host, cfg.port);
        let publisher = topics.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
            let mut forward: std::collections::VecDeque<AssemblerEvent> = Default::default();
            'poll: loop {
                // Reads waiting for the assembler are delivered before polling again: the
                // broker then holds further publishes (TCP backpressure) rather than us
                // dropping them.
                while let Some(ev) = forward.pop_front() {
                    tokio::select! {
                        () = shutdown.cancelled() => break 'poll,
                        sent = events.send(ev) => if sent.is_err() { break 'poll },
                    }
                }
                let polled = tokio::select! {
                    () = shutdown.cancelled() => break,
                    p = eventloop.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff.reset();
                        health.up(format!("connected to {broker}"));
                        if !ack.session_present {
                            for m in &maps {
                                if let Err(e) =
                                    client.try_subscribe(m.filter.clone(), QoS::AtLeastOnce)
                                {
                                    tracing::error!(filter = %m.filter, error = %e, "subscribe request dropped");
                                }
                            }
                        }
                        publisher.republish_retained();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Some(map) = maps.iter().find(|m| rumqttc::matches(&p.topic, &m.filter))
                        else {
                            tracing::debug!(topic = %p.topic, "publish on an unmapped topic ignored");
                            if log.is_some() {
                                let _ = client.try_ack(&p);
                            }
                            continue;
                        };
                        let device = format!("mqtt:{}", p.topic);
                        let (evs, err) =
                            super::vendor::parse_mapped(map, &device, &p.payload, Timestamp::now());
                        if let Some(e) = err {
                            metrics::counter!("aeogate_mqtt_malformed_total", "lane" => map.lane.to_string()).increment(1);
                            tracing::warn!(topic = %p.topic, error = %e, "malformed payload; recorded as an unreadable read");
                        }
                        // Durable before the broker hears the PUBACK.
                        if let Some(log) = &log {
                            let _ = log.log(&evs).await;
                            if let Err(e) = client.try_ack(&p) {
                                tracing::warn!(topic = %p.topic, error = %e, "PUBACK not queued; the broker delivers the publish again");
                            }
                        }
                        forward.extend(evs);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        health.down(format!("{broker}: {e}"));
                        let wait = backoff.next_delay();
                        tracing::warn!(%broker, error = %e, ?wait, "MQTT connection lost; reconnecting");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            let _ = client.try_disconnect();
            health.down("stopped");
        });
        Self { topics, task }
    }
}
