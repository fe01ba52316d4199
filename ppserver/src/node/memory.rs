//! The node's memory budget (`--max-memory`): bytes it holds for its
//! clients, queued job arguments and results not yet written, counted
//! together. New work is let in only while it fits, and a queued job starts
//! only while what the rest holds is within the budget ([`Memory::may_start`]:
//! a job's result is counted only once it is made, so jobs admitted while
//! the node was empty must not all run once it is full); results, already
//! made, are always counted. Lock-free: workers and drivers touch it on
//! every job.
//!
//! What is held is a [`Held`] that gives its bytes back when dropped: a
//! queued job's arguments go with the job, a result with its message to the
//! connection's driver, so nothing leaks whichever way they end (run,
//! skipped, dropped with a closed connection).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes held against `--max-memory`.
#[derive(Debug)]
pub(crate) struct Memory {
    limit: u64,
    used: AtomicU64,
}

impl Memory {
    pub(crate) fn new(limit: u64) -> Self {
        Memory {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` of new work if they fit (or nothing is held, so that
    /// one job larger than the budget still runs, alone); false, with
    /// nothing taken, otherwise.
    pub(crate) fn try_take(&self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let fits = used.checked_add(bytes).is_some_and(|t| t <= self.limit);
                (fits || used == 0).then(|| used.saturating_add(bytes))
            })
            .is_ok()
    }

    /// Whether a queued job that holds `own` bytes may start now: what
    /// everything else holds is within the budget. Otherwise it is handed
    /// back unrun (its result would only add to a full node).
    pub(crate) fn may_start(&self, own: &Held) -> bool {
        self.used().saturating_sub(own.bytes as u64) <= self.limit
    }

    /// Counts `bytes` that exist already (a result).
    pub(crate) fn take(&self, bytes: usize) {
        self.used.fetch_add(bytes as u64, Ordering::AcqRel);
    }

    /// [`Memory::try_take`], held until the [`Held`] is dropped.
    pub(crate) fn try_hold(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        self.try_take(bytes).then(|| Held {
            memory: Arc::clone(self),
            bytes,
        })
    }

    /// [`Memory::take`], held until the [`Held`] is dropped.
    pub(crate) fn hold(self: &Arc<Self>, bytes: usize) -> Held {
        self.take(bytes);
        Held {
            memory: Arc::clone(self),
            bytes,
        }
    }

    /// Gives back `bytes` taken before.
    pub(crate) fn give_back(&self, bytes: usize) {
        let bytes = bytes as u64;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// What new work may still take: the budget left, or no bound while
    /// nothing at all is held (one piece of work larger than the budget
    /// still runs, alone).
    pub(crate) fn room(&self) -> u64 {
        match self.used() {
            0 => u64::MAX,
            used => self.limit.saturating_sub(used),
        }
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The budget.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }
}

/// Bytes counted against the budget until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    memory: Arc<Memory>,
    bytes: usize,
}

impl Held {
    /// Now holds `bytes` instead (always counted: they exist).
    pub(crate) fn resize(&mut self, bytes: usize) {
        match bytes.cmp(&self.bytes) {
            std::cmp::Ordering::Greater => self.memory.take(bytes - self.bytes),
            std::cmp::Ordering::Less => self.memory.give_back(self.bytes - bytes),
            std::cmp::Ordering::Equal => {}
        }
        self.bytes = bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.memory.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_work_is_refused_over_the_budget_but_results_always_count() {
        let m = Memory::new(100);
        assert!(m.try_take(60));
        assert!(!m.try_take(60), "over the budget");
        assert!(m.try_take(40));
        m.take(50);
        assert_eq!(m.used(), 150);
        m.give_back(150);
        assert!(m.try_take(1000), "alone, a job larger than the budget runs");
        assert!(!m.try_take(1));
        m.give_back(1000);
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn a_job_starts_only_while_the_rest_is_within_the_budget() {
        let m = Arc::new(Memory::new(100));
        let job = m.try_hold(30).unwrap();
        assert!(m.may_start(&job), "alone");
        let results = m.hold(100);
        assert!(m.may_start(&job), "the rest is at the budget, not over");
        let more = m.hold(1);
        assert!(!m.may_start(&job), "the rest is over the budget");
        drop((results, more));
        // A job larger than the whole budget, alone, still starts.
        drop(job);
        let big = m.try_hold(500).unwrap();
        assert!(m.may_start(&big));
    }

    #[test]
    fn held_bytes_come_back_when_dropped() {
        let m = Arc::new(Memory::new(100));
        let a = m.try_hold(70).unwrap();
        assert!(m.try_hold(70).is_none());
        let mut out = m.hold(10);
        out.resize(40);
        assert_eq!(m.used(), 110);
        out.resize(5);
        drop(a);
        assert_eq!(m.used(), 5);
        drop(out);
        assert_eq!(m.used(), 0);
    }
}
