//! Reader wire formats: the `BB … 7E` UHF module and the e-seal reader frame.
// Test data is built here and known good; unwrapping it is the assertion.
#![allow(clippy::unwrap_used)]

mod common;

use common::arb_seal_read;
use heapless::Vec;
use proptest::prelude::*;
use protocol::link::{BatteryLevel, EpochMinutes, SealRead, SealStatus};
use protocol::reader::{Format, FrameError, FrameParser, eseal, uhf};

fn hex(s: &str) -> std::vec::Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Feeds `bytes`, then lets the line go quiet until the parser has nothing left; every
/// result in order.
fn push_then_idle<F: Format, const CAP: usize>(
    parser: &mut FrameParser<F, CAP>,
    bytes: &[u8],
) -> std::vec::Vec<Result<F::Frame, FrameError>> {
    let mut results = vec![];
    parser.push_slice(bytes, |r| results.push(r));
    while let Some(r) = parser.idle() {
        results.push(r);
    }
    results
}

/// Pushes `bytes` through `parser` and idles it, interpreting every frame it found with
/// `parse`; returns how many bytes the parser still holds.
fn left_after_idle<F: Format, const CAP: usize, R>(
    mut parser: FrameParser<F, CAP>,
    bytes: &[u8],
    parse: fn(&F::Frame) -> R,
) -> usize {
    for frame in push_then_idle(&mut parser, bytes).into_iter().flatten() {
        let _ = parse(&frame);
    }
    parser.pending()
}

/// The one frame among `results`; panics on anything else.
fn only<T: Clone + std::fmt::Debug>(results: &[Result<T, FrameError>]) -> T {
    match results {
        [Ok(frame)] => frame.clone(),
        other => panic!("expected one frame, got {other:?}"),
    }
}

/// Feed a burst of bytes, then let the line go idle; every result in order.
fn uhf_all(bytes: &[u8]) -> std::vec::Vec<Result<uhf::RawFrame, FrameError>> {
    push_then_idle(&mut uhf::Parser::new(), bytes)
}

fn uhf_one(bytes: &[u8]) -> uhf::RawFrame {
    only(&uhf_all(bytes))
}

fn encode_cmd(cmd: uhf::Command) -> std::vec::Vec<u8> {
    let mut out = [0u8; uhf::MAX_FRAME];
    let n = cmd.encode(&mut out).unwrap();
    out[..n].to_vec()
}

// Rows of tests/vectors/reader_frames.tsv for the BB-7E family, named for the tests
// below; `every_bb_row_of_the_test_vectors_parses` reads the whole file.
const SINGLE_POLL: &str = "BB00220000227E";
const MULTI_POLL_10000: &str = "BB00270003222710837E";
const STOP_MULTI_POLL: &str = "BB00280000287E";
const GET_INFO_HW: &str = "BB0003000100047E";
const SET_POWER_2000: &str = "BB00B6000207D08F7E";
const ERROR_READ_STORAGE: &str = "BB01FF0001090A7E";
const TAG_NOTICE: &str = "BB02220011C9340030751FEB705C5904E3D50D703A76EF7E";
const EPC: &str = "30751FEB705C5904E3D50D70";

#[test]
fn encodes_single_poll() {
    assert_eq!(encode_cmd(uhf::Command::SinglePoll), hex(SINGLE_POLL));
}

#[test]
fn encodes_multi_poll_with_count() {
    assert_eq!(
        encode_cmd(uhf::Command::MultiPoll { count: 10_000 }),
        hex(MULTI_POLL_10000)
    );
}

#[test]
fn encodes_stop_multi_poll() {
    assert_eq!(
        encode_cmd(uhf::Command::StopMultiPoll),
        hex(STOP_MULTI_POLL)
    );
}

#[test]
fn encodes_get_hardware_info() {
    assert_eq!(
        encode_cmd(uhf::Command::GetInfo(uhf::InfoKind::Hardware)),
        hex(GET_INFO_HW)
    );
}

