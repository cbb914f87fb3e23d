//! Proptest strategies shared by the protocol tests.

use proptest::prelude::*;
use protocol::link::{BatteryLevel, EpochMinutes, SealRead, SealStatus};

/// Any seal read, its sealed and opened times drawn from `minutes`.
pub fn arb_seal_read(
    minutes: impl Strategy<Value = Option<EpochMinutes>> + Clone,
) -> impl Strategy<Value = SealRead> {
    (
        any::<u16>(),
        any::<u32>(),
        prop_oneof![
            Just(SealStatus::Sealed),
            Just(SealStatus::Opened),
            Just(SealStatus::Tampered)
        ],
        prop_oneof![
            Just(BatteryLevel::Ok),
            Just(BatteryLevel::Low),
            Just(BatteryLevel::Critical)
        ],
        minutes.clone(),
        minutes,
    )
        .prop_map(
            |(manufacturer, tag_id, status, battery, sealed_at, opened_at)| SealRead {
                manufacturer,
                tag_id,
                status,
                battery,
                sealed_at,
                opened_at,
            },
        )
}
