//! The server's bounds ([`Limits`]) and their defaults; the module's table
//! (`ppcore::http`) says what each one bounds.

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
