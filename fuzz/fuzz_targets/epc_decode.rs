//! Arbitrary bytes into the EPC decoder, and the same bytes as text into the hex, tag URI
//! and pure identity URI parsers: none may panic, and every EPC they accept must survive
//! bytes → EPC and tag URI → EPC round trips unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::epc::Epc;

fn round_trips(epc: Epc) {
    assert_eq!(Epc::from_bytes(&epc.to_bytes()), Ok(epc));
    assert_eq!(Epc::from_tag_uri(&epc.tag_uri()), Ok(epc));
    if let Some(filter) = epc.filter() {
        assert_eq!(
            Epc::from_pure_identity_uri(&epc.pure_identity_uri(), filter),
            Ok(epc)
        );
    }
    let _ = epc.gs1_element_string().map(|s| s.to_string());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(epc) = Epc::from_bytes(data) {
        round_trips(epc);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(epc) = Epc::from_hex(text) {
            round_trips(epc);
        }
        if let Ok(epc) = Epc::from_tag_uri(text) {
            round_trips(epc);
        }
        if let Ok(epc) = Epc::from_pure_identity_uri(text, 1) {
            round_trips(epc);
        }
    }
});
