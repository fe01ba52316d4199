//! How a client link behaves: [`LinkConfig`].

use crate::session::key::KeySet;
use crate::wire::stream;
use std::time::Duration;

/// How a link behaves.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The cluster's keys: the first is offered first; a second during a
    /// rollover is offered when the node does not hold the first.
    pub keys: KeySet,
    /// Our heartbeat interval (the node may ask for a shorter one).
    pub heartbeat: Duration,
    /// Time a connection has to finish the handshake.
    pub handshake_timeout: Duration,
    /// The largest frame, either way, after the handshake.
    pub max_frame: usize,
    /// The largest result taken from the node, in bytes (told to the node,
    /// which refuses larger results before sending them).
    pub max_payload: u64,
    /// How long a stream from the node may go without progress before the
    /// connection is dropped.
    pub stream_stall: Duration,
    /// The most jobs in flight beyond the node's workers.
    pub max_prefetch: usize,
    /// First wait before redialling; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait before redialling.
    pub backoff_max: Duration,
    /// Whether to redial after a loss (false for a node that joined us).
    pub reconnect: bool,
    /// Failed connections in a row (never up) after which the link gives
    /// up for good, as refused; `None`: never (nodes named by the user).
    pub give_up_after: Option<u32>,
    /// The send window in bytes: streamed arguments wait while this much
    /// is unsent (see [`crate::link::window`]).
    pub send_window: u64,
    /// The journaled run this client belongs to: named to the node on
    /// every connection (`Resume`), and up only once the node answered.
    pub run: Option<crate::wire::run::RunId>,
}

/// What a link accepts in streams from its peer.
pub(crate) fn stream_limits(config: &LinkConfig) -> stream::Limits {
    stream::Limits {
        max_payload: config.max_payload,
        max_buffered: config.max_payload,
        stall: config.stream_stall,
        ..stream::Limits::default()
    }
}
