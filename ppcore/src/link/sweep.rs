//! The ended-job sweep: every [`SWEEP_INTERVAL`] the link takes back the
//! jobs that ended elsewhere while on the node (timed out, cancelled), tells
//! the node to stop them, and frees the shared values nobody holds any more
//! ([`ClientLink::sweep`](crate::link::ClientLink::sweep)).

use std::time::{Duration, Instant};

/// How often a link looks for jobs that ended on their own while on the
/// node, and for shared values dropped.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(50);

/// When the last sweep was.
#[derive(Debug, Clone)]
pub(crate) struct Sweep {
    last: Instant,
}

impl Sweep {
    /// No sweep due before `now` + [`SWEEP_INTERVAL`].
    pub(crate) fn new(now: Instant) -> Self {
        Sweep { last: now }
    }

    /// Whether a sweep is due at `now`; if so, it counts as done then.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let due = now.saturating_duration_since(self.last) >= SWEEP_INTERVAL;
        if due {
            self.last = now;
        }
        due
    }

    /// When the next sweep is due.
    pub(crate) fn next(&self) -> Instant {
        self.last + SWEEP_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ended_job_sweep_is_due_every_50_ms() {
        let t0 = Instant::now();
        let mut s = Sweep::new(t0);
        assert_eq!(s.next(), t0 + 50 * MS);
        assert!(!s.due(t0 + 49 * MS));
        assert!(s.due(t0 + 50 * MS));
        assert!(!s.due(t0 + 60 * MS), "just swept");
        assert_eq!(s.next(), t0 + 100 * MS);
        assert!(s.due(t0 + 130 * MS));
        assert_eq!(s.next(), t0 + 180 * MS, "counted from the late sweep");
    }
}