#[test]
fn encodes_set_tx_power_in_centi_dbm() {
    assert_eq!(
        encode_cmd(uhf::Command::SetTxPower { centi_dbm: 2000 }),
        hex(SET_POWER_2000)
    );
}

#[test]
fn encoding_reports_small_buffer() {
    let mut out = [0u8; 6];
    assert_eq!(
        uhf::Command::SinglePoll.encode(&mut out),
        Err(FrameError::BufferTooSmall {
            needed: 7,
            available: 6
        })
    );
}

#[test]
fn command_frames_are_recognised_back() {
    for cmd in [
        uhf::Command::SinglePoll,
        uhf::Command::MultiPoll { count: 7 },
        uhf::Command::StopMultiPoll,
        uhf::Command::GetInfo(uhf::InfoKind::Manufacturer),
        uhf::Command::SetTxPower { centi_dbm: 2600 },
        uhf::Command::GetTxPower,
    ] {
        let frame = uhf_one(&encode_cmd(cmd));
        assert_eq!(uhf::Command::from_frame(&frame), Some(cmd));
    }
}

#[test]
fn parses_error_response() {
    let frame = uhf_one(&hex(ERROR_READ_STORAGE));
    assert_eq!(
        uhf::Reply::parse(&frame),
        Ok(uhf::Reply::Error { code: 0x09 })
    );
}

#[test]
fn parses_tag_notice_fields() {
    let frame = uhf_one(&hex(TAG_NOTICE));
    let uhf::Reply::Tag(tag) = uhf::Reply::parse(&frame).unwrap() else {
        panic!("not a tag");
    };
    assert_eq!(tag.rssi, -55); // 0xC9
    assert_eq!(tag.pc, 0x3400); // 6 words, UMI set
    assert_eq!(tag.epc.as_slice(), hex(EPC));
    assert_eq!(tag.crc, 0x3A76);
}

#[test]
fn tag_crc_is_gen2_crc16_over_pc_and_epc() {
    // tests/vectors/reader_frames.tsv, "EPC Gen2 StoredCRC" row.
    assert_eq!(
        uhf::tag_crc(0x3000, &hex("000000000000000000001545")),
        0xE94A
    );
}

#[test]
fn every_bb_row_of_the_test_vectors_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/reader_frames.tsv"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read vector file {path}: {e}"));
    let mut rows = 0;
    for line in text.lines().filter(|l| l.starts_with("BB-7E")) {
        let cols: std::vec::Vec<&str> = line.split('\t').collect();
        let bytes = hex(cols[2]);
        let frame = uhf_one(&bytes);
        match cols[1] {
            "host->module" => {
                let cmd = uhf::Command::from_frame(&frame).unwrap();
                assert_eq!(encode_cmd(cmd), bytes, "{line}");
            }
            _ => {
                let reply = uhf::Reply::parse(&frame).unwrap();
                assert!(!matches!(reply, uhf::Reply::Other(_)), "{line}");
            }
        }
        rows += 1;
    }
    assert!(rows >= 7, "only {rows} BB-7E rows found");
}

#[test]
fn rejects_malformed_frames() {
    let cases = [
        // M5Stack's WRITE_STORAGE_ERROR constant: the bytes sum to 0x11, it carries 0x0A.
        (
            "BB01FF0001100A7E",
            FrameError::Checksum {
                expected: 0x11,
                found: 0x0A,
            },
        ),
        (
            "BB00220000227F",
            FrameError::EndByte {
                found: 0x7F,
                expected: 0x7E,
            },
        ),
        ("BB05", FrameError::BadType { found: 0x05 }),
    ];
    for (frame, error) in cases {
        assert_eq!(uhf_all(&hex(frame)), [Err(error)], "{frame}");
    }
}

