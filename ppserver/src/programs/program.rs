//! One shipped program running on the node: its idle worker processes,
//! how to start another (from the cached file, retried while the file is
//! busy), and running jobs (one, or a batch) in them.

use crate::cache::{Pin, ProgramCache};
use crate::isolate::{kill_group, spawn_with, IsolatedJob, Running, WorkerProcess};
use ppcore::program::ProgramId;
use ppcore::sync::lock;
use ppcore::wire::{JobInfo, NodeMsg};
use ppcore::worker::{PROGRAM_WORKER, WORKER_ENV};
use ppcore::{ErrorKind, JobError};
use serde_bytes::ByteBuf;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time a new program worker has to list its jobs.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries at starting a program that is busy being written (`ETXTBSY`: a
/// process forked while this node wrote the file still holds a copy of
/// the descriptor, until it runs its own program).
const BUSY_TRIES: u32 = 10;

/// A program worker process, which keeps its program in the cache.
pub(crate) struct ProgramWorker {
    process: WorkerProcess,
    _pin: Pin,
    _count: Counted,
}

/// One live worker of a program, counted while it lives.
struct Counted(Arc<AtomicU64>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How to start workers of one program.
pub(super) struct Spawner {
    pub(super) id: ProgramId,
    pub(super) path: PathBuf,
    pub(super) cache: Arc<ProgramCache>,
    pub(super) workers: Arc<AtomicU64>,
    pub(super) max_payload: u64,
}

impl Spawner {
    /// Starts a worker of this program; it first lists its jobs. What it
    /// prints goes to the node's stderr, as every worker's does.
    pub(super) fn spawn(&self) -> Result<(ProgramWorker, Vec<JobInfo>), String> {
        let pin = self.cache.pin(self.id);
        let mut process = self
            .start_process()
            .map_err(|e| format!("cannot start the program: {e}"))?;
        let jobs = match read_hello(&mut process) {
            Ok(jobs) => jobs,
            Err(Some(reason)) => {
                process.stop();
                return Err(format!(
                    "the program did not start as a pp worker: {}",
                    ppcore::escape(&reason)
                ));
            }
            Err(None) => {
                return Err(format!(
                    "the program did not start as a pp worker ({})",
                    process.stop()
                ))
            }
        };
        self.workers.fetch_add(1, Ordering::Relaxed);
        let worker = ProgramWorker {
            process,
            _pin: pin,
            _count: Counted(Arc::clone(&self.workers)),
        };
        Ok((worker, jobs))
    }
}

impl Spawner {
    /// Starts the program's process, trying again a few times while the
    /// file is busy (`ETXTBSY`: see [`BUSY_TRIES`]).
    fn start_process(&self) -> std::io::Result<WorkerProcess> {
        let mut tries = 0;
        loop {
            let mut cmd = Command::new(&self.path);
            cmd.env(WORKER_ENV, PROGRAM_WORKER);
            match spawn_with(cmd, self.max_payload) {
                Err(e) if is_busy(&e) && tries + 1 < BUSY_TRIES => {
                    tries += 1;
                    std::thread::sleep(busy_pause(tries));
                }
                done => return done,
            }
        }
    }
}

/// Whether starting a program failed because its file is open for writing.
fn is_busy(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
}

/// The pause before try `n` + 1 at a busy program: 2, 4, 8 ... ms, at most
/// 100 ms (about half a second over all [`BUSY_TRIES`]).
fn busy_pause(n: u32) -> Duration {
    Duration::from_millis((1u64 << n.min(7)).min(100))
}

/// A worker's error, saying it was the program's worker that died.
fn died(e: JobError) -> JobError {
    match e.kind {
        ErrorKind::Crashed => JobError::new(
            ErrorKind::Crashed,
            format!("program worker died: {}", e.message),
        ),
        _ => e,
    }
}

/// A program that runs on this node.
pub(crate) struct Program {
    pub(super) jobs: Vec<JobInfo>,
    pub(super) names: HashSet<String>,
    /// Workers waiting for a job, and since when.
    pub(super) idle: Mutex<Vec<(ProgramWorker, Instant)>>,
    pub(super) spawner: Spawner,
}

impl Program {
    /// An idle worker of this program, or a new one.
    fn worker(&self) -> Result<ProgramWorker, JobError> {
        if let Some((worker, _)) = lock(&self.idle).pop() {
            return Ok(worker);
        }
        let spawned = self.spawner.spawn();
        spawned
            .map(|(worker, _)| worker)
            .map_err(|e| JobError::new(ErrorKind::Crashed, e))
    }

    /// Runs `job` in an idle worker of this program, or a new one.
    pub(crate) fn run(
        &self,
        job: &impl IsolatedJob,
        running: &Running,
    ) -> Result<ByteBuf, JobError> {
        let ProgramWorker {
            process,
            _pin,
            _count,
        } = self.worker()?;
        let (result, alive) = running.run_on(process, job);
        if let Some(process) = alive {
            let worker = ProgramWorker {
                process,
                _pin,
                _count,
            };
            lock(&self.idle).push((worker, Instant::now()));
        }
        result.map_err(died)
    }

    /// Runs `jobs` (all of this program) in one idle worker, or a new one,
    /// answering each to `on_done` as it ends; the index of the first job
    /// that never ran (a worker died) if not all did.
    pub(crate) fn run_batch(
        &self,
        jobs: &[impl IsolatedJob],
        running: &Running,
        mut on_done: impl FnMut(usize, Result<ByteBuf, JobError>, u64),
    ) -> Result<(), usize> {
        let ProgramWorker {
            process,
            _pin,
            _count,
        } = match self.worker() {
            Ok(worker) => worker,
            Err(e) => {
                on_done(0, Err(e), 0);
                return Err(1);
            }
        };
        let (ran, alive) = running.run_batch_on(process, jobs, |i, result, ns| {
            on_done(i, result.map_err(died), ns)
        });
        if let Some(process) = alive {
            let worker = ProgramWorker {
                process,
                _pin,
                _count,
            };
            lock(&self.idle).push((worker, Instant::now()));
        }
        ran
    }
}

/// Reads the worker's first frame (its jobs), within [`HELLO_TIMEOUT`]: a
/// program that does something else is killed. `Err(Some(reason))`: it said
/// why not (a program that forgot `init()`); `Err(None)`: it did not say.
fn read_hello(process: &mut WorkerProcess) -> Result<Vec<JobInfo>, Option<String>> {
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    // The process is not reaped before the watchdog is joined: its group
    // id cannot be reused meanwhile.
    let group = process.group;
    let watchdog = std::thread::Builder::new()
        .name("pp-program-hello".into())
        .spawn(move || {
            if done_rx.recv_timeout(HELLO_TIMEOUT).is_err() {
                kill_group(group);
            }
        })
        .map_err(|e| Some(format!("cannot start the program: {e}")))?;
    let answer = process.answers.read::<NodeMsg>();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    match answer {
        Ok(Some(NodeMsg::Welcome { jobs, .. })) => Ok(jobs),
        Ok(Some(NodeMsg::Reject { reason, .. })) => Err(Some(reason)),
        _ => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_program_is_tried_again_briefly_and_only_when_busy() {
        let busy = std::io::Error::from_raw_os_error(26);
        assert!(is_busy(&busy), "ETXTBSY is 26 on Linux");
        assert!(!is_busy(&std::io::Error::from_raw_os_error(2)));
        let total: Duration = (1..BUSY_TRIES).map(busy_pause).sum();
        assert!(total <= Duration::from_secs(1), "{total:?}");
        assert_eq!(busy_pause(1), Duration::from_millis(2));
        assert_eq!(busy_pause(30), Duration::from_millis(100));
    }
}
