//! What every connection of a node shares: the registry, the job queue and
//! its workers, the counters, the open connections, and the shutdown state.
//! Below it, the pieces it is made of: who may connect (`admission`), the
//! memory budget (`memory`), spill to disk (`spill`), the counters
//! `--metrics` reads (`meters`), a
//! queued job (`job`), and how workers reach a connection (`handle`).

pub(crate) mod admission;
pub(crate) mod handle;
pub(crate) mod job;
pub(crate) mod memory;
pub(crate) mod meters;
pub(crate) mod runs;
pub(crate) mod spill;

use crate::config::Config;
use crate::config::Isolation;
use crate::isolate::Running;
use crate::programs::Programs;
use admission::{Admission, AdmissionLimits, Refused};
use handle::Conn;
use job::NodeJob;
use memory::Memory;
use meters::Meters;
use ppcore::shared::{OverSharedMax, SharedId, SharedStore, SharedValue};
use ppcore::wire::{DoneJob, JobInfo, NodeMsg, NodeStatus};
use ppcore::{ErrorKind, JobError, Lanes, Registry};
use runs::{Journaled, Runs};
use serde_bytes::ByteBuf;
use spill::Spill;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type JobFn = fn(Vec<u8>) -> Result<Vec<u8>, JobError>;

/// Most jobs of a shipped program sent to one of its workers at once.
const PROGRAM_BATCH: usize = 32;
/// Most argument bytes in such a batch (well within a frame).
const PROGRAM_BATCH_BYTES: usize = 1 << 20;

/// A claim on one queued job (which one is the round-robin's choice).
pub(crate) struct Ticket;

/// The `run` of a shipped program's job: never called, as `Node::run`
/// sends such jobs to the program's workers; a clear error if it ever were.
fn not_built_in(_: Vec<u8>) -> Result<Vec<u8>, JobError> {
    Err(JobError::new(
        ErrorKind::UnknownJob,
        "a shipped program's job is not a built-in job",
    ))
}

/// What a queued job costs against `--max-memory`: its arguments, its name
/// and a fixed share for its bookkeeping (so that empty jobs count too).
fn job_bytes(job: &ppcore::wire::RunJob) -> usize {
    const OVERHEAD: usize = 128;
    job.args.len() + job.name.len() + OVERHEAD
}

/// The open connections, and who may open one.
struct Conns {
    open: HashMap<u64, Arc<Conn>>,
    admission: Admission,
}

pub(crate) struct Node {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) jobs: Vec<JobInfo>,
    pub(crate) node_id: String,
    /// One ticket per queued job: a free worker takes a ticket, then the
    /// next job in turn from `fair`.
    queue: Lanes<Ticket>,
    /// Queued jobs per connection, served round-robin across clients.
    fair: Mutex<ppcore::RoundRobin<usize, NodeJob>>,
    started: Instant,
    done: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    /// Jobs queued or running here.
    active: ppcore::Pending,
    next_conn: AtomicU64,
    conns: Mutex<Conns>,
    /// Open connections, to wait for their goodbyes.
    open_conns: ppcore::Pending,
    /// Set when the node stops taking jobs (SIGTERM, idle timeout).
    pub(crate) draining: AtomicBool,
    /// When the last connection closed (or the node started).
    idle_since: Mutex<Option<Instant>>,
    /// Jobs running in worker processes (isolation mode, shipped programs).
    isolated: Running,
    /// Programs clients shipped here.
    pub(crate) programs: Arc<Programs>,
    /// `--max-memory`: queued arguments and unwritten results.
    pub(crate) memory: Arc<Memory>,
    /// `--spill-dir`, `--spill-max`: kept values over `--max-memory`.
    pub(crate) spill: Arc<Spill>,
    /// Jobs handed back because the node was over `--max-memory`.
    pub(crate) refused_memory: AtomicU64,
    /// Counters only `--metrics` reads.
    pub(crate) meters: Meters,
    /// Shared values clients sent, within `--shared-max`.
    shared: Mutex<SharedStore>,
    /// Shared values received and kept (a value already here adds none).
    shared_received: AtomicU64,
    /// Kept values exported to peers, and pulls from them.
    pub(crate) peers: crate::peer::Peers,
    /// Journaled clients' runs: results until recorded, orphans (`--orphan-keep`).
    pub(crate) runs: Arc<Runs>,
    /// What the node offers its jobs and what running jobs hold: a job
    /// with a request waits on its worker until it fits.
    pub(crate) slots: ppcore::slots::Slots,
}

