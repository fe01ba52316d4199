//! `Server`: Parallel Python's `pp.Server` for Rust programs.

use crate::builder::Builder;
use crate::core::Core;
use crate::handle::{resolve, AsCompleted, Cell, Holder, JobHandle};
use crate::options::Options;
use crate::remote::{NodeInfo, NodeState};
use crate::task::{Extra, TypedTask, LOCAL};
use crate::tracker::Pending;
use ppcore::{ErrorKind, Job, JobError, Pool, Registry, Stats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn clamp16(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Runs jobs on a local pool of worker threads and on remote nodes.
///
/// Dropping the server resolves every job that has not started with
/// [`ErrorKind::Shutdown`]; jobs already running locally finish and resolve
/// normally. Call [`Server::wait_all`] first to let everything run.
pub struct Server {
    core: Arc<Core>,
    pool: Pool,
    registry: Registry,
    groups: Mutex<HashMap<String, Arc<Pending>>>,
    next_id: AtomicU64,
    created: Instant,
    node_retries: u32,
    crash_retries: u32,
    listen_addr: Option<SocketAddr>,
}

impl Server {
    /// A server from what [`Builder::build`] started.
    pub(crate) fn new(
        core: Arc<Core>,
        pool: Pool,
        registry: Registry,
        (node_retries, crash_retries): (u32, u32),
        listen_addr: Option<SocketAddr>,
    ) -> Self {
        Server {
            core,
            pool,
            registry,
            groups: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            created: Instant::now(),
            node_retries,
            crash_retries,
            listen_addr,
        }
    }

    /// A builder with the defaults: every linked job, `ncpus` auto-detected, no nodes.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Submits `job` with `args` (a tuple) and returns its handle.
    pub fn submit<J: Job>(&self, job: J, args: J::Args) -> JobHandle<J::Output> {
        self.submit_with(job, args, Options::new())
    }

    /// Submits `job` with a callback, group, timeout or retry limit.
    ///
    /// If no local worker and no node can run it, the handle resolves at
    /// once with [`ErrorKind::UnknownJob`] saying why.
    pub fn submit_with<J: Job>(
        &self,
        _job: J,
        args: J::Args,
        options: Options<J::Output>,
    ) -> JobHandle<J::Output> {
        let group = options.group.map(|name| self.group(name));
        let tracker = Arc::clone(&self.core.tracker);
        let cell = Cell::new(tracker, group, options.callback);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.core.tracker.submitted();
        let extra = (options.timeout.is_some() || options.retries > 0).then(|| {
            Box::new(Extra {
                timeout: options.timeout,
                failure_retries: options.retries,
                ..Extra::default()
            })
        });
        let limits = (
            clamp16(options.node_retries.unwrap_or(self.node_retries)),
            clamp16(options.crash_retries.unwrap_or(self.crash_retries)),
        );
        let task = Arc::new(TypedTask::<J>::new(id, args, cell, limits, extra));
        let handle = JobHandle::new(Arc::clone(&task) as Arc<dyn Holder<J::Output>>, id);
        if let Err(reason) = self.core.runnable((J::NAME, J::SIGNATURE)) {
            resolve(&task, Err(JobError::new(ErrorKind::UnknownJob, reason)));
            return handle;
        }
        self.core.enqueue(task);
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

    /// Waits until every job submitted so far has resolved (a handle's
    /// `wait` then returns at once).
    pub fn wait_all(&self) {
        self.core.tracker.wait_quiet(None);
    }

    /// Like [`Server::wait_all`] but gives up after `timeout`; true if all resolved.
    pub fn wait_all_timeout(&self, timeout: Duration) -> bool {
        self.core.tracker.wait_quiet(Some(Instant::now() + timeout))
    }

    /// Local worker threads.
    pub fn ncpus(&self) -> usize {
        self.pool.workers()
    }

    /// Resizes the local pool; 0 leaves all work to the nodes (or, with no
    /// nodes, holds jobs until workers are added again).
    pub fn set_ncpus(&self, n: usize) {
        self.core.ncpus.store(n, Ordering::Release);
        self.pool.set_workers(n);
    }

    /// The jobs this server knows.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every node this server knows, with its state.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.core.nodes()
    }

    /// The names of the nodes connected now.
    pub fn active_nodes(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|n| matches!(n.state, NodeState::Up { .. }))
            .map(|n| n.name)
            .collect()
    }

    /// The address nodes join at, when the server listens.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr
    }

    /// Where the dashboard is served ([`Builder::dashboard`](crate::Builder::dashboard)), if it is.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.core.ctx.dash.get().and_then(|d| d.addr.get().copied())
    }

    /// The statistics as data: the local pool first, then each node.
    pub fn stats(&self) -> Stats {
        let tracker = &self.core.tracker;
        let [submitted, succeeded, failed, cancelled, timed_out, shut_down] = tracker.counts();
        let mut nodes = vec![self.core.ctx.local.snapshot(LOCAL, self.ncpus())];
        nodes.extend(
            self.core
                .links()
                .iter()
                .map(|l| l.counters.snapshot(&l.name, l.workers())),
        );
        Stats {
            nodes,
            elapsed: self.created.elapsed(),
            active: submitted - (succeeded + failed + cancelled + timed_out + shut_down),
            ncpus: self.ncpus(),
            submitted,
            succeeded,
            failed,
            cancelled,
            timed_out,
            shut_down,
            retried: tracker.retried.load(Ordering::Relaxed),
            queue_wait: tracker.mean_queue_wait(),
        }
    }

    /// Prints Parallel Python's statistics table to standard output.
    pub fn print_stats(&self) {
        println!("{}", self.stats());
    }

    fn group(&self, name: String) -> Arc<Pending> {
        let dash = self.core.ctx.dash.get();
        let label = dash.map(|_| name.clone());
        let group = Arc::clone(self.lock_groups().entry(name).or_default());
        if let (Some(d), Some(label)) = (dash, label) {
            d.group(&label, &group);
        }
        group
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Pending>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.pool.set_workers(0);
        self.core.stop();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("ncpus", &self.ncpus())
            .field("nodes", &self.nodes())
            .finish()
    }
}
