//! Any sequence of decodable client messages into the node's handshake: never
//! a panic, never authenticated without the secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppcore::wire::ClientMsg;
use ppcore::{FrameReader, NodeHandshake, Secret};

fuzz_target!(|data: &[u8]| {
    let mut node = NodeHandshake::new(Secret::new("fuzz"), [3; 32]);
    let mut reader = FrameReader::new(data, 4096);
    while let Ok(Some(msg)) = reader.read::<ClientMsg>() {
        if node.on_message(msg).is_err() {
            break;
        }
    }
    assert!(!node.is_done());
});
