//! The lane state machine: link reliability, lane commands, readers and the safety rules.
#![allow(clippy::unwrap_used)]

use firmware::lane::{Action, Config, Event, LaneController, Output, Reader};
use heapless::{String, Vec as HVec};
use proptest::prelude::*;
use protocol::link::{
    Barrier, BatteryLevel, FaultCode, Frame, Heartbeat, LaneCommand, Light, LinkError, Message,
    SealRead, SealStatus,
};
use protocol::reader::uhf::TagNotice;

/// The values of the items of `$items` that match `$pattern` (and its guard), in order.
macro_rules! picked {
    ($items:expr, $pattern:pat $(if $guard:expr)? => $value:expr) => {
        $items
            .into_iter()
            .filter_map(|item| match item {
                $pattern $(if $guard)? => Some($value),
                _ => None,
            })
            .collect()
    };
}

struct Lane {
    c: LaneController,
    now: u32,
}

impl Lane {
    fn new() -> Self {
        Self::with(config(), 0)
    }

    fn with(cfg: Config, now: u32) -> Self {
        Self {
            c: LaneController::new(cfg, now),
            now,
        }
    }

    /// Poll until idle; panics if the controller never settles.
    fn run(&mut self) -> Vec<Action> {
        let mut out = vec![];
        for _ in 0..1000 {
            match self.c.poll(self.now) {
                Some(a) => out.push(a),
                None => return out,
            }
        }
        panic!("controller did not settle: {out:?}");
    }

    fn event(&mut self, e: Event) -> Vec<Action> {
        self.c.handle(self.now, e);
        self.run()
    }

    fn advance(&mut self, ms: u32) -> Vec<Action> {
        self.now = self.now.wrapping_add(ms);
        self.run()
    }

    fn command(&mut self, seq: u16, light: Light, barrier: Barrier) -> Vec<Action> {
        self.event(Event::LinkFrame(Frame::new(seq, command(light, barrier))))
    }

    fn presence(&mut self, loop_id: u8, present: bool) -> Vec<Action> {
        self.event(Event::Presence { loop_id, present })
    }

    /// Loop 0 reports clear and the barrier stays (`why`); then loop 1 does and it lowers.
    fn lowers_once_both_loops_clear(&mut self, why: &str) {
        assert!(barrier_moves(&self.presence(0, false)).is_empty(), "{why}");
        assert_eq!(barrier_moves(&self.presence(1, false)), [Barrier::Lower]);
    }

    /// Acknowledges every boot announcement sent in `actions`; returns what the board did
    /// next (the events it held back until then).
    fn ack_hello(&mut self, actions: &[Action]) -> Vec<Action> {
        let hellos: Vec<u16> =
            picked!(actions, Action::Transmit(f) if matches!(f.msg, Message::Hello(_)) => f.seq);
        assert!(!hellos.is_empty(), "no boot announcement in {actions:?}");
        let mut out = vec![];
        for seq in hellos {
            out.extend(self.event(Event::LinkFrame(Frame::new(0, Message::Ack { seq }))));
        }
        out
    }

    /// Acknowledges every frame in flight at once (whatever is queued), then polls.
    fn ack_all_quietly(&mut self) {
        for seq in 0..=u16::MAX {
            if self.c.unacked() == 0 {
                break;
            }
            self.c.handle(
                self.now,
                Event::LinkFrame(Frame::new(0, Message::Ack { seq })),
            );
        }
        self.run();
    }

    /// Both loops report clear and the link comes up, then everything is acknowledged.
    fn settled() -> Self {
        let mut lane = Self::new();
        lane.presence(0, false);
        lane.presence(1, false);
        lane.command(1000, Light::Red, Barrier::Lower);
        lane.ack_all();
        lane
    }

    /// [`Lane::settled`], a vehicle on both loops, the barrier raised for it (command 2).
    fn raised_over_a_vehicle() -> Self {
        let mut lane = Self::settled();
        lane.presence(0, true);
        lane.presence(1, true);
        lane.command(2, Light::Green, Barrier::Raise);
        lane
    }

    /// Acknowledge every event frame in flight, repeatedly, until none is left.
    fn ack_all(&mut self) {
        for _ in 0..10 {
            let pending = event_seqs(&self.advance(config().retry_ms));
            for seq in pending {
                self.event(Event::LinkFrame(Frame::new(0, Message::Ack { seq })));
            }
            if self.c.unacked() == 0 {
                return;
            }
        }
        panic!("queue never drained");
    }
}

