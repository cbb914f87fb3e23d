//! Lane wills: one will-only MQTT connection per lane, so that a lane's own state topic
//! says `OFFLINE` when the agent dies.
//!
//! MQTT gives a connection one Last Will. The agent's main connection ([`super::mqtt`])
//! spends its will on the availability topic; a sign that follows only its lane's
//! `<prefix>/<lane>/state` topic would keep showing the last retained decision (FAST
//! included) after the agent was killed. So each configured lane gets a connection of its
//! own (client id `<client_id>-lane-<lane>`, the main connection's broker, TLS and
//! credentials) whose Last Will is the retained [`SignState::offline`] on that lane's state
//! topic, QoS 1. It publishes nothing and subscribes to nothing: it only keeps alive. When
//! the process dies, the kernel closes its sockets (or the broker misses its keepalive)
//! and the broker publishes every lane's `OFFLINE`.
//!
//! - **Start:** every lane's task connects at once, but at most [`CONNECT_LIMIT`]
//!   connection attempts (TCP, TLS, CONNECT/CONNACK) are in flight together, so two
//!   thousand lanes come up in seconds without a SYN or handshake storm. A lost connection
//!   is retried with the same [`Reconnect`] policy as the main connection.
//! - **Every CONNACK** (the first one too) asks the main connection to publish the lane's
//!   current state again ([`WillTopics::republish`]). The broker publishes the will of a
//!   lost connection before it accepts the client id again (and, for a half-open
//!   connection taken over by the new one, at the takeover), so the state published after
//!   the CONNACK is the newer retained message: a live lane never stays `OFFLINE`.
//! - **Clean stop** ([`LaneWills::close`]): the main connection publishes every lane's
//!   `OFFLINE` itself and waits for the broker to confirm them, then each will connection
//!   sends DISCONNECT (the broker discards its will: `OFFLINE` is not published twice),
//!   then the main connection says `offline`.
//!   When the agent cannot say it itself (the main connection is down, or the stop runs out
//!   of time), the will connections are dropped without DISCONNECT
//!   ([`LaneWills::abandon`], also on drop) and the broker publishes the wills instead.
//!
//! The will's `at` is the time the connection was made: the agent was alive then.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use protocol::schema::{LaneId, SignState};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Backoff;
use crate::backoff::{Reconnect, STABLE_AFTER};
use crate::config::MqttConfig;

/// Connection attempts in flight together (each a TCP connect, maybe a TLS handshake, and
/// a CONNECT/CONNACK exchange).
pub const CONNECT_LIMIT: usize = 32;
/// Largest packet a will connection sends or accepts (its CONNECT carries the will and the
/// credentials; it receives only CONNACK and PINGRESP).
const MAX_PACKET: usize = 16 * 1024;
/// How long the will connections may take to send their DISCONNECT on a clean stop.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

/// The client id of `lane`'s will connection.
#[must_use]
pub fn client_id(main: &str, lane: &LaneId) -> String {
    format!("{main}-lane-{lane}")
}

/// The running will connections, one per lane. Dropping it drops them without DISCONNECT
/// (the broker then publishes the wills).
#[derive(Debug)]
pub struct LaneWills {
    disconnect: CancellationToken,
    abandon: CancellationToken,
    tasks: TaskTracker,
}

/// How a will task is told to end.
#[derive(Debug, Clone)]
struct Stop {
    /// Send DISCONNECT (the will is discarded), then end.
    disconnect: CancellationToken,
    /// End without a word (the broker publishes the will).
    abandon: CancellationToken,
}

/// What a will connection needs of the lane topics: where a lane's state goes, and a way
/// to publish the lane's current state again once the connection is back.
pub trait WillTopics: Send + Sync + std::fmt::Debug {
    /// The lane's retained state topic.
    fn state_topic(&self, lane: &LaneId) -> String;
    /// Publishes the lane's current state again (its will may have replaced it).
    fn republish(&self, lane: &LaneId);
}

