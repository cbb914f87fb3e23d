//! Property tests for the identifier parsers: EPC encode → decode round trips for every
//! scheme over arbitrary valid field values, and arbitrary input never panics.
// Values built by the strategies are valid by construction; unwrapping them is the assertion.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use protocol::container::{ContainerNumber, check_digit};
use protocol::epc::{Epc, EpcError, Giai96, Grai96, Sgtin96, Sscc96};

const SERIAL_MAX: u64 = (1 << 38) - 1;

fn pow10(n: u32) -> u64 {
    10u64.pow(n)
}

/// Company prefix digits for a partition value (every partition table: 12 − P).
fn cp_digits(partition: u8) -> u32 {
    12 - u32::from(partition)
}

/// Every way back from an EPC must give the same EPC.
fn assert_round_trips(epc: Epc) {
    let bytes = epc.to_bytes();
    assert_eq!(bytes.len(), 12);
    assert_eq!(Epc::from_bytes(&bytes), Ok(epc), "bytes");
    let mut hex = String::new();
    epc.write_hex(&mut hex).unwrap();
    assert_eq!(Epc::from_hex(&hex), Ok(epc), "hex {hex}");
    assert_eq!(
        Epc::from_hex(&hex.to_lowercase()),
        Ok(epc),
        "lower-case hex"
    );
    assert_eq!(
        Epc::from_tag_uri(&epc.tag_uri()),
        Ok(epc),
        "tag URI {}",
        epc.tag_uri()
    );
    let filter = epc.filter().unwrap();
    assert_eq!(
        Epc::from_pure_identity_uri(&epc.pure_identity_uri(), filter),
        Ok(epc),
        "pure identity URI"
    );
}

fn sgtin() -> impl Strategy<Value = (u8, u8, u64, u64, u64)> {
    (0u8..7).prop_flat_map(|p| {
        (
            0u8..8,
            Just(p),
            0..pow10(cp_digits(p)),
            0..pow10(1 + u32::from(p)),
            0..=SERIAL_MAX,
        )
    })
}

fn sscc() -> impl Strategy<Value = (u8, u8, u64, u64)> {
    (0u8..7).prop_flat_map(|p| {
        (
            0u8..8,
            Just(p),
            0..pow10(cp_digits(p)),
            0..pow10(5 + u32::from(p)),
        )
    })
}

fn grai() -> impl Strategy<Value = (u8, u8, u64, u64, u64)> {
    (0u8..7).prop_flat_map(|p| {
        (
            0u8..8,
            Just(p),
            0..pow10(cp_digits(p)),
            0..pow10(u32::from(p)),
            0..=SERIAL_MAX,
        )
    })
}

/// GIAI-96 individual asset reference bits per partition (TDS 1.13 Table 14-13).
const GIAI_BITS: [u32; 7] = [42, 45, 48, 52, 55, 58, 62];

fn giai() -> impl Strategy<Value = (u8, u8, u64, u64)> {
    (0u8..7).prop_flat_map(|p| {
        (
            0u8..8,
            Just(p),
            0..pow10(cp_digits(p)),
            0..(1u64 << GIAI_BITS[usize::from(p)]),
        )
    })
}

