//! Byte layouts written out by hand from LLRP 1.1 (§15.1 message header, §16.1 parameter
//! encoding, and the message and parameter sections named in each test), then decoded, and
//! encoded messages compared with them.

use alloc::vec;
use alloc::vec::Vec;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| {
            let text = core::str::from_utf8(p).expect("ascii");
            u8::from_str_radix(text, 16).expect("hex digit pair")
        })
        .collect()
}

fn whole(bytes: &[u8]) -> (Header, Message) {
    assert_eq!(
        check(bytes, DEFAULT_MAX_MESSAGE),
        Ok(Check::Complete { len: bytes.len() })
    );
    decode(bytes).expect("decodes")
}

/// `bytes` are one whole message, decoding to `expected`; returns it.
fn decodes_to(bytes: &[u8], expected: Message) -> Message {
    let (_, m) = whole(bytes);
    assert_eq!(m, expected);
    m
}

#[test]
fn keepalive_layout_is_a_bare_header() {
    // §17.1.27 KEEPALIVE: ver 1, type 62, length 10, id 0x11223344.
    let bytes = hex("04 3E 0000000A 11223344");
    let (h, m) = whole(&bytes);
    assert_eq!(
        h,
        Header {
            version: 1,
            kind: msg::KEEPALIVE,
            length: 10,
            id: 0x1122_3344
        }
    );
    assert_eq!(m, Message::Keepalive);
    assert_eq!(m.encode(1, 0x1122_3344), bytes);
}

#[test]
fn keepalive_ack_encodes_type_72() {
    // §17.1.28 KEEPALIVE_ACK.
    assert_eq!(
        Message::KeepaliveAck.encode(1, 5),
        hex("04 48 0000000A 00000005")
    );
}

#[test]
fn version_1_1_header_carries_ver_2() {
    // ADD_ROSPEC_RESPONSE (type 30) in 1.1 framing with a success LLRPStatus (§16.2.8.1:
    // type 287, length 8, StatusCode 0, ErrorDescriptionByteCount 0).
    let bytes = hex("08 1E 00000012 00000007  011F 0008 0000 0000");
    let (h, m) = whole(&bytes);
    assert_eq!(h.version, VERSION_1_1);
    assert_eq!(
        m,
        Message::Response {
            kind: msg::ADD_ROSPEC_RESPONSE,
            status: Status::success()
        }
    );
    assert_eq!(m.encode(2, 7), bytes);
}

#[test]
fn error_status_keeps_code_and_description() {
    // ERROR_MESSAGE (100) with M_UnsupportedVersion and the text "v2".
    let bytes = hex("04 64 00000014 00000000  011F 000A 006E 0002 7632");
    decodes_to(
        &bytes,
        Message::ErrorMessage(Status::error(status::M_UNSUPPORTED_VERSION, "v2")),
    );
}

#[test]
fn tag_report_with_tv_fields_decodes() {
    // §17.1.26 RO_ACCESS_REPORT with one TagReportData (§16.2.7.3): EPC-96 (TV 13),
    // AntennaID (TV 1) = 2, PeakRSSI (TV 6) = -60 dBm, FirstSeenTimestampUTC (TV 2).
    let bytes = hex("04 3D 00000029 00000001 \
         00F0 001F \
           8D 3074257BF7194E4000001A85 \
           81 0002 \
           86 C4 \
           82 0005F1A2B3C4D5E6");
    let (_, m) = whole(&bytes);
    let Message::RoAccessReport(tags) = m else {
        panic!("not a report: {m:?}")
    };
    assert_eq!(tags.len(), 1);
    let t = &tags[0];
    assert_eq!(t.epc, hex("3074257BF7194E4000001A85"));
    assert_eq!(t.antenna, Some(2));
    assert_eq!(t.peak_rssi, Some(-60));
    assert_eq!(t.first_seen_utc_us, Some(0x0005_F1A2_B3C4_D5E6));
    assert_eq!(Message::RoAccessReport(tags).encode(1, 1), bytes);
}

#[test]
fn epc_data_of_any_length_decodes() {
    // EPCData (TLV 241): EPCLengthBits 128, then 16 bytes.
    let bytes = hex("04 3D 00000024 00000002 \
         00F0 001A  00F1 0016 0080 E2801160600002054E36A1B2C3D4E5F6");
    let (_, m) = whole(&bytes);
    let Message::RoAccessReport(tags) = m else {
        panic!("not a report")
    };
    assert_eq!(tags[0].epc, hex("E2801160600002054E36A1B2C3D4E5F6"));
    assert_eq!(tags[0].antenna, None);
}

