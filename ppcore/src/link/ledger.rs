//! The scheduler's bookkeeping for one node connection, pure: which jobs are
//! in flight there, how many more it may take, and who owns each job.
//!
//! Scheduling is pull-based: the queue is shared, and a node's connection pulls
//! from it while its ledger has room. The window is the node's workers plus a
//! prefetch that adapts to how long jobs take, so that a node always has the
//! next job at hand (hiding the round trip) but never hoards long jobs that an
//! idle slot elsewhere could run.
//!
//! Whoever removes a job from the ledger owns it: a result takes it out with
//! `done`; loss of the node takes all of them out with `drain`. A result that
//! arrives for a job no longer in the ledger (or for another attempt) is
//! dropped, so each job is resolved once.

use crate::job::idmap::IdMap;
use std::time::Duration;

/// How much queued work (in job run time) a node may hold beyond its workers.
const QUEUED_WORK: Duration = Duration::from_millis(2);
/// Weight of the newest run time in the running mean.
const EWMA: f64 = 0.1;

/// In-flight jobs of one node connection.
#[derive(Debug)]
pub struct Ledger<T> {
    /// Job id to (attempt, bytes of its arguments, job).
    inflight: IdMap<(u32, usize, T)>,
    /// Bytes of arguments in flight.
    bytes: usize,
    workers: usize,
    max_prefetch: usize,
    /// The node's credit window in jobs (0: none).
    credit_jobs: usize,
    mean_exec_ns: Option<f64>,
}

/// How many jobs may wait on a node for inputs made there when the node
/// grants no credit bound.
const MAX_UNBOUNDED_PARKED: usize = 4096;

impl<T> Ledger<T> {
    /// A ledger for a node with `workers` slots and at most `max_prefetch`
    /// extra jobs in flight.
    pub fn new(workers: usize, max_prefetch: usize) -> Self {
        Ledger {
            inflight: IdMap::default(),
            bytes: 0,
            workers: workers.max(1),
            max_prefetch,
            credit_jobs: 0,
            mean_exec_ns: None,
        }
    }

    /// Never more than `jobs` in flight (the node's credit window; 0: no
    /// bound).
    pub fn with_credit(mut self, jobs: usize) -> Self {
        self.credit_jobs = jobs;
        self
    }

    /// Jobs in flight beyond the workers, as the run times seen so far allow.
    pub fn prefetch(&self) -> usize {
        let wanted = match self.mean_exec_ns {
            // Until a job came back, as many again as there are workers.
            None => self.workers,
            Some(mean) => {
                let per_worker = QUEUED_WORK.as_nanos() as f64 / mean.max(1.0);
                (per_worker * self.workers as f64) as usize
            }
        };
        wanted.clamp(1, self.max_prefetch.max(1))
    }

    /// How many jobs may be in flight now: within the node's credit.
    pub fn window(&self) -> usize {
        let wanted = self.workers + self.prefetch();
        match self.credit_jobs {
            0 => wanted,
            credit => wanted.min(credit),
        }
    }

    /// Bytes of arguments in flight.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many more jobs the node's credit admits, whatever the adaptive
    /// window says: for jobs that wait there for inputs being made there
    /// (they take no worker slot while they wait).
    pub fn credit_free(&self) -> usize {
        match self.credit_jobs {
            0 => (self.workers + self.prefetch()).max(MAX_UNBOUNDED_PARKED),
            credit => credit,
        }
        .saturating_sub(self.inflight.len())
    }

    /// How many more jobs the node may take now.
    pub fn free(&self) -> usize {
        self.window().saturating_sub(self.inflight.len())
    }

    /// Jobs in flight.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Records that job `id`, attempt `attempt`, with `bytes` of
    /// arguments, was sent.
    pub fn sent(&mut self, id: u64, attempt: u32, bytes: usize, job: T) {
        if let Some((_, old, _)) = self.inflight.insert(id, (attempt, bytes, job)) {
            self.bytes -= old;
        }
        self.bytes += bytes;
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let (_, bytes, job) = self.inflight.remove(&id)?;
        self.bytes -= bytes;
        Some(job)
    }

