//! Isolation mode: each worker thread runs its jobs in a worker process of its
//! own (this same binary, re-run as a worker, which `ppcore::init_worker`
//! turns into a job server). An abort, a segfault, an out-of-memory kill or
//! a runaway job then costs only that job: the process is replaced and the
//! node keeps serving.
//!
//! Every worker process is started by [`spawn_with`], whatever its program,
//! and so never leaks a slot:
//! - it leads a process group of its own, and is always killed as a group
//!   (SIGKILL), before it is waited for: a job's children die with it, and
//!   no thread ever waits on a live worker;
//! - frames travel on two pipes it inherits as fd 0 and 2 (the worker side,
//!   and why, is in `ppcore::worker`); its stdout is the node's stderr, so a
//!   job that prints cannot corrupt them. Every other descriptor of the node
//!   is close-on-exec: std, mio and signal-hook open theirs so;
//! - it is spawned by one thread that lives as long as the node, so that
//!   its parent-death signal (set by the worker itself) fires only when the
//!   node dies;
//! - a cancel, a timeout (the client's, which sends a cancel) or the close
//!   of the job's connection kills the group of the process running it.

use crossbeam_channel::Sender;
use ppcore::shared::SharedValue;
use ppcore::wire::{ClientMsg, DoneJob, NodeMsg, RunJob};
use ppcore::SharedId;
use ppcore::{encode_frame, ErrorKind, FrameReader, JobError};
use rustix::process::{kill_process_group, Pid, Signal};
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::io::{PipeReader, PipeWriter};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock};

/// What a worker process needs of a job: the node's queued job implements
/// it (so this module names nothing above it).
pub(crate) trait IsolatedJob {
    /// Its id (unique within its connection).
    fn id(&self) -> u64;
    /// Its connection, as a number: what a close kills by.
    fn conn_key(&self) -> usize;
    /// The frame that runs it in a worker process.
    fn frame(&self) -> RunJob;
    /// The shared values its arguments name.
    fn shared(&self) -> &[Arc<SharedValue>];
    /// Whether it must not start: its connection closed, or its client
    /// cancelled it (a cancel is forgotten once seen: each id runs once).
    fn called_off(&self) -> bool;
}

/// One worker process, the group it leads, and the channel to it.
pub(crate) struct WorkerProcess {
    /// `None` once reaped: its pid may be reused then, so nothing signals
    /// `group` any more.
    child: Option<Child>,
    pub(crate) group: Pid,
    jobs: PipeWriter,
    pub(crate) answers: FrameReader<PipeReader>,
    /// The shared values sent to it: each is sent once, and decoded once
    /// there for all its jobs.
    shared: HashSet<SharedId>,
    /// Kept values sent for the last jobs: freed there before the next.
    kept: Vec<SharedId>,
    /// The instances it was started for (its environment): a job holding
    /// others runs in a process started for them.
    instances: String,
    /// The memory request it was started for (0: none): its data limit is
    /// this plus [`WORKER_HEADROOM`].
    memory: u64,
}

/// What a process worker itself may use beside the memory its job asked
/// for: its runtime, the job's arguments and answer in flight, the shared
/// values it was sent.
pub(crate) const WORKER_HEADROOM: u64 = 64 << 20;

/// Holds process `pid` to `bytes` of data (heap and private writable
/// mappings, `RLIMIT_DATA`): an allocation past it fails, and the job that
/// made it ends its process.
fn limit_data(pid: Pid, bytes: u64) -> std::io::Result<()> {
    let limit = rustix::process::Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Data, limit)?;
    Ok(())
}

/// Starts `cmd` as a worker process: leader of its own process group, jobs
/// in on its stdin, answers out on its stderr, its stdout on the node's
/// stderr, its parent's pid in its environment, spawned by the spawner
/// thread. The caller sets the rest (program, arguments,
/// [`ppcore::worker::WORKER_ENV`]).
/// Frames on the pipes may carry payloads of up to `max_payload` bytes (the
/// node's `--max-payload`), both ways.
pub(crate) fn spawn_with(mut cmd: Command, max_payload: u64) -> std::io::Result<WorkerProcess> {
    let (their_jobs, jobs) = std::io::pipe()?;
    let (answers, their_answers) = std::io::pipe()?;
    cmd.process_group(0)
        .env(ppcore::worker::PARENT_ENV, std::process::id().to_string())
        .env(ppcore::worker::MAX_FRAME_ENV, max_payload.to_string())
        .stdin(their_jobs)
        .stdout(std::io::stderr())
        .stderr(their_answers);
    // `cmd`, and with it the node's copies of the worker's ends, is dropped
    // on the spawner thread once the child has them.
    let child = spawn_on_spawner(cmd)?;
    Ok(WorkerProcess {
        group: Pid::from_child(&child),
        child: Some(child),
        jobs,
        answers: FrameReader::new(answers, ppcore::worker::pipe_max_frame(max_payload)),
        shared: HashSet::new(),
        kept: Vec::new(),
        instances: String::new(),
        memory: 0,
    })
}

