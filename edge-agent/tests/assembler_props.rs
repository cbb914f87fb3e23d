//! Gate transaction assembly: opening, folding, dedupe, closing, orphans.

use std::collections::HashSet;
use std::time::Duration;

use edge_agent::assembler::{Assembler, AssemblerEvent, AssemblerOutput, RawRead};
use edge_agent::config::{LaneConfig, Routes};
use jiff::Timestamp;
use proptest::prelude::*;
use protocol::container::ContainerNumber;
use protocol::schema::{CloseReason, GateId, GateTransaction, LaneId, ReadSource, ReadValue};

mod assembler_support {
    use super::{Assembler, GateId, LaneConfig, LaneId, Routes};
    include!("assembler_support/lanes.rs");
}
use assembler_support::Lanes;

/// A transaction times out after 120 s; a loop-less lane closes after 10 s quiet (the
/// configuration's defaults).
const LANES: Lanes = Lanes {
    transaction_timeout: Duration::from_secs(120),
    quiet_close: Duration::from_secs(10),
};

fn asm() -> Assembler {
    LANES.assembler()
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("ts")
}

fn tag(lane: &str, device: &str, uri: &str, at: Timestamp) -> AssemblerEvent {
    AssemblerEvent::Read(RawRead {
        lane: LaneId::parse(lane).expect("lane"),
        source: ReadSource::Rfid,
        device: device.into(),
        raw: uri.to_uppercase(),
        value: ReadValue::Tag {
            uri: uri.into(),
            scheme: "giai-96".into(),
        },
        at,
        antenna: Some(1),
        rssi: Some(-50),
        confidence: None,
        entered_by: None,
    })
}

fn ocr(lane: &str, number: &str, at: Timestamp) -> AssemblerEvent {
    AssemblerEvent::Read(RawRead {
        lane: LaneId::parse(lane).expect("lane"),
        source: ReadSource::Ocr,
        device: "ocr".into(),
        raw: number.into(),
        value: ReadValue::Container {
            number: ContainerNumber::parse(number).expect("container"),
        },
        at,
        antenna: None,
        rssi: None,
        confidence: Some(90),
        entered_by: None,
    })
}

fn presence(lane: &str, present: bool, at: Timestamp) -> AssemblerEvent {
    AssemblerEvent::Presence {
        lane: LaneId::parse(lane).expect("lane"),
        loop_id: 0,
        present,
        at,
    }
}

/// An assembler with a truck on L1: its loop present since `t(0)`.
fn truck_on_l1() -> Assembler {
    let mut a = asm();
    a.handle(presence("L1", true, t(0)));
    a
}

/// L1's open transaction.
fn open_on_l1(a: &Assembler) -> &GateTransaction {
    a.open(&LaneId::parse("L1").expect("lane")).expect("open")
}

fn closed(out: &[AssemblerOutput]) -> Vec<GateTransaction> {
    out.iter()
        .filter_map(|o| match o {
            AssemblerOutput::Closed(tx) => Some(tx.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn presence_opens_and_departure_closes_after_grace() {
    let mut a = asm();
    let out = a.handle(presence("L1", true, t(0)));
    assert!(matches!(out[0], AssemblerOutput::Opened { .. }));
    a.handle(tag("L1", "r1", "urn:epc:id:giai:0614141.1", t(1)));
    a.handle(presence("L1", false, t(5)));
    assert!(closed(&a.tick(t(5))).is_empty(), "grace not yet over");
    let txs = closed(&a.tick(t(7)));
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].close_reason, CloseReason::Departure);
    assert_eq!(txs[0].closed_at, t(5));
    assert_eq!(txs[0].reads.len(), 1);
}

#[test]
fn loop_flicker_does_not_split_a_transaction() {
    let mut a = truck_on_l1();
    a.handle(presence("L1", false, t(3)));
    let out = a.handle(presence("L1", true, t(3)));
    assert!(
        !out.iter()
            .any(|o| matches!(o, AssemblerOutput::Opened { .. }))
    );
    a.handle(presence("L1", false, t(10)));
    assert_eq!(closed(&a.tick(t(20))).len(), 1);
}

#[test]
fn repeats_of_one_tag_are_counted_not_kept() {
    let mut a = truck_on_l1();
    for i in 0..50 {
        a.handle(tag("L1", "r1", "urn:epc:id:giai:0614141.1", t(1 + i / 10)));
    }
    a.handle(tag("L1", "r2", "urn:epc:id:giai:0614141.1", t(2)));
    let tx = open_on_l1(&a);
    assert_eq!(tx.reads.len(), 2, "one entry per device and value");
    assert_eq!(tx.reads[0].count, 50);
    assert_eq!(tx.reads[0].first_at, t(1));
    assert_eq!(tx.reads[0].last_at, t(5));
}

#[test]
fn read_shortly_before_presence_is_folded_in() {
    let mut a = asm();
    assert!(a.handle(ocr("L1", "CSQU3054383", t(0))).is_empty());
    a.handle(presence("L1", true, t(3)));
    let tx = open_on_l1(&a);
    assert_eq!(tx.reads.len(), 1);
}

#[test]
fn read_long_before_presence_becomes_orphan() {
    let mut a = asm();
    a.handle(ocr("L1", "CSQU3054383", t(0)));
    let out = a.handle(presence("L1", true, t(30)));
    assert!(
        out.iter()
            .any(|o| matches!(o, AssemblerOutput::OrphanRead(_)))
    );
    let tx = open_on_l1(&a);
    assert!(tx.reads.is_empty());
}

#[test]
fn read_on_unknown_lane_is_orphan() {
    let mut a = asm();
    let out = a.handle(ocr("L9", "CSQU3054383", t(0)));
    assert!(matches!(out.as_slice(), [AssemblerOutput::OrphanRead(_)]));
}

#[test]
fn loopless_lane_opens_on_read_and_closes_when_quiet() {
    let mut a = asm();
    let out = a.handle(ocr("L2", "CSQU3054383", t(0)));
    assert!(matches!(out[0], AssemblerOutput::Opened { .. }));
    a.handle(ocr("L2", "TASU1170000", t(4)));
    assert!(closed(&a.tick(t(13))).is_empty());
    let txs = closed(&a.tick(t(14)));
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].containers().len(), 2, "two containers on one truck");
    assert_eq!(txs[0].closed_at, t(14));
}