fn config() -> Config {
    Config {
        loops: 2,
        link_timeout_ms: 3_000,
        heartbeat_ms: 1_000,
        retry_ms: 300,
        window: 4,
        // Readers are exercised in their own tests; keep them quiet elsewhere.
        uhf_poll_ms: u32::MAX / 4,
        seal_poll_ms: u32::MAX / 4,
        reader_answer_ms: u32::MAX / 4,
        ..Config::default()
    }
}

fn command(light: Light, barrier: Barrier) -> Message {
    Message::LaneCommand(LaneCommand {
        light,
        barrier,
        route: 2,
        text: String::try_from("LANE 2").unwrap(),
    })
}

fn is_event(m: &Message) -> bool {
    !matches!(m, Message::Heartbeat(_) | Message::Ack { .. })
}

fn sent(actions: &[Action]) -> Vec<Message> {
    picked!(actions, Action::Transmit(f) => f.msg.clone())
}

fn events(actions: &[Action]) -> Vec<Message> {
    sent(actions).into_iter().filter(is_event).collect()
}

/// The sequence numbers of the event frames sent in `actions`.
fn event_seqs(actions: &[Action]) -> Vec<u16> {
    picked!(actions, Action::Transmit(f) if is_event(&f.msg) => f.seq)
}

fn faults(actions: &[Action]) -> Vec<(FaultCode, u16)> {
    picked!(sent(actions), Message::Fault { code, detail } => (code, detail))
}

fn barrier_moves(actions: &[Action]) -> Vec<Barrier> {
    picked!(actions, Action::SetBarrier(b) => *b)
}

fn lights(actions: &[Action]) -> Vec<Light> {
    picked!(actions, Action::SetLight(l) => *l)
}

fn acks(actions: &[Action]) -> Vec<u16> {
    picked!(sent(actions), Message::Ack { seq } => seq)
}

fn tag(epc_last: u8) -> TagNotice {
    let mut epc = [0x30u8; 12];
    epc[11] = epc_last;
    TagNotice::with_crc(-60, 0x3000, HVec::from_slice(&epc).unwrap())
}

// ---- start-up and safety ----

#[test]
fn starts_red_without_lowering_before_loops_report() {
    let mut lane = Lane::new();
    let actions = lane.run();
    assert_eq!(lights(&actions), [Light::Red]);
    assert!(barrier_moves(&actions).is_empty());
}

#[test]
fn lowers_once_every_loop_reports_clear() {
    let mut lane = Lane::new();
    lane.run();
    lane.lowers_once_both_loops_clear("loop 1 not heard yet");
}

#[test]
fn obeys_lane_command_and_acks_it() {
    let mut lane = Lane::settled();
    let actions = lane.command(7, Light::Green, Barrier::Raise);
    assert_eq!(lights(&actions), [Light::Green]);
    assert_eq!(barrier_moves(&actions), [Barrier::Raise]);
    assert_eq!(acks(&actions), [7]);
    assert!(actions.contains(&Action::ShowSign {
        route: 2,
        text: String::try_from("LANE 2").unwrap()
    }));
}

#[test]
fn duplicate_command_is_acked_but_not_obeyed_again() {
    let mut lane = Lane::settled();
    lane.command(5, Light::Green, Barrier::Raise);
    lane.command(6, Light::Amber, Barrier::Raise);
    // The agent missed the ack for 5 and sends it again.
    let actions = lane.command(5, Light::Green, Barrier::Raise);
    assert_eq!(acks(&actions), [5]);
    assert!(lights(&actions).is_empty());
    assert_eq!(lane.c.light(), Some(Light::Amber));
}

#[test]
fn refuses_to_lower_onto_a_present_vehicle_and_reports_it() {
    let mut lane = Lane::settled();
    lane.presence(1, true);
    lane.command(2, Light::Green, Barrier::Raise);
    let actions = lane.command(3, Light::Red, Barrier::Lower);
    assert_eq!(lights(&actions), [Light::Red]);
    assert!(barrier_moves(&actions).is_empty());
    assert_eq!(faults(&actions), [(FaultCode::BarrierLowerRefused, 0b10)]);
    assert_eq!(lane.c.barrier(), Some(Barrier::Raise));
}

