//! Shipped programs on a node: answering offers, taking uploads into the
//! cache, and running each program as worker processes that speak the
//! isolation protocol (`ppcore::worker`), started from the cached file.
//!
//! Nothing runs unless its hash matched: a program comes from the cache
//! (files named by hash, written only through a verified upload). Workers
//! are started on demand, kept while busy, and end after `--program-idle`
//! without a job. A worker that dies costs its job (`Crashed`, the client's
//! retry policy decides), exactly as in isolation mode.
//!
//! Bounds: one upload per program at a time on the node (and one per
//! connection); an offer of a program another connection uploads, or that
//! is starting, is an entry in [`waiting::Waiting`] (no thread): told when
//! that upload or start ends, dropped when its connection closes. A program
//! is started by one thread however many connections offer it, and that
//! thread ends within the worker's 20 s to say hello. Starting retries a
//! busy file (`ETXTBSY`) at most `program::BUSY_TRIES` times (about half a second).

use crate::cache::{ProgramCache, Slot};
use ppcore::program::{answer_offer, NodeCaps, OfferAnswer, ProgramId, ProgramInfo};
use ppcore::sync::lock;
use ppcore::upload::Receiver;
use ppcore::wire::JobInfo;
use program::{Program, Spawner};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use waiting::{Waiter, Waiting};

pub(crate) mod program;
pub(crate) mod waiting;

/// What a waiter is told when another connection's upload failed.
const SHARED_UPLOAD_FAILED: &str = "another client's upload of this program failed; offer it again";

/// What to do about an offer.
pub(crate) enum Decision {
    /// Tell the client this answer. After `Have`, the program's jobs (or
    /// why not) come to the connection as `ConnIn::Program`.
    Answer(OfferAnswer),
    /// Tell the client `Need`, then take its chunks into this receiver.
    Upload(Box<Upload>),
}

/// One upload under way on a connection.
pub(crate) type Upload = Receiver<Slot>;

/// Every shipped program of a node.
pub(crate) struct Programs {
    cache: Result<Arc<ProgramCache>, String>,
    caps: NodeCaps,
    idle: Duration,
    known: Mutex<HashMap<ProgramId, Arc<Program>>>,
    /// Connections waiting for an upload or a start (no thread each).
    waiting: Mutex<Waiting<Arc<dyn Waiter>>>,
    uploaded: AtomicU64,
    cached: AtomicU64,
    workers: Arc<AtomicU64>,
    reaper: Mutex<bool>,
    /// The node's `--max-payload`, which program workers are started with.
    max_payload: u64,
    /// The last reason this node gave for not running a program.
    refused: Mutex<Option<String>>,
}

/// The node's counters of programs, for its status.
pub(crate) struct ProgramCounts {
    pub(crate) uploaded: u64,
    pub(crate) cached: u64,
    pub(crate) workers: u64,
    /// Connections waiting for another's upload, or for a program's start.
    pub(crate) waiting: u64,
    /// The cache's directory, or why there is none.
    pub(crate) cache: String,
    /// The last reason the node gave for not running a program.
    pub(crate) refused: Option<String>,
}