type SpawnRequest = (Command, Sender<std::io::Result<Child>>);

/// Spawns `cmd` on the spawner thread: the one thread that starts worker
/// processes, and never ends, so that a worker's parent-death signal (which
/// fires when the thread that forked it ends) means the node is gone.
fn spawn_on_spawner(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Option<Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("pp-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        started.ok().map(|_| tx)
    });
    let Some(spawner) = spawner else {
        return Err(std::io::Error::other("the spawner thread could not start"));
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    spawner
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// Sends SIGKILL to the process group `group`. A group that is already gone
/// needs nothing more.
pub(crate) fn kill_group(group: Pid) {
    let _ = kill_process_group(group, Signal::KILL);
}

impl WorkerProcess {
    /// The node's own program as a worker, for jobs holding `instances`
    /// (`gpu=0,1;licence=3`, as the job's context says: in the process's
    /// environment, its GPUs as `CUDA_VISIBLE_DEVICES`) and `memory` bytes
    /// (0: none; else its data limit, with [`WORKER_HEADROOM`], set before
    /// it is sent a job).
    fn spawn(max_payload: u64, instances: &str, memory: u64) -> std::io::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(ppcore::worker::WORKER_ENV, "1");
        if !instances.is_empty() {
            cmd.env(ppcore::INSTANCES_ENV, instances);
            let gpus = ppcore::JobContext::parse_instances(instances)
                .into_iter()
                .find(|(name, _)| name == "gpu");
            if let Some((_, ids)) = gpus {
                let node_list = std::env::var(CUDA_ENV).ok();
                cmd.env(CUDA_ENV, cuda_devices(&ids, node_list.as_deref()));
            }
        }
        let mut process = spawn_with(cmd, max_payload)?;
        process.instances = instances.to_owned();
        if memory > 0 {
            // On failure the process is dropped: killed and reaped.
            limit_data(process.group, memory.saturating_add(WORKER_HEADROOM))?;
            process.memory = memory;
        }
        Ok(process)
    }

    /// Sends the process the shared values `jobs` name that it lacks, and
    /// tells it to free those the node no longer holds; false if it is gone.
    fn send_shared<'a, J: IsolatedJob + 'a>(&mut self, jobs: impl Iterator<Item = &'a J>) -> bool {
        let mut stale: Vec<SharedId> = self
            .shared
            .iter()
            .filter(|id| ppcore::shared::lookup(id).is_none())
            .copied()
            .collect();
        stale.append(&mut self.kept);
        if !stale.is_empty() {
            self.shared.retain(|id| !stale.contains(id));
            if !self.write(&ClientMsg::Unshare(stale)) {
                return false;
            }
        }
        for job in jobs {
            for value in job.shared() {
                // A kept value is its connection's, under its client's name,
                // which another client may give another value: sent for each
                // job (over what the process holds under that id), never
                // taken for one the process has.
                let listed = ppcore::shared::lookup(&value.id());
                let kept = !listed.is_some_and(|l| Arc::ptr_eq(&l, value));
                if kept {
                    self.shared.remove(&value.id());
                    self.kept.push(value.id());
                }
                if kept || self.shared.insert(value.id()) {
                    let msg = ClientMsg::Shared {
                        id: value.id(),
                        value: ByteBuf::from(value.bytes().to_vec()),
                        kept,
                    };
                    if !self.write(&msg) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Writes one frame to the process; false if it is gone.
    fn write(&mut self, msg: &ClientMsg) -> bool {
        encode_frame(msg).is_ok_and(|frame| self.jobs.write_all(&frame).is_ok())
    }

    /// Sends one job and reads its answer; `None` if the process died.
    fn run(&mut self, job: &impl IsolatedJob) -> Option<Result<ByteBuf, JobError>> {
        if !self.send_shared(std::iter::once(job)) {
            return None;
        }
        let run = ClientMsg::Run(vec![job.frame()]);
        if !self.write(&run) {
            return None;
        }
        match self.answers.read::<NodeMsg>() {
            Ok(Some(NodeMsg::Done(mut done))) => done.pop().map(|d| d.result),
            _ => None,
        }
    }

    /// Sends `jobs` in one frame; false if the process is gone.
    fn send(&mut self, jobs: &[impl IsolatedJob]) -> bool {
        if !self.send_shared(jobs.iter()) {
            return false;
        }
        let run = ClientMsg::Run(jobs.iter().map(IsolatedJob::frame).collect());
        self.write(&run)
    }

    /// The next answer; `None` if the process died.
    fn recv(&mut self) -> Option<DoneJob> {
        match self.answers.read::<NodeMsg>() {
            Ok(Some(NodeMsg::Done(mut done))) if done.len() == 1 => done.pop(),
            _ => None,
        }
    }

    /// Kills the process and its group, waits for it, and says why it
    /// ended.
    pub(crate) fn stop(mut self) -> String {
        self.end()
    }

    /// [`WorkerProcess::stop`] in place: the process is of no use after.
    pub(crate) fn end(&mut self) -> String {
        match self.child.take() {
            Some(child) => reap(child, self.group),
            None => "worker process already stopped".to_owned(),
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            reap(child, self.group);
        }
    }
}

/// Kills `child` and its group `group`, then waits for it, and says why it
/// ended (a crash keeps its own signal: killing a dead process changes
/// nothing).
fn reap(mut child: Child, group: Pid) -> String {
    kill_group(group);
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

/// The environment variable CUDA reads the GPUs a process may use from.
pub(crate) const CUDA_ENV: &str = "CUDA_VISIBLE_DEVICES";

/// `CUDA_VISIBLE_DEVICES` for a worker holding GPU instances `ids`: the
/// ids themselves, or, where the node itself was given a list (Slurm sets
/// one for its allocation), the entries of that list they index.
fn cuda_devices(ids: &[u32], node_list: Option<&str>) -> String {
    let own: Vec<&str> = node_list
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let picked: Vec<String> = ids
        .iter()
        .map(|&i| match own.get(i as usize) {
            Some(d) => (*d).to_owned(),
            None => i.to_string(),
        })
        .collect();
    picked.join(",")
}

/// A running job: its connection (by address) and id.
type JobKey = (usize, u64);

/// Jobs running in worker processes now, with the process group of each,
/// so that a cancel or a closed connection can kill them.
///
/// A group is killed while the map's lock is held, and a worker thread
/// takes its job out of the map (under the lock) before it sends the next
/// job or waits for the process: so a kill always hits the job it was
/// meant for, and never a reused pid. A kill is one signal, never waits.
pub(crate) struct Running {
    by_job: Mutex<HashMap<JobKey, Pid>>,
    /// The node's `--max-payload`: what the pipes carry at most.
    max_payload: u64,
}

impl Running {
    /// No job running yet; workers take payloads of up to `max_payload`.
    pub(crate) fn new(max_payload: u64) -> Self {
        Running {
            by_job: Mutex::default(),
            max_payload,
        }
    }

    fn key(job: &impl IsolatedJob) -> JobKey {
        (job.conn_key(), job.id())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, Pid>> {
        ppcore::sync::lock(&self.by_job)
    }

    /// Kills the process running job `id` of connection `out`, if any.
    pub(crate) fn kill(&self, out: usize, id: u64) -> bool {
        let mut map = self.map();
        match map.remove(&(out, id)) {
            Some(group) => {
                kill_group(group);
                true
            }
            None => false,
        }
    }

    /// Kills the processes running jobs of connection `out` (it closed);
    /// returns how many.
    pub(crate) fn kill_conn(&self, out: usize) -> u64 {
        let mut map = self.map();
        let mut killed = 0;
        map.retain(|&(conn, _), group| {
            if conn != out {
                return true;
            }
            kill_group(*group);
            killed += 1;
            false
        });
        killed
    }

    /// Runs `job` in this thread's worker process, starting or replacing the
    /// process as needed.
    pub(crate) fn run(&self, job: &impl IsolatedJob) -> Result<ByteBuf, JobError> {
        PROCESS.with(|slot| {
            let mut slot = slot.borrow_mut();
            // The instances this thread's job holds (its context, set by
            // the node's ledger): a process started for others is replaced.
            let context = ppcore::job_context();
            let (instances, memory) = (context.instances_text(), context.memory);
            let process = match slot.take() {
                Some(p) if p.instances == instances && p.memory == memory => p,
                old => {
                    drop(old); // killed and reaped
                    WorkerProcess::spawn(self.max_payload, &instances, memory).map_err(|e| {
                        JobError::new(
                            ErrorKind::Crashed,
                            format!("cannot start a worker process: {e}"),
                        )
                    })?
                }
            };
            let (result, alive) = self.run_on(process, job);
            *slot = alive; // a dead process is replaced on the next job
            result.map_err(|e| match (e.kind, memory) {
                (ErrorKind::Crashed, 1..) => {
                    let message = format!(
                        "{} (it ran under a data limit of {}: its memory request of {} \
                         and {} for the worker; a job that allocates past its request \
                         ends its process)",
                        e.message,
                        ppcore::resources::bytes_text(memory.saturating_add(WORKER_HEADROOM)),
                        ppcore::resources::bytes_text(memory),
                        ppcore::resources::bytes_text(WORKER_HEADROOM),
                    );
                    e.with_message(message)
                }
                _ => e,
            })
        })
    }

    /// Runs `job` in `process` (killable by a cancel or a close meanwhile);
    /// gives the process back unless it died.
    pub(crate) fn run_on(
        &self,
        mut process: WorkerProcess,
        job: &impl IsolatedJob,
    ) -> (Result<ByteBuf, JobError>, Option<WorkerProcess>) {
        let key = Self::key(job);
        {
            let mut map = self.map();
            // Checked under the lock: a close or cancel that came before
            // this finds nothing to kill, so the job must not start.
            if job.called_off() {
                return (Err(cancelled()), Some(process));
            }
            map.insert(key, process.group);
        }
        let answer = process.run(job);
        let killed = self.map().remove(&key).is_none();
        match answer {
            Some(result) if !killed => (result, Some(process)),
            Some(result) => {
                // Killed just after it answered: the answer stands, the
                // process is gone.
                process.stop();
                (result, None)
            }
            None if killed => {
                process.stop();
                (Err(cancelled()), None)
            }
            None => (Err(JobError::new(ErrorKind::Crashed, process.stop())), None),
        }
    }
}

impl Running {
    /// Runs `jobs` in order in `process`, one frame out, answers one by one
    /// to `on_done(index, result, exec_ns)`; the job running at any moment
    /// can be killed by a cancel or a close. If the process dies, the job it
    /// ran gets the error and the index of the first job it never started
    /// comes back (`jobs.len()` if all ran), with no process.
    pub(crate) fn run_batch_on(
        &self,
        mut process: WorkerProcess,
        jobs: &[impl IsolatedJob],
        mut on_done: impl FnMut(usize, Result<ByteBuf, JobError>, u64),
    ) -> (Result<(), usize>, Option<WorkerProcess>) {
        let sent = process.send(jobs);
        for (i, job) in jobs.iter().enumerate() {
            let key = Self::key(job);
            self.map().insert(key, process.group);
            let answer = if sent { process.recv() } else { None };
            let killed = self.map().remove(&key).is_none();
            match answer {
                Some(done) if done.id == job.id() && !killed => {
                    on_done(i, done.result, done.exec_ns)
                }
                Some(done) if done.id == job.id() => {
                    // Killed just after it answered: the answer stands,
                    // the process (and the jobs after it) are gone.
                    on_done(i, done.result, done.exec_ns);
                    process.stop();
                    return (Err(i + 1), None);
                }
                _ => {
                    let why = process.stop();
                    let err = match killed {
                        true => cancelled(),
                        false => JobError::new(ErrorKind::Crashed, why),
                    };
                    on_done(i, Err(err), 0);
                    return (Err(i + 1), None);
                }
            }
        }
        (Ok(()), Some(process))
    }
}

fn cancelled() -> JobError {
    JobError::new(ErrorKind::Cancelled, "cancelled: worker process stopped")
}

#[cfg(test)]
mod cuda_tests {
    use super::cuda_devices;

    #[test]
    fn gpu_instances_index_the_nodes_own_device_list() {
        assert_eq!(cuda_devices(&[1], None), "1");
        assert_eq!(cuda_devices(&[0, 1], Some("2,3")), "2,3");
        assert_eq!(cuda_devices(&[1], Some("5,7")), "7");
    }
}
