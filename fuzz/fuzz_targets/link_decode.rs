//! Arbitrary bytes into the link frame decoder: it must never panic, and every frame it
//! accepts must re-encode to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::link::{FrameDecoder, LinkDecoder, MAX_FRAME, encode_frame};

fuzz_target!(|data: &[u8]| {
    let mut decoder = LinkDecoder::new();
    let mut small = FrameDecoder::<24>::new();
    for &byte in data {
        let _ = small.push(byte);
        if let Some(Ok(frame)) = decoder.push(byte) {
            let mut out = [0u8; MAX_FRAME];
            let n = encode_frame(&frame, &mut out).expect("a decoded frame re-encodes");
            let mut again = LinkDecoder::new();
            let back = out[..n].iter().find_map(|&b| again.push(b));
            assert_eq!(back, Some(Ok(frame)));
        }
    }
});
