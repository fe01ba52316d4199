//! Shipped programs on a node: answering offers, taking uploads into the
//! cache, and running each program as worker processes that speak the
//! isolation protocol (`ppcore::worker`), started from the cached file.
//!
//! Nothing runs unless its hash matched: a program comes from the cache
//! (files named by hash, written only through a verified upload). Workers
//! are started on demand, kept while busy, and end after `--program-idle`
//! without a job. A worker that dies costs its job (`Crashed`, the client's
//! retry policy decides), exactly as in isolation mode.

use crate::cache::{Claim, Pin, ProgramCache, Slot};
use crate::isolate::{kill_group, spawn_with, Running, WorkerProcess};
use crate::node::NodeJob;
use ppcore::program::{answer_offer, NodeCaps, OfferAnswer, ProgramId, ProgramInfo};
use ppcore::upload::Receiver;
use ppcore::wire::{JobInfo, NodeMsg};
use ppcore::worker::{PROGRAM_WORKER, WORKER_ENV};
use ppcore::{ErrorKind, JobError};
use serde_bytes::ByteBuf;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Time a new program worker has to list its jobs.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// Time a client waits for another client's upload of the same program.
const SHARED_UPLOAD_WAIT: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do about an offer.
pub(crate) enum Decision {
    /// Tell the client this answer (a refusal); nothing more.
    Answer(OfferAnswer),
    /// Tell the client `Have`, then get the program ready.
    Have(Ready),
    /// Tell the client `Need`, then take its chunks into this receiver.
    Upload(Box<Upload>),
}

/// How a program that needs no upload from this client becomes ready.
pub(crate) enum Ready {
    /// It is in the cache.
    Cached(PathBuf),
    /// Another client is sending it now.
    Shared,
}

/// One upload under way on a connection.
pub(crate) type Upload = Receiver<Slot>;

/// Every shipped program of a node.
pub(crate) struct Programs {
    cache: Result<Arc<ProgramCache>, String>,
    caps: NodeCaps,
    idle: Duration,
    known: Mutex<HashMap<ProgramId, Arc<Program>>>,
    uploaded: AtomicU64,
    cached: AtomicU64,
    workers: Arc<AtomicU64>,
    reaper: Mutex<bool>,
    /// The node's `--max-payload`, which program workers are started with.
    max_payload: u64,
}

/// The node's counters of programs, for its status.
pub(crate) struct ProgramCounts {
    pub(crate) uploaded: u64,
    pub(crate) cached: u64,
    pub(crate) workers: u64,
}

impl Programs {
    /// Programs cached in `dir` (none if `dir` is `None` or not writable:
    /// every offer is then refused with the reason).
    pub(crate) fn new(
        dir: Option<PathBuf>,
        caps: NodeCaps,
        idle: Duration,
        max_payload: u64,
    ) -> Self {
        let cache = match dir {
            None => Err("no cache directory (give --cache-dir)".to_owned()),
            Some(dir) => ProgramCache::open(dir.clone(), caps.cache_max).map_err(|e| {
                tracing::warn!("program cache {} unusable: {e}", dir.display());
                format!("its program cache {} is not writable: {e}", dir.display())
            }),
        };
        if let Ok(cache) = &cache {
            tracing::info!(dir = %cache.dir().display(), bytes = cache.bytes(), "program cache");
        }
        Programs {
            cache,
            caps,
            idle,
            known: Mutex::new(HashMap::new()),
            uploaded: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            workers: Arc::new(AtomicU64::new(0)),
            reaper: Mutex::new(false),
            max_payload,
        }
    }

    pub(crate) fn counts(&self) -> ProgramCounts {
        ProgramCounts {
            uploaded: self.uploaded.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            workers: self.workers.load(Ordering::Relaxed),
        }
    }

    /// Decides on an offer: refuse, have, or take an upload.
    pub(crate) fn offer(&self, info: &ProgramInfo, now: Instant) -> Decision {
        let cache = match &self.cache {
            Ok(cache) => cache,
            Err(why) if self.caps.uploads => {
                return Decision::Answer(OfferAnswer::Refuse(format!(
                    "this node cannot store programs: {why}"
                )))
            }
            Err(_) => return Decision::Answer(answer_offer(info, &self.caps, false, |_| true)),
        };
        let cached = cache.get(&info.id);
        let has_file = |p: &str| Path::new(p).exists();
        match answer_offer(info, &self.caps, cached.is_some(), has_file) {
            OfferAnswer::Have => {
                self.cached.fetch_add(1, Ordering::Relaxed);
                match cached {
                    Some(path) => Decision::Have(Ready::Cached(path)),
                    None => Decision::Have(Ready::Shared),
                }
            }
            OfferAnswer::Need => match cache.claim(info.id) {
                Ok(Claim::Ready(path)) => {
                    self.cached.fetch_add(1, Ordering::Relaxed);
                    Decision::Have(Ready::Cached(path))
                }
                Ok(Claim::Busy) => Decision::Have(Ready::Shared),
                Ok(Claim::Upload(slot)) => {
                    Decision::Upload(Box::new(Receiver::new(info.id, info.size, slot, now)))
                }
                Err(e) => Decision::Answer(OfferAnswer::Refuse(format!(
                    "this node cannot store the program: {e}"
                ))),
            },
            other => Decision::Answer(other),
        }
    }

