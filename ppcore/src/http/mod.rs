//! A small HTTP/1.1 server for the node's `/metrics` and the client's
//! dashboard: one thread and one `mio` poll for every connection, so that
//! idle or trickling sockets cost a table entry and a buffer, never a
//! thread (issue 25: `tiny_http` gave each connection a thread).
//!
//! The decisions are pure and unit-tested: [`parse`] reads a request head
//! from bytes (`Ok(None)` until it is complete), [`Table`] admits, evicts
//! and times out connections on a clock passed in. [`Listener::spawn`] is
//! the thin I/O shell around them. It lives in ppcore, beside logic that
//! has no sockets, because it is the one crate both the node and the client
//! always depend on (the client's `ppserver` dependency is optional).
//!
//! # Bounds ([`Limits::default`])
//!
//! | what | bound |
//! | --- | --- |
//! | threads | one per server, whatever the number of connections; handlers run on it and must not block |
//! | connections | at most [`MAX_CONNS`] (256) open; when full, a new one evicts the connection longest waiting for a request (else the slowest reader of an answer); event streams are never evicted |
//! | request head | [`MAX_HEAD`] (8 KiB), at most [`MAX_HEADERS`] (64) lines: over either, `431` and close |
//! | request body | [`MAX_BODY`] (4 KiB), read and dropped (nothing here takes a body); over it, `413`; chunked bodies `400` |
//! | request time | a head must be complete within [`REQUEST_TIMEOUT`] (10 s) of the connection opening or of its previous answer, else the connection closes (slow and idle clients alike) |
//! | write time | an answer or event that makes no progress for [`WRITE_TIMEOUT`] (10 s) closes the connection |
//! | event streams | at most [`Limits::max_streams`] (default [`MAX_STREAMS`], 16) at once, more get `503`; each gets its next event only when it has taken the previous one, so a stalled reader holds one event, not a backlog |
//! | memory | per connection at most one head and body (12 KiB) in and one answer or event out |
//! | other input | an event stream's reader, or a peer after its answer, may send 64 KiB (dropped) before it is cut off; at most 64 connections are accepted per turn of the loop, so a flood of them cannot starve the open ones |

mod head;
mod reply;
mod serve;
mod table;

pub use head::{parse, HeadError, Request};
pub use reply::{EventSource, Reply, Response};
pub use serve::{Handler, Listener};
pub use table::{Admission, Phase, Table};

use std::time::Duration;

/// Connections open at once, by default.
pub const MAX_CONNS: usize = 256;
/// Event streams open at once, by default.
pub const MAX_STREAMS: usize = 16;
/// The longest request head, in bytes, by default.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most header lines in a request, by default.
pub const MAX_HEADERS: usize = 64;
/// The longest request body (dropped), in bytes, by default.
pub const MAX_BODY: usize = 4 * 1024;
/// How long a request head may take to arrive, by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may wait for its reader's progress, by default.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's bounds; see the module's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (at least one more than `max_streams`, so
    /// that a request can always be read).
    pub max_conns: usize,
    /// Event streams open at once.
    pub max_streams: usize,
    /// The longest request head, in bytes.
    pub max_head: usize,
    /// The most header lines in a request.
    pub max_headers: usize,
    /// The longest request body, in bytes (read and dropped).
    pub max_body: usize,
    /// How long a request head may take, from the connection's start or
    /// its previous answer.
    pub request_timeout: Duration,
    /// How long an answer may wait for its reader's progress.
    pub write_timeout: Duration,
    /// How often event streams are asked for their next event.
    pub tick: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: MAX_CONNS,
            max_streams: MAX_STREAMS,
            max_head: MAX_HEAD,
            max_headers: MAX_HEADERS,
            max_body: MAX_BODY,
            request_timeout: REQUEST_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            tick: Duration::from_millis(500),
        }
    }
}
