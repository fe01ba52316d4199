//! Isolation mode: each worker thread runs its jobs in a worker process of its
//! own (this same binary, re-run as a worker, which `ppcore::init_worker`
//! turns into a job server), talking frames over pipes. An
//! abort, a segfault, an out-of-memory kill or a runaway job then costs only
//! that job: the process is replaced and the node keeps serving.

use crate::node::NodeJob;
use ppcore::wire::{ClientMsg, DoneJob, NodeMsg, RunJob};
use ppcore::{encode_frame, ErrorKind, FrameReader, JobError};
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

/// One worker process and the pipes to it.
pub(crate) struct WorkerProcess {
    pub(crate) child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    pub(crate) stdout: FrameReader<ChildStdout>,
}

impl WorkerProcess {
    fn spawn() -> std::io::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ppcore::worker::WORKER_ENV, "1")
            .stderr(Stdio::inherit());
        Self::spawn_with(cmd)
    }

    /// Starts `cmd` (whose environment and stderr the caller set) with
    /// piped stdin and stdout.
    pub(crate) fn spawn_with(mut cmd: Command) -> std::io::Result<Self> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(std::io::Error::other("worker process without pipes"));
        };
        Ok(WorkerProcess {
            child: Arc::new(Mutex::new(child)),
            stdin,
            stdout: FrameReader::new(stdout, ppcore::wire::DEFAULT_MAX_FRAME),
        })
    }

    /// Sends one job and reads its answer; `None` if the process died.
    fn run(&mut self, job: &NodeJob) -> Option<Result<ByteBuf, JobError>> {
        let run = ClientMsg::Run(vec![RunJob {
            id: job.id,
            attempt: job.attempt,
            name: job.name.clone(),
            args: job.args.clone(),
            program: None,
        }]);
        let frame = encode_frame(&run).ok()?;
        self.stdin.write_all(&frame).ok()?;
        match self.stdout.read::<NodeMsg>() {
            Ok(Some(NodeMsg::Done(mut done))) => done.pop().map(|d| d.result),
            _ => None,
        }
    }

    /// Sends `jobs` in one frame; false if the process is gone.
    fn send(&mut self, jobs: &[NodeJob]) -> bool {
        let run = ClientMsg::Run(
            jobs.iter()
                .map(|job| RunJob {
                    id: job.id,
                    attempt: job.attempt,
                    name: job.name.clone(),
                    args: job.args.clone(),
                    program: None,
                })
                .collect(),
        );
        encode_frame(&run).is_ok_and(|frame| self.stdin.write_all(&frame).is_ok())
    }

    /// The next answer; `None` if the process died.
    fn recv(&mut self) -> Option<DoneJob> {
        match self.stdout.read::<NodeMsg>() {
            Ok(Some(NodeMsg::Done(mut done))) if done.len() == 1 => done.pop(),
            _ => None,
        }
    }

    /// Why the process ended, once it has.
    pub(crate) fn death(&self) -> String {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.wait() {
            Ok(status) => match status.signal() {
                Some(sig) => format!(
                    "worker process killed by signal {sig} ({})",
                    signal_name(sig)
                ),
                None => format!("worker process exited with {status}"),
            },
            Err(e) => format!("worker process lost: {e}"),
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        7 => "SIGBUS",
        4 => "SIGILL",
        8 => "SIGFPE",
        15 => "SIGTERM",
        _ => "signal",
    }
}

thread_local! {
    /// This worker thread's process, started on first use.
    static PROCESS: RefCell<Option<WorkerProcess>> = const { RefCell::new(None) };
}

/// A running job: its connection (by address) and id.
type JobKey = (usize, u64);

/// Jobs running in worker processes now, so that a cancel can kill them.
#[derive(Default)]
pub(crate) struct Running {
    by_job: Mutex<HashMap<JobKey, Arc<Mutex<Child>>>>,
}

impl Running {
    fn key(job: &NodeJob) -> JobKey {
        (Arc::as_ptr(&job.out) as usize, job.id)
    }

    /// Kills the process running job `id` of connection `out`, if any.
    pub(crate) fn kill(&self, out: usize, id: u64) -> bool {
        let child = self
            .by_job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(out, id));
        match child {
            Some(child) => {
                let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
                true
            }
            None => false,
        }
    }

    /// Runs `job` in this thread's worker process, starting or replacing the
    /// process as needed.
    pub(crate) fn run(&self, job: &NodeJob) -> Result<ByteBuf, JobError> {
        PROCESS.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                *slot = Some(WorkerProcess::spawn().map_err(|e| {
                    JobError::new(
                        ErrorKind::Crashed,
                        format!("cannot start a worker process: {e}"),
                    )
                })?);
            }
            let Some(process) = slot.as_mut() else {
                return Err(JobError::new(ErrorKind::Crashed, "no worker process"));
            };
            let (result, alive) = self.run_on(process, job);
            if !alive {
                *slot = None; // replaced on the next job
            }
            result
        })
    }

    /// Runs `jobs` in order in `process`, one frame out, answers one by one
    /// to `on_done(index, result, exec_ns)`; the job running at any moment
    /// can be killed by a cancel. If the process dies, the job it ran gets
    /// the error and the index of the first job it never started comes back
    /// (`jobs.len()` if all ran): the process must not be used again then.
    pub(crate) fn run_batch_on(
        &self,
        process: &mut WorkerProcess,
        jobs: &[NodeJob],
        mut on_done: impl FnMut(usize, Result<ByteBuf, JobError>, u64),
    ) -> Result<(), usize> {
        let map = || self.by_job.lock().unwrap_or_else(|e| e.into_inner());
        let sent = process.send(jobs);
        for (i, job) in jobs.iter().enumerate() {
            map().insert(Self::key(job), Arc::clone(&process.child));
            let answer = if sent { process.recv() } else { None };
            let cancelled = map().remove(&Self::key(job)).is_none();
            match answer {
                Some(done) if done.id == job.id => on_done(i, done.result, done.exec_ns),
                _ => {
                    let err = match cancelled {
                        true => {
                            JobError::new(ErrorKind::Cancelled, "cancelled: worker process stopped")
                        }
                        false => JobError::new(ErrorKind::Crashed, process.death()),
                    };
                    on_done(i, Err(err), 0);
                    return Err(i + 1);
                }
            }
        }
        Ok(())
    }

    /// Runs `job` in `process` (killable by a cancel meanwhile); false with
    /// the result if the process died: it must not be used again.
    pub(crate) fn run_on(
        &self,
        process: &mut WorkerProcess,
        job: &NodeJob,
    ) -> (Result<ByteBuf, JobError>, bool) {
        let key = Self::key(job);
        self.by_job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::clone(&process.child));
        let answer = process.run(job);
        let cancelled = self
            .by_job
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
            .is_none();
        match answer {
            Some(result) => (result, true),
            None if cancelled => (
                Err(JobError::new(
                    ErrorKind::Cancelled,
                    "cancelled: worker process stopped",
                )),
                false,
            ),
            None => (
                Err(JobError::new(ErrorKind::Crashed, process.death())),
                false,
            ),
        }
    }
}
