//! A job, type-erased so that one queue holds jobs of every type, and what it
//! takes to run one locally or hand it to a node.
//!
//! A job is one allocation: its arguments, its bookkeeping and its result
//! cell live together, shared by the queue (or a node's ledger) and the
//! caller's handle. Whoever holds it in the queue or ledger owns the run.

use crate::jobs::cell::{expire, resolve, Cell, Holder};
use crate::jobs::recorder::LOCAL;
use crate::jobs::timer::{Expire, Timer};
use crate::jobs::tracker::Tracker;
use ppcore::{ErrorKind, Job, JobError, NodeCounters};
use serde_bytes::ByteBuf;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A kind of job, as the queue keeps them apart: its name and signature.
pub(crate) type JobKind = (&'static str, &'static str);

/// What running a job needs besides the job itself.
pub(crate) struct RunCtx {
    pub(crate) local: NodeCounters,
    timer: OnceLock<Timer>,
    stopping: AtomicBool,
    /// The largest arguments a node can be sent.
    max_payload: usize,
    /// The dashboard's recorder, when there is a dashboard.
    pub(crate) dash: OnceLock<Arc<crate::jobs::recorder::Recorder>>,
}

impl RunCtx {
    pub(crate) fn new(max_payload: u64) -> Self {
        RunCtx {
            local: NodeCounters::default(),
            timer: OnceLock::new(),
            stopping: AtomicBool::new(false),
            max_payload: usize::try_from(max_payload).unwrap_or(usize::MAX),
            dash: OnceLock::new(),
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Arranges for `job` to time out after `timeout`, if it has one. The
    /// timer thread is started on first use: most programs never set a timeout.
    pub(crate) fn arm(&self, job: Arc<dyn Expire>, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return;
        };
        let timer = match self.timer.get() {
            Some(t) => t,
            None => match Timer::start() {
                Ok(t) => self.timer.get_or_init(|| t),
                Err(_) => return,
            },
        };
        timer.schedule(
            ppcore::limits::deadline(Instant::now(), timeout),
            Arc::downgrade(&job),
        );
    }
}

/// A job to start on a node.
pub(crate) struct Dispatch {
    pub(crate) attempt: u32,
    pub(crate) args: ByteBuf,
    /// The shared values the arguments name: the node must hold them first.
    pub(crate) shared: Vec<Arc<ppcore::shared::SharedValue>>,
}

/// A job in the queue or on a node.
pub(crate) trait Task: Expire + Send + Sync {
    /// The job's id.
    fn id(&self) -> u64;
    /// The job's name and signature.
    fn job(&self) -> (&'static str, &'static str);
    /// Its timeout, counted from when it starts.
    fn timeout(&self) -> Option<Duration>;
    /// Runs the job on this thread and resolves its handle.
    fn run_local(self: Arc<Self>, ctx: &RunCtx);
    /// Marks the job running on a node and encodes its arguments. `Err(None)`
    /// if it ended meanwhile (cancelled); `Err(Some(e))` if it cannot be sent:
    /// the caller then abandons it with `e`. `now` is when the batch it
    /// belongs to was taken (one clock read per batch, not per job).
    fn dispatch(&self, ctx: &RunCtx, now: Instant) -> Result<Dispatch, Option<JobError>>;
    /// Takes a node's answer: resolves the handle, or, if the job failed in a
    /// way it may be retried for, returns it to be queued again.
    fn complete(
        self: Arc<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
    ) -> Option<Arc<dyn Task>>;
    /// Puts a dispatched job back in line; `lost` counts against its retries.
    /// `None` if it ended meanwhile or its retries ran out (then resolved).
    fn retry(self: Arc<Self>, node: &str, lost: bool) -> Option<Arc<dyn Task>>;
    /// Resolves the handle with `err` without running the job.
    fn abandon(self: Arc<Self>, err: JobError);
    /// Whether the job ended while on a node (timed out, cancelled).
    fn ended(&self) -> bool;
    /// Its group's identity, if it has one.
    fn group(&self) -> Option<usize>;
    /// Cancels it if it is queued or on a node (`Server::cancel_all`,
    /// `cancel_group`); true if this call did.
    fn cancel(self: Arc<Self>) -> bool;
}

/// Whether `task` is one that `Server::cancel_group(g)` (`Some(g)`) or
/// `cancel_all` (`None`) is after.
pub(crate) fn in_group(task: &Arc<dyn Task>, group: Option<usize>) -> bool {
    group.is_none_or(|g| task.group() == Some(g))
}

/// Job `J`: its result cell and what it takes to run it.
pub(crate) struct TypedTask<J: Job> {
    id: u64,
    cell: Cell<J::Output>,
    /// When it was submitted, for the queue-wait statistic.
    submitted: Instant,
    /// Node losses this job may meet before it fails with `NodeLost`.
    max_losses: u16,
    /// Worker-process crashes it may cause before it fails with `Crashed`.
    max_crashes: u16,
    run: Mutex<Run<J>>,
    job: PhantomData<fn() -> J>,
}

/// The part of a job that changes as it runs.
struct Run<J: Job> {
    /// Taken by a local run; kept (for retries) while on a node.
    args: Option<J::Args>,
    attempt: u32,
    /// What few jobs need, boxed so that queued jobs stay small.
    extra: Option<Box<Extra>>,
    /// Its arguments' share of the client's byte budget, until a worker
    /// or a node's link takes the job.
    permit: Option<ppcore::budget::Permit>,
}

/// The rarely used part of a job.
#[derive(Default)]
pub(crate) struct Extra {
    pub(crate) timeout: Option<Duration>,
    /// Nodes lost while they ran this job.
    pub(crate) lost_on: Vec<String>,
    /// Worker processes it crashed.
    pub(crate) crashes: u16,
    /// Runs left after the job returns an error or panics.
    pub(crate) failure_retries: u16,
}

/// Whether a job's own failure (not the system's) may be retried.
fn is_job_failure(e: &JobError) -> bool {
    matches!(e.kind, ErrorKind::Failed | ErrorKind::Panicked)
}

impl<J: Job> TypedTask<J> {
    pub(crate) fn new(
        id: u64,
        args: J::Args,
        cell: Cell<J::Output>,
        (max_losses, max_crashes): (u16, u16),
        extra: Option<Box<Extra>>,
    ) -> Self {
        TypedTask {
            id,
            cell,
            submitted: Instant::now(),
            max_losses,
            max_crashes,
            run: Mutex::new(Run {
                args: Some(args),
                attempt: 0,
                extra,
                permit: None,
            }),
            job: PhantomData,
        }
    }

