//! Link frame codec: round trips, corruption, resynchronisation, limits.
// Test data is built here and known good; unwrapping it is the assertion.
#![allow(clippy::unwrap_used)]

mod common;

use common::arb_seal_read;
use heapless::{String, Vec};
use proptest::prelude::*;
use protocol::link::*;

fn encode(frame: &Frame) -> std::vec::Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = encode_frame(frame, &mut out).expect("frame fits MAX_FRAME");
    out[..n].to_vec()
}

/// Feed bytes to a fresh decoder, collecting every result.
fn decode_all(bytes: &[u8]) -> std::vec::Vec<Result<Frame, LinkError>> {
    let mut dec = LinkDecoder::new();
    bytes.iter().filter_map(|&b| dec.push(b)).collect()
}

fn only_frame(bytes: &[u8]) -> Frame {
    match decode_all(bytes).as_slice() {
        [Ok(frame)] => frame.clone(),
        other => panic!("expected one frame, got {other:?}"),
    }
}

/// Stuff raw (un-stuffed) bytes into a delimited frame, bypassing the encoder.
fn stuff(raw: &[u8]) -> std::vec::Vec<u8> {
    let mut out = vec![0u8; cobs::max_encoding_length(raw.len()) + 2];
    let n = cobs::try_encode(raw, &mut out[1..]).unwrap();
    out.truncate(n + 2);
    out[n + 1] = 0;
    out
}

fn with_crc(body: &[u8]) -> std::vec::Vec<u8> {
    let mut raw = body.to_vec();
    raw.extend_from_slice(&LINK_CRC.checksum(body).to_le_bytes());
    raw
}

fn tag(epc: &[u8]) -> Message {
    Message::TagRead(TagRead {
        antenna: 1,
        rssi: -55,
        pc: 0x3400,
        epc: Vec::from_slice(epc).unwrap(),
    })
}

fn every_message() -> std::vec::Vec<Message> {
    vec![
        tag(&[
            0x30, 0x75, 0x1F, 0xEB, 0x70, 0x5C, 0x59, 0x04, 0xE3, 0xD5, 0x0D, 0x70,
        ]),
        Message::SealRead(SealRead {
            manufacturer: 0x1234,
            tag_id: 0xDEAD_BEEF,
            status: SealStatus::Tampered,
            battery: BatteryLevel::Low,
            sealed_at: Some(EpochMinutes(29_000_000)),
            opened_at: None,
        }),
        Message::Presence {
            loop_id: 2,
            present: true,
        },
        Message::LaneCommand(LaneCommand {
            light: Light::Green,
            barrier: Barrier::Raise,
            route: 3,
            text: String::try_from("FAST LANE 2").unwrap(),
        }),
        Message::Heartbeat(Heartbeat {
            uptime_ms: u32::MAX,
            boot_id: 0xDEAD_BEEF,
            board_id: 7,
            fw_version: 0x0102,
            status: BoardStatus {
                link_ok: true,
                uhf_reader_ok: false,
                seal_reader_ok: true,
                light: Light::Amber,
                barrier: Barrier::Lower,
                presence: 0b101,
                unacked: 3,
            },
        }),
        Message::Fault {
            code: FaultCode::BarrierLowerRefused,
            detail: 0b1,
        },
        Message::Ack { seq: 0xFFFF },
        Message::Hello(Hello {
            boot_id: u32::MAX,
            uptime_ms: 12,
            board_id: 7,
            fw_version: 0x0102,
        }),
    ]
}

#[test]
fn round_trips_every_message() {
    for (i, msg) in every_message().into_iter().enumerate() {
        let frame = Frame::new(i as u16 * 1000, msg);
        assert_eq!(only_frame(&encode(&frame)), frame);
    }
}

#[test]
fn covers_every_message_kind() {
    assert_eq!(every_message().len() as u32, MESSAGE_KINDS);
}

#[test]
fn encoded_frame_is_delimited_and_has_no_inner_zero() {
    let bytes = encode(&Frame::new(0, Message::Ack { seq: 0 }));
    assert_eq!(bytes.first(), Some(&0));
    assert_eq!(bytes.last(), Some(&0));
    assert!(!bytes[1..bytes.len() - 1].contains(&0));
}

