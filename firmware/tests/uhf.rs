//! UHF module driver against a scripted UART.
#![allow(clippy::unwrap_used)]

mod common;

use common::{FakeUart, hex};
use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_io::ErrorKind;
use firmware::Error;
use firmware::uhf::UhfReader;
use protocol::reader::FrameError;
use protocol::reader::uhf::{Command, InfoKind, Reply};

// Frames from tests/vectors/reader_frames.tsv (BB-7E rows).
const SINGLE_POLL: &str = "BB00220000227E";
const TAG_NOTICE: &str = "BB02220011C9340030751FEB705C5904E3D50D703A76EF7E";
const NO_TAG: &str = "BB01FF000115167E";

fn reader() -> (UhfReader<FakeUart>, FakeUart) {
    let uart = FakeUart::new();
    (UhfReader::with_timeout(uart.clone(), 100), uart)
}

#[test]
fn sends_single_poll_frame() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    assert_eq!(uart.written(), hex(SINGLE_POLL));
    assert!(r.is_waiting());
}

#[test]
fn returns_tag_from_poll_notice() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    uart.reply(&hex(TAG_NOTICE));
    let Some(Reply::Tag(tag)) = r.poll(5).unwrap() else {
        panic!("no tag");
    };
    assert_eq!(tag.epc.as_slice(), hex("30751FEB705C5904E3D50D70"));
    assert_eq!(tag.rssi, -55);
    assert!(!r.is_waiting());
}

#[test]
fn no_tag_error_frame_answers_the_poll() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    uart.reply(&hex(NO_TAG));
    assert_eq!(r.poll(5).unwrap(), Some(Reply::Error { code: 0x15 }));
    assert!(!r.is_waiting());
    assert_eq!(r.poll(500).unwrap(), None);
}

#[test]
fn nothing_ready_is_not_an_error() {
    let (mut r, _uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    assert_eq!(r.poll(99).unwrap(), None);
}

#[test]
fn silent_module_times_out_once() {
    let (mut r, _uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    assert_eq!(r.poll(100), Err(Error::Timeout));
    assert_eq!(r.poll(200).unwrap(), None);
}

#[test]
fn timeout_counts_across_clock_wrap() {
    let (mut r, _uart) = reader();
    r.send(Command::SinglePoll, u32::MAX - 10).unwrap();
    assert_eq!(r.poll(50).unwrap(), None); // 61 ms later
    assert_eq!(r.poll(89), Err(Error::Timeout)); // 100 ms later
}

#[test]
fn reports_checksum_error() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    let mut bad = hex(TAG_NOTICE);
    let ck = bad.len() - 2;
    bad[ck] ^= 0x01;
    uart.reply(&bad);
    assert_eq!(
        r.poll(1),
        Err(Error::Checksum {
            expected: 0xEF,
            found: 0xEE
        })
    );
}

#[test]
fn truncated_frame_is_reported_when_the_line_goes_quiet_then_times_out() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    uart.reply(&hex(TAG_NOTICE)[..12]);
    assert_eq!(r.poll(10).unwrap(), None);
    assert_eq!(
        r.poll(29).unwrap(),
        None,
        "19 ms of quiet: the rest may still come"
    );
    assert_eq!(
        r.poll(30),
        Err(Error::Frame(FrameError::Truncated { have: 12 }))
    );
    assert_eq!(r.poll(100), Err(Error::Timeout));
}

#[test]
fn frame_swallowed_by_noise_is_recovered_when_the_line_goes_quiet() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    // Noise `BB 01 22 00 40` declares 64 parameter bytes; the real answer follows.
    uart.reply(&hex("BB01220040"));
    uart.reply(&hex(NO_TAG));
    assert_eq!(r.poll(1).unwrap(), None);
    assert_eq!(
        r.poll(21),
        Err(Error::Frame(FrameError::Truncated { have: 13 }))
    );
    assert_eq!(r.poll(21).unwrap(), Some(Reply::Error { code: 0x15 }));
    assert!(!r.is_waiting());
}

#[test]
fn tag_with_bad_stored_crc_is_reported() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    // Tag CRC 3A77 instead of 3A76, module checksum recomputed (0xEF + 1).
    uart.reply(&hex("BB02220011C9340030751FEB705C5904E3D50D703A77F07E"));
    assert_eq!(
        r.poll(1),
        Err(Error::Frame(FrameError::TagCrc {
            expected: 0x3A76,
            found: 0x3A77
        }))
    );
    assert!(
        !r.is_waiting(),
        "a damaged tag still proves the module answered"
    );
}