#[test]
fn rejects_oversize_length_then_finds_next_frame() {
    let mut bytes = hex("BB0222FFFF");
    bytes.extend(hex(SINGLE_POLL));
    let results = uhf_all(&bytes);
    assert_eq!(
        results[0],
        Err(FrameError::Oversize {
            declared: 0xFFFF,
            limit: uhf::MAX_PARAMS
        })
    );
    assert_eq!(results[1..], [Ok(uhf_one(&hex(SINGLE_POLL)))]);
}

#[test]
fn finds_frame_behind_a_false_start() {
    // A stray 0xBB 0x00 makes the real header look like Type 00, Command BB, PL 0x0222.
    let mut bytes = vec![0xBB, 0x00];
    bytes.extend(hex(TAG_NOTICE));
    let frames: std::vec::Vec<_> = uhf_all(&bytes).into_iter().filter_map(Result::ok).collect();
    assert_eq!(frames, [uhf_one(&hex(TAG_NOTICE))]);
}

#[test]
fn truncated_frame_does_not_hide_the_next_one() {
    let notice = hex(TAG_NOTICE);
    let mut bytes = notice[..10].to_vec();
    bytes.extend(&notice);
    let results = uhf_all(&bytes);
    assert_eq!(results.last(), Some(&Ok(uhf_one(&notice))));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
}

#[test]
fn partial_frame_waits_for_more_bytes() {
    let notice = hex(TAG_NOTICE);
    let mut parser = uhf::Parser::new();
    let mut results = vec![];
    parser.push_slice(&notice[..notice.len() - 1], |r| results.push(r));
    assert!(results.is_empty());
    assert_eq!(parser.pending(), notice.len() - 1);
    assert_eq!(parser.push(0x7E), Some(Ok(uhf_one(&notice))));
}

#[test]
fn idle_line_reports_a_truncated_frame_once() {
    let notice = hex(TAG_NOTICE);
    assert_eq!(
        uhf_all(&notice[..10]),
        [Err(FrameError::Truncated { have: 10 })]
    );
}

#[test]
fn idle_line_frees_a_frame_swallowed_by_a_false_start() {
    // Noise `BB 00 22 00 30` declares 48 parameter bytes; a whole poll command follows and
    // then the line goes quiet.
    let mut bytes = hex("BB00220030");
    bytes.extend(hex(SINGLE_POLL));
    let mut parser = uhf::Parser::new();
    let mut during = vec![];
    parser.push_slice(&bytes, |r| during.push(r));
    assert!(
        during.is_empty(),
        "still waiting for the false start's bytes"
    );
    assert_eq!(parser.idle(), Some(Err(FrameError::Truncated { have: 12 })));
    assert_eq!(parser.idle(), Some(Ok(uhf_one(&hex(SINGLE_POLL)))));
    assert_eq!(parser.idle(), None);
    assert_eq!(parser.pending(), 0);
}

#[test]
fn idle_with_nothing_buffered_yields_nothing() {
    assert_eq!(uhf::Parser::new().idle(), None);
    assert_eq!(eseal::Parser::new().idle(), None);
}

#[test]
fn reports_tag_crc_mismatch() {
    let mut params = hex("C9340030751FEB705C5904E3D50D703A77");
    let mut out = [0u8; 64];
    let n = uhf::encode_frame(uhf::FrameType::Notice, 0x22, &params, &mut out).unwrap();
    let frame = uhf_one(&out[..n]);
    assert_eq!(
        uhf::Reply::parse(&frame),
        Err(FrameError::TagCrc {
            expected: 0x3A76,
            found: 0x3A77
        })
    );
    params.truncate(5);
    assert!(matches!(
        uhf::Reply::parse(&uhf::RawFrame {
            params: Vec::from_slice(&params).unwrap(),
            ..frame
        }),
        Err(FrameError::BadLength { .. } | FrameError::TagLength { .. })
    ));
}

