//! A queued job, type-erased so that one queue holds jobs of every type.

use crate::handle::Cell;
use crate::timer::{Expire, Timer};
use ppcore::{ErrorKind, Job, JobError, NodeCounters};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The name the local pool goes by in errors and stats.
pub(crate) const LOCAL: &str = "local";

/// What a worker needs besides the job itself.
pub(crate) struct LocalCtx {
    pub(crate) counters: NodeCounters,
    pub(crate) timer: OnceLock<Timer>,
    pub(crate) stopping: std::sync::atomic::AtomicBool,
}

impl LocalCtx {
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The timer, started on first use: most programs never set a timeout.
    pub(crate) fn timer(&self) -> Option<&Timer> {
        if let Some(t) = self.timer.get() {
            return Some(t);
        }
        match Timer::start() {
            Ok(t) => Some(self.timer.get_or_init(|| t)),
            Err(_) => None,
        }
    }
}

/// A job waiting in the queue.
pub(crate) trait Task: Send {
    /// Runs the job on this thread and resolves its handle.
    fn run_local(self: Box<Self>, ctx: &LocalCtx);
    /// Resolves the handle with `err` without running the job.
    fn abandon(self: Box<Self>, err: JobError);
}

/// The queue item for job `J`.
pub(crate) struct TypedTask<J: Job> {
    pub(crate) args: J::Args,
    pub(crate) cell: Arc<Cell<J::Output>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) job: PhantomData<fn() -> J>,
}

impl<J: Job> Task for TypedTask<J> {
    fn run_local(self: Box<Self>, ctx: &LocalCtx) {
        if ctx.stopping() {
            return self.abandon(shutdown_error());
        }
        if !self.cell.start() {
            return; // cancelled while queued
        }
        if let Some(timeout) = self.timeout {
            if let Some(timer) = ctx.timer() {
                let cell: Arc<dyn Expire> = self.cell.clone();
                timer.schedule(Instant::now() + timeout, Arc::downgrade(&cell));
            }
        }
        let started = Instant::now();
        let result = ppcore::run_caught::<J>(self.args).map_err(|e| e.on(LOCAL, 1));
        ctx.counters.record(started.elapsed(), result.is_err());
        self.cell.finish(result);
    }

    fn abandon(self: Box<Self>, err: JobError) {
        self.cell.finish(Err(err));
    }
}

pub(crate) fn shutdown_error() -> JobError {
    JobError::new(
        ErrorKind::Shutdown,
        "the server was dropped before the job ran",
    )
}
