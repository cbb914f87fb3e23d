//! aeogate's own MQTT payload format: the JSON shapes of `docs/integration.md` (an RFID
//! read, an OCR result, an e-seal or seal read, a presence change), one per message,
//! parsed strictly (`deny_unknown_fields`) and with limits into assembler events. A
//! payload that does not parse becomes an `UNREADABLE` read with the error, so the
//! officer sees that a reader said something the agent did not understand. Vendor formats
//! are in [`super::vendor`]; the connection is [`super::mqtt`].

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::schema::{ESealState, ReadSource, ReadValue};
use protocol::seal::{ESealId, SealNumber};
use serde::Deserialize;

use super::{AssemblerEvent, RawRead, tag_value};
use crate::config::{MqttKind, TopicMap};

/// Largest payload parsed; a reader message is a few hundred bytes.
pub const MAX_PAYLOAD: usize = 4 * 1024;

/// An RFID reader's report: `{"epc":"3074…","antenna":1,"rssi":-52,"at":"…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RfidPayload {
    epc: String,
    antenna: Option<u8>,
    rssi: Option<i16>,
    at: Option<Timestamp>,
    device: Option<String>,
}

/// An OCR portal's report: a container number, a seal marking or a plate, with confidence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OcrPayload {
    container: Option<String>,
    seal: Option<String>,
    plate: Option<String>,
    confidence: Option<u8>,
    at: Option<Timestamp>,
    device: Option<String>,
}

/// An e-seal gateway's report: `{"seal_id":"0042-0001E240","state":"SEALED","battery_pct":80}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ESealPayload {
    seal_id: String,
    state: ESealState,
    battery_pct: Option<u8>,
    at: Option<Timestamp>,
    device: Option<String>,
}

/// A presence detector's report: `{"loop":0,"present":true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresencePayload {
    #[serde(rename = "loop")]
    loop_id: u8,
    present: bool,
    at: Option<Timestamp>,
}

/// Why a payload was not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// Larger than [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    /// Not JSON of the expected shape.
    #[error("{0}")]
    Json(String),
    /// An OCR report must carry exactly one of container, seal, plate.
    #[error("OCR payload must carry exactly one of \"container\", \"seal\", \"plate\"")]
    OcrShape,
    /// A value failed its identifier's rules.
    #[error("{what} {value:?}: {error}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The value as sent.
        value: String,
        /// What is wrong with it.
        error: String,
    },
    /// Confidence above 100.
    #[error("confidence {0} is above 100")]
    Confidence(u8),
}

fn json<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))
}

/// [`PayloadError::Invalid`] for the field `what`, sent as `value`, from its parser's error.
fn invalid<'a, E: std::fmt::Display>(
    what: &'static str,
    value: &'a str,
) -> impl FnOnce(E) -> PayloadError + 'a {
    move |e| PayloadError::Invalid {
        what,
        value: value.to_owned(),
        error: e.to_string(),
    }
}

/// Parses one payload from a topic mapped to `map` into an assembler event. `device` is
/// the name reads carry unless the payload names its own (`"device"`); `now` stands in for
/// a missing `"at"`.
///
/// A payload that does not parse is returned as an `UNREADABLE` read with the error, so
/// it reaches the transaction; the caller counts and logs it.
pub fn parse_payload(
    map: &TopicMap,
    device: &str,
    payload: &[u8],
    now: Timestamp,
) -> (AssemblerEvent, Option<PayloadError>) {
    match parse_strict(map, device, payload, now) {
        Ok(ev) => (ev, None),
        Err(e) => {
            let source = match map.kind {
                MqttKind::Rfid => ReadSource::Rfid,
                MqttKind::Ocr => ReadSource::Ocr,
                MqttKind::ESeal => ReadSource::ESealReader,
                // A presence detector is no reader; its garbled report is kept as an RFID-
                // side observation of the lane so it is not lost.
                MqttKind::Presence => ReadSource::Rfid,
            };
            let what = match map.kind {
                MqttKind::Rfid => "mqtt rfid payload",
                MqttKind::Ocr => "mqtt ocr payload",
                MqttKind::ESeal => "mqtt e-seal payload",
                MqttKind::Presence => "mqtt presence payload",
            };
            let ev = unreadable(map, device, source, what, payload, &e, now);
            (ev, Some(e))
        }
    }
}

