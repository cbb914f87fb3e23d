//! Sources: the drivers that turn lane hardware into [`AssemblerEvent`]s.
//!
//! - [`serial`]: serial ports, one task per port: the lane I/O board link
//!   ([`serial::run_lane_board`]) and a `BB … 7E` UHF module read directly
//!   ([`serial::run_uhf_module`]).
//! - [`mqtt`]: networked readers, OCR portals, e-seal gateways and presence detectors
//!   publishing JSON over MQTT, and the lane topics the agent publishes back.
//! - [`lane_wills`]: one will-only MQTT connection per lane whose Last Will is the lane's
//!   `OFFLINE` state, so a lane's own topic says so when the agent dies.
//! - [`payload`]: aeogate's own MQTT payload format, parsed with limits.
//! - [`vendor`]: vendor MQTT payload formats (Impinj, Zebra) mapped to reads.
//! - [`llrp`]: the LLRP client for fixed UHF readers (sans-IO session and TCP shell).
//!
//! Every source owns its reconnection (exponential [`Backoff`] with full jitter) and reports
//! its state through a [`HealthReporter`] (a `tokio::sync::watch`). Sources hand reads to the
//! assembler with `send().await` on a small bounded channel: a read is never dropped
//! silently; a slow assembler slows the source instead.

pub mod lane_wills;
pub mod llrp;
pub mod mqtt;
pub mod payload;
pub mod serial;
pub mod vendor;

use protocol::container::ContainerNumber;
use protocol::epc::Epc;
use protocol::schema::ReadValue;

pub use crate::assembler::{AssemblerEvent, RawRead};
pub use crate::backoff::Backoff;
pub use crate::live::HealthReporter;

/// Normalises the EPC bank of a tag read into a [`ReadValue`]; returns it with the raw hex
/// (upper case, as in the EPC Raw URI of TDS §12.1).
///
/// - A GS1 EPC that decodes (SGTIN/SSCC/GRAI/GIAI-96) becomes a `Tag` with its pure-identity
///   URI; any other header becomes a `Tag` with the EPC Raw URI (`urn:epc:raw:…`).
/// - A container tag becomes a `Container`: either an EPC whose pure identity is a GS1 BIC
///   URI (`urn:epc:id:bic:CSQU3054383`, TDS 2.0), or a bank holding the ISO 6346 number as
///   ASCII (as ISO 10374-style container tags written by terminal tools do), padded with
///   zero bytes or spaces.
/// - A GS1 header whose fields are invalid becomes `Unreadable`: a mis-programmed tag at a
///   gate is worth an officer's look (see `protocol::epc` on TDS §15.2.2).
#[must_use]
pub fn tag_value(epc: &[u8]) -> (String, ReadValue) {
    let raw = hex::encode_upper(epc);
    if let Some(number) = ascii_container(epc) {
        return (raw, ReadValue::Container { number });
    }
    let value = match Epc::from_bytes(epc) {
        Ok(decoded) => {
            let uri = decoded.pure_identity_uri();
            match uri
                .strip_prefix("urn:epc:id:bic:")
                .and_then(|n| ContainerNumber::parse(n).ok())
            {
                Some(number) => ReadValue::Container { number },
                None => ReadValue::Tag {
                    uri,
                    scheme: decoded.scheme().to_owned(),
                },
            }
        }
        Err(e) => ReadValue::Unreadable {
            what: "epc".into(),
            error: e.to_string(),
        },
    };
    (raw, value)
}

fn ascii_container(epc: &[u8]) -> Option<ContainerNumber> {
    let text = epc.strip_suffix(&[0u8][..]).unwrap_or(epc);
    let end = text
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    let text = &text[..end];
    if text.len() != 11 || !text.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    ContainerNumber::parse(std::str::from_utf8(text).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_container_tag_becomes_a_container_read() {
        let mut bank = b"CSQU3054383".to_vec();
        bank.push(0);
        let (raw, value) = tag_value(&bank);
        assert_eq!(raw, "435351553330353433383300");
        assert!(
            matches!(value, ReadValue::Container { number } if number.as_str() == "CSQU3054383")
        );
    }

    #[test]
    fn ascii_container_with_a_wrong_check_digit_is_not_a_container() {
        let (_, value) = tag_value(b"CSQU3054384\0");
        assert!(!matches!(value, ReadValue::Container { .. }));
    }

    #[test]
    fn sgtin_tag_becomes_a_pure_identity_uri() {
        let bytes = hex::decode("3074257BF7194E4000001A85").expect("hex");
        let (_, value) = tag_value(&bytes);
        match value {
            ReadValue::Tag { uri, scheme } => {
                assert!(uri.starts_with("urn:epc:id:sgtin:"), "{uri}");
                assert_eq!(scheme, "sgtin-96");
            }
            other => panic!("expected a tag, got {other:?}"),
        }
    }

    #[test]
    fn unknown_header_becomes_a_raw_uri() {
        let (_, value) = tag_value(&[0xE2, 0x00, 0x12, 0x34]);
        assert!(
            matches!(&value, ReadValue::Tag { uri, .. } if uri.starts_with("urn:epc:raw:")),
            "{value:?}"
        );
    }
}
