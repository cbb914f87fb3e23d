//! E-seal reader driver against a scripted UART.
#![allow(clippy::unwrap_used)]

mod common;

use common::FakeUart;
use embedded_io::ErrorKind;
use firmware::Error;
use firmware::eseal::SealReader;
use protocol::link::{BatteryLevel, EpochMinutes, SealRead, SealStatus};
use protocol::reader::FrameError;
use protocol::reader::eseal::{self, Nak, Reply, Request, SealReport};

fn reader() -> (SealReader<FakeUart>, FakeUart) {
    let uart = FakeUart::new();
    (SealReader::with_timeout(uart.clone(), 300), uart)
}

fn bytes(reply: &Reply) -> Vec<u8> {
    let mut out = [0u8; eseal::MAX_FRAME];
    let n = reply.encode(&mut out).unwrap();
    out[..n].to_vec()
}

fn seal(status: SealStatus) -> Reply {
    Reply::Seal(SealReport {
        seal: SealRead {
            manufacturer: 0x0042,
            tag_id: 77,
            status,
            battery: BatteryLevel::Ok,
            sealed_at: Some(EpochMinutes(29_000_000)),
            opened_at: None,
        },
        rssi: -70,
    })
}

#[test]
fn sends_poll_request() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    assert_eq!(uart.written(), [0x02, 0x01, 0x01, 0x3E, 0x1F, 0x03]);
    assert!(r.is_waiting());
}

#[test]
fn poll_yields_each_seal_then_done() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    uart.reply(&bytes(&seal(SealStatus::Sealed)));
    uart.reply(&bytes(&seal(SealStatus::Tampered)));
    uart.reply(&bytes(&Reply::PollDone { count: 2 }));
    assert_eq!(r.poll(10).unwrap(), Some(seal(SealStatus::Sealed)));
    assert_eq!(r.poll(10).unwrap(), Some(seal(SealStatus::Tampered)));
    assert!(r.is_waiting());
    assert_eq!(r.poll(10).unwrap(), Some(Reply::PollDone { count: 2 }));
    assert!(!r.is_waiting());
}

#[test]
fn seal_reports_extend_the_poll_deadline() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    uart.reply(&bytes(&seal(SealStatus::Sealed)));
    assert!(r.poll(250).unwrap().is_some());
    assert_eq!(r.poll(500).unwrap(), None); // 250 ms after the report
    assert_eq!(r.poll(550), Err(Error::Timeout));
}

#[test]
fn silent_reader_times_out() {
    let (mut r, _uart) = reader();
    r.send(Request::GetStatus, 1000).unwrap();
    assert_eq!(r.poll(1299).unwrap(), None);
    assert_eq!(r.poll(1300), Err(Error::Timeout));
    assert!(!r.is_waiting());
}

#[test]
fn status_answers_get_status() {
    let (mut r, uart) = reader();
    r.send(Request::GetStatus, 0).unwrap();
    let status = Reply::Status {
        fw_version: 0x0102,
        in_range: 3,
    };
    uart.reply(&bytes(&status));
    assert_eq!(r.poll(1).unwrap(), Some(status));
}

#[test]
fn nak_ends_the_request() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    uart.reply(&bytes(&Reply::Nak(Nak::Busy)));
    assert_eq!(r.poll(1).unwrap(), Some(Reply::Nak(Nak::Busy)));
    assert!(!r.is_waiting());
}

#[test]
fn reports_bad_crc() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    let mut b = bytes(&Reply::PollDone { count: 0 });
    b[4] ^= 0x80;
    uart.reply(&b);
    assert!(matches!(r.poll(1), Err(Error::Checksum { .. })));
    assert!(r.is_waiting());
}

#[test]
fn truncated_frame_is_reported_then_times_out() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    uart.reply(&bytes(&seal(SealStatus::Opened))[..10]);
    assert_eq!(r.poll(100).unwrap(), None);
    assert_eq!(
        r.poll(120),
        Err(Error::Frame(FrameError::Truncated { have: 10 }))
    );
    assert_eq!(r.poll(300), Err(Error::Timeout));
}

#[test]
fn done_without_a_poll_is_unexpected() {
    let (mut r, uart) = reader();
    uart.reply(&bytes(&Reply::PollDone { count: 0 }));
    assert_eq!(r.poll(1), Err(Error::Unexpected { command: 0x82 }));
}

#[test]
fn status_during_a_poll_is_unexpected() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    uart.reply(&bytes(&Reply::Status {
        fw_version: 1,
        in_range: 0,
    }));
    assert_eq!(r.poll(1), Err(Error::Unexpected { command: 0x83 }));
}

#[test]
fn echoed_request_is_unexpected() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    uart.reply(&uart.written());
    assert_eq!(r.poll(1), Err(Error::Unexpected { command: 0x01 }));
}

#[test]
fn undefined_status_byte_is_a_frame_error() {
    let (mut r, uart) = reader();
    r.send(Request::Poll, 0).unwrap();
    let mut payload = [0u8; 17];
    payload[6] = 0x7F;
    let mut out = [0u8; 32];
    let n = eseal::encode_frame(eseal::kind::SEAL, &payload, &mut out).unwrap();
    uart.reply(&out[..n]);
    assert_eq!(
        r.poll(1),
        Err(Error::Frame(FrameError::BadValue {
            field: "status",
            value: 0x7F
        }))
    );
}

#[test]
fn uart_error_is_kept() {
    let (mut r, uart) = reader();
    uart.break_line();
    assert_eq!(
        r.send(Request::Poll, 0),
        Err(Error::Uart(ErrorKind::BrokenPipe))
    );
}

#[test]
fn release_returns_the_uart() {
    let (r, uart) = reader();
    uart.reply(&[9]);
    assert_eq!(r.release().0.borrow().rx.len(), 1);
}
