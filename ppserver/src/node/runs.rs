//! Journaled runs (PROTOCOL.md, "Runs that outlive their client"): the
//! results of a journaled client's jobs, held until it says they are in its
//! journal, and, should it vanish, its jobs run on and their results kept
//! for `--orphan-keep`, for the run's next client to reclaim.
//!
//! A run is named by a random id only its journal knows; a connection
//! names its run once (`Resume`) and from then on its jobs with a journal
//! key are tracked here. Nothing here does I/O: answers go to connections
//! through their channels ([`Conn::finished`]), outside the lock.

use super::handle::Conn;
use super::memory::{Held, Memory};
use ppcore::wire::{DoneJob, JobKey, RunId};
use ppcore::{ErrorKind, JobError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most runs a node tracks; past it, the run orphaned longest ago is
/// forgotten to make room (a run with a live connection never is).
pub(crate) const MAX_RUNS: usize = 1024;

/// Where one job of a run stands.
enum Entry {
    /// Queued or running here; these reclaims wait for its outcome.
    Running(Vec<Waiter>),
    /// Finished: its outcome, counted against `--max-memory`, until the
    /// client says it is recorded (or the run is forgotten).
    Done { done: DoneJob, _held: Held },
}

/// A reclaim waiting for a job still running: answered as job `id`.
struct Waiter {
    conn: Arc<Conn>,
    id: u64,
    attempt: u32,
}

/// One journaled run.
struct Run {
    /// The connection serving it now.
    live: Option<u64>,
    /// Since when no connection serves it.
    orphaned: Option<Instant>,
    jobs: HashMap<JobKey, Entry>,
}

/// What a reclaim finds.
pub(crate) enum Claim {
    /// The job's outcome, to send now.
    Done(DoneJob),
    /// It runs still: its outcome will be sent when it ends.
    Waiting,
}

/// A queued job of a journaled run: where its outcome is to be kept.
pub(crate) struct Journaled {
    pub(crate) runs: Arc<Runs>,
    pub(crate) run: RunId,
    pub(crate) key: JobKey,
}

impl Journaled {
    /// Whether the job is still wanted once its connection is gone: its
    /// run is kept, and the job with it.
    pub(crate) fn wanted(&self) -> bool {
        self.runs.wants(&self.run, &self.key, Instant::now())
    }
}

/// The journaled runs a node holds.
pub(crate) struct Runs {
    /// `--orphan-keep`: how long a run outlives its last connection
    /// (zero: not at all).
    keep: Duration,
    memory: Arc<Memory>,
    runs: Mutex<HashMap<RunId, Run>>,
}

/// The error a reclaim gets for a job the node does not hold.
fn not_held(id: u64, attempt: u32) -> DoneJob {
    let message = "this node holds no outcome of that job for the run \
                   (never sent here, forgotten, or not run): run it again";
    DoneJob {
        id,
        attempt,
        result: Err(JobError::new(ErrorKind::NodeLost, message)),
        exec_ns: 0,
        kept: None,
    }
}

impl Runs {
    pub(crate) fn new(keep: Duration, memory: Arc<Memory>) -> Self {
        Runs {
            keep,
            memory,
            runs: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Run>> {
        ppcore::sync::lock(&self.runs)
    }

    /// Connection `conn` serves `run` from now on: the run's jobs held here.
    pub(crate) fn attach(&self, run: RunId, conn: u64, now: Instant) -> Vec<JobKey> {
        let mut runs = self.lock();
        let dropped = self.sweep(&mut runs, now);
        if !runs.contains_key(&run) && runs.len() >= MAX_RUNS {
            let oldest = runs
                .iter()
                .filter_map(|(id, r)| r.orphaned.map(|t| (t, *id)))
                .min()
                .map(|(_, id)| id);
            if let Some(id) = oldest {
                runs.remove(&id);
            }
        }
        let entry = runs.entry(run).or_insert_with(|| Run {
            live: None,
            orphaned: None,
            jobs: HashMap::new(),
        });
        entry.live = Some(conn);
        entry.orphaned = None;
        let keys = entry.jobs.keys().copied().collect();
        drop(runs);
        drop(dropped);
        keys
    }

    /// Connection `conn` of `run` ended: the run is orphaned, or, if the
    /// client said goodbye (its journal is closed) or runs are not kept,
    /// forgotten.
    pub(crate) fn detach(&self, run: &RunId, conn: u64, goodbye: bool, now: Instant) {
        let mut runs = self.lock();
        let mut dropped = self.sweep(&mut runs, now);
        let forget = match runs.get_mut(run) {
            Some(r) if r.live == Some(conn) => {
                r.live = None;
                r.orphaned = Some(now);
                goodbye || self.keep.is_zero()
            }
            _ => false,
        };
        if forget {
            dropped.extend(runs.remove(run));
        }
        drop(runs);
        drop(dropped);
    }

    /// Forgets runs orphaned longer than `--orphan-keep`; what they held is
    /// returned, to be dropped outside the lock.
    fn sweep(&self, runs: &mut HashMap<RunId, Run>, now: Instant) -> Vec<Run> {
        let keep = self.keep;
        let expired: Vec<RunId> = runs
            .iter()
            .filter(|(_, r)| {
                r.orphaned
                    .is_some_and(|t| now.saturating_duration_since(t) >= keep)
            })
            .map(|(id, _)| *id)
            .collect();
        expired.iter().filter_map(|id| runs.remove(id)).collect()
    }

    /// Forgets expired runs now (the daemon's tick).
    pub(crate) fn expire(&self, now: Instant) {
        let dropped = self.sweep(&mut self.lock(), now);
        drop(dropped);
    }

    /// Job `key` of `run` is queued here.
    pub(crate) fn begin(&self, run: &RunId, key: JobKey) {
        if let Some(r) = self.lock().get_mut(run) {
            r.jobs.entry(key).or_insert(Entry::Running(Vec::new()));
        }
    }

    /// Whether job `key` of `run` is still wanted.
    fn wants(&self, run: &RunId, key: &JobKey, now: Instant) -> bool {
        let runs = self.lock();
        runs.get(run).is_some_and(|r| {
            let kept = r
                .orphaned
                .is_none_or(|t| now.saturating_duration_since(t) < self.keep);
            kept && r.jobs.contains_key(key)
        })
    }

    /// Job `key` of `run` finished with `done`: kept until recorded, and
    /// sent to the reclaims that wait for it.
    pub(crate) fn finished(&self, run: &RunId, key: &JobKey, done: &DoneJob) {
        let bytes = match &done.result {
            Ok(b) => b.len(),
            Err(e) => e.message.len(),
        };
        let waiters = {
            let mut runs = self.lock();
            let Some(entry) = runs.get_mut(run).and_then(|r| r.jobs.get_mut(key)) else {
                return;
            };
            let held = self.memory.hold(bytes);
            let kept = Entry::Done {
                done: done.clone(),
                _held: held,
            };
            match std::mem::replace(entry, kept) {
                Entry::Running(waiters) => waiters,
                Entry::Done { .. } => Vec::new(),
            }
        };
        for w in waiters {
            w.conn.finished(DoneJob {
                id: w.id,
                attempt: w.attempt,
                ..done.clone()
            });
        }
    }

    /// Job `key` of `run` will not run here (cancelled, handed back): its
    /// waiting reclaims are told so, and run it themselves.
    pub(crate) fn dropped(&self, run: &RunId, key: &JobKey) {
        let entry = {
            let mut runs = self.lock();
            match runs.get_mut(run).map(|r| r.jobs.entry(*key)) {
                Some(std::collections::hash_map::Entry::Occupied(e))
                    if matches!(e.get(), Entry::Running(_)) =>
                {
                    Some(e.remove())
                }
                _ => None,
            }
        };
        if let Some(Entry::Running(waiters)) = entry {
            for w in waiters {
                w.conn.finished(not_held(w.id, w.attempt));
            }
        }
    }

    /// The client of `run` recorded these jobs' outcomes: forgotten.
    pub(crate) fn recorded(&self, run: &RunId, keys: &[JobKey]) {
        let mut gone = Vec::new();
        if let Some(r) = self.lock().get_mut(run) {
            for key in keys {
                if matches!(r.jobs.get(key), Some(Entry::Done { .. })) {
                    gone.extend(r.jobs.remove(key));
                }
            }
        }
        drop(gone);
    }

    /// Connection `conn` of `run` (or of no run) reclaims job `key` as its
    /// job `id`: the outcome if it is here, a wait if it runs, else the
    /// error that makes the client run it.
    pub(crate) fn claim(
        &self,
        run: Option<&RunId>,
        key: &JobKey,
        conn: &Arc<Conn>,
        (id, attempt): (u64, u32),
    ) -> Claim {
        let mut runs = self.lock();
        match run
            .and_then(|r| runs.get_mut(r))
            .and_then(|r| r.jobs.get_mut(key))
        {
            Some(Entry::Done { done, .. }) => Claim::Done(DoneJob {
                id,
                attempt,
                ..done.clone()
            }),
            Some(Entry::Running(waiters)) => {
                waiters.push(Waiter {
                    conn: Arc::clone(conn),
                    id,
                    attempt,
                });
                Claim::Waiting
            }
            None => Claim::Done(not_held(id, attempt)),
        }
    }

    /// Runs and the jobs they hold here (for status).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let runs = self.lock();
        let jobs = runs.values().map(|r| r.jobs.len() as u64).sum();
        (runs.len() as u64, jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(keep: Duration) -> Runs {
        Runs::new(keep, Arc::new(Memory::new(1 << 30)))
    }

    fn done(id: u64) -> DoneJob {
        DoneJob {
            id,
            attempt: 1,
            result: Ok(serde_bytes::ByteBuf::from(vec![7u8; 3])),
            exec_ns: 5,
            kept: None,
        }
    }

    const RUN: RunId = RunId([1; 32]);
    const OTHER: RunId = RunId([2; 32]);
    const KEY: JobKey = JobKey([3; 32]);

    #[test]
    fn a_finished_job_of_a_vanished_client_is_listed_for_the_runs_next_connection() {
        let (r, t0) = (runs(Duration::from_secs(600)), Instant::now());
        assert!(r.attach(RUN, 1, t0).is_empty());
        r.begin(&RUN, KEY);
        r.detach(&RUN, 1, false, t0);
        assert!(r.wants(&RUN, &KEY, t0 + Duration::from_secs(1)));
        r.finished(&RUN, &KEY, &done(9));
        assert_eq!(r.attach(RUN, 2, t0 + Duration::from_secs(2)), vec![KEY]);
        // Another run learns nothing of it.
        assert!(r.attach(OTHER, 3, t0).is_empty());
    }

    #[test]
    fn an_orphaned_run_is_forgotten_after_orphan_keep() {
        let (r, t0) = (runs(Duration::from_secs(10)), Instant::now());
        r.attach(RUN, 1, t0);
        r.begin(&RUN, KEY);
        r.detach(&RUN, 1, false, t0);
        assert!(!r.wants(&RUN, &KEY, t0 + Duration::from_secs(10)));
        r.expire(t0 + Duration::from_secs(11));
        assert_eq!(r.counts(), (0, 0));
    }

    #[test]
    fn a_goodbye_forgets_the_run_at_once() {
        let (r, t0) = (runs(Duration::from_secs(600)), Instant::now());
        r.attach(RUN, 1, t0);
        r.begin(&RUN, KEY);
        r.detach(&RUN, 1, true, t0);
        assert!(!r.wants(&RUN, &KEY, t0));
        assert_eq!(r.counts(), (0, 0));
    }

    #[test]
    fn a_recorded_result_is_forgotten_and_a_running_one_is_not() {
        let (r, t0) = (runs(Duration::from_secs(600)), Instant::now());
        r.attach(RUN, 1, t0);
        let running = JobKey([4; 32]);
        r.begin(&RUN, KEY);
        r.begin(&RUN, running);
        r.finished(&RUN, &KEY, &done(1));
        r.recorded(&RUN, &[KEY, running]);
        assert_eq!(r.counts(), (1, 1));
        assert!(r.wants(&RUN, &running, t0));
    }

    #[test]
    fn the_old_connection_ending_late_does_not_orphan_the_new_one() {
        let (r, t0) = (runs(Duration::ZERO), Instant::now());
        r.attach(RUN, 1, t0);
        r.begin(&RUN, KEY);
        r.attach(RUN, 2, t0);
        r.detach(&RUN, 1, false, t0);
        assert!(r.wants(&RUN, &KEY, t0));
        r.detach(&RUN, 2, false, t0);
        assert_eq!(r.counts(), (0, 0));
    }

    #[test]
    fn runs_past_the_bound_forget_the_longest_orphaned() {
        let (r, t0) = (runs(Duration::from_secs(600)), Instant::now());
        for i in 0..MAX_RUNS {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            r.attach(RunId(id), i as u64, t0);
            r.begin(&RunId(id), KEY);
            r.detach(
                &RunId(id),
                i as u64,
                false,
                t0 + Duration::from_millis(i as u64),
            );
        }
        r.attach(RUN, 1 << 20, t0 + Duration::from_secs(1));
        assert_eq!(r.counts().0, MAX_RUNS as u64);
        // The first orphaned is the one gone; the second holds its job.
        let mut second = [0u8; 32];
        second[0] = 1;
        assert_eq!(r.attach(RunId(second), 8, t0), vec![KEY]);
        assert!(r.attach(RunId([0; 32]), 7, t0).is_empty());
    }
}
