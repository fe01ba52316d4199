//! A queued job, type-erased so that one queue holds jobs of every type, and
//! what it takes to run one locally or hand it to a node.

use crate::handle::Cell;
use crate::timer::{Expire, Timer};
use ppcore::{ErrorKind, Job, JobError, NodeCounters};
use serde_bytes::ByteBuf;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The name the local pool goes by in errors and stats.
pub(crate) const LOCAL: &str = "local";

/// What running a job needs besides the job itself.
pub(crate) struct RunCtx {
    pub(crate) local: NodeCounters,
    timer: OnceLock<Timer>,
    stopping: AtomicBool,
    /// The largest arguments a node can be sent.
    max_payload: usize,
}

impl RunCtx {
    pub(crate) fn new(max_frame: usize) -> Self {
        RunCtx {
            local: NodeCounters::default(),
            timer: OnceLock::new(),
            stopping: AtomicBool::new(false),
            max_payload: ppcore::wire::max_payload(max_frame),
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Arranges for `cell` to time out after `timeout`. The timer thread is
    /// started on first use: most programs never set a timeout.
    fn arm<T: Send + 'static>(&self, cell: &Arc<Cell<T>>, timeout: Duration) {
        let timer = match self.timer.get() {
            Some(t) => t,
            None => match Timer::start() {
                Ok(t) => self.timer.get_or_init(|| t),
                Err(_) => return,
            },
        };
        let cell: Arc<dyn Expire> = cell.clone();
        timer.schedule(Instant::now() + timeout, Arc::downgrade(&cell));
    }
}

/// A job to start on a node.
pub(crate) struct Dispatch {
    pub(crate) attempt: u32,
    pub(crate) args: ByteBuf,
}

/// A job waiting in the queue.
pub(crate) trait Task: Send {
    /// The job's id.
    fn id(&self) -> u64;
    /// The job's name and signature.
    fn job(&self) -> (&'static str, &'static str);
    /// Runs the job on this thread and resolves its handle.
    fn run_local(self: Box<Self>, ctx: &RunCtx);
    /// Marks the job running on a node and encodes its arguments; `None` if
    /// it ended meanwhile (cancelled) or cannot be encoded (then resolved).
    fn dispatch(&mut self, ctx: &RunCtx) -> Option<Dispatch>;
    /// Takes a node's answer: resolves the handle, or, if the job failed in a
    /// way it may be retried for, returns it to be queued again.
    fn complete(
        self: Box<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
    ) -> Option<Box<dyn Task>>;
    /// Puts a dispatched job back in line; `lost` counts against its retries.
    /// `None` if it ended meanwhile or its retries ran out (then resolved).
    fn retry(self: Box<Self>, node: &str, lost: bool) -> Option<Box<dyn Task>>;
    /// Resolves the handle with `err` without running the job.
    fn abandon(self: Box<Self>, err: JobError);
    /// Whether the job ended while on a node (timed out, cancelled).
    fn ended(&self) -> bool;
}

/// The queue item for job `J`.
pub(crate) struct TypedTask<J: Job> {
    pub(crate) id: u64,
    pub(crate) args: J::Args,
    pub(crate) cell: Arc<Cell<J::Output>>,
    pub(crate) attempt: u32,
    /// Node losses this job may meet before it fails with `NodeLost`.
    pub(crate) max_losses: u16,
    /// Worker-process crashes it may cause before it fails with `Crashed`.
    pub(crate) max_crashes: u16,
    /// What few jobs need, boxed so that queued jobs stay small.
    pub(crate) extra: Option<Box<Extra>>,
    pub(crate) job: PhantomData<fn() -> J>,
}

/// The rarely used part of a queued job.
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
    fn timeout(&self) -> Option<Duration> {
        self.extra.as_ref().and_then(|e| e.timeout)
    }

    /// Uses up one retry after a job failure, if any is left.
    fn take_failure_retry(&mut self) -> bool {
        take_failure_retry(&mut self.extra, self.cell.tracker())
    }

    /// Puts a job that was on a node back in line, unless it ended meanwhile.
    fn back_in_line(self: Box<Self>) -> Option<Box<dyn Task>> {
        if !self.cell.requeue() {
            return None; // it ended meanwhile (timed out, cancelled)
        }
        Some(self)
    }
}

