//! Reports of results kept on the node, gathered before they are sent.
//!
//! A `Done` for a kept result carries no bytes: the client learns only
//! that the value exists and the job's credit comes back. In a chain of
//! dependent jobs one ends every few microseconds, and a frame (a seal and
//! a write) per report costs the node more than the job. So such reports
//! wait, at most [`LINGER`] and [`LINGER_MOST`] of them, and go out with
//! the next frame of results, or at once when the client has nothing else
//! running or queued here (nothing more will come soon).

use crate::wire::messages::DoneJob;
use std::time::{Duration, Instant};

/// The longest a report of a kept result waits to share a frame. Short
/// beside the heartbeat and any timeout a client keeps; long beside a
/// chain's step (tens of microseconds), so a frame carries tens of them.
pub(super) const LINGER: Duration = Duration::from_micros(500);

/// The most reports that wait: then they go.
pub(super) const LINGER_MOST: usize = 256;

/// Reports of kept results waiting to share a frame, oldest first.
#[derive(Default)]
pub(super) struct Linger {
    done: Vec<DoneJob>,
    /// When the oldest must go.
    until: Option<Instant>,
}

impl Linger {
    /// Holds `reports` (of kept results) that ended at `now`.
    pub(super) fn add(&mut self, reports: impl IntoIterator<Item = DoneJob>, now: Instant) {
        let before = self.done.len();
        self.done.extend(reports);
        if before == 0 && !self.done.is_empty() {
            self.until = Some(now + LINGER);
        }
    }

    /// Whether what waits must go now: the oldest waited long enough, too
    /// many wait, or `idle` (the client has nothing running or queued here).
    pub(super) fn due(&self, now: Instant, idle: bool) -> bool {
        !self.done.is_empty()
            && (idle || self.done.len() >= LINGER_MOST || self.until.is_some_and(|t| now >= t))
    }

    /// When the oldest must go, if any waits.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// Everything that waits, oldest first.
    pub(super) fn take(&mut self) -> Vec<DoneJob> {
        self.until = None;
        std::mem::take(&mut self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u64) -> DoneJob {
        DoneJob {
            id,
            attempt: 1,
            result: Ok(Default::default()),
            exec_ns: 0,
            kept: Some(id),
        }
    }

    #[test]
    fn reports_wait_until_the_deadline_the_count_or_an_idle_client() {
        let t0 = Instant::now();
        let mut l = Linger::default();
        assert!(!l.due(t0, true), "nothing waits: nothing is due");
        assert_eq!(l.deadline(), None);
        l.add([report(1)], t0);
        l.add([report(2)], t0 + LINGER / 2);
        // The oldest sets the deadline.
        assert_eq!(l.deadline(), Some(t0 + LINGER));
        assert!(!l.due(t0 + LINGER / 2, false));
        assert!(
            l.due(t0 + LINGER / 2, true),
            "an idle client gets them at once"
        );
        assert!(l.due(t0 + LINGER, false));
        let ids: Vec<u64> = l.take().iter().map(|d| d.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(l.deadline(), None);
        l.add((0..LINGER_MOST as u64).map(report), t0);
        assert!(l.due(t0, false), "a full batch goes at once");
    }
}