#[test]
fn largest_message_fits_max_frame() {
    let frame = Frame::new(
        u16::MAX,
        Message::TagRead(TagRead {
            antenna: u8::MAX,
            rssi: i8::MIN,
            pc: u16::MAX,
            epc: Vec::from_slice(&[0xFF; MAX_EPC_BYTES]).unwrap(),
        }),
    );
    let mut body = [0u8; 256];
    let len = postcard::to_slice(&frame, &mut body).unwrap().len();
    assert_eq!(len, MAX_BODY);
    let bytes = encode(&frame);
    assert_eq!(bytes.len(), MAX_FRAME);
    assert_eq!(MAX_FRAME, 80, "docs/hardware.md states the limit");
    assert_eq!(only_frame(&bytes), frame);
}

#[test]
fn encode_reports_small_buffer() {
    let mut out = [0u8; 10];
    let err = encode_frame(&Frame::new(1, tag(&[0xAA; 12])), &mut out).unwrap_err();
    assert_eq!(err, LinkError::BufferTooSmall { available: 10 });
}

#[test]
fn rejects_frame_with_bad_crc() {
    let body = [LINK_VERSION, 5, 6, 9]; // Ack { seq: 9 }, seq 5
    let mut raw = with_crc(&body);
    let good = LINK_CRC.checksum(&body);
    raw[4] ^= 0x01;
    let result = decode_all(&stuff(&raw));
    assert_eq!(
        result,
        [Err(LinkError::Crc {
            expected: good,
            found: good ^ 0x01
        })]
    );
}

#[test]
fn decodes_hand_built_ack_body() {
    // postcard: version, seq 5, variant 6 (Ack), seq 9: one byte each.
    let frame = only_frame(&stuff(&with_crc(&[LINK_VERSION, 5, 6, 9])));
    assert_eq!(frame, Frame::new(5, Message::Ack { seq: 9 }));
}

#[test]
fn rejects_other_version() {
    // Version 1 (before the boot identifier) and a future version 3.
    for version in [1, 3] {
        let result = decode_all(&stuff(&with_crc(&[version, 5, 6, 9])));
        assert_eq!(
            result,
            [Err(LinkError::Version {
                found: version,
                supported: LINK_VERSION
            })]
        );
    }
}

#[test]
fn reports_unknown_message_kind_with_its_seq() {
    let result = decode_all(&stuff(&with_crc(&[LINK_VERSION, 42, 9, 0])));
    assert_eq!(
        result,
        [Err(LinkError::UnknownMessage { seq: 42, kind: 9 })]
    );
}

#[test]
fn rejects_trailing_bytes_after_message() {
    let result = decode_all(&stuff(&with_crc(&[LINK_VERSION, 5, 6, 9, 0xAA])));
    assert_eq!(result, [Err(LinkError::TrailingBytes { seq: 5, count: 1 })]);
}

#[test]
fn rejects_malformed_body_with_good_crc() {
    // Presence { loop_id: 1, present: 7 }: 7 is not a bool.
    let result = decode_all(&stuff(&with_crc(&[LINK_VERSION, 5, 2, 1, 7])));
    assert_eq!(result, [Err(LinkError::Malformed { seq: 5 })]);
}

#[test]
fn rejects_epc_longer_than_limit() {
    let mut body = vec![LINK_VERSION, 5, 0, 1, 0xC9, 0x80, 0x80, 0x01, 63];
    body.extend_from_slice(&[0x11; 63]);
    let result = decode_all(&stuff(&with_crc(&body)));
    assert_eq!(result, [Err(LinkError::Malformed { seq: 5 })]);
}

#[test]
fn rejects_too_short_frame() {
    assert_eq!(
        decode_all(&[0x02, 0x01, 0x00]),
        [Err(LinkError::TooShort { len: 1, min: 8 })]
    );
}

#[test]
fn rejects_invalid_cobs() {
    // Code byte 0x05 promises four more bytes; only two arrive.
    assert_eq!(
        decode_all(&[0x05, 0x11, 0x22, 0x00]),
        [Err(LinkError::Cobs { len: 3 })]
    );
}

#[test]
fn skips_empty_frames_between_delimiters() {
    let frame = Frame::new(3, Message::Ack { seq: 2 });
    let mut bytes = vec![0, 0, 0];
    bytes.extend(encode(&frame));
    bytes.extend([0, 0]);
    assert_eq!(decode_all(&bytes), [Ok(frame)]);
}