/// Uses up one of `extra`'s retries after a job failure, if any is left.
fn take_failure_retry(extra: &mut Option<Box<Extra>>, tracker: &crate::tracker::Tracker) -> bool {
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
/// arguments are then kept encoded: they need not be `Clone`).
fn run_here<J: Job>(
    args: J::Args,
    cell: &Cell<J::Output>,
    attempt: &mut u32,
    extra: &mut Option<Box<Extra>>,
    ctx: &RunCtx,
) -> Result<J::Output, JobError> {
    let retries = extra.as_ref().map_or(0, |e| e.failure_retries);
    let kept = match retries {
        0 => None,
        _ => Some(ppcore::encode(&args)?),
    };
    let mut args = Some(args);
    loop {
        let this = match (args.take(), &kept) {
            (Some(a), _) => a,
            (None, Some(bytes)) => ppcore::decode::<J::Args>(bytes)?,
            (None, None) => unreachable!("a retry without kept arguments"),
        };
        let started = Instant::now();
        let result = ppcore::run_caught::<J>(this).map_err(|e| e.on(LOCAL, *attempt));
        ctx.local.record(started.elapsed(), result.is_err());
        match result {
            Err(e) if is_job_failure(&e) && take_failure_retry(extra, cell.tracker()) => {
                *attempt += 1;
            }
            result => return result,
        }
    }
}

impl<J: Job> Task for TypedTask<J> {
    fn id(&self) -> u64 {
        self.id
    }

    fn job(&self) -> (&'static str, &'static str) {
        (J::NAME, J::SIGNATURE)
    }

    fn run_local(mut self: Box<Self>, ctx: &RunCtx) {
        if ctx.stopping() {
            return self.abandon(shutdown_error());
        }
        if !self.cell.start() {
            return; // cancelled while queued
        }
        self.attempt += 1;
        if let Some(timeout) = self.timeout() {
            ctx.arm(&self.cell, timeout);
        }
        let TypedTask {
            args,
            cell,
            mut attempt,
            mut extra,
            ..
        } = *self;
        let result = run_here::<J>(args, &cell, &mut attempt, &mut extra, ctx);
        cell.finish(result);
    }

    fn dispatch(&mut self, ctx: &RunCtx) -> Option<Dispatch> {
        if !self.cell.start_remote() {
            return None;
        }
        let encoded = ppcore::encode(&self.args).and_then(|args| match args.len() {
            n if n > ctx.max_payload => Err(JobError::new(
                ErrorKind::Codec,
                format!(
                    "arguments of {n} bytes are over the {}-byte frame limit",
                    ctx.max_payload
                ),
            )),
            _ => Ok(args),
        });
        match encoded {
            Ok(args) => {
                self.attempt += 1;
                if let Some(timeout) = self.timeout() {
                    ctx.arm(&self.cell, timeout);
                }
                Some(Dispatch {
                    attempt: self.attempt,
                    args: ByteBuf::from(args),
                })
            }
            Err(e) => {
                self.cell.finish(Err(e));
                None
            }
        }
    }

    fn complete(
        mut self: Box<Self>,
        result: Result<ByteBuf, JobError>,
        node: &str,
    ) -> Option<Box<dyn Task>> {
        match result {
            Err(e) if e.kind == ErrorKind::Crashed => self.crashed(e),
            Err(e) if is_job_failure(&e) && self.take_failure_retry() => self.back_in_line(),
            result => {
                let result = result.and_then(|bytes| {
                    ppcore::decode::<J::Output>(&bytes).map_err(|e| e.on(node, self.attempt))
                });
                self.cell.finish(result);
                None
            }
        }
    }

    fn retry(mut self: Box<Self>, node: &str, lost: bool) -> Option<Box<dyn Task>> {
        let extra = self.extra.get_or_insert_with(Default::default);
        if lost {
            extra.lost_on.push(node.to_owned());
        }
        let lost_on = &extra.lost_on;
        if lost_on.len() >= usize::from(self.max_losses.max(1)) {
            let err = JobError::new(
                ErrorKind::NodeLost,
                format!(
                    "lost {} node(s) while they ran the job: {}",
                    lost_on.len(),
                    lost_on.join(", ")
                ),
            )
            .on(node, self.attempt);
            self.cell.finish(Err(err));
            return None;
        }
        self.cell.tracker().retried.fetch_add(1, Ordering::Relaxed);
        self.back_in_line()
    }

    fn abandon(self: Box<Self>, err: JobError) {
        self.cell.finish(Err(err));
    }

    fn ended(&self) -> bool {
        self.cell.ended()
    }
}

impl<J: Job> TypedTask<J> {
    /// The job crashed a node's worker process: back in line unless it has
    /// done so too often (a poison job), then resolved with `err`.
    fn crashed(mut self: Box<Self>, err: JobError) -> Option<Box<dyn Task>> {
        let extra = self.extra.get_or_insert_with(Default::default);
        extra.crashes += 1;
        if extra.crashes >= self.max_crashes.max(1) {
            let message = format!(
                "{} (crashed {} time(s); not retried)",
                err.message, extra.crashes
            );
            self.cell.finish(Err(JobError { message, ..err }));
            return None;
        }
        self.cell.tracker().retried.fetch_add(1, Ordering::Relaxed);
        self.back_in_line()
    }
}

pub(crate) fn shutdown_error() -> JobError {
    JobError::new(
        ErrorKind::Shutdown,
        "the server was dropped before the job ran",
    )
}