/// A payload that did not parse, as the `UNREADABLE` read that carries it (its first
/// 256 bytes) and `error` into the transaction.
pub(super) fn unreadable(
    map: &TopicMap,
    device: &str,
    source: ReadSource,
    what: &str,
    payload: &[u8],
    error: &PayloadError,
    now: Timestamp,
) -> AssemblerEvent {
    let raw = String::from_utf8_lossy(&payload[..payload.len().min(256)]).into_owned();
    let value = ReadValue::Unreadable {
        what: what.into(),
        error: error.to_string(),
    };
    AssemblerEvent::Read(read(map, device.to_owned(), source, raw, value, now))
}

fn read(
    map: &TopicMap,
    device: String,
    source: ReadSource,
    raw: String,
    value: ReadValue,
    at: Timestamp,
) -> RawRead {
    RawRead {
        lane: map.lane.clone(),
        source,
        device,
        raw,
        value,
        at,
        antenna: None,
        rssi: None,
        confidence: None,
        entered_by: None,
    }
}

fn parse_strict(
    map: &TopicMap,
    device: &str,
    payload: &[u8],
    now: Timestamp,
) -> Result<AssemblerEvent, PayloadError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    // A read named by the payload's own "device" and "at", or the topic's device and now.
    let read_at = |d: Option<String>, at: Option<Timestamp>, source, (raw, value)| {
        let device = d.unwrap_or_else(|| device.to_owned());
        read(map, device, source, raw, value, at.unwrap_or(now))
    };
    Ok(match map.kind {
        MqttKind::Rfid => {
            let p: RfidPayload = json(payload)?;
            let hex_text: String = p.epc.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = hex::decode(&hex_text).map_err(invalid("epc", &p.epc))?;
            if bytes.is_empty() || bytes.len() > protocol::link::MAX_EPC_BYTES {
                return Err(PayloadError::Invalid {
                    what: "epc",
                    value: p.epc,
                    error: format!("must be 1..={} bytes", protocol::link::MAX_EPC_BYTES),
                });
            }
            let mut r = read_at(p.device, p.at, ReadSource::Rfid, tag_value(&bytes));
            r.antenna = p.antenna;
            r.rssi = p.rssi;
            AssemblerEvent::Read(r)
        }
        MqttKind::Ocr => {
            let p: OcrPayload = json(payload)?;
            if let Some(c) = p.confidence.filter(|&c| c > 100) {
                return Err(PayloadError::Confidence(c));
            }
            let read_value = match (p.container, p.seal, p.plate) {
                (Some(c), None, None) => {
                    let number = ContainerNumber::parse(&c).map_err(invalid("container", &c))?;
                    (c, ReadValue::Container { number })
                }
                (None, Some(s), None) => {
                    let number = SealNumber::parse(&s).map_err(invalid("seal", &s))?;
                    (s, ReadValue::Seal { number })
                }
                (None, None, Some(plate)) => {
                    let text = plate.trim().to_uppercase();
                    if text.is_empty()
                        || text.len() > 16
                        || !text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
                    {
                        return Err(PayloadError::Invalid {
                            what: "plate",
                            value: plate,
                            error: "must be 1..=16 letters, digits, '-' or spaces".into(),
                        });
                    }
                    (plate, ReadValue::Plate { text })
                }
                _ => return Err(PayloadError::OcrShape),
            };
            let mut r = read_at(p.device, p.at, ReadSource::Ocr, read_value);
            r.confidence = p.confidence;
            AssemblerEvent::Read(r)
        }
        MqttKind::ESeal => {
            let p: ESealPayload = json(payload)?;
            let id = ESealId::parse(&p.seal_id).map_err(invalid("seal_id", &p.seal_id))?;
            if let Some(b) = p.battery_pct.filter(|&b| b > 100) {
                return Err(PayloadError::Invalid {
                    what: "battery_pct",
                    value: b.to_string(),
                    error: "must be 0..=100".into(),
                });
            }
            let value = ReadValue::ESeal {
                id,
                state: p.state,
                battery_pct: p.battery_pct,
            };
            let raw = String::from_utf8_lossy(payload).into_owned();
            AssemblerEvent::Read(read_at(
                p.device,
                p.at,
                ReadSource::ESealReader,
                (raw, value),
            ))
        }
        MqttKind::Presence => {
            let p: PresencePayload = json(payload)?;
            AssemblerEvent::Presence {
                lane: map.lane.clone(),
                loop_id: p.loop_id,
                present: p.present,
                at: p.at.unwrap_or(now),
            }
        }
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::PayloadFormat;
    use protocol::schema::LaneId;

    /// A mapping of `lane/L1/#` to lane L1 for `kind` payloads in `format`.
    pub(in crate::sources) fn topic(kind: MqttKind, format: PayloadFormat) -> TopicMap {
        TopicMap {
            filter: "lane/L1/#".into(),
            lane: LaneId::parse("L1").expect("lane"),
            kind,
            format,
        }
    }

    fn map(kind: MqttKind) -> TopicMap {
        topic(kind, PayloadFormat::Aeogate)
    }

    pub(in crate::sources) fn now() -> Timestamp {
        "2026-03-01T10:00:00Z".parse().expect("ts")
    }

    /// Parses `body` from a `kind` topic for `device`, which must accept it.
    fn accepted(kind: MqttKind, device: &str, body: &[u8]) -> AssemblerEvent {
        let (ev, err) = parse_payload(&map(kind), device, body, now());
        assert_eq!(err, None, "{}", String::from_utf8_lossy(body));
        ev
    }

    fn value(ev: AssemblerEvent) -> RawRead {
        match ev {
            AssemblerEvent::Read(r) => r,
            other => panic!("expected a read, got {other:?}"),
        }
    }

    #[test]
    fn rfid_payload_with_reader_time_and_antenna() {
        let ev = accepted(MqttKind::Rfid, "gw", br#"{"epc":"3074257BF7194E4000001A85","antenna":1,"rssi":-52,"at":"2026-03-01T09:59:59Z"}"#);
        let r = value(ev);
        assert_eq!((r.antenna, r.rssi), (Some(1), Some(-52)));
        assert_eq!(
            r.at,
            "2026-03-01T09:59:59Z".parse::<Timestamp>().expect("ts")
        );
        assert!(matches!(r.value, ReadValue::Tag { .. }));
    }

    #[test]
    fn ocr_container_is_validated_with_its_check_digit() {
        let ev = accepted(
            MqttKind::Ocr,
            "ocr",
            br#"{"container":"CSQU3054383","confidence":93}"#,
        );
        let r = value(ev);
        assert_eq!(r.confidence, Some(93));
        assert!(matches!(r.value, ReadValue::Container { .. }));

        let (ev, err) = parse_payload(
            &map(MqttKind::Ocr),
            "ocr",
            br#"{"container":"CSQU3054384"}"#,
            now(),
        );
        assert!(matches!(
            err,
            Some(PayloadError::Invalid {
                what: "container",
                ..
            })
        ));
        assert!(matches!(value(ev).value, ReadValue::Unreadable { .. }));
    }

    #[test]
    fn eseal_and_seal_payloads() {
        let ev = accepted(
            MqttKind::ESeal,
            "es",
            br#"{"seal_id":"0042-0001E240","state":"TAMPERED","battery_pct":80}"#,
        );
        assert!(matches!(
            value(ev).value,
            ReadValue::ESeal {
                state: ESealState::Tampered,
                battery_pct: Some(80),
                ..
            }
        ));
        let ev = accepted(MqttKind::Ocr, "ocr", br#"{"seal":"AB123456"}"#);
        assert!(matches!(value(ev).value, ReadValue::Seal { .. }));
    }

    #[test]
    fn presence_payload_becomes_a_presence_event() {
        let ev = accepted(MqttKind::Presence, "loop", br#"{"loop":0,"present":true}"#);
        assert!(matches!(
            ev,
            AssemblerEvent::Presence {
                loop_id: 0,
                present: true,
                ..
            }
        ));
    }

    #[test]
    fn malformed_payloads_become_unreadable_reads_naming_the_problem() {
        for (kind, body) in [
            (MqttKind::Rfid, &b"not json"[..]),
            (MqttKind::Rfid, br#"{"epc":"zz"}"#),
            (MqttKind::Rfid, br#"{"epc":"30","colour":"red"}"#),
            (
                MqttKind::Ocr,
                br#"{"container":"CSQU3054383","seal":"AB123456"}"#,
            ),
            (MqttKind::Ocr, br#"{"plate":"AB-12","confidence":101}"#),
            (MqttKind::ESeal, br#"{"seal_id":"42","state":"SEALED"}"#),
            (MqttKind::Presence, br#"{"loop":-1,"present":true}"#),
            (MqttKind::Presence, &[0xFF, 0xFE, 0x00]),
        ] {
            let (ev, err) = parse_payload(&map(kind), "dev", body, now());
            assert!(err.is_some(), "{body:?} accepted");
            let r = value(ev);
            assert!(matches!(r.value, ReadValue::Unreadable { .. }), "{body:?}");
            assert_eq!(r.device, "dev");
        }
        let big = vec![b' '; MAX_PAYLOAD + 1];
        let (_, err) = parse_payload(&map(MqttKind::Rfid), "dev", &big, now());
        assert_eq!(err, Some(PayloadError::TooLarge(MAX_PAYLOAD + 1)));
    }
}