#[test]
fn ocr_and_rfid_disagreeing_are_both_kept() {
    let mut a = truck_on_l1();
    a.handle(ocr("L1", "CSQU3054383", t(1)));
    a.handle(tag("L1", "r1", "urn:epc:id:bic:TASU1170000", t(1)));
    let tx = open_on_l1(&a);
    assert_eq!(tx.reads.len(), 2);
}

#[test]
fn transaction_timeout_closes() {
    let mut a = truck_on_l1();
    let txs = closed(&a.tick(t(121)));
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].close_reason, CloseReason::Timeout);
    assert_eq!(txs[0].closed_at, t(120));
}

#[test]
fn close_all_closes_with_shutdown() {
    let mut a = truck_on_l1();
    a.handle(ocr("L2", "CSQU3054383", t(0)));
    let txs = closed(&a.close_all(t(2)));
    assert_eq!(txs.len(), 2);
    assert!(txs.iter().all(|t| t.close_reason == CloseReason::Shutdown));
}

#[derive(Debug, Clone)]
enum Ev {
    Read {
        lane: bool,
        device: u8,
        value: u8,
    },
    Presence {
        present: bool,
    },
    Tick,
    /// A supervisor closes or reopens a lane.
    Control {
        lane: bool,
        closed: bool,
    },
}

fn ev() -> impl Strategy<Value = (Ev, u8)> {
    let e = prop_oneof![
        6 => (any::<bool>(), 0u8..3, 0u8..4).prop_map(|(lane, device, value)| Ev::Read { lane, device, value }),
        2 => any::<bool>().prop_map(|present| Ev::Presence { present }),
        1 => Just(Ev::Tick),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(lane, closed)| Ev::Control { lane, closed }),
    ];
    (e, 0u8..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_read_is_lost_and_dedupe_is_exact_even_on_closed_lanes(events in proptest::collection::vec(ev(), 0..120)) {
        let mut a = asm();
        let mut now = 0i64;
        let mut reads = 0u64;
        let mut outs = Vec::new();
        for (e, dt) in events {
            now += i64::from(dt);
            match e {
                Ev::Read { lane, device, value } => {
                    reads += 1;
                    let l = if lane { "L1" } else { "L2" };
                    let uri = format!("urn:epc:id:giai:0614141.{value}");
                    outs.extend(a.handle(tag(l, &format!("d{device}"), &uri, t(now))));
                }
                Ev::Presence { present } => outs.extend(a.handle(presence("L1", present, t(now)))),
                Ev::Tick => outs.extend(a.tick(t(now))),
                Ev::Control { lane, closed } => {
                    let l = LaneId::parse(if lane { "L1" } else { "L2" }).expect("lane");
                    prop_assert!(a.set_closed(&l, closed));
                }
            }
        }
        outs.extend(a.close_all(t(now + 1)));
        let mut accounted = 0u64;
        for o in &outs {
            match o {
                AssemblerOutput::Closed(tx) => {
                    let mut keys = HashSet::new();
                    for r in &tx.reads {
                        prop_assert!(r.count >= 1);
                        prop_assert!(r.first_at <= r.last_at);
                        prop_assert!(keys.insert((r.source, r.device.clone(), format!("{:?}", r.value))),
                            "duplicate read entry in one transaction");
                        accounted += u64::from(r.count);
                    }
                }
                AssemblerOutput::OrphanRead(_) => accounted += 1,
                AssemblerOutput::Refused { reads, .. } => accounted += reads.len() as u64,
                _ => {}
            }
        }
        prop_assert_eq!(accounted, reads);
        prop_assert!(a.open(&LaneId::parse("L1").expect("lane")).is_none());
    }
}