#[test]
fn decodes_back_to_back_frames() {
    let frames: std::vec::Vec<Frame> = every_message()
        .into_iter()
        .enumerate()
        .map(|(i, m)| Frame::new(i as u16, m))
        .collect();
    let bytes: std::vec::Vec<u8> = frames.iter().flat_map(encode).collect();
    let decoded: std::vec::Vec<Frame> =
        decode_all(&bytes).into_iter().map(Result::unwrap).collect();
    assert_eq!(decoded, frames);
}

#[test]
fn oversize_frame_is_rejected_once_then_decoder_recovers() {
    let mut bytes = vec![0x55; MAX_FRAME * 3];
    let frame = Frame::new(
        9,
        Message::Presence {
            loop_id: 0,
            present: false,
        },
    );
    bytes.extend(encode(&frame));
    assert_eq!(
        decode_all(&bytes),
        [Err(LinkError::Oversize { limit: MAX_FRAME }), Ok(frame)]
    );
}

#[test]
fn small_decoder_rejects_frame_that_fits_a_large_one() {
    let bytes = encode(&Frame::new(1, tag(&[0x42; 40])));
    let mut dec = FrameDecoder::<32>::new();
    let results: std::vec::Vec<_> = bytes.iter().filter_map(|&b| dec.push(b)).collect();
    assert_eq!(results, [Err(LinkError::Oversize { limit: 32 })]);
    let ack = Frame::new(2, Message::Ack { seq: 1 });
    let results: std::vec::Vec<_> = encode(&ack).iter().filter_map(|&b| dec.push(b)).collect();
    assert_eq!(results, [Ok(ack)]);
}

#[test]
fn push_slice_stops_after_a_frame_and_reports_consumed() {
    let a = Frame::new(1, Message::Ack { seq: 1 });
    let b = Frame::new(2, Message::Ack { seq: 2 });
    let mut bytes = encode(&a);
    let first_len = bytes.len();
    bytes.extend(encode(&b));
    let mut dec = LinkDecoder::new();
    let (used, result) = dec.push_slice(&bytes);
    assert_eq!((used, result), (first_len, Some(Ok(a))));
    let (used2, result) = dec.push_slice(&bytes[used..]);
    assert_eq!((used + used2, result), (bytes.len(), Some(Ok(b))));
}

#[test]
fn reset_discards_partial_frame() {
    let frame = Frame::new(4, Message::Ack { seq: 4 });
    let bytes = encode(&frame);
    let mut dec = LinkDecoder::new();
    for &b in &bytes[1..5] {
        assert_eq!(dec.push(b), None);
    }
    dec.reset();
    let results: std::vec::Vec<_> = bytes.iter().filter_map(|&b| dec.push(b)).collect();
    assert_eq!(results, [Ok(frame)]);
}

#[test]
fn error_messages_carry_the_numbers() {
    let text = LinkError::Crc {
        expected: 0x1234_5678,
        found: 0x0000_0001,
    }
    .to_string();
    assert!(
        text.contains("0x12345678") && text.contains("0x00000001"),
        "{text}"
    );
    let err: &dyn core::error::Error = &LinkError::Oversize { limit: 80 };
    assert!(err.to_string().contains("80"));
}

fn arb_light() -> impl Strategy<Value = Light> {
    prop_oneof![
        Just(Light::Off),
        Just(Light::Red),
        Just(Light::Amber),
        Just(Light::Green)
    ]
}

