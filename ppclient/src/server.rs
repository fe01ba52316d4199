//! `Server`: Parallel Python's `pp.Server` for Rust programs.

use crate::handle::{AsCompleted, Callback, Cell, JobHandle};
use crate::task::{shutdown_error, LocalCtx, Task, TypedTask, LOCAL};
use crate::tracker::{Pending, Tracker};
use crossbeam_channel::{Receiver, Sender};
use ppcore::{DuplicateJob, Job, JobError, Pool, Registry, Stats};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why a [`Server`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two linked jobs share a name.
    #[error(transparent)]
    DuplicateJob(#[from] DuplicateJob),
    /// A thread could not be started.
    #[error("could not start a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Configures a [`Server`]; from [`Server::builder`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    ncpus: Option<usize>,
    registry: Option<Registry>,
}

impl Builder {
    /// Local worker threads. Default: the CPUs this process may use
    /// (`available_parallelism`, which honours cgroup quotas and affinity).
    pub fn ncpus(mut self, n: usize) -> Self {
        self.ncpus = Some(n);
        self
    }

    /// The jobs this server may run, instead of every linked job.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Starts the server's threads.
    pub fn build(self) -> Result<Server, BuildError> {
        let registry = match self.registry {
            Some(r) => r,
            None => Registry::linked()?,
        };
        let ncpus = self.ncpus.unwrap_or_else(detect_ncpus);
        let (queue, queue_rx) = crossbeam_channel::unbounded::<Box<dyn Task>>();
        let local = Arc::new(LocalCtx {
            counters: Default::default(),
            timer: OnceLock::new(),
            stopping: Default::default(),
        });
        let ctx = Arc::clone(&local);
        let pool = Pool::start("pp-worker", ncpus, queue_rx.clone(), move |task| {
            Task::run_local(task, &ctx)
        });
        Ok(Server {
            tracker: Arc::new(Tracker::new()?),
            local,
            pool,
            queue,
            queue_rx,
            registry,
            groups: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            created: Instant::now(),
        })
    }
}

/// The CPUs this process may use; 1 if that cannot be told.
pub fn detect_ncpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How to run one job: callback, group, timeout. Passed to [`Server::submit_with`].
pub struct Options<T> {
    callback: Option<Callback<T>>,
    group: Option<String>,
    timeout: Option<Duration>,
}

impl<T> Default for Options<T> {
    fn default() -> Self {
        Options {
            callback: None,
            group: None,
            timeout: None,
        }
    }
}

impl<T> Options<T> {
    /// No callback, no group, no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f` with the job's result, on the server's callback thread,
    /// before the handle resolves. Keep it short: callbacks run one at a time.
    pub fn callback(mut self, f: impl FnOnce(&Result<T, JobError>) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Puts the job in group `name`, for [`Server::wait_group`].
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// Resolves the job with `TimedOut` if it runs longer than `timeout`
    /// (counted from when it starts). A local job cannot be stopped: it
    /// runs on, and its late result is dropped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Runs jobs on a local pool of worker threads.
///
/// Dropping the server resolves every job that has not started with
/// [`ErrorKind::Shutdown`](ppcore::ErrorKind::Shutdown); jobs already running
/// finish and resolve normally. Call [`Server::wait_all`] first to let
/// everything run.
pub struct Server {
    tracker: Arc<Tracker>,
    local: Arc<LocalCtx>,
    pool: Pool,
    queue: Sender<Box<dyn Task>>,
    queue_rx: Receiver<Box<dyn Task>>,
    registry: Registry,
    groups: Mutex<HashMap<String, Arc<Pending>>>,
    next_id: AtomicU64,
    created: Instant,
}

impl Server {
    /// A builder with the defaults: every linked job, `ncpus` auto-detected.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Submits `job` with `args` (a tuple) and returns its handle.
    pub fn submit<J: Job>(&self, job: J, args: J::Args) -> JobHandle<J::Output> {
        self.submit_with(job, args, Options::new())
    }

    /// Submits `job` with a callback, group or timeout.
    pub fn submit_with<J: Job>(
        &self,
        _job: J,
        args: J::Args,
        options: Options<J::Output>,
    ) -> JobHandle<J::Output> {
        let group = options.group.map(|name| self.group(name));
        let cell = Cell::new(Arc::clone(&self.tracker), group, options.callback);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tracker.submitted.fetch_add(1, Ordering::Relaxed);
        let handle = JobHandle::new(Arc::clone(&cell), id);
        let task = Box::new(TypedTask::<J> {
            args,
            cell,
            timeout: options.timeout,
            job: PhantomData,
        });
        if let Err(returned) = self.queue.send(task) {
            // Cannot happen while `self` holds the receiver; resolve rather than lose.
            returned.into_inner().abandon(shutdown_error());
        }
        handle
    }

    /// Submits `job` once per item of `args`; the results come back in input order.
    pub fn map<J: Job>(
        &self,
        job: J,
        args: impl IntoIterator<Item = J::Args>,
    ) -> impl Iterator<Item = Result<J::Output, JobError>> {
        let handles: Vec<_> = args.into_iter().map(|a| self.submit(job, a)).collect();
        handles.into_iter().map(JobHandle::wait)
    }

    /// Yields `(index, result)` for `handles` in the order they finish.
    pub fn as_completed<T: Send + 'static>(
        &self,
        handles: impl IntoIterator<Item = JobHandle<T>>,
    ) -> AsCompleted<T> {
        AsCompleted::new(handles.into_iter().collect())
    }

    /// Waits until every job of group `name` submitted so far has resolved.
    pub fn wait_group(&self, name: &str) {
        let group = self.lock_groups().get(name).cloned();
        if let Some(g) = group {
            g.wait_zero(None);
        }
    }

    /// Waits until every job submitted so far has resolved.
    pub fn wait_all(&self) {
        self.tracker.pending.wait_zero(None);
    }

    /// Like [`Server::wait_all`] but gives up after `timeout`; true if all resolved.
    pub fn wait_all_timeout(&self, timeout: Duration) -> bool {
        self.tracker
            .pending
            .wait_zero(Some(Instant::now() + timeout))
    }

    /// Local worker threads.
    pub fn ncpus(&self) -> usize {
        self.pool.workers()
    }

    /// Resizes the local pool; 0 stops local execution.
    pub fn set_ncpus(&self, n: usize) {
        self.pool.set_workers(n);
    }

    /// The jobs this server knows.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The statistics as data.
    pub fn stats(&self) -> Stats {
        let [submitted, succeeded, failed, cancelled, timed_out, shut_down] = self.tracker.counts();
        Stats {
            nodes: vec![self.local.counters.snapshot(LOCAL, self.ncpus())],
            elapsed: self.created.elapsed(),
            active: submitted - (succeeded + failed + cancelled + timed_out + shut_down),
            ncpus: self.ncpus(),
            submitted,
            succeeded,
            failed,
            cancelled,
            timed_out,
            shut_down,
            retried: self.tracker.retried.load(Ordering::Relaxed),
        }
    }

    /// Prints Parallel Python's statistics table to standard output.
    pub fn print_stats(&self) {
        println!("{}", self.stats());
    }

    fn group(&self, name: String) -> Arc<Pending> {
        Arc::clone(self.lock_groups().entry(name).or_default())
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Pending>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.local.stopping.store(true, Ordering::Release);
        self.pool.set_workers(0);
        while let Ok(task) = self.queue_rx.try_recv() {
            task.abandon(shutdown_error());
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("ncpus", &self.ncpus())
            .field("jobs", &self.registry.len())
            .finish()
    }
}