#[test]
fn held_lower_happens_when_the_vehicle_leaves() {
    let mut lane = Lane::raised_over_a_vehicle();
    lane.command(3, Light::Red, Barrier::Lower);
    lane.lowers_once_both_loops_clear("loop 1 still occupied");
}

#[test]
fn raise_command_cancels_a_held_lower() {
    let mut lane = Lane::settled();
    lane.presence(0, true);
    lane.command(2, Light::Green, Barrier::Raise);
    lane.command(3, Light::Red, Barrier::Lower);
    lane.command(4, Light::Green, Barrier::Raise);
    assert_eq!(lane.c.wanted_barrier(), Barrier::Raise);
    assert!(barrier_moves(&lane.advance(1_000)).is_empty());
    assert_eq!(lane.c.barrier(), Some(Barrier::Raise));
}

// ---- the lane between vehicles (rule 4) ----

/// A vehicle drives over both loops and off them again.
fn drive_through(lane: &mut Lane) -> Vec<Action> {
    let mut out = lane.presence(0, true);
    out.extend(lane.presence(1, true));
    out.extend(lane.presence(0, false));
    out.extend(lane.presence(1, false));
    out
}

#[test]
fn next_vehicle_meets_a_red_light_not_the_previous_decision() {
    let mut lane = Lane::settled();
    drive_through(&mut lane);
    // The agent decides the first vehicle after it left the loops: the barrier rises.
    let actions = lane.command(2, Light::Green, Barrier::Raise);
    assert_eq!(barrier_moves(&actions), [Barrier::Raise]);
    // The next vehicle arrives: red at once, the sign cleared; the barrier is not lowered
    // onto it (rule 1) but is wanted down.
    let actions = lane.presence(0, true);
    assert_eq!(lights(&actions), [Light::Red]);
    assert!(barrier_moves(&actions).is_empty());
    assert!(actions.contains(&Action::ShowSign {
        route: 0,
        text: String::new()
    }));
    assert_eq!(lane.c.wanted_barrier(), Barrier::Lower);
    assert!(faults(&actions).is_empty(), "not a refused command");
    // It leaves the loops towards the barrier: the barrier goes down before its decision.
    lane.presence(1, true);
    lane.presence(0, false);
    let actions = lane.presence(1, false);
    assert_eq!(barrier_moves(&actions), [Barrier::Lower]);
    assert!(lights(&lane.advance(1_000)).is_empty());
    assert_eq!(lane.c.light(), Some(Light::Red));
    // Its own decision is obeyed.
    let actions = lane.command(3, Light::Amber, Barrier::Raise);
    assert_eq!(lights(&actions), [Light::Amber]);
    assert_eq!(barrier_moves(&actions), [Barrier::Raise]);
}

#[test]
fn decided_vehicle_clearing_the_loops_returns_the_lane_to_safe() {
    let mut lane = Lane::settled();
    lane.presence(0, true);
    // Decided while still on the loop (a transaction timeout, an officer).
    lane.command(2, Light::Green, Barrier::Raise);
    assert!(lights(&lane.advance(500)).is_empty());
    let actions = lane.presence(0, false);
    assert_eq!(lights(&actions), [Light::Red]);
    assert_eq!(barrier_moves(&actions), [Barrier::Lower]);
}

#[test]
fn agent_safe_state_after_an_arrival_is_not_reported_as_refused() {
    let mut lane = Lane::settled();
    drive_through(&mut lane);
    lane.command(2, Light::Green, Barrier::Raise);
    lane.presence(0, true);
    // The agent commands the safe state for the new vehicle too.
    let actions = lane.command(3, Light::Red, Barrier::Lower);
    assert!(faults(&actions).is_empty(), "{actions:?}");
    assert!(barrier_moves(&actions).is_empty());
}

#[test]
fn a_loop_flicker_under_one_vehicle_is_not_an_arrival() {
    let mut lane = Lane::raised_over_a_vehicle();
    // Loop 0 flickers while loop 1 stays occupied: the same vehicle.
    lane.presence(0, false);
    let actions = lane.presence(0, true);
    assert!(lights(&actions).is_empty());
    assert_eq!(lane.c.light(), Some(Light::Green));
}

