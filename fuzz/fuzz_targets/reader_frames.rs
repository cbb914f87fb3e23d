//! Arbitrary bytes into both reader-frame parsers, then an idle line: they must never
//! panic, every frame they accept must interpret without panicking, and an idle line must
//! leave nothing buffered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::reader::{Format, FrameError, FrameParser, eseal, uhf};

/// Pushes `data` through `parser` and idles it, handing every frame it accepts to
/// `interpret`; nothing may stay buffered.
fn parse_then_idle<F: Format, const CAP: usize>(
    mut parser: FrameParser<F, CAP>,
    data: &[u8],
    interpret: impl Fn(&F::Frame),
) {
    let on_result = |result: Result<F::Frame, FrameError>| {
        if let Ok(frame) = result {
            interpret(&frame);
        }
    };
    parser.push_slice(data, on_result);
    while let Some(result) = parser.idle() {
        on_result(result);
    }
    assert_eq!(parser.pending(), 0);
}

fuzz_target!(|data: &[u8]| {
    parse_then_idle(uhf::Parser::new(), data, |frame| {
        let _ = uhf::Reply::parse(frame);
        let _ = uhf::Command::from_frame(frame);
    });
    parse_then_idle(eseal::Parser::new(), data, |frame| {
        let _ = eseal::Reply::parse(frame);
        let _ = eseal::Request::from_frame(frame);
    });
});
