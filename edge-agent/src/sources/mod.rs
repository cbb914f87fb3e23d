//! Sources: the drivers that turn lane hardware into [`AssemblerEvent`]s.
//!
//! - [`serial`]: serial ports, one task per port: the lane I/O board link
//!   ([`serial::run_lane_board`]) and a `BB … 7E` UHF module read directly
//!   ([`serial::run_uhf_module`]).
//! - [`mqtt`]: networked readers, OCR portals, e-seal gateways and presence detectors
//!   publishing JSON over MQTT, and the lane topics the agent publishes back.
//!
//! Every source owns its reconnection (exponential [`Backoff`] with full jitter) and reports
//! its state through a [`HealthReporter`] (a `tokio::sync::watch`). Sources hand reads to the
//! assembler with `send().await` on a small bounded channel: a read is never dropped
//! silently; a slow assembler slows the source instead.

pub mod mqtt;
pub mod serial;

use std::time::Duration;

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::epc::Epc;
use protocol::schema::{DeviceHealth, LaneId, ReadValue};
use rand::Rng as _;
use tokio::sync::watch;

pub use crate::assembler::{AssemblerEvent, RawRead};

/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
/// Jitter", 2015): the n-th wait is uniform in `[0, min(cap, base · 2ⁿ)]`, so many agents
/// that lost the same broker or central do not come back in lock step.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never waiting longer than `cap`.
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next wait (before jitter), without consuming an attempt.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait: uniform in `[base/2, ceiling]` — full jitter, but never so short that
    /// a dead device is hammered in a tight loop.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::rng().random_range(0.0..=1.0f64))
    }

    /// [`Backoff::next_delay`] with the random draw given (`jitter` in `[0, 1]`, clamped):
    /// for sans-IO callers and tests.
    pub fn next_delay_with(&mut self, jitter: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.base / 2).min(ceiling);
        let span = ceiling.saturating_sub(floor);
        floor
            + span.mul_f64(if jitter.is_nan() {
                0.0
            } else {
                jitter.clamp(0.0, 1.0)
            })
    }

    /// Start over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Publishes one device's health. `since` changes only when the device goes up or down, so
/// a console can say "down for 3 min" while the detail text keeps changing.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    tx: watch::Sender<DeviceHealth>,
}

impl HealthReporter {
    /// A reporter for `device` on `lane`, starting down ("not opened yet").
    #[must_use]
    pub fn new(device: &str, lane: Option<LaneId>) -> (Self, watch::Receiver<DeviceHealth>) {
        let (tx, rx) = watch::channel(DeviceHealth {
            device: device.to_owned(),
            lane,
            up: false,
            detail: "not opened yet".into(),
            since: Timestamp::now(),
        });
        (Self { tx }, rx)
    }

    /// Another receiver of this device's health.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<DeviceHealth> {
        self.tx.subscribe()
    }

    /// The device works; `detail` says how.
    pub fn up(&self, detail: impl Into<String>) {
        self.set(true, detail.into());
    }

    /// The device does not work; `detail` says why.
    pub fn down(&self, detail: impl Into<String>) {
        self.set(false, detail.into());
    }

    /// The current state.
    #[must_use]
    pub fn current(&self) -> DeviceHealth {
        self.tx.borrow().clone()
    }

    fn set(&self, up: bool, detail: String) {
        self.tx.send_if_modified(|h| {
            if h.up == up && h.detail == detail {
                return false;
            }
            if h.up != up {
                h.since = Timestamp::now();
                if up {
                    tracing::info!(device = %h.device, %detail, "device up");
                } else {
                    tracing::warn!(device = %h.device, %detail, "device down");
                }
            }
            h.up = up;
            h.detail = detail;
            true
        });
    }
}

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
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(1), "{d:?} exceeds the cap");
            assert!(d >= Duration::from_millis(50), "{d:?} below the floor");
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

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