    /// Takes job `id` back for its result; `None` if it is not in flight
    /// here under that attempt (a late or duplicate result: drop it).
    pub fn done(&mut self, id: u64, attempt: u32, exec: Duration) -> Option<T> {
        let job = self.take(id, attempt)?;
        let ns = exec.as_nanos() as f64;
        self.mean_exec_ns = Some(match self.mean_exec_ns {
            None => ns,
            Some(m) => m + EWMA * (ns - m),
        });
        Some(job)
    }

    /// Takes job `id` back without a result (given back, cancelled).
    pub fn take(&mut self, id: u64, attempt: u32) -> Option<T> {
        match self.inflight.get(&id) {
            Some((a, _, _)) if *a == attempt => self.remove(id),
            _ => None,
        }
    }

    /// Takes job `id` back whatever its attempt (it ended elsewhere).
    pub fn forget(&mut self, id: u64) -> Option<T> {
        self.remove(id)
    }

    /// Takes back every job for which `gone` holds (they ended elsewhere:
    /// timed out, cancelled), with their ids.
    pub fn remove_where(&mut self, gone: impl Fn(&T) -> bool) -> Vec<(u64, T)> {
        let ids: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, (_, _, job))| gone(job))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|job| (id, job)))
            .collect()
    }

    /// Takes every job back: the node was lost.
    pub fn drain(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.inflight.drain().map(|(_, (_, _, job))| job).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_adapts_to_job_length() {
        let mut l = Ledger::<()>::new(2, 1024);
        assert_eq!(l.window(), 4);
        l.sent(1, 1, 0, ());
        l.done(1, 1, Duration::from_millis(50));
        assert_eq!(l.window(), 3, "long jobs: one spare job, no hoarding");
        for id in 2..200 {
            l.sent(id, 1, 0, ());
            l.done(id, 1, Duration::from_micros(1));
        }
        assert_eq!(l.window(), 2 + 1024, "tiny jobs: a deep pipeline");
        let l = l.with_credit(8);
        assert_eq!(l.window(), 8, "never beyond the node's credit");
    }

    #[test]
    fn late_and_duplicate_results_are_dropped() {
        let mut l = Ledger::new(1, 4);
        l.sent(7, 2, 3, "job");
        assert_eq!(l.done(7, 1, Duration::ZERO), None, "an older attempt");
        assert_eq!(l.done(7, 2, Duration::ZERO), Some("job"));
        assert_eq!(l.done(7, 2, Duration::ZERO), None, "a duplicate");
        l.sent(8, 1, 5, "other");
        assert_eq!(l.bytes(), 5);
        assert_eq!(l.drain(), vec!["other"]);
        assert_eq!(l.bytes(), 0);
        assert_eq!(
            l.done(8, 1, Duration::ZERO),
            None,
            "after the node was lost"
        );
    }

    #[derive(Debug, Clone)]
    enum Event {
        Send,
        Done(usize),
        Take(usize),
        Drain,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => Just(Event::Send),
            3 => (0usize..64).prop_map(Event::Done),
            1 => (0usize..64).prop_map(Event::Take),
            1 => Just(Event::Drain),
        ]
    }

    proptest! {
        /// Whatever happens, each sent job comes out exactly once, and the
        /// ledger never lets more than its window in.
        #[test]
        fn every_job_comes_out_exactly_once(events in proptest::collection::vec(event(), 0..300)) {
            let mut l = Ledger::new(2, 8);
            let mut next = 0u64;
            let mut out = Vec::new();
            for e in events {
                match e {
                    Event::Send => if l.free() > 0 { l.sent(next, 1, next as usize % 7, next); next += 1; },
                    Event::Done(i) => out.extend(l.done(i as u64, 1, Duration::from_micros(i as u64))),
                    Event::Take(i) if i % 2 == 0 => out.extend(l.take(i as u64, 1)),
                    Event::Take(i) => out.extend(l.remove_where(|&job| job == i as u64).into_iter().map(|(_, j)| j)),
                    Event::Drain => out.extend(l.drain()),
                }
                prop_assert!(l.len() <= l.window() || l.free() == 0);
                let held: usize = l.inflight.values().map(|(_, b, _)| b).sum();
                prop_assert_eq!(l.bytes(), held);
            }
            out.extend(l.drain());
            out.sort();
            prop_assert_eq!(out, (0..next).collect::<Vec<_>>());
        }
    }
}
