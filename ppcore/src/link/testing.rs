//! The one test configuration of both ends of a link: ppcore's link tests,
//! the node link's tests and the `linkcost` benchmark start from it and
//! change only what they test.

use crate::link::config::LinkConfig;
use crate::link::node::NodeLinkConfig;
use crate::session::key::{Key, KeySet};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

/// The key both ends hold in tests.
fn test_keys() -> KeySet {
    KeySet::one(Key::from_bytes([1; 32]))
}

impl LinkConfig {
    /// A client link for tests: key 1, a 1 s heartbeat, 5 s to finish the
    /// handshake, 1 MiB frames, 4 jobs of prefetch, redials after 100 ms
    /// doubling up to 5 s, a 1 GiB send window.
    #[doc(hidden)]
    pub fn for_tests() -> Self {
        LinkConfig {
            keys: test_keys(),
            heartbeat: SECOND,
            handshake_timeout: 5 * SECOND,
            max_frame: 1 << 20,
            max_payload: crate::wire::stream::DEFAULT_MAX_PAYLOAD,
            stream_stall: 30 * SECOND,
            max_prefetch: 4,
            backoff_min: Duration::from_millis(100),
            backoff_max: 5 * SECOND,
            reconnect: true,
            give_up_after: None,
            send_window: 1 << 30,
            run: None,
        }
    }
}

impl NodeLinkConfig {
    /// A node link for tests, the other end of [`LinkConfig::for_tests`]:
    /// key 1, a 2 s heartbeat, 5 s to finish the handshake, 1 MiB frames,
    /// credit for 1000 jobs and 1 GiB, a 1 GiB send window.
    #[doc(hidden)]
    pub fn for_tests() -> Self {
        NodeLinkConfig {
            keys: test_keys(),
            handshake_timeout: 5 * SECOND,
            heartbeat: 2 * SECOND,
            max_frame: 1 << 20,
            credit_jobs: 1000,
            credit_bytes: 1 << 30,
            max_payload: crate::wire::stream::DEFAULT_MAX_PAYLOAD,
            stream_stall: 30 * SECOND,
            send_window: 1 << 30,
        }
    }
}
