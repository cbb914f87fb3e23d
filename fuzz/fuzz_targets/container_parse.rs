//! Arbitrary text into the ISO 6346 container number parser: it must never panic, and
//! every number it accepts must re-parse from its canonical form to itself with the check
//! digit the free function computes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::container::{ContainerNumber, check_digit};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(number) = ContainerNumber::parse(text) {
        assert_eq!(ContainerNumber::parse(number.as_str()), Ok(number));
        let canonical = number.as_str().as_bytes();
        let first10: &[u8; 10] = canonical[..10]
            .try_into()
            .expect("canonical form has 11 characters");
        assert_eq!(check_digit(first10), number.check_digit());
    }
});