#[test]
fn lower_with_no_vehicle_is_not_a_fault() {
    let mut lane = Lane::settled();
    lane.command(2, Light::Green, Barrier::Raise);
    let actions = lane.command(3, Light::Red, Barrier::Lower);
    assert_eq!(barrier_moves(&actions), [Barrier::Lower]);
    assert!(faults(&actions).is_empty());
}

#[test]
fn presence_changes_are_sent_once_each() {
    let mut lane = Lane::settled();
    let actions = lane.presence(0, true);
    assert_eq!(
        events(&actions),
        [Message::Presence {
            loop_id: 0,
            present: true
        }]
    );
    lane.ack_all();
    assert!(
        events(&lane.presence(0, true)).is_empty(),
        "no change, nothing to send"
    );
}

#[test]
fn presence_on_an_unwired_loop_is_ignored() {
    let mut lane = Lane::settled();
    assert!(events(&lane.presence(5, true)).is_empty());
    assert!(!lane.c.vehicle_may_be_present());
}

// ---- link silence ----

#[test]
fn silent_link_turns_the_light_red_and_lowers_an_empty_lane() {
    let mut lane = Lane::settled();
    lane.command(2, Light::Green, Barrier::Raise);
    assert!(
        lights(&lane.advance(3_000)).is_empty(),
        "not yet past the timeout"
    );
    let actions = lane.advance(1);
    assert_eq!(lights(&actions), [Light::Red]);
    assert_eq!(barrier_moves(&actions), [Barrier::Lower]);
    assert!(!lane.c.link_up());
}

#[test]
fn silent_link_leaves_the_barrier_up_over_a_vehicle_until_it_leaves() {
    let mut lane = Lane::settled();
    lane.presence(0, true);
    lane.command(2, Light::Green, Barrier::Raise);
    let actions = lane.advance(3_001);
    assert_eq!(lights(&actions), [Light::Red]);
    assert!(barrier_moves(&actions).is_empty());
    assert_eq!(barrier_moves(&lane.presence(0, false)), [Barrier::Lower]);
}

#[test]
fn link_return_is_reported_with_the_seconds_of_silence() {
    let mut lane = Lane::settled();
    // The boot announcement goes out (and is resent) while nobody answers.
    let silent = lane.advance(10_000);
    let actions = lane.command(9, Light::Amber, Barrier::Lower);
    assert!(
        faults(&actions).is_empty(),
        "held behind the boot announcement"
    );
    assert_eq!(lights(&actions), [Light::Amber]);
    assert!(lane.c.link_up());
    let after = lane.ack_hello(&silent);
    assert_eq!(faults(&after), [(FaultCode::LinkSilentRecovered, 10)]);
}

fn presences(actions: &[Action]) -> Vec<(u8, bool)> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m {
            Message::Presence { loop_id, present } => Some((loop_id, present)),
            _ => None,
        })
        .collect()
}

#[test]
fn link_up_reannounces_the_loops_even_after_the_change_was_dropped() {
    // A vehicle arrives before any agent listens; the readers keep reporting it until the
    // queue overflows and the presence change is dropped.
    let mut lane = Lane::new();
    lane.presence(0, true);
    lane.presence(1, false);
    for i in 0..40u8 {
        lane.c
            .handle(lane.now, Event::Seal(SealRead::sealed(1, u32::from(i))));
        lane.advance(10);
    }
    // The agent's first frame brings the link up: the loops' current state is queued.
    lane.event(Event::LinkFrame(Frame::new(
        7,
        Message::Ack { seq: 60_000 },
    )));
    let mut seen = vec![];
    for _ in 0..20 {
        let actions = lane.advance(config().retry_ms);
        seen.extend(presences(&actions));
        for f in actions.iter().filter_map(|a| match a {
            Action::Transmit(f) if is_event(&f.msg) => Some(f.seq),
            _ => None,
        }) {
            lane.event(Event::LinkFrame(Frame::new(8, Message::Ack { seq: f })));
        }
    }
    assert!(
        seen.contains(&(0, true)) && seen.contains(&(1, false)),
        "each loop's state reaches the agent after link-up: {seen:?}"
    );
    assert_eq!(
        seen.last(),
        Some(&(1, false)),
        "the re-announcement comes after older changes"
    );
}