impl LaneWills {
    /// Starts one will connection per lane of `lanes`, with `cfg`'s broker, credentials
    /// and `transport` (TLS, built once for all). Each CONNACK republishes its lane's
    /// current state through `topics`.
    #[must_use]
    pub fn start(
        cfg: &MqttConfig,
        transport: Option<&Transport>,
        lanes: &[LaneId],
        topics: &Arc<dyn WillTopics>,
    ) -> Self {
        let stop = Stop {
            disconnect: CancellationToken::new(),
            abandon: CancellationToken::new(),
        };
        let tasks = TaskTracker::new();
        let limit = Arc::new(Semaphore::new(CONNECT_LIMIT));
        for lane in lanes {
            let mut opts = MqttOptions::new(client_id(&cfg.client_id, lane), &cfg.host, cfg.port);
            opts.set_keep_alive(Duration::from_secs(10))
                .set_clean_session(true)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                .set_inflight(1);
            if let Some(u) = &cfg.username {
                let p = cfg.password.as_ref().map_or("", |p| p.expose());
                opts.set_credentials(u.clone(), p);
            }
            if let Some(t) = transport {
                opts.set_transport(t.clone());
            }
            tasks.spawn(run_will(
                opts,
                lane.clone(),
                topics.clone(),
                limit.clone(),
                stop.clone(),
            ));
        }
        tasks.close();
        Self {
            disconnect: stop.disconnect,
            abandon: stop.abandon,
            tasks,
        }
    }

    /// Closes every will connection with DISCONNECT, so the broker discards the wills;
    /// waits at most `CLOSE_WITHIN` (1 s), then drops the ones left (their wills are
    /// published).
    pub async fn close(self) {
        self.disconnect.cancel();
        if tokio::time::timeout(CLOSE_WITHIN, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "lane will connections not closed in time; the broker publishes their OFFLINE wills"
            );
        }
    }

    /// Drops every will connection without DISCONNECT: the broker publishes every lane's
    /// `OFFLINE` will.
    pub fn abandon(self) {
        drop(self);
    }
}

impl Drop for LaneWills {
    fn drop(&mut self) {
        self.abandon.cancel();
    }
}

/// The lane's will: its retained `OFFLINE` state, timed now.
fn will(topics: &Arc<dyn WillTopics>, lane: &LaneId) -> Option<LastWill> {
    let body = serde_json::to_vec(&SignState::offline(lane, Timestamp::now())).ok()?;
    Some(LastWill::new(
        topics.state_topic(lane),
        body,
        QoS::AtLeastOnce,
        true,
    ))
}

/// One lane's will connection: connect (holding a permit of `limit`), keep alive,
/// reconnect with backoff, until `stop`.
async fn run_will(
    mut opts: MqttOptions,
    lane: LaneId,
    topics: Arc<dyn WillTopics>,
    limit: Arc<Semaphore>,
    stop: Stop,
) {
    let Some(w) = will(&topics, &lane) else {
        return;
    };
    opts.set_last_will(w);
    let (client, mut eventloop) = AsyncClient::new(opts, 1);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    eventloop.set_network_options(net);
    let mut reconnect = Reconnect::new(
        Backoff::new(Duration::from_millis(250), Duration::from_secs(10)),
        STABLE_AFTER,
    );
    let mut up = false;
    loop {
        // Only a connection attempt needs a permit; a live connection holds none.
        let permit = if up {
            None
        } else {
            tokio::select! {
                () = stop.abandon.cancelled() => break,
                () = stop.disconnect.cancelled() => break,
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => break,
                },
            }
        };
        let polled = tokio::select! {
            biased;
            () = stop.abandon.cancelled() => break,
            () = stop.disconnect.cancelled() => {
                if up {
                    disconnect(&client, &mut eventloop, &stop.abandon).await;
                }
                break;
            }
            p = eventloop.poll() => p,
        };
        drop(permit);
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up = true;
                reconnect.connected(std::time::Instant::now());
                metrics::gauge!("aeogate_mqtt_lane_wills_connected").increment(1.0);
                topics.republish(&lane);
            }
            Ok(_) => {}
            Err(e) => {
                if std::mem::take(&mut up) {
                    metrics::gauge!("aeogate_mqtt_lane_wills_connected").decrement(1.0);
                }
                metrics::counter!("aeogate_mqtt_lane_will_failures_total").increment(1);
                let wait = reconnect.lost_now();
                // Per lane at debug: a lost broker is reported once, by the main connection.
                tracing::debug!(%lane, error = %e, ?wait, "lane will connection lost; reconnecting");
                // The next CONNECT carries a will timed then.
                if let Some(w) = will(&topics, &lane) {
                    eventloop.mqtt_options.set_last_will(w);
                }
                tokio::select! {
                    () = stop.abandon.cancelled() => break,
                    () = stop.disconnect.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    if up {
        metrics::gauge!("aeogate_mqtt_lane_wills_connected").decrement(1.0);
    }
}

/// Sends DISCONNECT and polls until it is written (or the connection fails, or `abandon`).
async fn disconnect(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    abandon: &CancellationToken,
) {
    if client.try_disconnect().is_err() {
        return;
    }
    // Bounded: DISCONNECT goes out within a few polls; the caller's timeout drops the rest.
    for _ in 0..16 {
        tokio::select! {
            () = abandon.cancelled() => return,
            p = eventloop.poll() => match p {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}