    /// Holds `permit` until the job is taken.
    pub(crate) fn hold(&self, permit: ppcore::budget::Permit) {
        self.lock().permit = Some(permit);
    }

    /// Gives the arguments' share of the budget back (the job was taken, or
    /// ended); the waiters are woken with no lock of the job held.
    fn release(&self) {
        let permit = self.lock().permit.take();
        drop(permit);
    }

    fn lock(&self) -> MutexGuard<'_, Run<J>> {
        ppcore::sync::lock(&self.run)
    }

    /// Puts a job that was on a node back in line, unless it ended meanwhile.
    fn back_in_line(self: Arc<Self>) -> Option<Arc<dyn Task>> {
        if !self.cell.requeue() {
            return None; // it ended meanwhile (timed out, cancelled)
        }
        Some(self)
    }

    /// The job crashed a node's worker process: back in line unless it has
    /// done so too often (a poison job), then resolved with `err`.
    fn crashed(self: Arc<Self>, err: JobError) -> Option<Arc<dyn Task>> {
        let crashes = {
            let mut run = self.lock();
            let extra = run.extra.get_or_insert_with(Default::default);
            extra.crashes += 1;
            extra.crashes
        };
        if crashes >= self.max_crashes.max(1) {
            let message = format!("{} (crashed {crashes} time(s); not retried)", err.message);
            resolve(&self, Err(err.with_message(message)));
            return None;
        }
        self.cell.tracker().retried.fetch_add(1, Ordering::Relaxed);
        self.back_in_line()
    }
}

