//! Actuators: a lane state goes to the lane board (a link `LaneCommand`) and to the MQTT
//! lane topics.
//!
//! | decision | light | barrier | route no. | meaning for the driver |
//! |---|---|---|---|---|
//! | FAST | green | raise | 1 | proceed on the priority route |
//! | STANDARD | amber | raise | 2 | proceed to normal processing (the booth) |
//! | INSPECT | red | stays lowered | 3 | stop; an officer directs the truck to inspection |
//! | WAITING | red | lowered | 0 | the safe state between trucks: wait for this truck's decision |
//! | CLOSED | red | lowered | 0 | a supervisor closed the lane; the sign says [`CLOSED_TEXT`] |
//!
//! STANDARD raises the barrier because the truck must leave the read point for the booth;
//! amber rather than green tells the driver that it is not the priority lane. The sign text
//! is the configured route, cut to the link's 32 bytes on a character boundary. The board
//! itself never lowers the barrier onto a vehicle and drops to red when the link is
//! silent, whatever it was told.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use protocol::link::{Barrier, LaneCommand, Light, MAX_TEXT_BYTES};
use protocol::schema::{LaneDecision, LaneId, LaneSignal, LaneState};
use tokio::sync::mpsc;

/// Where lane states are published besides the boards (the MQTT lane topics). Publishing
/// never blocks.
pub trait LanePublisher: std::fmt::Debug + Send + Sync {
    /// Publishes `state` as its lane's current state.
    fn publish(&self, state: &LaneState);
}

/// The link command for a lane decision with the configured route text.
#[must_use]
pub fn lane_command(decision: LaneDecision, route: &str) -> LaneCommand {
    let (light, barrier, route_no) = match decision {
        LaneDecision::Fast => (Light::Green, Barrier::Raise, 1),
        LaneDecision::Standard => (Light::Amber, Barrier::Raise, 2),
        LaneDecision::Inspect => (Light::Red, Barrier::Lower, 3),
    };
    LaneCommand {
        light,
        barrier,
        route: route_no,
        text: sign_text(route),
    }
}

/// The lane's safe state between trucks: red, barrier down (the board holds a lower back
/// while a vehicle is on a loop), no route, sign cleared.
#[must_use]
pub fn safe_command() -> LaneCommand {
    LaneCommand {
        light: Light::Red,
        barrier: Barrier::Lower,
        route: 0,
        text: heapless::String::new(),
    }
}

/// What the sign of a closed lane says.
pub const CLOSED_TEXT: &str = "LANE CLOSED";

/// A lane closed by a supervisor: as the safe state (red, barrier down, held up by the
/// board while a vehicle is on a loop), with the sign saying [`CLOSED_TEXT`].
#[must_use]
pub fn closed_command() -> LaneCommand {
    LaneCommand {
        text: sign_text(CLOSED_TEXT),
        ..safe_command()
    }
}