#[test]
fn response_to_another_command_is_unexpected() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    uart.reply(&hex("BB01B6000100B87E")); // set-power success
    assert_eq!(r.poll(1), Err(Error::Unexpected { command: 0xB6 }));
    assert!(r.is_waiting());
}

#[test]
fn echoed_command_is_unexpected() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    uart.reply(&uart.written()); // TX looped back to RX
    assert_eq!(r.poll(1), Err(Error::Unexpected { command: 0x22 }));
}

#[test]
fn multi_poll_notices_arrive_without_a_request() {
    let (mut r, uart) = reader();
    uart.reply(&hex(TAG_NOTICE));
    uart.reply(&hex(TAG_NOTICE));
    assert!(matches!(r.poll(0).unwrap(), Some(Reply::Tag(_))));
    assert!(matches!(r.poll(0).unwrap(), Some(Reply::Tag(_))));
    assert_eq!(r.poll(0).unwrap(), None);
}

#[test]
fn skips_garbage_before_a_frame() {
    let (mut r, uart) = reader();
    r.send(Command::SinglePoll, 0).unwrap();
    uart.reply(&[0x00, 0xBB, 0x42, 0x7E, 0x13]);
    uart.reply(&hex(NO_TAG));
    let mut results = vec![];
    for _ in 0..10 {
        match r.poll(1) {
            Ok(None) => break,
            other => results.push(other),
        }
    }
    assert_eq!(
        results[0],
        Err(Error::Frame(FrameError::BadType { found: 0x42 }))
    );
    assert_eq!(results.last(), Some(&Ok(Some(Reply::Error { code: 0x15 }))));
}

#[test]
fn uart_error_is_kept() {
    let (mut r, uart) = reader();
    uart.break_line();
    assert_eq!(
        r.send(Command::SinglePoll, 0),
        Err(Error::Uart(ErrorKind::BrokenPipe))
    );
    assert_eq!(r.poll(0), Err(Error::Uart(ErrorKind::BrokenPipe)));
}

#[test]
fn set_tx_power_sends_the_command_and_accepts_success() {
    let (mut r, uart) = reader();
    uart.reply(&hex("BB01B6000100B87E"));
    r.set_tx_power(2000, &mut NoopDelay::new()).unwrap();
    assert_eq!(uart.written(), hex("BB00B6000207D08F7E"));
}

#[test]
fn set_tx_power_reports_refusal() {
    let (mut r, uart) = reader();
    uart.reply(&hex("BB01B6000101B97E"));
    assert_eq!(
        r.set_tx_power(3300, &mut NoopDelay::new()),
        Err(Error::Rejected { code: 0x01 })
    );
}

#[test]
fn request_reports_module_error_frame() {
    let (mut r, uart) = reader();
    uart.reply(&hex("BB01FF0001090A7E"));
    assert_eq!(
        r.request(Command::GetTxPower, &mut NoopDelay::new()),
        Err(Error::Rejected { code: 0x09 })
    );
}

#[test]
fn request_times_out_on_silent_module() {
    let (mut r, _uart) = reader();
    assert_eq!(
        r.info(InfoKind::Hardware, &mut NoopDelay::new()),
        Err(Error::Timeout)
    );
}

#[test]
fn info_returns_the_string_skipping_tags_meanwhile() {
    let (mut r, uart) = reader();
    uart.reply(&hex(TAG_NOTICE));
    let mut frame = [0u8; 32];
    let n = protocol::reader::uhf::encode_frame(
        protocol::reader::uhf::FrameType::Response,
        0x03,
        b"\x00M100 26dBm",
        &mut frame,
    )
    .unwrap();
    uart.reply(&frame[..n]);
    let text = r.info(InfoKind::Hardware, &mut NoopDelay::new()).unwrap();
    assert_eq!(text.as_slice(), b"M100 26dBm");
    assert_eq!(uart.written(), hex("BB0003000100047E"));
}

#[test]
fn release_returns_the_uart() {
    let (r, uart) = reader();
    uart.reply(&[1, 2, 3]);
    let back = r.release();
    assert_eq!(back.0.borrow().rx.len(), 3);
}
