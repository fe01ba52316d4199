//! Any bytes as the client's first message to a node, and as the node's
//! answer to a client: never a panic, never a session without the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppcore::secure::{ClientHandshake, NodeHandshake};
use ppcore::{Key, KeySet};

fuzz_target!(|data: &[u8]| {
    let old = Key::from_bytes([3; 32]);
    let new = Key::from_bytes([4; 32]);
    let keys = KeySet::new(vec![new.clone(), old]).expect("two distinct keys");
    let mut node = NodeHandshake::new(keys, b"welcome".to_vec()).expect("small payload");
    assert!(node.read(data).is_err(), "a node accepted bytes made without the key");
    assert!(node.finish().is_err());
    let (mut client, _hello) = ClientHandshake::start(&new, b"hello").expect("handshake starts");
    assert!(client.read(data).is_err(), "a client accepted an answer made without the key");
    assert!(client.finish().is_err());
});