#[test]
fn custom_parameter_inside_a_tag_report_is_skipped() {
    // A Custom parameter (1023) with vendor 25882 and subtype 56 between EPC and antenna.
    let bytes = hex("04 3D 0000002C 00000003 \
         00F0 0022 \
           8D 3074257BF7194E4000001A85 \
           03FF 000E 0000651A 00000038 ABCD \
           81 0004");
    let (_, m) = whole(&bytes);
    let Message::RoAccessReport(tags) = m else {
        panic!("not a report")
    };
    assert_eq!(tags[0].antenna, Some(4));
}

#[test]
fn connection_attempt_and_antenna_events_decode() {
    // §17.1.29 READER_EVENT_NOTIFICATION; ReaderEventNotificationData (246) with
    // UTCTimestamp (128), ConnectionAttemptEvent (256) status 0, AntennaEvent (255)
    // disconnected, antenna 3.
    let bytes = hex("04 3F 00000027 00000000 \
         00F6 001D \
           0080 000C 0005F1A2B3C4D5E6 \
           0100 0006 0000 \
           00FF 0007 00 0003");
    let m = decodes_to(
        &bytes,
        Message::ReaderEventNotification(EventData {
            timestamp_us: 0x0005_F1A2_B3C4_D5E6,
            utc: true,
            events: vec![
                ReaderEvent::ConnectionAttempt { status: 0 },
                ReaderEvent::Antenna {
                    connected: false,
                    antenna: 3,
                },
            ],
        }),
    );
    assert_eq!(m.encode(1, 0), bytes);
}

fn minimal_rospec() -> RoSpec {
    RoSpec::gen2_inventory(1, vec![1], vec![], None)
}

#[test]
fn add_rospec_layout_matches_the_spec() {
    // §17.1.3 ADD_ROSPEC with ROSpec (177): id 1, priority 0, state disabled;
    // ROBoundarySpec (178) with null start (179) and stop (182) triggers; AISpec (183) on
    // antenna 1 with a null AISpecStopTrigger (184) and InventoryParameterSpec (186) id 1
    // for C1G2.
    let bytes = hex("04 14 0000003E 0000000A \
         00B1 0034 00000001 00 00 \
           00B2 0012  00B3 0005 00  00B6 0009 00 00000000 \
           00B7 0018 0001 0001 \
             00B8 0009 00 00000000 \
             00BA 0007 0001 01");
    assert_eq!(Message::AddRoSpec(minimal_rospec()).encode(1, 10), bytes);
    decodes_to(&bytes, Message::AddRoSpec(minimal_rospec()));
}

#[test]
fn rospec_without_boundary_is_rejected() {
    let bytes = hex("04 14 00000014 00000001  00B1 000A 00000001 00 00");
    assert_eq!(
        decode(&bytes),
        Err(LlrpError::Missing {
            what: "ROBoundarySpec",
            within: "ROSpec"
        })
    );
}

#[test]
fn rospec_commands_carry_the_id() {
    // §17.1.5 START_ROSPEC (22), ROSpecID 0x12345678.
    let bytes = hex("04 16 0000000E 00000009 12345678");
    decodes_to(
        &bytes,
        Message::RoSpec {
            op: RoSpecOp::Start,
            id: 0x1234_5678,
        },
    );
    assert_eq!(RoSpecOp::Start.response_kind(), msg::START_ROSPEC_RESPONSE);
}

#[test]
fn set_reader_config_round_trips() {
    let cfg = ReaderConfig {
        reset_to_factory_default: true,
        event_notifications: vec![(event::ANTENNA, true), (event::ROSPEC, false)],
        keepalive_ms: Some(2000),
        hold_events_and_reports: Some(false),
        antenna_configs: vec![AntennaConfig {
            antenna: 2,
            transmitter: Some(Transmitter {
                hop_table_id: 1,
                channel_index: 1,
                power_index: 81,
            }),
        }],
        report: Some(ReportSpec {
            trigger: 2,
            n: 1,
            content: ContentSelector(ContentSelector::ANTENNA_ID | ContentSelector::PEAK_RSSI),
        }),
    };
    let m = Message::SetReaderConfig(cfg);
    let bytes = m.encode(1, 3);
    // KeepaliveSpec (220): type 1 periodic, 2000 ms.
    let keepalive = hex("00DC 0009 01 000007D0");
    assert!(bytes.windows(keepalive.len()).any(|w| w == keepalive));
    assert_eq!(whole(&bytes).1, m);
}

#[test]
fn capabilities_round_trip_power_table() {
    let caps = Capabilities {
        max_antennas: Some(4),
        manufacturer: Some(25882),
        model: Some(2001),
        firmware: Some("7.1".into()),
        power_levels: (1..=3)
            .map(|i| PowerLevel {
                index: i,
                dbm_x100: 1000 + 500 * i.cast_signed(),
            })
            .collect(),
    };
    let m = Message::GetReaderCapabilitiesResponse {
        status: Status::success(),
        capabilities: caps.clone(),
    };
    assert_eq!(whole(&m.encode(1, 4)).1, m);
    assert_eq!(caps.power_index_for(2200), Some(2));
    assert_eq!(caps.power_index_for(100), Some(1));
    assert_eq!(caps.max_power().map(|p| p.index), Some(3));
}