#[test]
fn link_return_reannounces_the_loops() {
    let mut lane = Lane::settled();
    lane.presence(0, true);
    lane.ack_all();
    let silent = lane.advance(10_000);
    lane.command(9, Light::Amber, Barrier::Lower);
    assert_eq!(presences(&lane.ack_hello(&silent)), [(0, true), (1, false)]);
}

#[test]
fn lane_stays_safe_after_link_returns_until_commanded() {
    let mut lane = Lane::settled();
    lane.command(2, Light::Green, Barrier::Raise);
    lane.advance(5_000);
    // An ack is traffic, not a command.
    let actions = lane.event(Event::LinkFrame(Frame::new(
        3,
        Message::Ack { seq: 60_000 },
    )));
    assert!(lights(&actions).is_empty());
    assert_eq!(lane.c.light(), Some(Light::Red));
}

#[test]
fn first_contact_is_not_a_fault() {
    let mut lane = Lane::new();
    lane.run();
    let actions = lane.command(1, Light::Red, Barrier::Raise);
    assert!(faults(&actions).is_empty());
    assert!(lane.c.link_up());
}

#[test]
fn command_seqs_are_forgotten_after_silence() {
    let mut lane = Lane::settled();
    lane.command(4, Light::Green, Barrier::Raise);
    lane.advance(4_000);
    // The agent restarted and numbers from 4 again.
    let actions = lane.command(4, Light::Green, Barrier::Raise);
    assert_eq!(lights(&actions), [Light::Green]);
}

#[test]
fn rejected_frames_do_not_keep_the_link_alive() {
    let mut lane = Lane::settled();
    lane.command(2, Light::Green, Barrier::Raise);
    lane.advance(2_000);
    lane.event(Event::LinkError(LinkError::Crc {
        expected: 1,
        found: 2,
    }));
    let actions = lane.advance(1_001);
    assert_eq!(lights(&actions), [Light::Red]);
    assert!(!lane.c.link_up());
    // The count is reported once the agent is back and has heard the announcement.
    lane.command(3, Light::Red, Barrier::Lower);
    assert!(faults(&lane.ack_hello(&actions)).contains(&(FaultCode::LinkRejected, 1)));
}

#[test]
fn unknown_message_is_acknowledged() {
    let mut lane = Lane::settled();
    let actions = lane.event(Event::LinkError(LinkError::UnknownMessage {
        seq: 77,
        kind: 12,
    }));
    assert_eq!(acks(&actions), [77]);
}

// ---- reliability ----

#[test]
fn event_is_retransmitted_until_acked() {
    let mut lane = Lane::settled();
    let first = events(&lane.presence(0, true));
    assert_eq!(first.len(), 1);
    assert!(
        events(&lane.advance(299)).is_empty(),
        "retry interval not reached"
    );
    assert_eq!(events(&lane.advance(1)), first);
    lane.ack_all();
    // Within the link timeout, so that no new boot announcement is due either.
    assert!(events(&lane.advance(2_000)).is_empty());
}

#[test]
fn retransmission_keeps_its_sequence_number() {
    let mut lane = Lane::settled();
    let seq_of = |actions: &[Action]| -> Vec<u16> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Transmit(f) if is_event(&f.msg) => Some(f.seq),
                _ => None,
            })
            .collect()
    };
    let first = seq_of(&lane.presence(1, true));
    let again = seq_of(&lane.advance(300));
    assert_eq!(first, again);
    lane.event(Event::LinkFrame(Frame::new(
        50,
        Message::Ack { seq: first[0] },
    )));
    assert!(seq_of(&lane.advance(300)).is_empty());
}

#[test]
fn at_most_window_events_are_in_flight() {
    let mut lane = Lane::settled();
    let mut first = vec![];
    for i in 0..6 {
        first.extend(lane.event(Event::Tag(tag(i))));
    }
    assert_eq!(events(&first).len(), 4);
    assert_eq!(lane.c.unacked(), 6);
}

#[test]
fn full_queue_drops_the_oldest_tag_read_and_reports_it() {
    let mut lane = Lane::settled();
    lane.presence(0, true);
    for i in 0..20 {
        lane.event(Event::Tag(tag(i)));
    }
    assert_eq!(lane.c.unacked(), 16);
    // Serve the queue as an agent would; the overflow report queues behind the backlog.
    let mut seen_presence = false;
    let mut reported = vec![];
    for _ in 0..20 {
        let actions = lane.advance(300);
        seen_presence |= events(&actions)
            .iter()
            .any(|m| matches!(m, Message::Presence { .. }));
        reported.extend(faults(&actions));
        for seq in event_seqs(&actions) {
            lane.event(Event::LinkFrame(Frame::new(1, Message::Ack { seq })));
        }
    }
    assert!(
        reported.contains(&(FaultCode::QueueOverflow, 5)),
        "{reported:?}"
    );
    // The presence change, older than every tag, survived.
    assert!(seen_presence);
}