#[test]
fn reports_pc_length_disagreeing_with_epc() {
    // PC 0x3000 says 6 words; only 4 bytes of EPC follow.
    let params = hex("C93000AABBCCDD0000");
    let mut out = [0u8; 32];
    let n = uhf::encode_frame(uhf::FrameType::Notice, 0x22, &params, &mut out).unwrap();
    assert_eq!(
        uhf::Reply::parse(&uhf_one(&out[..n])),
        Err(FrameError::TagLength {
            pc_words: 6,
            epc_bytes: 4
        })
    );
}

#[test]
fn parses_status_power_and_info_responses() {
    let reply = |kind, cmd, params: &[u8]| {
        let mut out = [0u8; 64];
        let n = uhf::encode_frame(kind, cmd, params, &mut out).unwrap();
        uhf::Reply::parse(&uhf_one(&out[..n])).unwrap()
    };
    use uhf::FrameType::Response;
    assert_eq!(
        reply(Response, 0xB6, &[0x00]),
        uhf::Reply::Status {
            command: 0xB6,
            status: 0
        }
    );
    assert_eq!(
        reply(Response, 0xB7, &[0x07, 0xD0]),
        uhf::Reply::TxPower { centi_dbm: 2000 }
    );
    assert_eq!(
        reply(Response, 0x03, b"\x00M100 26dBm V1.0"),
        uhf::Reply::Info {
            kind: 0,
            text: Vec::from_slice(b"M100 26dBm V1.0").unwrap()
        }
    );
    assert!(matches!(
        reply(Response, 0x99, &[1, 2]),
        uhf::Reply::Other(_)
    ));
}

#[test]
fn rejects_response_with_wrong_parameter_length() {
    let mut out = [0u8; 16];
    let n = uhf::encode_frame(uhf::FrameType::Response, 0xB7, &[0x07], &mut out).unwrap();
    assert_eq!(
        uhf::Reply::parse(&uhf_one(&out[..n])),
        Err(FrameError::BadLength { kind: 0xB7, len: 1 })
    );
}

#[test]
fn buffered_results_come_out_through_drain() {
    // A false start whose declared length swallows two whole frames.
    let mut bytes = hex("BB01220020");
    bytes.extend(hex(STOP_MULTI_POLL));
    bytes.extend(hex(SINGLE_POLL));
    bytes.extend([0u8; 20]);
    let mut parser = uhf::Parser::new();
    let mut pushed = vec![];
    for &b in &bytes {
        if let Some(r) = parser.push(b) {
            pushed.push(r);
        }
    }
    let mut drained = vec![];
    while let Some(r) = parser.drain() {
        drained.push(r);
    }
    let all: std::vec::Vec<_> = pushed
        .into_iter()
        .chain(drained)
        .filter_map(Result::ok)
        .collect();
    assert_eq!(
        all,
        [uhf_one(&hex(STOP_MULTI_POLL)), uhf_one(&hex(SINGLE_POLL))]
    );
}

fn arb_tag() -> impl Strategy<Value = uhf::TagNotice> {
    (
        any::<i8>(),
        0u16..=31,
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 62),
    )
        .prop_map(|(rssi, words, low_pc, epc)| {
            let pc = (words << 11) | (low_pc & 0x07FF);
            let epc = Vec::from_slice(&epc[..usize::from(words) * 2]).unwrap();
            uhf::TagNotice::with_crc(rssi, pc, epc)
        })
}

