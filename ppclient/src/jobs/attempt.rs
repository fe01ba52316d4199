//! How a job's attempts count: which failures are retried, and which
//! attempt is its first start when a reclaim (asking a node for the outcome
//! an earlier client of the journaled run left there) comes first. Pure.

use ppcore::wire::JobKey;
use ppcore::{ErrorKind, JobError};

/// Whether a job's own failure (not the system's) may be retried.
pub(crate) fn is_job_failure(e: &JobError) -> bool {
    matches!(e.kind, ErrorKind::Failed | ErrorKind::Panicked)
}

/// A job a node holds the outcome of for the run: asked for it
/// (`KeepOp::Reclaim`) instead of running it.
#[derive(Debug, Default)]
pub(crate) struct Reclaim {
    /// The job's key on the node, while it is to be reclaimed.
    pub(crate) key: Option<JobKey>,
    /// Not counted as started yet (a reclaim does not count; the run after
    /// a failed one does).
    uncounted: bool,
}

impl Reclaim {
    /// A job to reclaim with `key`, if any.
    pub(crate) fn of(key: Option<JobKey>) -> Self {
        Reclaim {
            key,
            uncounted: false,
        }
    }

    /// Whether this attempt (`first`: its first) is the job's first start,
    /// to count: a reclaim never is, and the run after one is.
    pub(crate) fn first_start(&mut self, first: bool) -> bool {
        match self.key {
            Some(_) => {
                self.uncounted |= first;
                false
            }
            None => first || std::mem::take(&mut self.uncounted),
        }
    }

    /// Ends the reclaim (answered, or lost with its node); true if there was one.
    pub(crate) fn end(&mut self) -> bool {
        self.key.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reclaim_is_no_start_and_the_run_after_a_failed_one_is_the_first() {
        let mut r = Reclaim::of(Some(JobKey([1; 32])));
        assert!(!r.first_start(true), "asking a node is not running it");
        assert!(r.end());
        assert!(r.first_start(false), "the run after it counts");
        assert!(!r.first_start(false), "once");
        assert!(Reclaim::default().first_start(true));
        assert!(!Reclaim::default().first_start(false));
    }
}