impl Node {
    /// A node with `config`; `own_cache`: its own program directory, used
    /// when `config` gives none (`cache::own_dir` of the port it was asked
    /// for); `spill`: where kept values over `--max-memory` go.
    pub(crate) fn new(
        config: Config,
        registry: Registry,
        queue: Lanes<Ticket>,
        own_cache: Option<PathBuf>,
        spill: Spill,
    ) -> Self {
        let jobs = registry
            .entries()
            .map(|e| JobInfo {
                name: e.name.to_owned(),
                signature: e.signature.to_owned(),
            })
            .collect();
        let caps = ppcore::program::NodeCaps {
            uploads: config.uploads,
            target: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            cache_max: config.cache_max,
        };
        let own = config.cache_dir.is_none();
        let programs = Programs::new(
            config
                .uploads
                .then(|| config.cache_dir.clone().or(own_cache))
                .flatten(),
            own,
            caps,
            config.program_idle,
            config.max_payload,
        );
        let admission = Admission::new(AdmissionLimits {
            clients: config.max_connections,
            unauthenticated: config.max_unauthenticated,
            per_source: config.max_per_source,
        });
        let memory = Arc::new(Memory::new(config.max_memory));
        let runs = Arc::new(Runs::new(config.orphan_keep, Arc::clone(&memory)));
        let mut offer = config.offer.clone();
        offer.set_cpus(u32::try_from(config.workers).unwrap_or(u32::MAX));
        let slots = ppcore::slots::Slots::new(offer);
        let config_max_payload = config.max_payload;
        let config_shared_max = config.shared_max;
        Node {
            programs: Arc::new(programs),
            node_id: config.node_id(),
            config,
            registry,
            jobs,
            queue,
            fair: Mutex::new(ppcore::RoundRobin::new()),
            started: Instant::now(),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            active: ppcore::Pending::default(),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(Conns {
                open: HashMap::new(),
                admission,
            }),
            open_conns: ppcore::Pending::default(),
            draining: AtomicBool::new(false),
            idle_since: Mutex::new(Some(Instant::now())),
            isolated: Running::new(config_max_payload),
            memory,
            spill: Arc::new(spill),
            refused_memory: AtomicU64::new(0),
            meters: Default::default(),
            shared: Mutex::new(SharedStore::new(config_shared_max)),
            shared_received: AtomicU64::new(0),
            peers: crate::peer::Peers::default(),
            runs,
            slots,
        }
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        ppcore::sync::lock(&self.conns)
    }

    /// Why a new connection from `source` would be refused now, if it would
    /// (checked on the accept thread, so that a flood costs no thread).
    pub(crate) fn refuses(&self, source: IpAddr) -> Option<Refused> {
        self.lock_conns().admission.check(source).err()
    }

    /// Registers a connection from `source`, as a stranger until it
    /// authenticates; why not if the node is at a limit. A stranger evicted
    /// to make room is told to close.
    pub(crate) fn open(&self, conn: &Arc<Conn>, source: IpAddr) -> Result<u64, Refused> {
        let (id, victim) = {
            let mut conns = self.lock_conns();
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let evict = conns.admission.open(id, source)?;
            conns.open.insert(id, Arc::clone(conn));
            self.open_conns.add();
            let victim = evict.and_then(|old| conns.open.get(&old).cloned());
            (id, victim)
        };
        if let Some(victim) = victim {
            let why = Refused::Evicted(self.config.max_unauthenticated);
            victim.refuse(why);
        }
        Ok(id)
    }

    /// The peer of connection `id` proved the key: from now on it counts as
    /// a client (for `--idle-timeout`, draining and `--max-connections`);
    /// strangers never do. Refused if the clients' slots are all taken (or
    /// it was evicted meanwhile).
    pub(crate) fn authenticated(&self, id: u64) -> Result<(), Refused> {
        let mut conns = self.lock_conns();
        conns.admission.authenticate(id)?;
        if let Some(conn) = conns.open.get(&id) {
            conn.authenticated.store(true, Ordering::Release);
        }
        *ppcore::sync::lock(&self.idle_since) = None;
        Ok(())
    }