/// `text` cut to [`MAX_TEXT_BYTES`] UTF-8 bytes without splitting a character.
#[must_use]
pub fn sign_text(text: &str) -> heapless::String<MAX_TEXT_BYTES> {
    let mut out = heapless::String::new();
    for c in text.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The command a lane board is given to show `state`.
#[must_use]
pub fn command_for(state: &LaneState) -> LaneCommand {
    match state.decision {
        LaneSignal::Decided(decision) => lane_command(decision, &state.route),
        LaneSignal::Waiting | LaneSignal::Offline => safe_command(),
        LaneSignal::Closed => closed_command(),
    }
}

/// One lane board's command channel.
#[derive(Debug)]
struct Link {
    lane: LaneId,
    tx: mpsc::Sender<LaneCommand>,
}

/// Where lane states go. The lane boards' links change at run time (a board added, moved
/// or removed by a reload, [`crate::devices`]).
#[derive(Debug, Default)]
pub struct Actuators {
    /// Lane board name → its link.
    links: RwLock<HashMap<String, Link>>,
    topics: Option<Arc<dyn LanePublisher>>,
}

impl Actuators {
    /// Actuators publishing lane topics through `topics` (if MQTT is configured).
    #[must_use]
    pub fn new(topics: Option<Arc<dyn LanePublisher>>) -> Self {
        Self {
            links: RwLock::new(HashMap::new()),
            topics,
        }
    }

    /// Adds (or replaces) the command channel of the lane board `device` on `lane`.
    pub fn add_link(&self, device: &str, lane: LaneId, tx: mpsc::Sender<LaneCommand>) {
        if let Ok(mut links) = self.links.write() {
            links.insert(device.to_owned(), Link { lane, tx });
        }
    }

    /// Removes the command channel of the lane board `device`, if it has one.
    pub fn remove_link(&self, device: &str) {
        if let Ok(mut links) = self.links.write() {
            links.remove(device);
        }
    }

    /// Shows `state` on its lane. Never blocks: a board whose command queue is full (its
    /// port is down and reopening) misses this command and is told so in the log; the lane
    /// is in its safe state meanwhile.
    pub fn show(&self, state: &LaneState) {
        let cmd = command_for(state);
        if let Ok(links) = self.links.read() {
            for link in links.values().filter(|l| l.lane == state.lane) {
                if let Err(e) = link.tx.try_send(cmd.clone()) {
                    metrics::counter!("aeogate_lane_commands_dropped_total", "lane" => state.lane.to_string())
                        .increment(1);
                    tracing::warn!(lane = %state.lane, error = %e, "lane command not queued for the board");
                }
            }
        }
        if let Some(t) = &self.topics {
            t.publish(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_keeps_the_barrier_down_and_shows_red() {
        let c = lane_command(LaneDecision::Inspect, "Inspection bay 2");
        assert_eq!(
            (c.light, c.barrier, c.route),
            (Light::Red, Barrier::Lower, 3)
        );
        assert_eq!(c.text.as_str(), "Inspection bay 2");
    }

    #[test]
    fn fast_and_standard_raise_with_different_lights() {
        let f = lane_command(LaneDecision::Fast, "Lane 1");
        let s = lane_command(LaneDecision::Standard, "Booth");
        assert_eq!((f.light, f.barrier), (Light::Green, Barrier::Raise));
        assert_eq!((s.light, s.barrier), (Light::Amber, Barrier::Raise));
    }

    #[tokio::test]
    async fn a_waiting_lane_is_commanded_to_its_safe_state() {
        let lane = LaneId::parse("L1").expect("lane id");
        let (tx, mut rx) = mpsc::channel(4);
        let a = Actuators::new(None);
        a.add_link("L1-board", lane.clone(), tx);
        a.show(&LaneState::waiting(
            &lane,
            Some(uuid::Uuid::nil()),
            jiff::Timestamp::UNIX_EPOCH,
        ));
        let cmd = rx.try_recv().expect("a command for the board");
        assert_eq!(
            (cmd.light, cmd.barrier, cmd.route, cmd.text.as_str()),
            (Light::Red, Barrier::Lower, 0, "")
        );
    }

    #[tokio::test]
    async fn a_removed_board_link_gets_no_more_commands() {
        let lane = LaneId::parse("L1").expect("lane id");
        let (old_tx, mut old_rx) = mpsc::channel(4);
        let (new_tx, mut new_rx) = mpsc::channel(4);
        let a = Actuators::new(None);
        a.add_link("L1-board", lane.clone(), old_tx);
        a.remove_link("L1-board");
        a.add_link("L1-board-2", lane.clone(), new_tx);
        a.show(&LaneState::waiting(
            &lane,
            None,
            jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(
            old_rx.try_recv().is_err(),
            "the removed board was commanded"
        );
        assert!(new_rx.try_recv().is_ok(), "the new board was not commanded");
    }

    #[test]
    fn a_closed_lane_is_red_with_the_barrier_down_and_says_so() {
        let c = closed_command();
        assert_eq!(
            (c.light, c.barrier, c.route, c.text.as_str()),
            (Light::Red, Barrier::Lower, 0, "LANE CLOSED")
        );
    }

    #[test]
    fn sign_text_is_cut_on_a_character_boundary() {
        // 31 ASCII bytes then a 2-byte 'é': it does not fit and is left out whole.
        let text = format!("{}é and more", "a".repeat(31));
        let t = sign_text(&text);
        assert_eq!(t.len(), 31);
        assert!(t.chars().all(|c| c == 'a'));
        assert_eq!(
            sign_text("Voie rapide — quai 3").as_str(),
            "Voie rapide — quai 3"
        );
    }
}