proptest! {
    #[test]
    fn sgtin96_round_trips((filter, partition, cp, item, serial) in sgtin()) {
        let v = Sgtin96::new(filter, partition, cp, item, serial).unwrap();
        prop_assert_eq!(
            (v.filter(), v.partition(), v.company_prefix().value(), v.item_reference().value(), v.serial()),
            (filter, partition, cp, item, serial)
        );
        assert_round_trips(v.into());
    }

    #[test]
    fn sscc96_round_trips((filter, partition, cp, serial_ref) in sscc()) {
        let v = Sscc96::new(filter, partition, cp, serial_ref).unwrap();
        prop_assert_eq!(v.serial_reference().width() + v.company_prefix().width(), 17);
        prop_assert_eq!(v.serial_reference().value(), serial_ref);
        assert_round_trips(v.into());
    }

    #[test]
    fn grai96_round_trips((filter, partition, cp, asset_type, serial) in grai()) {
        let v = Grai96::new(filter, partition, cp, asset_type, serial).unwrap();
        prop_assert_eq!((v.asset_type().value(), v.serial()), (asset_type, serial));
        assert_round_trips(v.into());
    }

    #[test]
    fn giai96_round_trips((filter, partition, cp, asset_ref) in giai()) {
        let v = Giai96::new(filter, partition, cp, asset_ref).unwrap();
        prop_assert_eq!(v.asset_reference().value(), asset_ref);
        assert_round_trips(v.into());
    }

    #[test]
    fn company_prefix_beyond_its_digits_is_rejected((p, extra) in (0u8..7, 0u64..1000)) {
        let too_big = pow10(cp_digits(p)) + extra;
        let is_overflow = |r: Result<Epc, EpcError>| matches!(r, Err(EpcError::DigitsOverflow { field: "company prefix", .. }));
        prop_assert!(is_overflow(Sgtin96::new(0, p, too_big, 0, 0).map(Epc::from)));
        prop_assert!(is_overflow(Sscc96::new(0, p, too_big, 0).map(Epc::from)));
        prop_assert!(is_overflow(Grai96::new(0, p, too_big, 0, 0).map(Epc::from)));
        prop_assert!(is_overflow(Giai96::new(0, p, too_big, 0).map(Epc::from)));
    }

    /// Any 96 bits under a supported header either decode to an EPC that re-encodes to the
    /// very same bits, or are rejected: decoding loses nothing and invents nothing.
    #[test]
    fn decoded_96_bit_epcs_re_encode_exactly(header in prop::sample::select(vec![0x30u8, 0x31, 0x33, 0x34]), rest in any::<[u8; 11]>()) {
        let mut bytes = [0u8; 12];
        bytes[0] = header;
        bytes[1..].copy_from_slice(&rest);
        if let Ok(epc) = Epc::from_bytes(&bytes) {
            let again = epc.to_bytes();
            prop_assert_eq!(again.as_slice(), &bytes[..]);
            prop_assert_eq!(Epc::from_tag_uri(&epc.tag_uri()), Ok(epc));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(epc) = Epc::from_bytes(&bytes) {
            prop_assert_eq!(Epc::from_bytes(&epc.to_bytes()), Ok(epc));
            prop_assert_eq!(Epc::from_tag_uri(&epc.tag_uri()), Ok(epc));
            let _ = epc.gs1_element_string().map(|s| s.to_string());
        }
        let _ = Epc::raw(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics_the_epc_parsers(text in ".{0,200}") {
        let _ = Epc::from_hex(&text);
        let _ = Epc::from_tag_uri(&text);
        let _ = Epc::from_pure_identity_uri(&text, 0);
    }

    #[test]
    fn uri_like_text_never_panics(body in "[0-9a-z.:\\[\\]=x-]{0,60}", prefix in prop::sample::select(vec!["urn:epc:tag:", "urn:epc:id:", "urn:epc:raw:", "urn:epc:tag:sgtin-96:", "urn:epc:tag:giai-96:", "urn:epc:id:grai:"])) {
        let uri = format!("{prefix}{body}");
        if let Ok(epc) = Epc::from_tag_uri(&uri) {
            prop_assert_eq!(Epc::from_tag_uri(&epc.tag_uri()), Ok(epc));
        }
        let _ = Epc::from_pure_identity_uri(&uri, 7);
    }

    #[test]
    fn hex_like_text_never_panics(text in "(0x)?[0-9a-fA-F ]{0,140}[g-z]?") {
        let _ = Epc::from_hex(&text);
    }

    #[test]
    fn arbitrary_text_never_panics_the_container_parser(text in ".{0,40}") {
        if let Ok(number) = ContainerNumber::parse(&text) {
            prop_assert_eq!(ContainerNumber::parse(number.as_str()), Ok(number));
        }
    }

    #[test]
    fn container_numbers_with_the_computed_check_digit_parse(owner in "[A-Z]{3}", category in prop::sample::select(vec!['U', 'J', 'Z']), serial in 0u32..1_000_000) {
        let first10 = format!("{owner}{category}{serial:06}");
        let digit = check_digit(first10.as_bytes().try_into().unwrap());
        let number = ContainerNumber::parse(&format!("{first10}{digit}")).unwrap();
        prop_assert_eq!(number.check_digit(), digit);
        prop_assert_eq!(number.owner(), owner.as_str());
        prop_assert_eq!(number.category().letter(), category);
        let wrong = format!("{first10}{}", (digit + 1) % 10);
        let rejected = ContainerNumber::parse(&wrong).is_err();
        prop_assert!(rejected, "{} parsed", wrong);
    }
}
