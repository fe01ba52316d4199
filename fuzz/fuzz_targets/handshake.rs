//! Any bytes into a node's side of a connection (the link, its framer and
//! the Noise handshake), in chunks: never a panic, and never an
//! authenticated client or a job to run without the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppcore::wire::NodeMsg;
use ppcore::{Key, KeySet, NodeAction, NodeEvent, NodeLink, NodeLinkConfig};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let config = NodeLinkConfig {
        keys: KeySet::one(Key::from_bytes([3; 32])),
        handshake_timeout: Duration::from_secs(5),
        heartbeat: Duration::from_secs(5),
        max_frame: 1 << 20,
        credit_jobs: 8,
        credit_bytes: 1 << 20,
        ..NodeLinkConfig::for_tests()
    };
    let welcome = NodeMsg::Welcome {
        node_id: "n".into(),
        version: "v".into(),
        workers: 1,
        jobs: vec![],
        heartbeat_ms: 0,
        caps: vec![],
        max_payload: 0,
        credit_jobs: 0,
        credit_bytes: 0,
        shared_max: 0,
        reach: None,
        offer: None,
    };
    let now = Instant::now();
    let mut link = NodeLink::new(config, welcome, now);
    for chunk in data.chunks(97) {
        link.handle(NodeEvent::Received(chunk), now);
        while link.poll_transmit().is_some() {}
        while let Some(action) = link.poll_event() {
            assert!(!matches!(
                action,
                NodeAction::Authenticated | NodeAction::Run(_)
            ));
        }
    }
});
