//! The tag events fixed readers publish over MQTT in their vendor's own JSON, selected by a
//! topic mapping's `format` (`docs/integration.md`, "Vendor MQTT formats"):
//!
//! - [`PayloadFormat::Impinj`]: the Impinj IoT device interface (reader firmware 7.x/8.x on
//!   R700/R720): one event object per message, `eventType` `"tagInventory"` with a
//!   `tagInventoryEvent` holding `epcHex` (or `epc`, base64), `antennaPort`,
//!   `peakRssiCdbm` (hundredths of a dBm) and the event's `timestamp`.
//! - [`PayloadFormat::Zebra`]: the Zebra IoT Connector's data events (FX7500, FX9600,
//!   ATR7000): an object, or an array of them, each with `type`, `timestamp` and a `data`
//!   object holding `idHex` (the EPC), `antenna` and `peakRssi` (dBm).
//!
//! Both vendors add fields between firmware versions, so unknown fields are ignored (unlike
//! aeogate's own format, which is strict). An event of another kind (an Impinj inventory
//! status, a Zebra record with no tag) yields no read; a payload that is not the vendor's
//! shape, or an EPC that is not hex, becomes an `UNREADABLE` read like any other payload
//! the agent does not understand.

use base64::Engine as _;
use jiff::Timestamp;
use protocol::schema::ReadSource;
use serde_json::Value;

use super::payload::{MAX_PAYLOAD, PayloadError, parse_payload, unreadable};
use super::{AssemblerEvent, RawRead, tag_value};
use crate::config::{PayloadFormat, TopicMap};

/// Most tag records taken from one payload (a Zebra batch); the rest are dropped and the
/// payload reported.
const MAX_RECORDS: usize = 64;
/// A reader's own timestamp is used when within this of the agent's clock; otherwise the
/// time of arrival (an unset or drifted reader clock must not move a read out of its
/// truck's transaction).
const CLOCK_TRUST: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Parses one payload from a topic mapped to `map` in the mapping's format.
pub fn parse_mapped(
    map: &TopicMap,
    device: &str,
    payload: &[u8],
    now: Timestamp,
) -> (Vec<AssemblerEvent>, Option<PayloadError>) {
    let records = match map.format {
        PayloadFormat::Aeogate => {
            let (ev, err) = parse_payload(map, device, payload, now);
            return (vec![ev], err);
        }
        PayloadFormat::Impinj => parse_vendor(payload, impinj_record),
        PayloadFormat::Zebra => parse_vendor(payload, zebra_record),
    };
    match records {
        Ok(records) => (
            records
                .into_iter()
                .map(|r| AssemblerEvent::Read(r.into_read(map, device, now)))
                .collect(),
            None,
        ),
        Err(e) => {
            let what = match map.format {
                PayloadFormat::Impinj => "impinj tag event",
                _ => "zebra tag event",
            };
            let read = unreadable(map, device, ReadSource::Rfid, what, payload, &e, now);
            (vec![read], Some(e))
        }
    }
}

/// One tag record from a vendor payload.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    epc: Vec<u8>,
    antenna: Option<u8>,
    /// dBm.
    rssi: Option<i16>,
    at: Option<Timestamp>,
}

impl Record {
    fn into_read(self, map: &TopicMap, device: &str, now: Timestamp) -> RawRead {
        let (raw, value) = tag_value(&self.epc);
        RawRead {
            lane: map.lane.clone(),
            source: ReadSource::Rfid,
            device: device.to_owned(),
            raw,
            value,
            at: self
                .at
                .filter(|t| t.duration_since(now).abs() < CLOCK_TRUST)
                .unwrap_or(now),
            antenna: self.antenna,
            rssi: self.rssi,
            confidence: None,
            entered_by: None,
        }
    }
}

fn invalid(what: &'static str, value: &Value, error: impl Into<String>) -> PayloadError {
    PayloadError::Invalid {
        what,
        value: value.to_string(),
        error: error.into(),
    }
}

