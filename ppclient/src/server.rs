//! `Server`: Parallel Python's `pp.Server` for Rust programs.

use crate::core::Core;
use crate::handle::{AsCompleted, Callback, Cell, JobHandle};
use crate::remote::{with_port, LinkSettings, NodeInfo, NodeState};
use crate::task::{Extra, Task, TypedTask, LOCAL};
use crate::tracker::{Pending, Tracker};
use ppcore::wire::{DEFAULT_MAX_FRAME, DEFAULT_PORT};
use ppcore::{DuplicateJob, ErrorKind, Job, JobError, Pool, Registry, Secret, Stats};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a [`Server`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two linked jobs share a name.
    #[error(transparent)]
    DuplicateJob(#[from] DuplicateJob),
    /// A thread could not be started, or the listening address bound.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Configures a [`Server`]; from [`Server::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    ncpus: Option<usize>,
    registry: Option<Registry>,
    nodes: Vec<String>,
    secret: Secret,
    discover: Option<(String, SocketAddr)>,
    listen: Option<String>,
    node_retries: u32,
    crash_retries: u32,
    settings: LinkSettings,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ncpus: None,
            registry: None,
            nodes: Vec::new(),
            secret: Secret::default(),
            discover: None,
            listen: None,
            node_retries: 3,
            crash_retries: 2,
            settings: LinkSettings {
                secret: Secret::default(),
                connect_timeout: Duration::from_secs(2),
                heartbeat: Duration::from_secs(1),
                max_prefetch: 1024,
                max_frame: DEFAULT_MAX_FRAME,
            },
        }
    }
}

impl Builder {
    /// Local worker threads. Default: the CPUs this process may use
    /// (`available_parallelism`, which honours cgroup quotas and affinity).
    /// 0 runs everything on remote nodes.
    pub fn ncpus(mut self, n: usize) -> Self {
        self.ncpus = Some(n);
        self
    }

    /// The jobs this server may run, instead of every linked job.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Remote nodes, as `host` or `host:port` (default port 60000), like pp's
    /// `ppservers`. Nodes that are down are retried with backoff.
    pub fn nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.nodes
            .extend(nodes.into_iter().map(|n| with_port(&n.into())));
        self
    }

    /// The secret shared with the nodes.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Secret::new(secret);
        self
    }

    /// Finds nodes by UDP broadcast on the local network, keeping those whose
    /// address matches `pattern` (`"*"` or like `"192.168.1.*"`), as pp's
    /// `ppservers=("*",)`.
    pub fn discover(self, pattern: &str) -> Self {
        let target = SocketAddr::from(([255, 255, 255, 255], DEFAULT_PORT));
        self.discover_via(pattern, target)
    }

    /// Like [`Builder::discover`], sending probes to `target` (a broadcast
    /// address and port, or one node).
    pub fn discover_via(mut self, pattern: &str, target: SocketAddr) -> Self {
        self.discover = Some((pattern.to_owned(), target));
        self
    }

    /// Listens on `addr` for nodes started with `ppserver --join`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// How many node losses a job may meet before it fails with
    /// [`ErrorKind::NodeLost`] (default 3).
    pub fn node_retries(mut self, n: u32) -> Self {
        self.node_retries = n;
        self
    }

    /// How many node worker processes (isolation mode) a job may crash
    /// before it fails with [`ErrorKind::Crashed`] and is not run again
    /// (default 2).
    pub fn crash_retries(mut self, n: u32) -> Self {
        self.crash_retries = n;
        self
    }

    /// How often nodes are pinged; a node silent for three intervals is lost
    /// (default 1 s).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.settings.heartbeat = interval;
        self
    }

    /// How long to wait for a node to accept a connection (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Starts the server: the local pool, and a link to each node. Returns
    /// once every node given has answered once (or a connect timeout passed).
    pub fn build(mut self) -> Result<Server, BuildError> {
        let registry = match self.registry.take() {
            Some(r) => r,
            None => Registry::linked()?,
        };
        let ncpus = self.ncpus.unwrap_or_else(detect_ncpus);
        let listener = match &self.listen {
            Some(addr) => Some(TcpListener::bind(addr.as_str())?),
            None => None,
        };
        let settings = LinkSettings {
            secret: self.secret.clone(),
            ..self.settings.clone()
        };
        let open_ended = listener.is_some() || self.discover.is_some();
        let tracker = Arc::new(Tracker::new()?);
        let core = Arc::new(Core::new(tracker, settings, ncpus, open_ended));
        let worker_core = Arc::clone(&core);
        let pool = Pool::start("pp-worker", ncpus, core.queue.clone(), move |task| {
            Task::run_local(task, &worker_core.ctx)
        });
        for node in &self.nodes {
            crate::discovery::start_static(&core, node.clone());
        }
        let listen_addr = match listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let core = Arc::clone(&core);
                std::thread::Builder::new()
                    .name("pp-listen".into())
                    .spawn(move || crate::discovery::accept_joins(&core, &listener))?;
                Some(addr)
            }
            None => None,
        };
        if let Some((pattern, target)) = self.discover.clone() {
            let _ = crate::discovery::probe(&core, &pattern, target);
            let core = Arc::clone(&core);
            std::thread::Builder::new()
                .name("pp-discover".into())
                .spawn(move || crate::discovery::discover(&core, &pattern, target))?;
        }
        core.wait_first_contact(self.settings.connect_timeout + Duration::from_secs(1));
        Ok(Server {
            core,
            pool,
            registry,
            groups: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            created: Instant::now(),
            node_retries: self.node_retries,
            crash_retries: self.crash_retries,
            listen_addr,
        })
    }
}

fn clamp16(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
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
    node_retries: Option<u32>,
    crash_retries: Option<u32>,
    retries: u16,
}

impl<T> Default for Options<T> {
    fn default() -> Self {
        Options {
            callback: None,
            group: None,
            timeout: None,
            node_retries: None,
            crash_retries: None,
            retries: 0,
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

    /// How many node losses this job may meet (default: the server's).
    pub fn node_retries(mut self, n: u32) -> Self {
        self.node_retries = Some(n);
        self
    }

    /// How many times to run the job again after it returns an error or
    /// panics (default 0: such a failure is the job's answer).
    pub fn retries(mut self, n: u16) -> Self {
        self.retries = n;
        self
    }

    /// How many node worker processes this job may crash before it is
    /// given up as poison (default: the server's).
    pub fn crash_retries(mut self, n: u32) -> Self {
        self.crash_retries = Some(n);
        self
    }
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
        let handle = JobHandle::new(Arc::clone(&cell), id);
        if let Err(reason) = self.core.runnable((J::NAME, J::SIGNATURE)) {
            cell.finish(Err(JobError::new(ErrorKind::UnknownJob, reason)));
            return handle;
        }
        let task = Box::new(TypedTask::<J> {
            id,
            args,
            cell,
            attempt: 0,
            max_losses: clamp16(options.node_retries.unwrap_or(self.node_retries)),
            max_crashes: clamp16(options.crash_retries.unwrap_or(self.crash_retries)),
            extra: (options.timeout.is_some() || options.retries > 0).then(|| {
                Box::new(Extra {
                    timeout: options.timeout,
                    failure_retries: options.retries,
                    ..Extra::default()
                })
            }),
            job: PhantomData,
        });
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