    /// Forgets connection `id` (closed: see [`Conn::mark_closed`]) and, in
    /// isolation mode, kills the processes still running its jobs: nobody
    /// waits for them, and their slots are wanted.
    pub(crate) fn close(&self, id: u64) {
        self.lock_shared().release_all(id);
        let mut conns = self.lock_conns();
        let closed = conns.open.remove(&id);
        if closed.is_some() {
            conns.admission.close(id);
            self.open_conns.done();
        }
        let mut idle = ppcore::sync::lock(&self.idle_since);
        if conns.admission.clients() == 0 && idle.is_none() {
            *idle = Some(Instant::now());
        }
        drop(idle);
        drop(conns);
        // Its jobs running in worker processes (process isolation, or a
        // shipped program's) die with it, unless its run outlives it.
        if let Some(conn) = closed {
            if let Some(run) = conn.run.get() {
                let goodbye = conn.goodbye.load(Ordering::Acquire);
                self.runs.detach(run, id, goodbye, Instant::now());
                if !goodbye && !self.config.orphan_keep.is_zero() {
                    return;
                }
            }
            let killed = self.isolated.kill_conn(Arc::as_ptr(&conn) as usize);
            self.cancelled.fetch_add(killed, Ordering::Relaxed);
        }
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, SharedStore> {
        ppcore::sync::lock(&self.shared)
    }

    /// Connection `conn` sent a shared value (checked against its id):
    /// kept, or refused over `--shared-max`.
    pub(crate) fn share(&self, conn: u64, value: Arc<SharedValue>) -> Result<(), OverSharedMax> {
        let (id, len) = (value.id(), value.len());
        let evicted = self.lock_shared().put(conn, value)?;
        self.shared_received.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%id, len, evicted = evicted.len(), "shared value kept");
        Ok(())
    }

    /// Connection `conn` is done with these shared values.
    pub(crate) fn unshare(&self, conn: u64, ids: &[SharedId]) {
        let mut store = self.lock_shared();
        ids.iter().for_each(|id| store.release(conn, id));
    }

    /// The shared values `ids` that connection `conn` holds here, or the ones
    /// it does not.
    pub(crate) fn shared_for(
        &self,
        conn: u64,
        ids: &[SharedId],
    ) -> Result<Vec<Arc<SharedValue>>, Vec<SharedId>> {
        let mut store = self.lock_shared();
        let (mut found, mut missing) = (Vec::with_capacity(ids.len()), Vec::new());
        for id in ids {
            match store.get(conn, id) {
                Some(v) => found.push(v),
                None => missing.push(*id),
            }
        }
        drop(store);
        match missing.is_empty() {
            true => Ok(found),
            false => Err(missing),
        }
    }