    /// Ends a complete upload: verified, into the cache.
    pub(crate) fn finish(&self, upload: Upload) -> Result<PathBuf, String> {
        let slot = upload
            .finish()
            .map_err(|e| format!("upload refused: {e}"))?;
        let path = slot
            .commit()
            .map_err(|e| format!("cannot store the program: {e}"))?;
        self.uploaded.fetch_add(1, Ordering::Relaxed);
        Ok(path)
    }

    /// Gets the program `id` ready to run (its jobs listed by a first
    /// worker), waiting for another client's upload if need be. Blocks: call
    /// it off the connection's driver.
    pub(crate) fn ready(
        self: &Arc<Self>,
        id: ProgramId,
        how: Ready,
    ) -> Result<Vec<JobInfo>, String> {
        let cache = self.cache.as_ref().map_err(Clone::clone)?;
        let path = match how {
            Ready::Cached(path) => path,
            Ready::Shared => cache
                .wait_ready(&id, SHARED_UPLOAD_WAIT)
                .ok_or("another client's upload of this program failed; offer it again")?,
        };
        if let Some(program) = lock(&self.known).get(&id) {
            return Ok(program.jobs.clone());
        }
        let spawner = Spawner {
            id,
            path,
            cache: Arc::clone(cache),
            workers: Arc::clone(&self.workers),
            max_payload: self.max_payload,
        };
        let (worker, jobs) = spawner.spawn()?;
        let program = Arc::new(Program {
            names: jobs.iter().map(|j| j.name.clone()).collect(),
            jobs,
            idle: Mutex::new(vec![(worker, Instant::now())]),
            spawner,
        });
        let jobs = {
            let mut known = lock(&self.known);
            known.entry(id).or_insert(program).jobs.clone()
        };
        self.start_reaper();
        tracing::info!(program = %id, jobs = jobs.len(), "program ready");
        Ok(jobs)
    }

    /// The program `id` if it runs here and has job `name`.
    pub(crate) fn job(&self, id: &ProgramId, name: &str) -> Option<Arc<Program>> {
        let known = lock(&self.known);
        known.get(id).filter(|p| p.names.contains(name)).cloned()
    }

    /// Starts (once) the thread that ends idle program workers.
    fn start_reaper(self: &Arc<Self>) {
        let mut started = lock(&self.reaper);
        if *started {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = (self.idle / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let spawned = std::thread::Builder::new()
            .name("pp-program-reaper".into())
            .spawn(move || reap_loop(&weak, every));
        *started = spawned.is_ok();
    }

    /// Ends the workers idle for longer than `--program-idle`.
    fn reap(&self, now: Instant) {
        let programs: Vec<Arc<Program>> = lock(&self.known).values().cloned().collect();
        for program in programs {
            let old: Vec<_> = {
                let mut idle = lock(&program.idle);
                let (old, keep) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|(_, since)| now.saturating_duration_since(*since) >= self.idle);
                *idle = keep;
                old
            };
            if !old.is_empty() {
                tracing::debug!(program = %program.spawner.id, n = old.len(), "idle program workers end");
            }
            drop(old); // kills and reaps them, with no lock held
        }
    }
}

fn reap_loop(programs: &Weak<Programs>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(programs) = programs.upgrade() else {
            return;
        };
        programs.reap(Instant::now());
    }
}

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
struct Spawner {
    id: ProgramId,
    path: PathBuf,
    cache: Arc<ProgramCache>,
    workers: Arc<AtomicU64>,
    max_payload: u64,
}

impl Spawner {
    /// Starts a worker of this program; it first lists its jobs. What it
    /// prints goes to the node's stderr, as every worker's does.
    fn spawn(&self) -> Result<(ProgramWorker, Vec<JobInfo>), String> {
        let pin = self.cache.pin(self.id);
        let mut cmd = Command::new(&self.path);
        cmd.env(WORKER_ENV, PROGRAM_WORKER);
        let mut process = spawn_with(cmd, self.max_payload)
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
    jobs: Vec<JobInfo>,
    names: HashSet<String>,
    /// Workers waiting for a job, and since when.
    idle: Mutex<Vec<(ProgramWorker, Instant)>>,
    spawner: Spawner,
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
    pub(crate) fn run(&self, job: &NodeJob, running: &Running) -> Result<ByteBuf, JobError> {
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
        jobs: &[NodeJob],
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
