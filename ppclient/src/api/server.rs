//! `Server`: Parallel Python's `pp.Server` for Rust programs.

use crate::api::handle::{AsCompleted, JobHandle};
use crate::api::options::{JobOptions, Options};
use crate::cluster::node::{unrunnable_kind, NodeInfo, NodeState};
use crate::cluster::state::Core;
use crate::cluster::unmet::Verdict;
use crate::jobs::cell::{resolve, Birth, Cell, JobRef};
use crate::jobs::recorder::LOCAL;
use crate::jobs::spec::{KeptResult, Spec};
use crate::jobs::task::{Extra, TypedTask};
use crate::jobs::tracker::Pending;
use crate::journal::Lookup;
use ppcore::{Job, JobError, NodeStats, Pool, Registry, Shared, Stats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a node's row in the statistics says when it takes no jobs.
fn why_down(state: &NodeState) -> Option<String> {
    match state {
        NodeState::Up { .. } => None,
        NodeState::Connecting => Some("connecting".into()),
        NodeState::Draining => Some("draining".into()),
        NodeState::Down { reason } => Some(format!("down: {reason}")),
        NodeState::Failed { reason } => Some(format!("refused: {reason}")),
    }
}

fn clamp16(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Runs jobs on a local pool of worker threads and on remote nodes.
///
/// Dropping the server resolves every job that has not started with
/// [`ErrorKind::Shutdown`]; jobs already running locally finish and resolve
/// normally. Call [`Server::wait_all`] first to let everything run. The drop
/// returns once the server's own threads have ended: each node link has
/// said goodbye to its node, and the listener (if any) is closed. Local
/// workers finish the job in hand on their own: a long job never blocks
/// the drop.
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
    /// The largest encoded arguments a job may have, local or remote.
    max_args: usize,
    /// Bytes of arguments submitted and not yet taken by a worker or a
    /// node's link ([`Builder::byte_budget`](crate::Builder::byte_budget)).
    budget: Arc<ppcore::budget::BudgetGate>,
    /// Nodes started through Slurm; stopped when this drops (after `drop` stops the links).
    slurm: Option<ppslurm::Launched>,
    /// Where finished jobs' results are recorded ([`Builder::journal`](crate::Builder::journal)).
    journal: Option<Arc<crate::journal::Journal>>,
}

impl Server {
    /// A server from what [`Builder::build`] started.
    pub(crate) fn new(
        core: Arc<Core>,
        pool: Pool,
        registry: Registry,
        (node_retries, crash_retries): (u32, u32),
        listen_addr: Option<SocketAddr>,
        max_args: usize,
    ) -> Self {
        let budget = Arc::clone(&core.tracker.budget);
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
            max_args,
            budget,
            slurm: None,
            journal: None,
        }
    }

    /// This server, recording results in `journal`.
    pub(crate) fn with_journal(mut self, journal: Arc<crate::journal::Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// This server with the Slurm nodes it started.
    pub(crate) fn with_slurm(mut self, launched: ppslurm::Launched) -> Self {
        self.slurm = Some(launched);
        self
    }

    /// The Slurm job its nodes run in, when they were started through Slurm.
    pub fn slurm_job(&self) -> Option<&str> {
        self.slurm.as_ref().map(|l| l.job_id())
    }

    /// Submits `job` with `args` (a tuple) and returns its handle.
    pub fn submit<J: Job>(&self, job: J, args: J::Args) -> JobHandle<J::Output> {
        self.submit_with(job, args, Options::new())
    }

    /// Submits `job` with [`Options`] (or `&Options`: one value serves many
    /// jobs), or with [`JobOptions`] from [`Options::callback`].
    ///
    /// If no local worker and no node can run it, the handle resolves at
    /// once with [`ErrorKind::UnknownJob`] saying why, or
    /// [`ErrorKind::Auth`] if a node that might have run it refused us. Arguments over the
    /// payload limit ([`Builder::max_payload`](crate::Builder::max_payload),
    /// 1 GiB by default) resolve it at once with [`ErrorKind::Codec`],
    /// whether the job would have run locally or on a node: their encoded
    /// size is counted, without encoding them. Arguments larger than 1 MiB
    /// travel to a node as a stream of chunks.
    ///
    /// The arguments count against the byte budget
    /// ([`Builder::byte_budget`](crate::Builder::byte_budget), 1 GiB by
    /// default) until a local worker or a node's link takes the job: while
    /// the budget is full, `submit` waits ([`Server::try_submit`] does not).
    pub fn submit_with<J: Job>(
        &self,
        _job: J,
        args: J::Args,
        options: impl Into<JobOptions<J::Output>>,
    ) -> JobHandle<J::Output> {
        let sized = ppcore::check_args::<J>(&args, self.max_args);
        // Arguments of no bytes take nothing (and no lock) from the budget.
        let permit = (sized.as_ref().ok())
            .filter(|&&n| n > 0)
            .map(|&n| self.budget.acquire(n as u64));
        self.enqueue::<J>(args, options.into(), sized, permit)
    }

    /// [`Server::submit`] without waiting: when the arguments do not fit the
    /// byte budget now (jobs submitted before still hold it), the job and its
    /// arguments come back untouched, to submit later.
    ///
    /// # Errors
    ///
    /// `(job, args)` when the budget is full.
    pub fn try_submit<J: Job>(
        &self,
        job: J,
        args: J::Args,
    ) -> Result<JobHandle<J::Output>, (J, J::Args)> {
        let sized = ppcore::check_args::<J>(&args, self.max_args);
        let permit = match &sized {
            Ok(0) => None,
            Ok(n) => match self.budget.try_acquire(*n as u64) {
                Some(p) => Some(p),
                None => return Err((job, args)),
            },
            Err(_) => None,
        };
        Ok(self.enqueue::<J>(args, Options::new().into(), sized, permit))
    }

    /// Makes the job and queues it, or resolves it at once if it cannot run.
    fn enqueue<J: Job>(
        &self,
        args: J::Args,
        options: JobOptions<J::Output>,
        sized: Result<usize, JobError>,
        permit: Option<ppcore::budget::Permit>,
    ) -> JobHandle<J::Output> {
        let mut too_big = sized.err();
        let JobOptions { options, callback } = options;
        let group = options.group.map(|name| self.group(name));
        let with_callback = callback.is_some();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.core.tracker.submitted();
        // The kept results the arguments name: the job waits for them. Only
        // looked for while any kept reference lives in this process.
        let inputs = match (ppcore::shared::kept_alive(), &too_big) {
            (0, _) | (_, Some(_)) => Vec::new(),
            _ => {
                let (_, named) = ppcore::shared::collect(|| ppcore::encode_args::<J>(&args, 0));
                named.kept.iter().map(|k| k.id()).collect()
            }
        };
        let kept = match options.keep {
            false => None,
            true if with_callback => {
                too_big = too_big.or(Some(JobError::new(
                    ppcore::ErrorKind::Codec,
                    "a job whose result is kept (Options::keep) takes no callback: \
                     wait on its handle, or pass its result to another job",
                )));
                None
            }
            true => match self.core.new_kept(id, J::NAME) {
                Ok(kept) => Some(kept),
                Err(e) => {
                    too_big = too_big.or(Some(e));
                    None
                }
            },
        };
        let keep = kept.as_ref().map(|k| crate::jobs::task::KeepTo {
            id: ppcore::shared::KeptSource::id(&**k),
            sink: self.core.kept_sink(),
        });
        // Kept jobs are not journaled (this round): their results live on
        // nodes, and a later run would need them reclaimed.
        let (replay, journal) = match (&self.journal, &too_big, &kept) {
            (Some(j), None, None) => match j.lookup::<J>(&args, options.journal_key.as_deref()) {
                Lookup::Recorded(outcome) => (Some(outcome), None),
                Lookup::Run(entry) => (None, Some(entry)),
                Lookup::Skip => (None, None),
            },
            _ => (None, None),
        };
        // A node holds its outcome for this run (an earlier client of the
        // run sent it there): taken back from there, not run.
        let reclaim_at = journal
            .as_ref()
            .filter(|_| self.core.has_reclaims())
            .and_then(|e| {
                let key = e.job_key();
                Some((key, self.core.reclaim_from(&key)?))
            });
        let extra = (options.timeout.is_some()
            || options.retries > 0
            || keep.is_some()
            || journal.is_some()
            || !inputs.is_empty())
        .then(|| {
            Box::new(Extra {
                timeout: options.timeout,
                failure_retries: options.retries,
                keep,
                inputs,
                journal,
                reclaim: crate::jobs::attempt::Reclaim::of(
                    reclaim_at.as_ref().map(|(key, _)| *key),
                ),
                ..Extra::default()
            })
        });
        let limits = (
            clamp16(options.node_retries.unwrap_or(self.node_retries)),
            clamp16(options.crash_retries.unwrap_or(self.crash_retries)),
        );
        let journaled = extra.as_ref().is_some_and(|e| e.journal.is_some());
        if let Some(bad) = &options.bad_request {
            too_big = too_big.or(Some(JobError::new(ppcore::ErrorKind::Unsatisfiable, bad)));
        }
        let mut waits = false;
        if let (Some(request), None) = (&options.request, &too_big) {
            match self.core.check_request(request) {
                Ok(verdict) => waits = verdict == Verdict::Waits,
                Err(e) => too_big = Some(e),
            }
        }
        let spec = Spec {
            group,
            kept: kept.map(|k| KeptResult::new(k, J::read_output_owned)),
        };
        let birth = Birth {
            args,
            callback,
            extra,
            limits,
            journaled,
        };
        let cell = Cell::new(Arc::clone(&self.core.tracker), spec, birth);
        let task = Arc::new(TypedTask::<J>::new(id, options.request, cell));
        let handle = JobHandle::new(Arc::clone(&task) as Arc<dyn JobRef<J::Output>>);
        if let Some(err) = too_big {
            resolve(&task, Err(err));
            return handle;
        }
        if let Some(outcome) = replay {
            // Recorded by an earlier run: resolved now, without running;
            // its callback runs again (this process has fresh state).
            self.core
                .tracker
                .from_journal
                .fetch_add(1, Ordering::Relaxed);
            let result = outcome.and_then(J::read_output_owned);
            resolve(&task, result);
            return handle;
        }
        if let Err(reason) = self.core.runnable((J::NAME, J::SIGNATURE)) {
            let kind = unrunnable_kind(&self.nodes());
            resolve(&task, Err(JobError::new(kind, reason)));
            return handle;
        }
        if let Some(permit) = permit {
            task.hold(permit);
        }
        match reclaim_at {
            Some((_, node)) => node.pin(task),
            None => self.core.place(task),
        }
        if waits {
            // Queued: it fails if no node that offers it joins in time.
            Core::watch_unmet(&self.core);
        }
        handle
    }

    /// Shares `value` among jobs: pass clones of the [`Shared`] as a job's
    /// argument (declared `Shared<T>` in its `job!`). The value is encoded
    /// once, here; its bytes go to each node that runs one of those jobs at
    /// most once per connection (as Dask's `scatter` or Ray's `put`), before
    /// the first job that names it, and every job on that node reads the
    /// same value, decoded once per process there (once per worker process
    /// for process workers). Local jobs read it in place.
    ///
    /// The nodes keep it while any clone lives here (yours, or a job's not
    /// yet finished) and free it within a moment of the last one's drop. A
    /// node whose `--shared-max` is full evicts the least recently used
    /// values and asks again when a job needs one; a job that reruns
    /// elsewhere takes the value there. [`Server::stats`] shows, per node,
    /// the values and bytes sent.
    ///
    /// The value travels as job arguments do (MessagePack): for arrays of
    /// numbers use [`Array`](crate::Array) or [`ByteBuf`](crate::ByteBuf)
    /// inside it, which travel as raw bytes. An error if it does not encode.
    ///
    /// ```
    /// use ppclient::{Server, Shared};
    /// ppclient::job! {
    ///     /// Sums `table[from..to]`.
    ///     pub fn part_sum(table: Shared<Vec<u64>>, from: u64, to: u64) -> u64 {
    ///         table[from as usize..to as usize].iter().sum()
    ///     }
    /// }
    /// let server = Server::builder().ncpus(2).build()?;
    /// let table = server.share((0..1000u64).collect::<Vec<_>>())?;
    /// let parts = server.map(part_sum, (0..10).map(|i| (table.clone(), i * 100, i * 100 + 100)));
    /// assert_eq!(parts.sum::<Result<u64, _>>()?, 499_500);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn share<T>(&self, value: T) -> Result<Shared<T>, JobError>
    where
        T: serde::Serialize + Send + Sync + 'static,
    {
        Shared::new(value)
    }

    /// Bytes of arguments held against the byte budget now.
    pub fn budget_used(&self) -> u64 {
        self.budget.used()
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

    /// Waits until every job of group `name` submitted so far has resolved
    /// and its callback has returned (every such handle's `is_finished()`
    /// is then true).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WouldDeadlock`] at once when called from the callback of
    /// a job in that group: the group cannot finish before the callback
    /// returns. Waiting on another group from a callback is fine.
    pub fn wait_group(&self, name: &str) -> Result<(), JobError> {
        let group = self.lock_groups().get(name).cloned();
        let Some(g) = group else {
            return Ok(());
        };
        if let Some(ctx) = crate::jobs::tracker::in_callback() {
            if ctx.group == Some(Arc::as_ptr(&g) as usize) {
                return Err(crate::jobs::tracker::would_deadlock(&format!(
                    "waited on its own group `{name}`"
                )));
            }
        }
        if g.get() > 0 {
            let _blocking = self.core.tracker.blocking();
            g.wait_zero(None);
        }
        Ok(())
    }

    /// Cancels every job of group `name` that is queued or running on a node
    /// (nodes are told to stop them); returns how many. Their handles and
    /// callbacks get [`ErrorKind::Cancelled`]. Jobs running on local threads
    /// cannot be stopped and run to the end, as with [`JobHandle::cancel`].
    /// pp's reverse_md5 ends this way at the first hit.
    pub fn cancel_group(&self, name: &str) -> usize {
        let group = self.lock_groups().get(name).cloned();
        match group {
            Some(g) => self.cancel_where(Some(Arc::as_ptr(&g) as usize)),
            None => 0,
        }
    }

    /// Cancels every job submitted so far that is queued or running on a
    /// node; returns how many (see [`Server::cancel_group`]).
    pub fn cancel_all(&self) -> usize {
        self.cancel_where(None)
    }

    /// Cancels the queued jobs of `group` (or all), then asks each node's
    /// driver to cancel those it has in flight, waiting a bounded time for
    /// their counts.
    fn cancel_where(&self, group: Option<usize>) -> usize {
        /// A driver answers within a turn; one that does not (it is stuck
        /// writing to a node) is not waited for longer.
        const ANSWER_WITHIN: Duration = Duration::from_secs(2);
        // Only jobs submitted before this call: ids below the next one.
        let below = self.next_id.load(Ordering::SeqCst);
        let sweep = || {
            let pick = |t: &Arc<dyn crate::jobs::task::Task>| {
                t.id() < below && crate::jobs::task::in_group(t, group)
            };
            // Queued, held for kept inputs, or pinned to a node.
            let mut taken = self.core.queue.remove_where(pick);
            taken.extend(ppcore::sync::lock(&self.core.values.dir).take_where(pick));
            for link in self.core.links() {
                taken.extend(link.take_pinned_where(pick));
            }
            taken.into_iter().filter(|t| Arc::clone(t).cancel()).count()
        };
        let mut cancelled = sweep();
        let answers: Vec<_> = self
            .core
            .links()
            .iter()
            .filter_map(|l| l.ask_cancel(group, below))
            .collect();
        let deadline = Instant::now() + ANSWER_WITHIN;
        for answer in answers {
            if let Ok(n) = answer.recv_deadline(deadline) {
                cancelled += n;
            }
        }
        // Jobs a driver had taken from the queue but not sent (its window
        // was full), or that a node handed back, went back to the queue
        // before the driver answered: a second sweep finds them.
        cancelled + sweep()
    }

    /// Waits until every job submitted so far has resolved and its callback
    /// has returned (every handle's `is_finished()` is then true, and a
    /// handle's `wait` returns at once).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WouldDeadlock`] at once when called from a callback: the
    /// callback's own job cannot finish before the callback returns.
    pub fn wait_all(&self) -> Result<(), JobError> {
        self.wait_all_until(None).map(|_| ())
    }

    /// Like [`Server::wait_all`] but gives up after `timeout`; `Ok(true)` if
    /// all resolved.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WouldDeadlock`] when called from a callback, as [`Server::wait_all`].
    pub fn wait_all_timeout(&self, timeout: Duration) -> Result<bool, JobError> {
        self.wait_all_until(Some(ppcore::limits::deadline(Instant::now(), timeout)))
    }

    fn wait_all_until(&self, deadline: Option<Instant>) -> Result<bool, JobError> {
        if crate::jobs::tracker::in_callback().is_some() {
            return Err(crate::jobs::tracker::would_deadlock("called wait_all"));
        }
        Ok(self.core.tracker.wait_quiet(deadline))
    }

    /// Local worker threads (pp's `get_ncpus`); [`Server::workers`] adds
    /// the nodes'.
    pub fn ncpus(&self) -> usize {
        self.pool.workers()
    }

    /// Every worker slot that takes jobs now: the local pool plus the
    /// workers of each node that is up (for "running with N workers").
    pub fn workers(&self) -> usize {
        let remote: usize = self
            .nodes()
            .iter()
            .map(|n| match n.state {
                crate::cluster::node::NodeState::Up { workers } => workers,
                _ => 0,
            })
            .sum();
        self.ncpus().saturating_add(remote)
    }

    /// Resizes the local pool; 0 leaves all work to the nodes (or, with no
    /// nodes, holds jobs until workers are added again).
    /// At most [`ppcore::limits::MAX_WORKERS`].
    pub fn set_ncpus(&self, n: usize) {
        let n = n.min(ppcore::limits::MAX_WORKERS);
        self.core.ncpus.store(n, Ordering::Release);
        self.pool.set_workers(n);
        self.core.slots.set_cpus(n);
        // Queued jobs only local workers could have run fail now, with the reason.
        self.core.fail_unrunnable();
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

    /// Waits until at least `n` nodes are up (connected and taking jobs), or
    /// `timeout` passes; true if they are. For nodes that join a listening
    /// server or are found by discovery after [`Builder::build`] returned
    /// (nodes given by name were waited for there). Like Dask's
    /// `wait_for_workers`.
    pub fn wait_for_nodes(&self, n: usize, timeout: Duration) -> bool {
        self.core.wait_up(n, timeout)
    }

    /// Waits until `holds` is true of the nodes (as [`Server::nodes`]
    /// lists them), or `timeout` passes; whether it is. It is asked again
    /// whenever a node is added or changes state (no polling), so it can
    /// wait for a node to go down, come back or be given up:
    ///
    /// ```no_run
    /// # let server = ppclient::Server::builder().ncpus(1).build()?;
    /// use ppclient::NodeState;
    /// use std::time::Duration;
    /// let all_up = server.wait_for_nodes_where(Duration::from_secs(10), |nodes| {
    ///     nodes.iter().all(|n| matches!(n.state, NodeState::Up { .. }))
    /// });
    /// # Ok::<(), ppclient::BuildError>(())
    /// ```
    pub fn wait_for_nodes_where(
        &self,
        timeout: Duration,
        holds: impl FnMut(&[NodeInfo]) -> bool,
    ) -> bool {
        self.core.wait_nodes(timeout, holds)
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
        let counts = tracker.counts();
        let mut nodes = vec![self.core.ctx.local.snapshot(LOCAL, self.ncpus())];
        let queued = self.core.queued_kinds();
        nodes.extend(self.core.links().iter().map(|l| {
            let view = l.view();
            let (bytes_received, bytes_sent) = l.meter.bytes();
            NodeStats {
                down: why_down(&view.state).or_else(|| view.why_unused(&queued)),
                bytes_sent,
                bytes_received,
                ..l.counters.snapshot(&l.name, view.workers())
            }
        }));
        Stats {
            nodes,
            elapsed: self.created.elapsed(),
            active: counts.unresolved(),
            ncpus: self.ncpus(),
            submitted: counts.submitted,
            succeeded: counts.succeeded,
            failed: counts.failed,
            cancelled: counts.cancelled,
            timed_out: counts.timed_out,
            shut_down: counts.shut_down,
            retried: tracker.retried.load(Ordering::Relaxed),
            queue_wait: tracker.mean_queue_wait(),
            ran: tracker.ran(),
            from_journal: tracker.from_journal.load(Ordering::Relaxed),
            reclaimed: tracker.reclaimed.load(Ordering::Relaxed),
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
        ppcore::sync::lock(&self.groups)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.pool.set_workers(0);
        self.core.stop();
        self.core.join();
        // Last: results of jobs that finished meanwhile are recorded
        // (and seen) before the drop returns.
        if let Some(journal) = &self.journal {
            journal.close();
        }
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