#[test]
fn sequence_numbers_increase_and_wrap() {
    let mut lane = Lane::new();
    let mut seqs = vec![];
    for _ in 0..70_000u32 {
        for a in lane.advance(1_000) {
            // The boot announcement (seq 0) is resent with its seq; heartbeats are new frames.
            if let Action::Transmit(f) = a
                && matches!(f.msg, Message::Heartbeat(_))
            {
                seqs.push(f.seq);
            }
        }
        if seqs.len() > 65_540 {
            break;
        }
    }
    assert_eq!(seqs.first(), Some(&1), "seq 0 is the boot announcement");
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    assert!(seqs.contains(&u16::MAX) && seqs.iter().filter(|&&s| s == 0).count() == 1);
}

#[test]
fn heartbeat_reports_state_every_period() {
    let mut lane = Lane::settled();
    lane.presence(1, true);
    lane.command(3, Light::Green, Barrier::Raise);
    let beats: Vec<Heartbeat> = picked!(sent(&lane.advance(1_000)), Message::Heartbeat(h) => h);
    assert_eq!(beats.len(), 1);
    let s = beats[0].status;
    assert!(s.link_ok);
    assert_eq!(
        (s.light, s.barrier, s.presence),
        (Light::Green, Barrier::Raise, 0b10)
    );
    assert_eq!(beats[0].uptime_ms, lane.now);
}

// ---- readers ----

fn reader_lane() -> Lane {
    let cfg = Config {
        uhf_poll_ms: 100,
        seal_poll_ms: 1_000,
        reader_answer_ms: 1_000,
        reader_silent_after: 3,
        reader_retry_ms: 2_000,
        ..config()
    };
    let mut lane = Lane::with(cfg, 0);
    // The agent acknowledges the boot announcement, so events flow.
    lane.c
        .handle(0, Event::LinkFrame(Frame::new(0, Message::Ack { seq: 0 })));
    lane.c.handle(
        0,
        Event::Presence {
            loop_id: 0,
            present: false,
        },
    );
    lane.c.handle(
        0,
        Event::Presence {
            loop_id: 1,
            present: false,
        },
    );
    lane
}

fn polls(actions: &[Action], reader: Reader) -> usize {
    actions
        .iter()
        .filter(|a| **a == Action::PollReader(reader))
        .count()
}

#[test]
fn polls_each_reader_at_its_period_after_answers() {
    let mut lane = reader_lane();
    let actions = lane.run();
    assert_eq!(
        (polls(&actions, Reader::Uhf), polls(&actions, Reader::ESeal)),
        (1, 1)
    );
    lane.event(Event::ReaderAnswered(Reader::Uhf));
    lane.event(Event::ReaderAnswered(Reader::ESeal));
    assert_eq!(polls(&lane.advance(99), Reader::Uhf), 0);
    assert_eq!(polls(&lane.advance(1), Reader::Uhf), 1);
}

#[test]
fn does_not_poll_a_reader_that_is_still_answering() {
    let mut lane = reader_lane();
    lane.run();
    assert_eq!(polls(&lane.advance(500), Reader::Uhf), 0);
}

#[test]
fn reader_is_reported_silent_after_misses_then_recovered() {
    let mut lane = reader_lane();
    let mut all = lane.run();
    for _ in 0..3 {
        all.extend(lane.event(Event::ReaderTimedOut(Reader::Uhf)));
        all.extend(lane.advance(100));
    }
    assert_eq!(faults(&all), [(FaultCode::ReaderSilent, 0)]);
    let actions = lane.event(Event::ReaderAnswered(Reader::Uhf));
    assert_eq!(faults(&actions), [(FaultCode::ReaderRecovered, 0)]);
}