fn arb_barrier() -> impl Strategy<Value = Barrier> {
    prop_oneof![Just(Barrier::Lower), Just(Barrier::Raise)]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let minutes = proptest::option::of(any::<u32>().prop_map(EpochMinutes));
    prop_oneof![
        (
            any::<u8>(),
            any::<i8>(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..=MAX_EPC_BYTES)
        )
            .prop_map(|(antenna, rssi, pc, epc)| Message::TagRead(TagRead {
                antenna,
                rssi,
                pc,
                epc: Vec::from_slice(&epc).unwrap(),
            })),
        arb_seal_read(minutes).prop_map(Message::SealRead),
        (any::<u8>(), any::<bool>())
            .prop_map(|(loop_id, present)| Message::Presence { loop_id, present }),
        (arb_light(), arb_barrier(), any::<u8>(), "[ -~]{0,32}").prop_map(
            |(light, barrier, route, text)| {
                Message::LaneCommand(LaneCommand {
                    light,
                    barrier,
                    route,
                    text: String::try_from(text.as_str()).unwrap(),
                })
            }
        ),
        (
            any::<[u32; 2]>(),
            any::<u16>(),
            any::<u16>(),
            any::<[bool; 3]>(),
            arb_light(),
            arb_barrier(),
            any::<u8>()
        )
            .prop_map(
                |([uptime_ms, boot_id], board_id, fw_version, ok, light, barrier, presence)| {
                    Message::Heartbeat(Heartbeat {
                        uptime_ms,
                        boot_id,
                        board_id,
                        fw_version,
                        status: BoardStatus {
                            link_ok: ok[0],
                            uhf_reader_ok: ok[1],
                            seal_reader_ok: ok[2],
                            light,
                            barrier,
                            presence,
                            unacked: presence / 2,
                        },
                    })
                }
            ),
        (0u8..9, any::<u16>()).prop_map(|(code, detail)| Message::Fault {
            code: [
                FaultCode::ReaderSilent,
                FaultCode::ReaderRecovered,
                FaultCode::ReaderChecksum,
                FaultCode::TagCrc,
                FaultCode::LinkSilentRecovered,
                FaultCode::BarrierLowerRefused,
                FaultCode::QueueOverflow,
                FaultCode::LinkRejected,
                FaultCode::OutputError,
            ][code as usize],
            detail,
        }),
        any::<u16>().prop_map(|seq| Message::Ack { seq }),
        (any::<[u32; 2]>(), any::<[u16; 2]>()).prop_map(
            |([boot_id, uptime_ms], [board_id, fw_version])| Message::Hello(Hello {
                boot_id,
                uptime_ms,
                board_id,
                fw_version,
            })
        ),
    ]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    (any::<u16>(), arb_message()).prop_map(|(seq, msg)| Frame::new(seq, msg))
}

proptest! {
    #[test]
    fn any_frame_round_trips(frame in arb_frame()) {
        let bytes = encode(&frame);
        prop_assert!(bytes.len() <= MAX_FRAME);
        prop_assert_eq!(decode_all(&bytes), vec![Ok(frame)]);
    }

    #[test]
    fn flipped_bit_is_never_accepted(frame in arb_frame(), bit in any::<prop::sample::Index>()) {
        let mut bytes = encode(&frame);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // A flipped delimiter merges or truncates; a flipped stuffed byte corrupts the body
        // or splits the frame. Neither the original nor any other frame may come out.
        let accepted: std::vec::Vec<Frame> = decode_all(&bytes).into_iter().flatten().collect();
        prop_assert!(accepted.is_empty(), "accepted {:?}", accepted);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut small = FrameDecoder::<16>::new();
        let mut large = LinkDecoder::new();
        for &b in &bytes {
            let _ = small.push(b);
            let _ = large.push(b);
        }
    }

    #[test]
    fn good_frame_after_garbage_is_decoded(
        garbage in prop::collection::vec(any::<u8>(), 0..400),
        frame in arb_frame(),
    ) {
        let mut bytes = garbage;
        bytes.extend(encode(&frame));
        let results = decode_all(&bytes);
        prop_assert_eq!(results.last(), Some(&Ok(frame)));
    }
}

#[test]
fn encodes_the_examples_documented_in_hardware_md() {
    // docs/hardware.md, "Worked examples".
    assert_eq!(
        encode(&Frame::new(5, Message::Ack { seq: 9 })),
        [
            0x00, 0x09, 0x02, 0x05, 0x06, 0x09, 0xDC, 0xD4, 0xE2, 0xDD, 0x00
        ]
    );
    assert_eq!(
        encode(&Frame::new(
            7,
            Message::Presence {
                loop_id: 1,
                present: true
            }
        )),
        [
            0x00, 0x0A, 0x02, 0x07, 0x02, 0x01, 0x01, 0xDE, 0x58, 0xF6, 0x82, 0x00
        ]
    );
    assert_eq!(
        encode(&Frame::new(
            0,
            Message::Hello(Hello {
                boot_id: 0x1234_5678,
                uptime_ms: 250,
                board_id: 1,
                fw_version: 0x0100,
            })
        )),
        [
            0x00, 0x02, 0x02, 0x10, 0x07, 0xF8, 0xAC, 0xD1, 0x91, 0x01, 0xFA, 0x01, 0x01, 0x80,
            0x02, 0xD7, 0x35, 0x28, 0x98, 0x00
        ]
    );
}

#[test]
fn link_crc_is_crc32c() {
    // Catalogue check value of CRC-32/ISCSI over "123456789".
    assert_eq!(LINK_CRC.checksum(b"123456789"), 0xE306_9283);
}
