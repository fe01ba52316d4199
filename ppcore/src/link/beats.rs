//! The heartbeat rule both ends of a link share (the client's
//! [`ClientLink`](crate::link::ClientLink) and the node's `NodeLink`).

/// Heartbeat intervals a peer may stay silent; then it is dead.
pub const MISSED_BEATS: u32 = 3;
