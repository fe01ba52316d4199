//! The write-stall rule: a node that takes none of the bytes waiting for it
//! for [`write_stall_limit`] stopped reading, and is lost. The driver says
//! what each write did ([`ClientLink::wrote`](crate::link::ClientLink::wrote));
//! the link keeps the time and decides.

use crate::link::beats::MISSED_BEATS;
use std::time::{Duration, Instant};

/// The shortest write stall that loses a node, whatever the heartbeat.
pub const MIN_WRITE_STALL: Duration = Duration::from_secs(1);

/// How long a node may take none of the bytes waiting for it, for our
/// heartbeat interval: as long as it may stay silent, at least
/// [`MIN_WRITE_STALL`].
pub fn write_stall_limit(heartbeat: Duration) -> Duration {
    (heartbeat * MISSED_BEATS).max(MIN_WRITE_STALL)
}

/// Since when the node has taken none of the bytes waiting for it.
#[derive(Debug, Clone)]
pub(crate) struct WriteStall {
    limit: Duration,
    /// When the node last took bytes, or when bytes began to wait; `None`
    /// while nothing waits.
    since: Option<Instant>,
}

impl WriteStall {
    /// A node is lost after `limit` without write progress.
    pub(crate) fn new(limit: Duration) -> Self {
        WriteStall { limit, since: None }
    }

    /// The driver wrote `wrote` bytes at `now`; `left` still wait.
    pub(crate) fn wrote(&mut self, wrote: usize, left: usize, now: Instant) {
        self.since = match (left, wrote) {
            (0, _) => None,
            (_, 0) => self.since.or(Some(now)),
            _ => Some(now),
        };
    }

    /// Nothing waits (a new connection, or none).
    pub(crate) fn clear(&mut self) {
        self.since = None;
    }

    /// When the node will have made no progress for the limit, while bytes
    /// wait.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + self.limit)
    }

    /// The limit.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_write_stall_limit_is_three_heartbeats_and_at_least_one_second() {
        assert_eq!(write_stall_limit(2 * SECOND), 6 * SECOND);
        assert_eq!(write_stall_limit(Duration::from_millis(100)), SECOND);
    }

    #[test]
    fn a_write_stall_counts_from_the_last_progress_while_bytes_wait() {
        let t0 = Instant::now();
        let mut s = WriteStall::new(3 * SECOND);
        assert_eq!(s.deadline(), None, "nothing waits");
        s.wrote(0, 10, t0);
        assert_eq!(s.deadline(), Some(t0 + 3 * SECOND), "bytes began to wait");
        s.wrote(0, 10, t0 + SECOND);
        assert_eq!(
            s.deadline(),
            Some(t0 + 3 * SECOND),
            "no progress: same deadline"
        );
        s.wrote(4, 6, t0 + 2 * SECOND);
        assert_eq!(s.deadline(), Some(t0 + 5 * SECOND), "progress moves it");
        s.wrote(6, 0, t0 + 4 * SECOND);
        assert_eq!(s.deadline(), None, "all written");
    }
}
