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
mod limits;
mod reply;
mod serve;
mod table;

pub use head::{parse, HeadError, Request};
pub use limits::{
    Limits, MAX_BODY, MAX_CONNS, MAX_HEAD, MAX_HEADERS, MAX_STREAMS, REQUEST_TIMEOUT, WRITE_TIMEOUT,
};
pub use reply::{EventSource, Reply, Response};
pub use serve::{Handler, Listener};
pub use table::{Admission, Phase, Table};
