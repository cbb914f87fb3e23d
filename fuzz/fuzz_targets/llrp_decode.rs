//! Arbitrary bytes as a stream of LLRP messages: `check` then `decode` must never panic;
//! every message decoded re-encodes to bytes that decode again, and a second round trip
//! changes nothing (the first may drop parameters the codec skips).
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::llrp;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    for _ in 0..64 {
        let len = match llrp::check(rest, 4096) {
            Ok(llrp::Check::Complete { len }) => len,
            Ok(llrp::Check::Incomplete { .. }) | Err(_) => return,
        };
        if let Ok((header, message)) = llrp::decode(&rest[..len]) {
            let once = message.encode(header.version, header.id);
            let (h2, again) = llrp::decode(&once).expect("a re-encoded message decodes");
            assert_eq!((h2.version, h2.id, h2.kind), (header.version, header.id, header.kind));
            let twice = again.encode(h2.version, h2.id);
            assert_eq!(once, twice, "second round trip changed {again:?}");
        }
        rest = &rest[len..];
    }
});
