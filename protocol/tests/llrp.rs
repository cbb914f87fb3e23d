//! Properties of the LLRP codec over generated input (the stable-toolchain companion of the
//! `llrp_decode` fuzz target).
use proptest::prelude::*;
use protocol::llrp::{self, Check, Message, TagReport};

fn tag() -> impl Strategy<Value = TagReport> {
    (
        prop::collection::vec(any::<u8>(), 0..=62),
        any::<Option<u16>>(),
        any::<Option<i8>>(),
        any::<Option<u64>>(),
        any::<Option<u16>>(),
    )
        .prop_map(
            |(epc, antenna, peak_rssi, first_seen_utc_us, seen_count)| TagReport {
                epc,
                antenna,
                peak_rssi,
                first_seen_utc_us,
                seen_count,
                ..TagReport::default()
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Check::Complete { len }) = llrp::check(&bytes, 4096) {
            let _ = llrp::decode(&bytes[..len]);
        }
    }

    #[test]
    fn tag_reports_round_trip(tags in prop::collection::vec(tag(), 0..20), id: u32) {
        let m = Message::RoAccessReport(tags);
        let bytes = m.encode(llrp::VERSION_1_0_1, id);
        prop_assert_eq!(llrp::check(&bytes, llrp::DEFAULT_MAX_MESSAGE), Ok(Check::Complete { len: bytes.len() }));
        let (h, back) = llrp::decode(&bytes).expect("decodes");
        prop_assert_eq!(h.id, id);
        prop_assert_eq!(back, m);
    }

    #[test]
    fn a_message_split_anywhere_is_incomplete_until_whole(cut in 0usize..60) {
        let bytes = Message::RoAccessReport(vec![TagReport { epc: vec![0x30; 12], antenna: Some(1), ..TagReport::default() }]).encode(1, 9);
        let cut = cut.min(bytes.len() - 1);
        let is_incomplete = matches!(llrp::check(&bytes[..cut], 4096), Ok(Check::Incomplete { .. }));
        prop_assert!(is_incomplete);
    }
}
