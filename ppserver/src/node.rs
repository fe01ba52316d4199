//! What every connection of a node shares: the registry, the job queue and
//! its workers, the counters, the open connections, and the shutdown state.

use crate::admission::{Admission, AdmissionLimits, Refused};
use crate::config::Isolation;
use crate::memory::{Held, Memory};
use crate::out::Conn;
use crate::Config;
use ppcore::wire::{DoneJob, JobInfo, NodeMsg, NodeStatus};
use ppcore::{ErrorKind, JobError, Lanes, Registry};
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A job waiting for a worker.
pub(crate) struct NodeJob {
    pub(crate) id: u64,
    pub(crate) attempt: u32,
    pub(crate) name: String,
    pub(crate) run: fn(&[u8]) -> Result<Vec<u8>, JobError>,
    pub(crate) args: ByteBuf,
    pub(crate) out: Arc<Conn>,
    /// Its bytes, counted against `--max-memory` while it waits or runs.
    _held: Held,
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
    queue: Lanes<NodeJob>,
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
    /// Jobs running in worker processes (isolation mode).
    isolated: crate::isolate::Running,
    /// `--max-memory`: queued arguments and unwritten results.
    pub(crate) memory: Arc<Memory>,
    /// Jobs handed back because the node was over `--max-memory`.
    pub(crate) refused_memory: AtomicU64,
    /// Counters only `--metrics` reads.
    pub(crate) meters: crate::metrics::Meters,
}

impl Node {
    pub(crate) fn new(config: Config, registry: Registry, queue: Lanes<NodeJob>) -> Self {
        let jobs = registry
            .entries()
            .map(|e| JobInfo {
                name: e.name.to_owned(),
                signature: e.signature.to_owned(),
            })
            .collect();
        let admission = Admission::new(AdmissionLimits {
            clients: config.max_connections,
            unauthenticated: config.max_unauthenticated,
            per_source: config.max_per_source,
        });
        let memory = Arc::new(Memory::new(config.max_memory));
        Node {
            node_id: config.node_id(),
            config,
            registry,
            jobs,
            queue,
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
            isolated: Default::default(),
            memory,
            refused_memory: AtomicU64::new(0),
            meters: Default::default(),
        }
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
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
            victim.refuse(why.to_string());
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
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// Forgets connection `id` (closed: see [`Conn::mark_closed`]) and, in
    /// isolation mode, kills the processes still running its jobs: nobody
    /// waits for them, and their slots are wanted.
    pub(crate) fn close(&self, id: u64) {
        let mut conns = self.lock_conns();
        let closed = conns.open.remove(&id);
        if closed.is_some() {
            conns.admission.close(id);
            self.open_conns.done();
        }
        let mut idle = self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        if conns.admission.clients() == 0 && idle.is_none() {
            *idle = Some(Instant::now());
        }
        drop(idle);
        drop(conns);
        if let Some(conn) = closed {
            if self.config.isolation == Isolation::Process {
                let killed = self.isolated.kill_conn(Arc::as_ptr(&conn) as usize);
                self.cancelled.fetch_add(killed, Ordering::Relaxed);
            }
        }
    }

    /// How long the node has had no authenticated client, if it has none.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        self.idle_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
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
    pub(crate) fn submit(&self, jobs: Vec<ppcore::wire::RunJob>, out: &Arc<Conn>) {
        let mut queued = Vec::with_capacity(jobs.len());
        for job in jobs {
            if self.draining() {
                out.give_back(job.id, job.attempt);
                continue;
            }
            let Some(entry) = self.registry.get(&job.name) else {
                let err = JobError::new(
                    ErrorKind::UnknownJob,
                    format!("node {} has no job named `{}`", self.node_id, job.name),
                );
                out.finished(DoneJob {
                    id: job.id,
                    attempt: job.attempt,
                    result: Err(err),
                    exec_ns: 0,
                });
                continue;
            };
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
            let job = NodeJob {
                _held: held,
                id: job.id,
                attempt: job.attempt,
                name: job.name,
                run: entry.run,
                args: job.args,
                out: Arc::clone(out),
            };
            queued.push(job);
        }
        if !queued.is_empty() {
            // Tests wait for this line (their nodes log this module at debug).
            tracing::debug!(jobs = queued.len(), "jobs queued");
        }
        self.queue.push_all(queued);
    }

    /// Runs one job on this worker thread and sends its result.
    pub(crate) fn run(&self, job: NodeJob) {
        if job.out.is_closed() {
            // Nobody is waiting for it any more.
        } else if job.out.cancelled(job.id) {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
            job.out.skipped(job.id);
        } else if self.draining() {
            job.out.give_back(job.id, job.attempt);
        } else {
            let _running = self.meters.running();
            let started = Instant::now();
            let result = match self.config.isolation {
                Isolation::Thread => (job.run)(&job.args).map(ByteBuf::from),
                Isolation::Process => self.isolated.run(&job),
            }
            .map_err(|e| e.on(&self.node_id, job.attempt));
            let exec_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.done.fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            job.out.finished(DoneJob {
                id: job.id,
                attempt: job.attempt,
                result,
                exec_ns,
            });
        }
        job.out.end();
        self.active.done();
        tracing::debug!(id = job.id, "job ended");
    }

    /// The client cancelled job `id`: skip it if it has not started; in
    /// isolation mode, kill its worker process if it is running.
    pub(crate) fn cancel(&self, out: &Arc<Conn>, id: u64) {
        out.cancel(id);
        if self.config.isolation == Isolation::Process
            && self.isolated.kill(Arc::as_ptr(out) as usize, id)
        {
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
            version: crate::VERSION.to_owned(),
            workers: self.config.workers as u32,
            jobs: self.jobs.clone(),
            heartbeat_ms: 0,
            caps: Vec::new(),
            max_payload: self.config.max_payload,
            // Set by each connection's link from its config.
            credit_jobs: 0,
            credit_bytes: 0,
        }
    }

    pub(crate) fn status(&self) -> NodeStatus {
        NodeStatus {
            version: crate::VERSION.to_owned(),
            workers: self.config.workers as u32,
            jobs: self.jobs.clone(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            connections: self.lock_conns().open.len() as u32,
            jobs_done: self.done.load(Ordering::Relaxed),
            jobs_failed: self.failed.load(Ordering::Relaxed),
            jobs_active: self.active.get() as u64,
            jobs_cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }
}