proptest! {
    #[test]
    fn tag_notice_round_trips(tag in arb_tag()) {
        let mut out = [0u8; uhf::MAX_FRAME];
        let n = tag.encode(&mut out).unwrap();
        let frame = uhf_one(&out[..n]);
        prop_assert_eq!(uhf::Reply::parse(&frame), Ok(uhf::Reply::Tag(tag)));
    }

    #[test]
    fn uhf_frame_after_garbage_is_parsed(garbage in prop::collection::vec(any::<u8>(), 0..300), tag in arb_tag()) {
        let mut out = [0u8; uhf::MAX_FRAME];
        let n = tag.encode(&mut out).unwrap();
        let mut bytes = garbage;
        bytes.extend_from_slice(&out[..n]);
        let results = uhf_all(&bytes);
        prop_assert_eq!(results.last(), Some(&Ok(uhf_one(&out[..n]))));
    }

    #[test]
    fn uhf_parser_never_panics_and_idle_empties_it(bytes in prop::collection::vec(any::<u8>(), 0..800)) {
        prop_assert_eq!(left_after_idle(uhf::Parser::new(), &bytes, uhf::Reply::parse), 0);
    }

    #[test]
    fn uhf_corrupted_byte_is_never_taken_for_the_frame(tag in arb_tag(), at in any::<prop::sample::Index>(), flip in 1u8..) {
        let mut out = [0u8; uhf::MAX_FRAME];
        let n = tag.encode(&mut out).unwrap();
        let at = at.index(n);
        out[at] ^= flip;
        for frame in uhf_all(&out[..n]).into_iter().flatten() {
            // A one-byte change is always caught by the checksum or the framing, so a
            // frame that comes out cannot carry this tag's notice.
            prop_assert_ne!(uhf::Reply::parse(&frame), Ok(uhf::Reply::Tag(tag.clone())));
        }
    }
}

// ---- e-seal reader ----

/// Feed a burst of bytes, then let the line go idle; every result in order.
fn seal_all(bytes: &[u8]) -> std::vec::Vec<Result<eseal::RawFrame, FrameError>> {
    push_then_idle(&mut eseal::Parser::new(), bytes)
}

fn seal_one(bytes: &[u8]) -> eseal::RawFrame {
    only(&seal_all(bytes))
}

fn encode_reply(reply: &eseal::Reply) -> std::vec::Vec<u8> {
    let mut out = [0u8; eseal::MAX_FRAME];
    let n = reply.encode(&mut out).unwrap();
    out[..n].to_vec()
}

fn report() -> eseal::Reply {
    eseal::Reply::Seal(eseal::SealReport {
        seal: SealRead {
            manufacturer: 0x0042,
            tag_id: 0x0012_3456,
            status: SealStatus::Sealed,
            battery: BatteryLevel::Ok,
            sealed_at: Some(EpochMinutes(29_384_100)),
            opened_at: None,
        },
        rssi: -61,
    })
}

#[test]
fn frame_crc_is_crc16_ibm_3740() {
    // Catalogue check value of CRC-16/IBM-3740 over "123456789".
    assert_eq!(eseal::FRAME_CRC.checksum(b"123456789"), 0x29B1);
}

#[test]
fn encodes_poll_request() {
    let mut out = [0u8; 8];
    let n = eseal::Request::Poll.encode(&mut out).unwrap();
    // STX, LEN 1, TYPE 01, CRC-16/IBM-3740 over 01 01 = 0x3E1F, ETX.
    assert_eq!(&out[..n], [0x02, 0x01, 0x01, 0x3E, 0x1F, 0x03]);
    assert_eq!(
        eseal::Request::from_frame(&seal_one(&out[..n])),
        Some(eseal::Request::Poll)
    );
}

#[test]
fn seal_report_round_trips() {
    let bytes = encode_reply(&report());
    assert_eq!(bytes.len(), 17 + 6);
    assert_eq!(eseal::Reply::parse(&seal_one(&bytes)), Ok(report()));
}

#[test]
fn poll_done_status_and_nak_round_trip() {
    for reply in [
        eseal::Reply::PollDone { count: 3 },
        eseal::Reply::Status {
            fw_version: 0x0203,
            in_range: 1,
        },
        eseal::Reply::Nak(eseal::Nak::Busy),
    ] {
        assert_eq!(
            eseal::Reply::parse(&seal_one(&encode_reply(&reply))),
            Ok(reply)
        );
    }
}

#[test]
fn rejects_seal_frame_with_bad_crc() {
    let mut bytes = encode_reply(&eseal::Reply::PollDone { count: 0 });
    bytes[4] ^= 0xFF;
    assert!(matches!(
        seal_all(&bytes).as_slice(),
        [Err(FrameError::Checksum { .. })]
    ));
}