    /// How long the node has had no authenticated client, if it has none.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        ppcore::sync::lock(&self.idle_since).map(|t| t.elapsed())
    }

    /// Waits until every connection has closed, or `limit`; true if all have.
    pub(crate) fn wait_closed(&self, limit: Duration) -> bool {
        self.open_conns
            .wait_zero(Some(ppcore::limits::deadline(Instant::now(), limit)))
    }

    /// Every open connection.
    pub(crate) fn conns(&self) -> Vec<Arc<Conn>> {
        let conns = self.lock_conns();
        conns.open.values().cloned().collect()
    }

    /// Whether any open connection is an authenticated client.
    pub(crate) fn has_clients(&self) -> bool {
        self.lock_conns().admission.clients() > 0
    }

    /// Queues jobs sent by one client; jobs this node does not know, or that
    /// arrive while it drains, are answered at once.
    pub(crate) fn submit(
        &self,
        jobs: Vec<(ppcore::wire::RunJob, Vec<Arc<SharedValue>>)>,
        out: &Arc<Conn>,
    ) {
        let mut queued = 0;
        // A batch mostly holds jobs of one name: looked up once.
        let mut last: Option<(&str, JobFn)> = None;
        for (job, shared) in jobs {
            if self.draining() {
                out.give_back(job.id, job.attempt);
                continue;
            }
            let (run, program) = match &job.program {
                None => match last {
                    Some((name, run)) if name == job.name => (Some(run), None),
                    _ => {
                        last = self.registry.get(&job.name).map(|e| (e.name, e.run));
                        (last.map(|(_, run)| run), None)
                    }
                },
                Some(id) => match self.programs.job(id, &job.name) {
                    Some(p) => (Some(not_built_in as JobFn), Some(p)),
                    None => (None, None),
                },
            };
            let Some(run) = run else {
                let whose = match &job.program {
                    Some(id) => format!("program {id} on node {}", self.node_id),
                    None => format!("node {}", self.node_id),
                };
                let err = JobError::new(
                    ErrorKind::UnknownJob,
                    format!("{whose} has no job named `{}`", job.name),
                );
                out.finished(DoneJob {
                    id: job.id,
                    attempt: job.attempt,
                    result: Err(err),
                    exec_ns: 0,
                    kept: None,
                });
                continue;
            };
            // A request this node can never meet is answered at once: it
            // never waits for what will not come.
            if let Some(why) = job.request.as_ref().and_then(|r| self.never_fits(r)) {
                out.finished(DoneJob {
                    id: job.id,
                    attempt: job.attempt,
                    result: Err(JobError::new(ErrorKind::Unsatisfiable, why)),
                    exec_ns: 0,
                    kept: None,
                });
                continue;
            }
            // Over --max-memory: back to the client, to run elsewhere or later.
            let Some(held) = self.memory.try_hold(job_bytes(&job)) else {
                let n = self.refused_memory.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    let (used, limit) = (self.memory.used(), self.memory.limit());
                    tracing::warn!("over --max-memory ({used} of {limit} bytes held): {n} job(s) handed back so far");
                }
                out.give_back(job.id, job.attempt);
                continue;
            };
            self.active.add();
            out.begin();
            let journal = match (job.journal, out.run.get()) {
                (Some(key), Some(run)) => {
                    self.runs.begin(run, key);
                    Some(Journaled {
                        runs: Arc::clone(&self.runs),
                        run: *run,
                        key,
                    })
                }
                _ => None,
            };
            let job = NodeJob {
                journal,
                held,
                keeps: matches!(job.keep, Some(ppcore::wire::KeepOp::Keep(_))),
                id: job.id,
                attempt: job.attempt,
                name: job.name,
                run,
                args: job.args,
                out: Arc::clone(out),
                program,
                shared,
                request: job.request.map(Arc::new),
            };
            let client = Arc::as_ptr(out) as usize;
            ppcore::sync::lock(&self.fair).push(client, job);
            queued += 1;
        }
        if queued > 0 {
            // Tests wait for this line (their nodes log this module at debug).
            tracing::debug!(jobs = queued, "jobs queued");
        }
        self.queue.push_all((0..queued).map(|_| Ticket));
    }

    /// Runs the next job in turn (a worker took a ticket); with it, for a
    /// shipped program, more of the same client's jobs of that program, so
    /// that one round trip to a program worker carries several (their
    /// tickets then find nothing, which is fine). True if what ran keeps its
    /// result here: jobs waiting for it may be queued next.
    pub(crate) fn run_next(&self) -> bool {
        let (first, mut batch) = {
            let mut fair = ppcore::sync::lock(&self.fair);
            let Some((client, first)) = fair.pop_keyed() else {
                return false;
            };
            let mut batch = Vec::new();
            if let (Some(program), None) = (first.program.clone(), &first.request) {
                // Leave the other workers their share of what is queued.
                let most = (fair.len() / self.config.workers.max(1)).min(PROGRAM_BATCH - 1);
                let mut bytes = first.args.len();
                while batch.len() < most {
                    let same = |j: &NodeJob| {
                        j.request.is_none()
                            && j.program.as_ref().is_some_and(|p| Arc::ptr_eq(p, &program))
                            && bytes + j.args.len() <= PROGRAM_BATCH_BYTES
                    };
                    let Some(job) = fair.pop_from(&client, same) else {
                        break;
                    };
                    bytes += job.args.len();
                    batch.push(job);
                }
            }
            (first, batch)
        };
        let keeps = first.keeps || batch.iter().any(|j| j.keeps);
        if batch.is_empty() {
            self.run(first);
        } else {
            batch.insert(0, first);
            // A batch takes one cpu (its jobs run one after another).
            let mut batch = Some(batch);
            let ran = self.slots.run(
                None,
                || false,
                || {
                    if let Some(batch) = batch.take() {
                        self.run_batch(batch);
                    }
                },
            );
            debug_assert!(ran.is_ok(), "a plain request always fits in the end");
        }
        keeps
    }

    /// Runs jobs of one shipped program in one of its workers.
    fn run_batch(&self, jobs: Vec<NodeJob>) {
        let (live, skipped): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| !self.skip(j));
        for job in skipped {
            job.out.end();
            self.active.done();
        }
        let Some(program) = live.first().and_then(|j| j.program.clone()) else {
            return;
        };
        let ran = {
            let _running = self.meters.running();
            program.run_batch(&live, &self.isolated, |i, result, exec_ns| {
                self.report(&live[i], result, exec_ns)
            })
        };
        let unrun = ran.err().unwrap_or(live.len());
        for job in &live[unrun.min(live.len())..] {
            job.out.give_back(job.id, job.attempt);
        }
        for job in live {
            job.out.end();
            self.active.done();
        }
    }

    /// Whether `job` is not to run (its client left, cancelled it, or the
    /// node drains or is over `--max-memory`: then it is given back);
    /// counted as such.
    fn skip(&self, job: &NodeJob) -> bool {
        let skip = self.skips(job);
        if skip {
            if let Some(j) = &job.journal {
                j.runs.dropped(&j.run, &j.key);
            }
        }
        skip
    }

    /// [`Node::skip`]'s reasons.
    fn skips(&self, job: &NodeJob) -> bool {
        if job.abandoned() {
            true // nobody is waiting for it any more
        } else if job.out.cancelled(job.id) {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
            job.out.skipped(job.id);
            true
        } else if self.draining() {
            job.out.give_back(job.id, job.attempt);
            true
        } else if !self.memory.may_start(&job.held) {
            // Its result would only add to a full node (results waiting for
            // clients that do not read them, say): back to the client.
            self.refused_memory.fetch_add(1, Ordering::Relaxed);
            job.out.give_back(job.id, job.attempt);
            true
        } else {
            false
        }
    }

    /// Counts a job's outcome and sends it to its client.
    fn report(&self, job: &NodeJob, result: Result<ByteBuf, JobError>, exec_ns: u64) {
        let result = result.map_err(|e| e.on(&self.node_id, job.attempt));
        self.done.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let done = DoneJob {
            id: job.id,
            attempt: job.attempt,
            result,
            exec_ns,
            kept: None,
        };
        if let Some(j) = &job.journal {
            j.runs.finished(&j.run, &j.key, &done);
        }
        job.out.finished(done);
    }

    /// Why `request` (from a peer) can never run here, if it cannot: it
    /// does not check, or it does not fit the offer.
    fn never_fits(&self, request: &ppcore::resources::Request) -> Option<String> {
        let offer = self.slots.offer();
        let short = match request.check() {
            Err(e) => e.to_string(),
            Ok(()) => offer.covers(request).err()?,
        };
        Some(format!(
            "request {request} cannot run on node {}: it offers {offer} (short of {short})",
            self.node_id
        ))
    }

    /// Runs one job on this worker thread, once its request fits (waiting
    /// here), and sends its result.
    pub(crate) fn run(&self, job: NodeJob) {
        let request = job.request.clone();
        let mut job = Some(job);
        let ran = self.slots.run(
            request.as_deref(),
            || self.draining(),
            || {
                if let Some(job) = job.take() {
                    self.run_held(job);
                }
            },
        );
        if let (Err(why), Some(job)) = (ran, job) {
            let err = match why {
                ppcore::slots::NotRun::Never(short) => {
                    JobError::new(ErrorKind::Unsatisfiable, short)
                }
                ppcore::slots::NotRun::Stopped => {
                    job.out.give_back(job.id, job.attempt);
                    job.out.end();
                    self.active.done();
                    return;
                }
            };
            self.report(&job, Err(err), 0);
            job.out.end();
            self.active.done();
        }
    }

    /// Runs one job on this worker thread (what it asked for held) and
    /// sends its result.
    fn run_held(&self, mut job: NodeJob) {
        if !self.skip(&job) {
            let _running = self.meters.running();
            let started = Instant::now();
            let result = match (&job.program, self.config.isolation) {
                (Some(program), _) => program.run(&job, &self.isolated),
                (None, Isolation::Thread) => {
                    let args = std::mem::take(&mut job.args).into_vec();
                    // The job may read only the shared values it named.
                    ppcore::shared::scope(&job.shared, || (job.run)(args)).map(ByteBuf::from)
                }
                (None, Isolation::Process) => self.isolated.run(&job),
            };
            let exec_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.report(&job, result, exec_ns);
        }
        job.out.end();
        self.active.done();
        tracing::debug!(id = job.id, "job ended");
    }

    /// The client cancelled job `id`: skip it if it has not started; in
    /// isolation mode, kill its worker process if it is running.
    pub(crate) fn cancel(&self, out: &Arc<Conn>, id: u64) {
        out.cancel(id);
        if self.isolated.kill(Arc::as_ptr(out) as usize, id) {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until no job runs or is queued, or `grace` passes; true if quiet.
    pub(crate) fn wait_quiet(&self, grace: Duration) -> bool {
        self.active
            .wait_zero(Some(ppcore::limits::deadline(Instant::now(), grace)))
    }

    pub(crate) fn welcome(&self) -> NodeMsg {
        NodeMsg::Welcome {
            node_id: self.node_id.clone(),
            version: crate::config::VERSION.to_owned(),
            workers: self.config.workers as u32,
            jobs: self.jobs.clone(),
            heartbeat_ms: 0,
            caps: vec![ppcore::wire::CAP_SHIP.to_owned()],
            max_payload: self.config.max_payload,
            // Set by each connection's link from its config.
            credit_jobs: 0,
            credit_bytes: 0,
            shared_max: self.config.shared_max,
            reach: self.config.reach(),
            offer: Some(self.slots.offer()),
        }
    }

    pub(crate) fn status(&self) -> NodeStatus {
        let programs = self.programs.counts();
        let (shared_values, shared_bytes) = {
            let store = self.lock_shared();
            (store.len() as u64, store.used())
        };
        let peers = &self.peers.counts;
        let (runs, run_jobs) = self.runs.counts();
        let (cpus_in_use, memory_in_use, resources_in_use) = self.slots.in_use();
        NodeStatus {
            version: crate::config::VERSION.to_owned(),
            workers: self.config.workers as u32,
            jobs: self.jobs.clone(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            connections: self.lock_conns().open.len() as u32,
            jobs_done: self.done.load(Ordering::Relaxed),
            jobs_failed: self.failed.load(Ordering::Relaxed),
            jobs_active: self.active.get() as u64,
            jobs_cancelled: self.cancelled.load(Ordering::Relaxed),
            programs_uploaded: programs.uploaded,
            programs_cached: programs.cached,
            program_workers: programs.workers,
            programs_waiting: programs.waiting,
            program_cache: programs.cache,
            program_refused: programs.refused,
            shared_values,
            shared_bytes,
            shared_received: self.shared_received.load(Ordering::Relaxed),
            kept_values: self.meters.kept_values.load(Ordering::Relaxed),
            kept_bytes: self.meters.kept_bytes.load(Ordering::Relaxed),
            jobs_waiting: self.meters.jobs_waiting.load(Ordering::Relaxed),
            transfers_in: peers.pulls.load(Ordering::Relaxed),
            transfer_in_bytes: peers.pull_bytes.load(Ordering::Relaxed),
            transfers_out: peers.served.load(Ordering::Relaxed),
            transfer_out_bytes: peers.served_bytes.load(Ordering::Relaxed),
            spilled_bytes: self.spill.used(),
            spill_reads: self.spill.reads(),
            runs,
            run_jobs,
            offer: Some(self.slots.offer()),
            cpus_in_use,
            memory_in_use,
            resources_in_use,
        }
    }

    /// How a pull fetches from a peer: the cluster's keys, the node's
    /// timeouts and frame size, and at most `room` bytes.
    pub(crate) fn fetch_limits(&self, room: u64) -> Option<crate::peer::FetchLimits> {
        Some(crate::peer::FetchLimits {
            keys: self.config.keys.clone()?,
            connect: self.config.handshake_timeout,
            stall: self.config.stream_stall,
            max_frame: self.config.max_frame,
            max: room.min(self.config.max_payload),
        })
    }
}
