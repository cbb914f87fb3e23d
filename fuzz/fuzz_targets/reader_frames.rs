//! Arbitrary bytes into both reader-frame parsers: they must never panic, and every frame
//! they accept must interpret without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::reader::{eseal, uhf};

fuzz_target!(|data: &[u8]| {
    let mut bb = uhf::Parser::new();
    bb.push_slice(data, |result| {
        if let Ok(frame) = result {
            let _ = uhf::Reply::parse(&frame);
            let _ = uhf::Command::from_frame(&frame);
        }
    });
    let mut seal = eseal::Parser::new();
    seal.push_slice(data, |result| {
        if let Ok(frame) = result {
            let _ = eseal::Reply::parse(&frame);
            let _ = eseal::Request::from_frame(&frame);
        }
    });
});