/// Uses up one of `extra`'s retries after a job failure, if any is left.
fn take_failure_retry(extra: &mut Option<Box<Extra>>, tracker: &Tracker) -> bool {
    match extra.as_mut() {
        Some(extra) if extra.failure_retries > 0 => {
            extra.failure_retries -= 1;
            tracker.retried.fetch_add(1, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}

/// Runs job `J` here, and again after a failure while retries are left (the
/// arguments are then kept encoded: they need not be `Clone`). The job's
/// lock is taken only for a moment before each rerun, never while it runs.
fn run_here<J: Job>(
    task: &TypedTask<J>,
    args: J::Args,
    ctx: &RunCtx,
    now: Instant,
) -> Result<J::Output, JobError> {
    // One clock read per run: this run's start is the last one's end.
    let mut started = now;
    let (retries, mut attempt) = {
        let run = task.lock();
        (
            run.extra.as_ref().map_or(0, |e| e.failure_retries),
            run.attempt,
        )
    };
    // The shared values the kept arguments name stay alive with them.
    let (kept, _named) = match retries {
        0 => (None, Vec::new()),
        _ => {
            let (kept, named) = ppcore::shared::collect(|| ppcore::encode_args::<J>(&args, 0));
            (Some(kept?), named)
        }
    };
    let mut args = Some(args);
    loop {
        let this = match (args.take(), &kept) {
            (Some(a), _) => a,
            (None, Some(bytes)) => J::read_args(bytes)?,
            (None, None) => {
                // Retries are counted before the run, so this cannot happen;
                // if it ever did, fail the job rather than the worker.
                return Err(JobError::new(
                    ErrorKind::Codec,
                    "no arguments kept for a retry",
                ));
            }
        };
        let dash = ctx.dash.get().inspect(|d| d.local_start());
        let result = ppcore::run_caught::<J>(this).map_err(|e| e.on(LOCAL, attempt));
        let ended = Instant::now();
        let took = ended - started;
        ctx.local.record(took, result.is_err());
        dash.inspect(|d| d.local_end(J::NAME, started, took, result.as_ref().err()));
        started = ended;
        match result {
            Err(e) if is_job_failure(&e) => {
                let mut run = task.lock();
                if !take_failure_retry(&mut run.extra, task.cell.tracker()) {
                    return Err(e);
                }
                run.attempt += 1;
                attempt = run.attempt;
            }
            result => return result,
        }
    }
}

impl<J: Job> Holder<J::Output> for TypedTask<J> {
    fn cell(&self) -> &Cell<J::Output> {
        &self.cell
    }
}

impl<J: Job> Expire for TypedTask<J> {
    fn expire(self: Arc<Self>) {
        expire(&self);
    }
}

impl<J: Job> Task for TypedTask<J> {
    fn id(&self) -> u64 {
        self.id
    }

    fn job(&self) -> (&'static str, &'static str) {
        (J::NAME, J::SIGNATURE)
    }

    fn timeout(&self) -> Option<Duration> {
        self.lock().extra.as_ref().and_then(|e| e.timeout)
    }

    fn run_local(self: Arc<Self>, ctx: &RunCtx) {
        self.release();
        if ctx.stopping() {
            return self.abandon(shutdown_error());
        }
        if !self.cell.start() {
            return; // cancelled while queued
        }
        let now = Instant::now();
        let (args, timeout) = {
            let mut run = self.lock();
            if run.attempt == 0 {
                self.cell.tracker().started(now - self.submitted);
            }
            run.attempt += 1;
            (run.args.take(), run.extra.as_ref().and_then(|e| e.timeout))
        };
        // The user's job runs with no lock held.
        ctx.arm(Arc::clone(&self) as Arc<dyn Expire>, timeout);
        let result = match args {
            Some(args) => run_here::<J>(&self, args, ctx, now),
            None => Err(JobError::new(
                ErrorKind::Codec,
                "the job's arguments are gone",
            )),
        };
        resolve(&self, result);
    }

    fn dispatch(&self, ctx: &RunCtx, now: Instant) -> Result<Dispatch, Option<JobError>> {
        // The arguments' measured size, while the permit still says it: the
        // encoding buffer is allocated once at its final size.
        let size = self
            .lock()
            .permit
            .as_ref()
            .map_or(0, |p| usize::try_from(p.bytes()).unwrap_or(0));
        self.release();
        if !self.cell.start_remote() {
            return Err(None);
        }
        // The arguments are encoded outside the lock: only the owner of the
        // job (the link that popped it) touches them meanwhile.
        let args = self.lock().args.take();
        let (encoded, shared) = match &args {
            Some(args) => ppcore::shared::collect(|| ppcore::encode_args::<J>(args, size)),
            None => (
                Err(JobError::new(
                    ErrorKind::Codec,
                    "the job's arguments are gone",
                )),
                Vec::new(),
            ),
        };
        let mut run = self.lock();
        run.args = args;
        let checked = encoded.and_then(|args| match args.len() {
            n if n > ctx.max_payload => Err(JobError::new(
                ErrorKind::Codec,
                format!(
                    "arguments of {n} bytes are over the {}-byte payload limit",
                    ctx.max_payload
                ),
            )),
            _ => Ok(args),
        });
        let args = checked.map_err(Some)?;
        if run.attempt == 0 {
            let waited = now.saturating_duration_since(self.submitted);
            self.cell.tracker().started(waited);
        }
        run.attempt += 1;
        Ok(Dispatch {
            attempt: run.attempt,
            args: ByteBuf::from(args),
            shared,
        })
    }

    fn complete(
        self: Arc<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
    ) -> Option<Arc<dyn Task>> {
        // One name per node: the address the user gave, not the node's own.
        let result = result.map_err(|e| {
            let a = e.attempt;
            e.on(node, a)
        });
        match result {
            Err(e) if e.kind == ErrorKind::Crashed => self.crashed(e),
            Err(e)
                if is_job_failure(&e)
                    && take_failure_retry(&mut self.lock().extra, self.cell.tracker()) =>
            {
                self.back_in_line()
            }
            result => {
                // The job is answered: the arguments kept for a rerun go
                // before the result is decoded (dropped outside the lock),
                // so a large payload is not held three times at once.
                let (attempt, kept) = {
                    let mut run = self.lock();
                    (run.attempt, run.args.take())
                };
                drop(kept);
                let result = result.and_then(|bytes| {
                    J::read_output_owned(bytes.into_vec()).map_err(|e| e.on(node, attempt))
                });
                resolve(&self, result);
                None
            }
        }
    }

    fn retry(self: Arc<Self>, node: &str, lost: bool) -> Option<Arc<dyn Task>> {
        let given_up = {
            let mut run = self.lock();
            let attempt = run.attempt;
            let extra = run.extra.get_or_insert_with(Default::default);
            if lost {
                extra.lost_on.push(node.to_owned());
            }
            let lost_on = &extra.lost_on;
            (lost_on.len() >= usize::from(self.max_losses.max(1))).then(|| {
                JobError::new(
                    ErrorKind::NodeLost,
                    format!(
                        "lost {} node(s) while they ran the job: {}",
                        lost_on.len(),
                        lost_on.join(", ")
                    ),
                )
                .on(node, attempt)
            })
        };
        if let Some(err) = given_up {
            resolve(&self, Err(err));
            return None;
        }
        self.cell.tracker().retried.fetch_add(1, Ordering::Relaxed);
        self.back_in_line()
    }

    fn abandon(self: Arc<Self>, err: JobError) {
        self.release();
        resolve(&self, Err(err));
    }

    fn group(&self) -> Option<usize> {
        self.cell.group_id()
    }

    fn cancel(self: Arc<Self>) -> bool {
        let err = JobError::new(
            ErrorKind::Cancelled,
            "cancelled by Server::cancel_all or cancel_group",
        );
        if !crate::jobs::cell::cancel(&self, err) {
            return false;
        }
        // Out of the queue for good: its budget and arguments go now, not
        // when the last handle is dropped.
        self.release();
        let args = self.lock().args.take();
        drop(args);
        true
    }

    fn ended(&self) -> bool {
        self.cell.ended()
    }
}

pub(crate) fn shutdown_error() -> JobError {
    JobError::new(
        ErrorKind::Shutdown,
        "the server was dropped before the job ran",
    )
}