#[test]
fn rejects_seal_frame_with_bad_etx() {
    let mut bytes = encode_reply(&eseal::Reply::PollDone { count: 0 });
    let last = bytes.len() - 1;
    bytes[last] = 0x04;
    assert_eq!(
        seal_all(&bytes),
        [Err(FrameError::EndByte {
            found: 0x04,
            expected: 0x03
        })]
    );
}

#[test]
fn rejects_oversize_seal_length() {
    assert_eq!(
        seal_all(&[0x02, 0xF0]),
        [Err(FrameError::Oversize {
            declared: 0xF0,
            limit: eseal::MAX_LEN
        })]
    );
}

#[test]
fn rejects_undefined_seal_status() {
    let mut out = [0u8; 32];
    let mut payload = [0u8; 17];
    payload[6] = 9;
    let n = eseal::encode_frame(eseal::kind::SEAL, &payload, &mut out).unwrap();
    assert_eq!(
        eseal::Reply::parse(&seal_one(&out[..n])),
        Err(FrameError::BadValue {
            field: "status",
            value: 9
        })
    );
}

#[test]
fn rejects_short_seal_payload() {
    let mut out = [0u8; 32];
    let n = eseal::encode_frame(eseal::kind::SEAL, &[1, 2, 3], &mut out).unwrap();
    assert_eq!(
        eseal::Reply::parse(&seal_one(&out[..n])),
        Err(FrameError::BadLength { kind: 0x81, len: 3 })
    );
}

#[test]
fn seal_frame_behind_a_false_start_is_found_when_the_line_goes_idle() {
    // Found by proptest: `02 15` declares 21 bytes, more than the real frame after it.
    let bytes = encode_reply(&report());
    let mut stream = vec![0x02, 0x15];
    stream.extend(&bytes);
    let results = seal_all(&stream);
    assert_eq!(results.last(), Some(&Ok(seal_one(&bytes))));
}

#[test]
fn truncated_seal_frame_does_not_hide_the_next_one() {
    let bytes = encode_reply(&report());
    let mut stream = bytes[..9].to_vec();
    stream.extend(&bytes);
    let frames: std::vec::Vec<_> = seal_all(&stream)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    assert_eq!(frames, [seal_one(&bytes)]);
}

fn arb_seal() -> impl Strategy<Value = eseal::Reply> {
    let time = proptest::option::of((0u32..u32::MAX).prop_map(EpochMinutes));
    (arb_seal_read(time), any::<i8>())
        .prop_map(|(seal, rssi)| eseal::Reply::Seal(eseal::SealReport { seal, rssi }))
}

proptest! {
    #[test]
    fn any_seal_report_round_trips(reply in arb_seal()) {
        prop_assert_eq!(eseal::Reply::parse(&seal_one(&encode_reply(&reply))), Ok(reply));
    }

    #[test]
    fn seal_frame_after_garbage_is_parsed(garbage in prop::collection::vec(any::<u8>(), 0..200), reply in arb_seal()) {
        let bytes = encode_reply(&reply);
        let mut stream = garbage;
        stream.extend(&bytes);
        let results = seal_all(&stream);
        prop_assert_eq!(results.last(), Some(&Ok(seal_one(&bytes))));
    }

    #[test]
    fn seal_parser_never_panics_and_idle_empties_it(bytes in prop::collection::vec(any::<u8>(), 0..800)) {
        prop_assert_eq!(left_after_idle(eseal::Parser::new(), &bytes, eseal::Reply::parse), 0);
    }

    #[test]
    fn seal_corrupted_byte_is_never_accepted(reply in arb_seal(), at in any::<prop::sample::Index>(), flip in 1u8..) {
        let mut bytes = encode_reply(&reply);
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        let accepted: std::vec::Vec<_> = seal_all(&bytes).into_iter().flatten().collect();
        prop_assert!(accepted.is_empty(), "accepted {:?}", accepted);
    }
}
