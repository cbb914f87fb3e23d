//! Arbitrary bytes into both reader-frame parsers, then an idle line: they must never
//! panic, every frame they accept must interpret without panicking, and an idle line must
//! leave nothing buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::reader::{eseal, uhf};

fuzz_target!(|data: &[u8]| {
    let on_bb = |result: Result<uhf::RawFrame, _>| {
        if let Ok(frame) = result {
            let _ = uhf::Reply::parse(&frame);
            let _ = uhf::Command::from_frame(&frame);
        }
    };
    let mut bb = uhf::Parser::new();
    bb.push_slice(data, on_bb);
    while let Some(result) = bb.idle() {
        on_bb(result);
    }
    assert_eq!(bb.pending(), 0);

    let on_seal = |result: Result<eseal::RawFrame, _>| {
        if let Ok(frame) = result {
            let _ = eseal::Reply::parse(&frame);
            let _ = eseal::Request::from_frame(&frame);
        }
    };
    let mut seal = eseal::Parser::new();
    seal.push_slice(data, on_seal);
    while let Some(result) = seal.idle() {
        on_seal(result);
    }
    assert_eq!(seal.pending(), 0);
});
