//! Lane scripts: the documented format parses to the steps it says, mistakes are reported
//! with their line, and a script drives a real virtual board.
#![cfg(unix)]

use std::time::Duration;

use aeogate::vboard::{Fault, Step, VirtualBoard, VirtualBoardConfig, parse_script, run_script};
use protocol::link::{BatteryLevel, SealRead, SealStatus};

const EXAMPLE: &str = "\
# a truck with a tag and an e-seal stops for four seconds
arrive tags=3074257BF7194E4000001A85 eseal=0042-0001E240:SEALED:OK
wait 4s
leave
fault garbage 64
fault drop-frames 3
fault reader-silent uhf 5s
fault unplug 2s
";

fn steps(text: &str) -> Vec<Step> {
    parse_script(text, 7)
        .expect("script parses")
        .steps
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

fn error_line(text: &str) -> (usize, String) {
    let e = parse_script(text, 7).expect_err("script is rejected");
    (e.line, e.message)
}

#[test]
fn the_documented_example_parses_to_its_steps() {
    let steps = steps(EXAMPLE);
    assert_eq!(steps.len(), 7);
    let Step::Arrive(truck) = &steps[0] else {
        panic!("first step is {:?}", steps[0]);
    };
    assert_eq!(
        truck.tags,
        vec![vec![
            0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85
        ]]
    );
    assert_eq!(truck.eseals, vec![SealRead::sealed(0x0042, 0x0001_E240)]);
    assert_eq!(steps[1], Step::Wait(Duration::from_secs(4)));
    assert_eq!(steps[2], Step::Leave);
    assert!(matches!(&steps[3], Step::Fault(Fault::Garbage(b)) if b.len() == 64));
    assert_eq!(steps[4], Step::Fault(Fault::DropFrames(3)));
    assert_eq!(
        steps[5],
        Step::Fault(Fault::ReaderSilent {
            uhf: true,
            for_ms: 5000
        })
    );
    assert_eq!(steps[6], Step::Fault(Fault::Unplug { for_ms: 2000 }));
}

#[test]
fn eseal_status_and_battery_default_to_sealed_and_ok() {
    let steps = steps("arrive eseal=0042-0001E240,0042-0001E241:tampered:low");
    let Step::Arrive(truck) = &steps[0] else {
        panic!("not an arrival: {steps:?}");
    };
    let states: Vec<_> = truck.eseals.iter().map(|s| (s.status, s.battery)).collect();
    assert_eq!(
        states,
        [
            (SealStatus::Sealed, BatteryLevel::Ok),
            (SealStatus::Tampered, BatteryLevel::Low)
        ]
    );
}

#[test]
fn an_unknown_command_is_reported_with_its_line() {
    let (line, message) = error_line("leave\n\n# fine\nfrobnicate now\n");
    assert_eq!(line, 4);
    assert!(message.contains("frobnicate"), "{message}");
}

#[test]
fn an_epc_of_odd_length_is_rejected() {
    let (line, message) = error_line("arrive tags=30742");
    assert_eq!(line, 1);
    assert!(message.contains("30742"), "{message}");
}

#[test]
fn an_epc_longer_than_gen2_allows_is_rejected() {
    let (_, message) = error_line(&format!("arrive tags={}", "AB".repeat(64)));
    assert!(message.contains("64 EPC bytes"), "{message}");
}

#[test]
fn a_bad_eseal_id_or_state_is_rejected() {
    assert!(error_line("arrive eseal=42-1").1.contains("e-seal id"));
    assert!(
        error_line("arrive eseal=0042-0001E240:BROKEN")
            .1
            .contains("BROKEN")
    );
    let (_, status) = error_line("arrive eseal=0042-0001E240:broken");
    assert!(
        status.contains("e-seal status \"BROKEN\"; expected SEALED, OPENED or TAMPERED"),
        "{status}"
    );
    let (_, battery) = error_line("arrive eseal=0042-0001E240:sealed:flat");
    assert!(
        battery.contains("e-seal battery \"FLAT\"; expected OK, LOW or CRITICAL"),
        "{battery}"
    );
}

#[test]
fn a_restart_parses_with_and_without_an_uptime() {
    assert_eq!(
        steps("fault restart 200ms\nfault restart 1s uptime=10m"),
        [
            Step::Fault(Fault::Restart {
                down_ms: 200,
                uptime_ms: 0
            }),
            Step::Fault(Fault::Restart {
                down_ms: 1000,
                uptime_ms: 600_000
            }),
        ]
    );
    assert!(error_line("fault restart 1s 10m").1.contains("uptime="));
    assert!(
        error_line("fault restart 1s uptime=soon")
            .1
            .contains("soon")
    );
}

#[test]
fn a_bad_duration_is_rejected() {
    assert_eq!(error_line("wait\nwait soon").0, 1);
    assert!(error_line("wait soon").1.contains("soon"));
    assert!(error_line("fault unplug 2days").1.contains("24 h"));
}

#[test]
fn garbage_repeats_for_a_seed_and_differs_between_seeds() {
    let garbage = |seed| match &parse_script("fault garbage 32", seed)
        .expect("parses")
        .steps[0]
        .1
    {
        Step::Fault(Fault::Garbage(b)) => b.clone(),
        other => panic!("not garbage: {other:?}"),
    };
    assert_eq!(garbage(1), garbage(1));
    assert_ne!(garbage(1), garbage(2));
}

#[test]
fn a_script_puts_a_truck_on_the_loops_of_a_running_board() {
    let board = VirtualBoard::spawn(VirtualBoardConfig::default()).expect("board starts");
    let script = parse_script(
        "arrive tags=3074257BF7194E4000001A85 eseal=0042-0001E240\nwait 300ms\n",
        0,
    )
    .expect("parses");
    let mut out = Vec::new();
    run_script(&board, &script, &mut out).expect("runs");
    let out = String::from_utf8(out).expect("UTF-8");
    assert!(
        out.contains("[1] truck arrives: 1 tag(s), 1 e-seal(s)"),
        "{out}"
    );
    let stats = board.stats();
    assert_eq!(stats.presence, 0b11, "both loops occupied: {stats:?}");
    assert!(stats.uhf.answered > 0, "the UHF module was never polled");

    let leave = parse_script("leave\nwait 300ms", 0).expect("parses");
    run_script(&board, &leave, &mut Vec::new()).expect("runs");
    assert_eq!(board.stats().presence, 0);
}

#[test]
fn the_cli_runs_a_script_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lane.txt");
    std::fs::write(
        &path,
        "arrive tags=3074257BF7194E4000001A85\nwait 100ms\nleave\n",
    )
    .expect("write script");
    aeogate::vboard::run_board_cli("L7", Some(&path)).expect("script runs");
}

#[test]
fn the_cli_names_the_file_and_line_of_a_bad_script() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, "leave\nfault unplug\n").expect("write script");
    let e = aeogate::vboard::run_board_cli("L7", Some(&path)).expect_err("rejected");
    let text = format!("{e:#}");
    assert!(
        text.contains("bad.txt") && text.contains("line 2"),
        "{text}"
    );
}

#[test]
fn the_cli_refuses_a_lane_that_is_not_a_lane_id() {
    let e = aeogate::vboard::run_board_cli("lane 7/../x", None).expect_err("rejected");
    assert!(format!("{e:#}").contains("lane"), "{e:#}");
}