#[test]
fn silent_reader_is_retried_at_the_retry_period() {
    let mut lane = reader_lane();
    lane.run(); // poll at 0
    for _ in 0..3 {
        lane.event(Event::ReaderTimedOut(Reader::ESeal));
        lane.advance(1_000); // polls at 1000 and 2000; silent after the third miss
    }
    assert_eq!(polls(&lane.advance(999), Reader::ESeal), 0);
    assert_eq!(
        polls(&lane.advance(1), Reader::ESeal),
        1,
        "2000 ms after the last poll"
    );
}

#[test]
fn unanswered_poll_counts_as_a_miss_even_if_the_driver_says_nothing() {
    let mut lane = reader_lane();
    lane.run();
    let mut all = vec![];
    for _ in 0..3 {
        all.extend(lane.advance(1_000));
    }
    assert!(faults(&all).contains(&(FaultCode::ReaderSilent, 0)));
}

#[test]
fn repeated_tag_is_sent_once_per_holdoff() {
    let mut lane = Lane::settled();
    assert_eq!(events(&lane.event(Event::Tag(tag(1)))).len(), 1);
    lane.ack_all();
    assert!(events(&lane.event(Event::Tag(tag(1)))).is_empty());
    assert_eq!(
        events(&lane.event(Event::Tag(tag(2)))).len(),
        1,
        "another tag"
    );
    lane.advance(2_000);
    assert_eq!(
        events(&lane.event(Event::Tag(tag(1)))).len(),
        1,
        "hold-off over"
    );
}

#[test]
fn tag_read_carries_the_configured_antenna() {
    let mut lane = Lane::settled();
    let msgs = events(&lane.event(Event::Tag(tag(9))));
    let Message::TagRead(read) = &msgs[0] else {
        panic!()
    };
    assert_eq!((read.antenna, read.rssi, read.pc), (1, -60, 0x3000));
}

#[test]
fn seal_state_change_is_sent_even_within_holdoff() {
    let mut lane = Lane::settled();
    let seal = |status| SealRead {
        manufacturer: 1,
        tag_id: 2,
        status,
        battery: BatteryLevel::Ok,
        sealed_at: None,
        opened_at: None,
    };
    assert_eq!(
        events(&lane.event(Event::Seal(seal(SealStatus::Sealed)))).len(),
        1
    );
    assert!(events(&lane.event(Event::Seal(seal(SealStatus::Sealed)))).is_empty());
    assert_eq!(
        events(&lane.event(Event::Seal(seal(SealStatus::Tampered)))).len(),
        1
    );
}

#[test]
fn reader_errors_are_counted_into_one_fault_per_period() {
    let mut lane = Lane::settled();
    for _ in 0..5 {
        lane.event(Event::ReaderBadFrame(Reader::Uhf));
    }
    lane.event(Event::TagCrcMismatch);
    let actions = lane.advance(1_000);
    let f = faults(&actions);
    assert!(f.contains(&(FaultCode::ReaderChecksum, 5)));
    assert!(f.contains(&(FaultCode::TagCrc, 1)));
    lane.ack_all();
    assert!(faults(&lane.advance(1_000)).is_empty());
}

#[test]
fn failed_output_is_reported_and_retried() {
    let mut lane = Lane::settled();
    lane.command(2, Light::Green, Barrier::Raise);
    let actions = lane.event(Event::OutputFailed(Output::Light));
    assert!(faults(&actions).contains(&(FaultCode::OutputError, 0)));
    assert!(lights(&actions).is_empty());
    assert_eq!(lights(&lane.advance(300)), [Light::Green]);
}

#[test]
fn runs_across_clock_wrap() {
    let mut lane = Lane::with(config(), u32::MAX - 1_500);
    lane.presence(0, false);
    lane.presence(1, false);
    lane.command(1, Light::Green, Barrier::Raise);
    assert!(
        lights(&lane.advance(2_999)).is_empty(),
        "wrapped, still within timeout"
    );
    assert_eq!(lights(&lane.advance(2)), [Light::Red]);
}

#[test]
fn zero_periods_do_not_stall_the_controller() {
    let cfg = Config {
        heartbeat_ms: 0,
        retry_ms: 0,
        uhf_poll_ms: 0,
        seal_poll_ms: 0,
        fault_report_ms: 0,
        reader_answer_ms: 0,
        reader_retry_ms: 0,
        ..Config::default()
    };
    let mut lane = Lane::with(cfg, 0);
    lane.presence(0, true);
    lane.advance(1);
}