/// Parses the payload as one JSON object or an array of them; `record` turns each into a
/// tag record, or `None` for an event that carries no tag.
fn parse_vendor(
    payload: &[u8],
    record: fn(&Value) -> Result<Option<Record>, PayloadError>,
) -> Result<Vec<Record>, PayloadError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    let items: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![&v],
        other => return Err(invalid("payload", other, "expected a JSON object or array")),
    };
    if items.len() > MAX_RECORDS {
        return Err(PayloadError::Json(format!(
            "{} records in one payload; at most {MAX_RECORDS} are accepted",
            items.len()
        )));
    }
    let mut out = Vec::new();
    for item in items {
        if !item.is_object() {
            return Err(invalid("record", item, "expected a JSON object"));
        }
        if let Some(r) = record(item)? {
            out.push(r);
        }
    }
    Ok(out)
}

fn epc_hex(field: &'static str, v: &Value) -> Result<Vec<u8>, PayloadError> {
    let text = v
        .as_str()
        .ok_or_else(|| invalid(field, v, "expected a hex string"))?;
    let bytes = hex::decode(text.trim()).map_err(|e| invalid(field, v, e.to_string()))?;
    check_epc_len(field, v, bytes)
}

fn check_epc_len(field: &'static str, v: &Value, bytes: Vec<u8>) -> Result<Vec<u8>, PayloadError> {
    if bytes.is_empty() || bytes.len() > protocol::link::MAX_EPC_BYTES {
        return Err(invalid(
            field,
            v,
            format!("must be 1..={} bytes", protocol::link::MAX_EPC_BYTES),
        ));
    }
    Ok(bytes)
}

/// An optional field: absent or `null` is `None`; otherwise `read` takes its value, and a
/// value it does not take is an error saying what was `expected`.
fn optional<T>(
    field: &'static str,
    v: Option<&Value>,
    expected: &'static str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>, PayloadError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => read(v).map(Some).ok_or_else(|| invalid(field, v, expected)),
    }
}

fn antenna(field: &'static str, v: Option<&Value>) -> Result<Option<u8>, PayloadError> {
    optional(field, v, "expected an antenna number 0..=255", |n| {
        n.as_u64().and_then(|n| u8::try_from(n).ok())
    })
}

/// A timestamp as the vendors write it: RFC 3339, or ISO 8601 with a `+hhmm` offset.
fn timestamp(v: Option<&Value>) -> Option<Timestamp> {
    let text = v?.as_str()?;
    text.parse::<Timestamp>().ok().or_else(|| {
        // "2026-03-01T09:59:59.123+0000" → "…+00:00".
        let (head, offset) = text.split_at(text.len().checked_sub(5)?);
        let sign = offset.chars().next()?;
        if (sign == '+' || sign == '-') && offset[1..].bytes().all(|b| b.is_ascii_digit()) {
            format!("{head}{}:{}", &offset[..3], &offset[3..])
                .parse()
                .ok()
        } else {
            None
        }
    })
}

