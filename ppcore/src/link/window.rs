//! The send window: how many bytes one side of a link lets wait unsent (in
//! its driver's outbox and in its queued streams) before it holds back the
//! next payload. Pure arithmetic: no socket, no clock.
//!
//! Without it a peer that stops reading grows the sender by everything it
//! does not take: small frames wait in the outbox (bounded by the driver,
//! which stops reading), but payloads over a frame wait as streams, in any
//! number. With it:
//!
//! - a payload (a result on the node, streamed arguments on the client)
//!   is queued for sending only while the unsent bytes are under the
//!   window, or when nothing is unsent at all, so that one payload larger
//!   than the window still goes, alone ([`SendWindow::admits`]);
//! - the next chunk of a stream is framed only while the outbox holds less
//!   than [`PULL_BELOW`] bytes ([`SendWindow::pulls`]), so that heartbeats
//!   and small messages go between chunks;
//! - what does not fit waits where it is counted: on the node, the result
//!   waits in its link, keeps its job's credit (the client cannot queue
//!   more than its window of jobs behind it) and counts against
//!   `--max-memory` (new work is handed back while the node is full); on
//!   the client, the job stays in its queue.
//!
//! So the unsent bytes of one connection stay under the window plus one
//! payload, plus [`PULL_BELOW`] and one chunk in the outbox.

/// Bytes in the outbox under which the next stream chunk is framed.
pub const PULL_BELOW: usize = 2 << 20;

/// The default window: twice the largest frame (32 MiB for the default
/// 16 MiB frame), the same bound the node's driver keeps on its outbox
/// before it stops reading a client.
pub fn default_window(max_frame: usize) -> u64 {
    u64::try_from(max_frame)
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
}

/// The rule of one link's send window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    limit: u64,
}

impl SendWindow {
    /// A window of `limit` bytes (at least 1).
    pub fn new(limit: u64) -> Self {
        SendWindow {
            limit: limit.max(1),
        }
    }

    /// Its size in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether one more payload may be queued while `unsent` bytes wait:
    /// under the window, or nothing waits at all.
    pub fn admits(&self, unsent: u64) -> bool {
        unsent == 0 || unsent < self.limit
    }

    /// Whether the next stream frame may be framed while the outbox holds
    /// `outbox` bytes.
    pub fn pulls(&self, outbox: usize) -> bool {
        outbox < PULL_BELOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_leave_under_the_window_and_one_alone_always() {
        let w = SendWindow::new(100);
        assert!(w.admits(0));
        assert!(w.admits(99));
        assert!(!w.admits(100));
        assert!(!w.admits(u64::MAX));
        // A window of one still lets one payload through at a time.
        let tiny = SendWindow::new(0);
        assert_eq!(tiny.limit(), 1);
        assert!(tiny.admits(0));
        assert!(!tiny.admits(1));
    }

    #[test]
    fn chunks_are_framed_only_while_the_outbox_runs_low() {
        let w = SendWindow::new(100);
        assert!(w.pulls(0));
        assert!(w.pulls(PULL_BELOW - 1));
        assert!(!w.pulls(PULL_BELOW));
        assert_eq!(default_window(16 << 20), 32 << 20);
        assert_eq!(default_window(usize::MAX), u64::MAX);
    }
}