// ---- the safety property ----

#[derive(Debug, Clone)]
enum Op {
    Presence(u8, bool),
    Command(u16, Light, Barrier),
    Advance(u32),
    AckEverything,
    Garbage,
}

fn op() -> impl Strategy<Value = Op> {
    let light = prop_oneof![
        Just(Light::Off),
        Just(Light::Red),
        Just(Light::Amber),
        Just(Light::Green)
    ];
    let barrier = prop_oneof![Just(Barrier::Lower), Just(Barrier::Raise)];
    prop_oneof![
        3 => (0u8..3, any::<bool>()).prop_map(|(l, p)| Op::Presence(l, p)),
        3 => (0u16..40, light, barrier).prop_map(|(s, l, b)| Op::Command(s, l, b)),
        3 => prop_oneof![0u32..50, 0u32..5_000, Just(3_001)].prop_map(Op::Advance),
        1 => Just(Op::AckEverything),
        1 => Just(Op::Garbage),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the agent commands and however the link behaves, `SetBarrier(Lower)` is
    /// only ever emitted when every loop has reported and none has a vehicle; and once
    /// every loop is clear, a wanted lower does happen.
    #[test]
    fn barrier_never_lowers_on_a_present_vehicle(
        start in any::<u32>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut lane = Lane::with(config(), start);
        let mut present = [None::<bool>; 2];
        let check = |actions: &[Action], present: &[Option<bool>; 2]| -> Result<(), TestCaseError> {
            for b in barrier_moves(actions) {
                if b == Barrier::Lower {
                    prop_assert!(
                        present.iter().all(|p| *p == Some(false)),
                        "lowered with presence {:?}", present
                    );
                }
            }
            Ok(())
        };
        let actions = lane.run();
        check(&actions, &present)?;
        for op in ops {
            let actions = match op {
                Op::Presence(l, p) => {
                    if let Some(slot) = present.get_mut(usize::from(l)) {
                        *slot = Some(p);
                    }
                    lane.presence(l, p)
                }
                Op::Command(seq, l, b) => lane.command(seq, l, b),
                Op::Advance(ms) => lane.advance(ms),
                Op::AckEverything => {
                    for seq in 0..=u16::MAX {
                        if lane.c.unacked() == 0 {
                            break;
                        }
                        lane.c.handle(lane.now, Event::LinkFrame(Frame::new(0, Message::Ack { seq })));
                    }
                    lane.run()
                }
                Op::Garbage => lane.event(Event::LinkError(LinkError::Cobs { len: 3 })),
            };
            check(&actions, &present)?;
        }
        // Liveness: clear every loop; a wanted lower must now happen.
        let mut actions = lane.presence(0, false);
        actions.extend(lane.presence(1, false));
        actions.extend(lane.advance(1));
        if lane.c.wanted_barrier() == Barrier::Lower {
            prop_assert_eq!(lane.c.barrier(), Some(Barrier::Lower));
        }
    }

    /// Rule 4: once a vehicle arrives on a lane whose loops were clear, the light is red
    /// and a lower is wanted until the agent's next lane command, whatever else happens
    /// meanwhile (presence flicker, silence, acknowledgements, line noise).
    #[test]
    fn an_arriving_vehicle_meets_red_until_the_next_command(
        start in any::<u32>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut lane = Lane::with(config(), start);
        lane.run();
        let mut present = [false; 2];
        let mut waiting = false;
        for op in ops {
            match op {
                Op::Presence(l, p) => {
                    let before = present.iter().any(|&x| x);
                    if let Some(slot) = present.get_mut(usize::from(l)) {
                        *slot = p;
                    }
                    if !before && present.iter().any(|&x| x) {
                        waiting = true;
                    }
                    lane.presence(l, p);
                }
                Op::Command(seq, l, b) => {
                    waiting = false;
                    lane.command(seq, l, b);
                }
                Op::Advance(ms) => {
                    lane.advance(ms);
                }
                Op::AckEverything => lane.ack_all_quietly(),
                Op::Garbage => {
                    lane.event(Event::LinkError(LinkError::Cobs { len: 3 }));
                }
            }
            if waiting {
                prop_assert_eq!(lane.c.light(), Some(Light::Red));
                prop_assert_eq!(lane.c.wanted_barrier(), Barrier::Lower);
            }
        }
    }
}