fn impinj_record(v: &Value) -> Result<Option<Record>, PayloadError> {
    if v.get("eventType").and_then(Value::as_str) != Some("tagInventory") {
        return Ok(None);
    }
    let event = v
        .get("tagInventoryEvent")
        .filter(|e| e.is_object())
        .ok_or_else(|| invalid("tagInventoryEvent", v, "missing from a tagInventory event"))?;
    let epc = if let Some(h) = event.get("epcHex") {
        epc_hex("epcHex", h)?
    } else if let Some(b) = event.get("epc") {
        let text = b
            .as_str()
            .ok_or_else(|| invalid("epc", b, "expected base64 text"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| invalid("epc", b, e.to_string()))?;
        check_epc_len("epc", b, bytes)?
    } else {
        return Err(invalid(
            "tagInventoryEvent",
            event,
            "carries neither epcHex nor epc",
        ));
    };
    let rssi = optional(
        "peakRssiCdbm",
        event.get("peakRssiCdbm"),
        "expected hundredths of a dBm",
        |r| r.as_i64().and_then(|c| i16::try_from(c / 100).ok()),
    )?;
    Ok(Some(Record {
        epc,
        antenna: antenna("antennaPort", event.get("antennaPort"))?,
        rssi,
        at: timestamp(v.get("timestamp")),
    }))
}

fn zebra_record(v: &Value) -> Result<Option<Record>, PayloadError> {
    let Some(data) = v.get("data").filter(|d| d.is_object()) else {
        return Ok(None);
    };
    let epc = match data.get("idHex").or_else(|| data.get("EPC")) {
        Some(h) => epc_hex("idHex", h)?,
        None => return Ok(None),
    };
    let rssi = optional("peakRssi", data.get("peakRssi"), "expected dBm", |r| {
        r.as_f64().filter(|d| (-200.0..=50.0).contains(d)).map(|d| {
            #[allow(clippy::cast_possible_truncation)] // range checked above
            let dbm = d.round() as i16;
            dbm
        })
    })?;
    Ok(Some(Record {
        epc,
        antenna: antenna("antenna", data.get("antenna"))?,
        rssi,
        at: timestamp(v.get("timestamp")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MqttKind;
    use crate::sources::payload::tests::{now, topic};
    use protocol::schema::ReadValue;

    fn map(format: PayloadFormat) -> TopicMap {
        topic(MqttKind::Rfid, format)
    }

    fn reads(format: PayloadFormat, payload: &str) -> Vec<RawRead> {
        let (evs, err) = parse_mapped(&map(format), "gw", payload.as_bytes(), now());
        assert_eq!(err, None, "{payload}");
        evs.into_iter()
            .map(|e| match e {
                AssemblerEvent::Read(r) => r,
                other => panic!("expected a read, got {other:?}"),
            })
            .collect()
    }

    // Shaped like the tag inventory event of the Impinj IoT device interface's
    // documentation; values are this project's test tag.
    const IMPINJ: &str = r#"{"timestamp":"2026-03-01T09:59:58.250Z","hostname":"impinj-gate-3",
        "eventType":"tagInventory","tagInventoryEvent":{"epcHex":"3074257BF7194E4000001A85",
        "antennaPort":2,"antennaName":"lane 1 left","peakRssiCdbm":-5650,"frequency":866900,
        "transmitPowerCdbm":3000,"lastSeenTime":"2026-03-01T09:59:58.240Z"}}"#;

    #[test]
    fn impinj_tag_inventory_event_becomes_a_read() {
        let r = reads(PayloadFormat::Impinj, IMPINJ);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].raw, "3074257BF7194E4000001A85");
        assert!(
            matches!(&r[0].value, ReadValue::Tag { uri, .. } if uri.starts_with("urn:epc:id:sgtin:"))
        );
        assert_eq!((r[0].antenna, r[0].rssi), (Some(2), Some(-56)));
        assert_eq!(
            r[0].at,
            "2026-03-01T09:59:58.250Z".parse::<Timestamp>().expect("ts")
        );
    }

    #[test]
    fn impinj_base64_epc_is_decoded() {
        // "MHQle/cZTkAAABqF" is the same 12 bytes in base64.
        let r = reads(
            PayloadFormat::Impinj,
            r#"{"eventType":"tagInventory","tagInventoryEvent":{"epc":"MHQle/cZTkAAABqF","antennaPort":1}}"#,
        );
        assert_eq!(r[0].raw, "3074257BF7194E4000001A85");
    }

    #[test]
    fn impinj_event_of_another_kind_yields_no_read() {
        let r = reads(
            PayloadFormat::Impinj,
            r#"{"timestamp":"2026-03-01T09:59:58Z","eventType":"inventoryStatus","inventoryStatusEvent":{"status":"running"}}"#,
        );
        assert!(r.is_empty());
    }

    // Shaped like a Zebra IoT Connector tag data event (SIMPLE mode), batched.
    const ZEBRA: &str = r#"[{"data":{"eventNum":4711,"format":"epc","idHex":"3074257bf7194e4000001a85",
        "antenna":3,"peakRssi":-61,"reads":4},"timestamp":"2026-03-01T09:59:59.100+0000","type":"SIMPLE"},
        {"data":{"eventNum":4712,"format":"epc","idHex":"43535155333035343338330000","antenna":3,
        "peakRssi":-63},"timestamp":"2026-03-01T09:59:59.120+0000","type":"SIMPLE"}]"#;

    #[test]
    fn zebra_batch_becomes_one_read_per_record() {
        let r = reads(PayloadFormat::Zebra, ZEBRA);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].antenna, r[0].rssi), (Some(3), Some(-61)));
        assert_eq!(
            r[0].at,
            "2026-03-01T09:59:59.100Z".parse::<Timestamp>().expect("ts")
        );
        assert!(
            matches!(&r[1].value, ReadValue::Container { number } if number.as_str() == "CSQU3054383"),
            "{:?}",
            r[1].value
        );
    }

    #[test]
    fn reader_clock_far_off_is_replaced_by_arrival_time() {
        let r = reads(
            PayloadFormat::Zebra,
            r#"{"data":{"idHex":"3074257BF7194E4000001A85","antenna":1},"timestamp":"1970-01-01T00:00:00+0000","type":"SIMPLE"}"#,
        );
        assert_eq!(r[0].at, now());
    }

    #[test]
    fn malformed_vendor_payloads_become_unreadable_reads() {
        for (format, body) in [
            (PayloadFormat::Impinj, "not json"),
            (PayloadFormat::Impinj, r#"{"eventType":"tagInventory"}"#),
            (
                PayloadFormat::Impinj,
                r#"{"eventType":"tagInventory","tagInventoryEvent":{"epcHex":"zz"}}"#,
            ),
            (
                PayloadFormat::Impinj,
                r#"{"eventType":"tagInventory","tagInventoryEvent":{"epc":"***"}}"#,
            ),
            (
                PayloadFormat::Zebra,
                r#"{"data":{"idHex":"3074","antenna":900}}"#,
            ),
            (PayloadFormat::Zebra, r#"{"data":{"idHex":""}}"#),
            (PayloadFormat::Zebra, "[1,2]"),
            (PayloadFormat::Zebra, "42"),
        ] {
            let (evs, err) = parse_mapped(&map(format), "gw", body.as_bytes(), now());
            assert!(err.is_some(), "{body} accepted");
            assert!(
                matches!(&evs[..], [AssemblerEvent::Read(r)] if matches!(r.value, ReadValue::Unreadable { .. })),
                "{body}: {evs:?}"
            );
        }
    }

    #[test]
    fn oversized_batch_is_refused() {
        let one = r#"{"data":{"idHex":"30","antenna":1}}"#;
        let body = format!("[{}]", vec![one; MAX_RECORDS + 1].join(","));
        let (_, err) = parse_mapped(&map(PayloadFormat::Zebra), "gw", body.as_bytes(), now());
        assert!(err.is_some());
    }

    #[test]
    fn vendor_format_on_a_non_rfid_topic_is_a_config_error() {
        let text = "[gate]\nid = \"G1\"\nport = \"P\"\n\n[[lanes]]\nid = \"L1\"\n\
            [lanes.routes]\nfast = \"a\"\nstandard = \"b\"\ninspect = \"c\"\n\n\
            [mqtt]\n[[mqtt.topics]]\nfilter = \"ocr/#\"\nlane = \"L1\"\nkind = \"ocr\"\nformat = \"zebra\"\n\n\
            [policy]\nrandom_key = \"a-random-key-of-enough-length\"\n";
        let e = crate::config::Config::from_toml_str(text, "agent.toml")
            .expect_err("rejected")
            .to_string();
        assert!(e.contains("mqtt.topics[0].format"), "{e}");
        assert!(e.contains("line 17"), "{e}");
    }
}
