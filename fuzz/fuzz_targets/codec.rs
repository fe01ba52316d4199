//! Any bytes into the frame codec, both message directions, one-shot and
//! streamed: never a panic, never a buffer past the frame limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppcore::wire::{ClientMsg, NodeMsg};
use ppcore::{decode_frame, FrameReader};

const MAX: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let _ = decode_frame::<ClientMsg>(data, MAX);
    let _ = decode_frame::<NodeMsg>(data, MAX);
    let mut reader = FrameReader::new(data, MAX);
    for _ in 0..64 {
        match reader.read::<ClientMsg>() {
            Ok(Some(msg)) => {
                // What decodes must encode again.
                ppcore::encode_frame(&msg).expect("a decoded message encodes");
            }
            _ => break,
        }
    }
});