impl Programs {
    /// Programs cached in `dir` (none if `dir` is `None` or not writable:
    /// every offer is then refused with the reason); `own`: the node's own
    /// directory, not one given (`cache::own_dir`).
    pub(crate) fn new(
        dir: Option<PathBuf>,
        own: bool,
        caps: NodeCaps,
        idle: Duration,
        max_payload: u64,
    ) -> Self {
        let cache = match dir {
            None => Err("no cache directory (give --cache-dir, or set HOME)".to_owned()),
            Some(dir) => ProgramCache::open(dir.clone(), caps.cache_max, own).map_err(|e| {
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
            waiting: Mutex::new(Waiting::default()),
            uploaded: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            workers: Arc::new(AtomicU64::new(0)),
            reaper: Mutex::new(false),
            max_payload,
            refused: Mutex::new(None),
        }
    }

    pub(crate) fn counts(&self) -> ProgramCounts {
        ProgramCounts {
            uploaded: self.uploaded.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            workers: self.workers.load(Ordering::Relaxed),
            waiting: lock(&self.waiting).waiters() as u64,
            cache: match &self.cache {
                Ok(cache) => cache.dir().display().to_string(),
                Err(why) => why.clone(),
            },
            refused: lock(&self.refused).clone(),
        }
    }

    /// Notes why the node did not run a program (for its status).
    pub(crate) fn note_refusal(&self, reason: &str) {
        *lock(&self.refused) = Some(reason.to_owned());
    }

    /// Decides on an offer from connection `conn` (`who`): refuse, have
    /// (the program is here, or another connection sends it now: `who` is
    /// told when it is ready), or take an upload.
    pub(crate) fn offer(
        self: &Arc<Self>,
        info: &ProgramInfo,
        now: Instant,
        conn: u64,
        who: &Arc<dyn Waiter>,
    ) -> Decision {
        let decision = self.decide(info, now, conn, who);
        if let Decision::Answer(OfferAnswer::Refuse(why)) = &decision {
            self.note_refusal(why);
        }
        decision
    }

    fn decide(
        self: &Arc<Self>,
        info: &ProgramInfo,
        now: Instant,
        conn: u64,
        who: &Arc<dyn Waiter>,
    ) -> Decision {
        let cache = match &self.cache {
            Ok(cache) => cache,
            Err(why) if self.caps.uploads => {
                return Decision::Answer(OfferAnswer::Refuse(format!(
                    "this node cannot store programs: {why}"
                )))
            }
            Err(_) => return Decision::Answer(answer_offer(info, &self.caps, false, |_| true)),
        };
        let id = info.id;
        let cached = cache.get(&id);
        let has_file = |p: &str| Path::new(p).exists();
        match answer_offer(info, &self.caps, cached.is_some(), has_file) {
            OfferAnswer::Have => {
                self.cached.fetch_add(1, Ordering::Relaxed);
                if let Some(path) = cached {
                    self.start(id, path, conn, who);
                }
                Decision::Answer(OfferAnswer::Have)
            }
            OfferAnswer::Need => {
                // Another connection uploads or starts it: wait for that.
                let mut waiting = lock(&self.waiting);
                if waiting.wait(id, conn, Arc::clone(who)) {
                    return Decision::Answer(OfferAnswer::Have);
                }
                waiting.upload(id);
                drop(waiting);
                // Stored (by another node sharing the directory) since we looked?
                if let Some(path) = cache.get(&id) {
                    self.cached.fetch_add(1, Ordering::Relaxed);
                    self.start(id, path, conn, who);
                    return Decision::Answer(OfferAnswer::Have);
                }
                let weak = Arc::downgrade(self);
                let abandoned = Box::new(move || {
                    if let Some(programs) = weak.upgrade() {
                        programs.upload_abandoned(&id);
                    }
                });
                match cache.reserve(id, info.size, abandoned) {
                    Ok(slot) => Decision::Upload(Box::new(Receiver::new(id, info.size, slot, now))),
                    Err(e) => {
                        self.upload_abandoned(&id);
                        Decision::Answer(OfferAnswer::Refuse(format!(
                            "this node cannot store the program: {e}"
                        )))
                    }
                }
            }
            other => Decision::Answer(other),
        }
    }

    /// An upload ended unfinished: whoever waited for it is told.
    fn upload_abandoned(&self, id: &ProgramId) {
        let waiters = lock(&self.waiting).upload_failed(id);
        for who in waiters {
            who.program(*id, Err(SHARED_UPLOAD_FAILED.to_owned()));
        }
    }

    /// Ends a complete upload of connection `conn`: verified, into the
    /// cache, and started (`who` is told its jobs).
    pub(crate) fn finish(
        self: &Arc<Self>,
        upload: Upload,
        conn: u64,
        who: &Arc<dyn Waiter>,
    ) -> Result<(), String> {
        let id = upload.id();
        let slot = upload
            .finish()
            .map_err(|e| format!("upload refused: {e}"))?;
        let path = slot
            .commit()
            .map_err(|e| format!("cannot store the program: {e}"))?;
        self.uploaded.fetch_add(1, Ordering::Relaxed);
        self.start(id, path, conn, who);
        Ok(())
    }

    /// Connection `conn` closed: it waits for nothing any more.
    pub(crate) fn forget(&self, conn: u64) {
        lock(&self.waiting).forget(conn);
    }

    /// Gets program `id` (its file at `path`) ready to run, once however
    /// many connections ask: `who` is told its jobs, or why not.
    fn start(self: &Arc<Self>, id: ProgramId, path: PathBuf, conn: u64, who: &Arc<dyn Waiter>) {
        let known = lock(&self.known).get(&id).map(|p| p.jobs.clone());
        if let Some(jobs) = known {
            // It runs here already: this connection and any that waited for
            // this upload hear now (no lock held while they are told).
            if lock(&self.waiting).start(id, conn, Arc::clone(who)) {
                self.started(id, Ok(jobs));
            }
            return;
        }
        if !lock(&self.waiting).start(id, conn, Arc::clone(who)) {
            return; // started already: `who` hears with the others
        }
        let programs = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("pp-program-start".into())
            .spawn(move || programs.started(id, programs.launch(id, path)));
        if let Err(e) = spawned {
            self.started(id, Err(format!("cannot start the program: {e}")));
        }
    }

    /// The start of `id` ended: everyone waiting for it hears how.
    fn started(&self, id: ProgramId, jobs: Result<Vec<JobInfo>, String>) {
        if let Err(why) = &jobs {
            self.note_refusal(why);
        }
        let waiters = lock(&self.waiting).started(&id);
        for who in waiters {
            who.program(id, jobs.clone());
        }
    }

    /// Starts the first worker of program `id` from `path` (its jobs listed).
    /// Blocks: runs on the start's own thread.
    fn launch(self: &Arc<Self>, id: ProgramId, path: PathBuf) -> Result<Vec<JobInfo>, String> {
        let cache = self.cache.as_ref().map_err(Clone::clone)?;
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