#[test]
fn check_asks_for_the_rest_of_the_header() {
    assert_eq!(
        check(&[0x04, 0x3E], 1024),
        Ok(Check::Incomplete { needed: 8 })
    );
}

#[test]
fn check_asks_for_the_rest_of_the_body() {
    let bytes = hex("04 3D 00000029 00000001 00F0");
    assert_eq!(check(&bytes, 1024), Ok(Check::Incomplete { needed: 29 }));
}

#[test]
fn check_rejects_a_length_over_the_limit() {
    let bytes = hex("04 3D 7FFFFFFF 00000001");
    assert_eq!(
        check(&bytes, 1024),
        Err(LlrpError::Oversize {
            declared: 0x7FFF_FFFF,
            limit: 1024
        })
    );
}

#[test]
fn check_rejects_a_length_under_the_header() {
    assert_eq!(
        check(&hex("04 3D 00000009 00000001"), 1024),
        Err(LlrpError::Undersize { declared: 9 })
    );
}

#[test]
fn check_rejects_an_unknown_version() {
    // ver 3.
    assert_eq!(
        check(&hex("0C 3E 0000000A 00000001"), 1024),
        Err(LlrpError::BadVersion { found: 3 })
    );
}

#[test]
fn parameter_length_under_its_header_is_rejected() {
    let bytes = hex("04 3D 0000000E 00000001 00F0 0002");
    assert_eq!(
        decode(&bytes),
        Err(LlrpError::BadParameterLength {
            kind: 240,
            declared: 2
        })
    );
}

#[test]
fn parameter_running_past_the_message_is_rejected() {
    let bytes = hex("04 3D 00000010 00000001 00F0 0040 8D00");
    assert!(matches!(
        decode(&bytes),
        Err(LlrpError::Truncated { needed: 60, .. })
    ));
}

#[test]
fn unknown_tv_type_is_rejected() {
    let bytes = hex("04 3D 00000013 00000001 00F0 0009 FF 01020304");
    assert_eq!(decode(&bytes), Err(LlrpError::UnknownTv { kind: 0x7F }));
}

#[test]
fn tag_report_without_epc_is_rejected() {
    let bytes = hex("04 3D 00000011 00000001 00F0 0007 81 0001");
    assert!(matches!(decode(&bytes), Err(LlrpError::Missing { .. })));
}

#[test]
fn unknown_message_keeps_its_body() {
    // GET_REPORT (60) carries no body; CUSTOM_MESSAGE (1023) one we do not interpret.
    let bytes = hex("07 FF 0000000F 00000001 0000651A 21");
    let m = decodes_to(
        &bytes,
        Message::Other {
            kind: msg::CUSTOM_MESSAGE,
            body: hex("0000651A 21"),
        },
    );
    assert_eq!(m.encode(1, 1), bytes);
}

#[test]
fn antenna_count_beyond_the_parameter_is_rejected_before_allocating() {
    // AISpec claiming 0xFFFF antenna ids in 2 bytes.
    let bytes = hex("04 14 0000002C 00000001 \
         00B1 0022 00000001 00 00 \
           00B2 0012  00B3 0005 00  00B6 0009 00 00000000 \
           00B7 0006 FFFF");
    assert!(matches!(
        decode(&bytes),
        Err(LlrpError::Truncated {
            what: "AISpec.AntennaIDs",
            ..
        })
    ));
}

#[test]
fn get_reader_config_asks_for_antenna_properties() {
    // §17.1.7 GET_READER_CONFIG: AntennaID 0 (all), RequestedData 2, GPI 0, GPO 0.
    let m = Message::GetReaderConfig {
        antenna: 0,
        requested: REQUESTED_ANTENNA_PROPERTIES,
    };
    let bytes = hex("04 02 00000011 00000006 0000 02 0000 0000");
    assert_eq!(m.encode(1, 6), bytes);
    assert_eq!(whole(&bytes).1, m);
}

#[test]
fn antenna_properties_report_the_cable() {
    // GET_READER_CONFIG_RESPONSE with two AntennaProperties (§16.2.6.5): antenna 1
    // connected with 6.00 dBi, antenna 2 disconnected with 0 dBi.
    let bytes = hex("04 0C 00000024 00000006 \
         011F 0008 0000 0000 \
         00DD 0009 80 0001 0258 \
         00DD 0009 00 0002 0000");
    let m = decodes_to(
        &bytes,
        Message::GetReaderConfigResponse {
            status: Status::success(),
            antennas: vec![
                AntennaState {
                    antenna: 1,
                    connected: true,
                    gain: 600,
                },
                AntennaState {
                    antenna: 2,
                    connected: false,
                    gain: 0,
                },
            ],
        },
    );
    assert_eq!(m.encode(1, 6), bytes);
}
