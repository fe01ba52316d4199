//! What the server's threads share: the job queue, the run context, the
//! links to nodes, and the stop flag.

use crate::cluster::node::{unrunnable_kind, LinkSettings, NodeInfo, NodeRecord, NodeState};
use crate::jobs::ctx::RunCtx;
use crate::jobs::queue_key::{queue_key, QueueKey};
use crate::jobs::task::{JobKind, Task};
use crate::jobs::tracker::Tracker;
use ppcore::resources::Offer;
use ppcore::slots::Slots;
use ppcore::sync::lock;
use ppcore::wire::JobKey;
use ppcore::{JobError, Lanes};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Core {
    pub(crate) queue: Lanes<Arc<dyn Task>, QueueKey>,
    pub(crate) ctx: RunCtx,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) settings: LinkSettings,
    pub(crate) ncpus: AtomicUsize,
    /// The local pool's offer and what its jobs hold.
    pub(crate) slots: Slots,
    /// Whether nodes we do not know yet may still turn up (listen, discovery).
    pub(crate) open_ended: bool,
    links: Mutex<Vec<Arc<NodeRecord>>>,
    stop: AtomicBool,
    /// Set once `build()` has reported refusals (if asked to): refusals
    /// after that are reported as they happen.
    pub(crate) report_late: AtomicBool,
    /// The server's own threads (links, listener, discovery), joined when
    /// the server is dropped.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Signalled on every change worth waking for: first contact, stop.
    /// Counts the changes, so that a waiter that looked at the nodes with
    /// no lock held can tell whether one came since.
    news: (Mutex<u64>, Condvar),
    /// What a job error adds when no node can run a job (how to ship this
    /// program), if anything: asked of the link layer, which sits above.
    ship_hint: fn() -> Option<&'static str>,
    /// Kept results: where each lies, and the jobs waiting for them
    /// (`cluster::kept`).
    pub(crate) values: crate::cluster::values::Values,
    /// Jobs of the journaled run that a node holds (finished or running:
    /// an earlier client of the run sent them there), by the node's name;
    /// `submit` takes them back instead of running them.
    reclaims: Mutex<HashMap<JobKey, String>>,
    has_reclaims: AtomicBool,
    /// A thread fails the jobs whose request nobody meets once they waited
    /// `unmet_wait` (`cluster::unmet`).
    pub(super) unmet_watch: AtomicBool,
    /// Since when each request queued has been met by no machine up.
    pub(super) unmet_since: Mutex<HashMap<Arc<ppcore::resources::Request>, Instant>>,
}

impl Core {
    pub(crate) fn new(
        tracker: Arc<Tracker>,
        settings: LinkSettings,
        (ncpus, offer): (usize, Offer),
        open_ended: bool,
        ship_hint: fn() -> Option<&'static str>,
    ) -> Self {
        Core {
            queue: Lanes::new(),
            ctx: RunCtx::new(settings.max_payload),
            tracker,
            settings,
            ncpus: AtomicUsize::new(ncpus),
            slots: Slots::new(offer),
            open_ended,
            links: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            report_late: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            news: (Mutex::new(0), Condvar::new()),
            ship_hint,
            values: Default::default(),
            reclaims: Mutex::new(HashMap::new()),
            has_reclaims: AtomicBool::new(false),
            unmet_watch: AtomicBool::new(false),
            unmet_since: Mutex::new(HashMap::new()),
        }
    }

    /// Node `node` holds these jobs of the run.
    pub(crate) fn reclaimable(&self, node: &str, keys: Vec<JobKey>) {
        let mut reclaims = lock(&self.reclaims);
        for key in keys {
            reclaims.insert(key, node.to_owned());
        }
        self.has_reclaims
            .store(!reclaims.is_empty(), Ordering::Release);
    }

    /// Whether any node holds jobs of the run not reclaimed yet (cheap:
    /// `submit` asks it for every journaled job).
    pub(crate) fn has_reclaims(&self) -> bool {
        self.has_reclaims.load(Ordering::Acquire)
    }

    /// The node that holds job `key` of the run, if one does (once: a job
    /// is reclaimed at most once).
    pub(crate) fn reclaim_from(&self, key: &JobKey) -> Option<Arc<NodeRecord>> {
        let node = {
            let mut reclaims = lock(&self.reclaims);
            if reclaims.is_empty() {
                return None;
            }
            let node = reclaims.remove(key);
            self.has_reclaims
                .store(!reclaims.is_empty(), Ordering::Release);
            node?
        };
        self.link(&node)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Stops every link and fails every queued job with `Shutdown`.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.ctx.stop();
        self.wake();
        for link in self.links() {
            link.close();
        }
        for task in self.queue.drain_kinds(|_| true) {
            task.abandon(crate::jobs::task::shutdown_error());
        }
        // Jobs held for their inputs, and those pinned to a node, too.
        let held = lock(&self.values.dir).drain();
        let pinned = self
            .links()
            .iter()
            .flat_map(|l| l.drain_pinned())
            .collect::<Vec<_>>();
        for task in held.into_iter().chain(pinned) {
            task.abandon(crate::jobs::task::shutdown_error());
        }
        self.values.changed();
    }

    /// Starts one of the server's threads (joined by [`Core::join`]).
    pub(crate) fn spawn(
        &self,
        name: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = std::thread::Builder::new().name(name.into()).spawn(f)?;
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
        Ok(())
    }

    /// After [`Core::stop`]: waits for every thread [`Core::spawn`] started
    /// (links say goodbye to their nodes, the listener closes). Threads
    /// started meanwhile are joined too.
    pub(crate) fn join(&self) {
        loop {
            let threads = std::mem::take(&mut *lock(&self.threads));
            if threads.is_empty() {
                return;
            }
            for t in threads {
                let _ = t.join();
            }
        }
    }

    fn wake(&self) {
        let mut changes = lock(&self.news.0);
        *changes = changes.wrapping_add(1);
        self.news.1.notify_all();
    }

    /// Sleeps up to `d`; true if the server is stopping.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let guard = lock(&self.news.0);
        if self.stopped() {
            return true;
        }
        let _ = self.news.1.wait_timeout(guard, d);
        self.stopped()
    }

    /// A link reached its node, lost it, or was refused: wakes those who
    /// wait for first contact or for nodes to come up.
    pub(crate) fn contacted(&self) {
        self.wake();
    }

    /// Waits until every link has answered once (up, down or refused), or `limit`.
    pub(crate) fn wait_first_contact(&self, limit: Duration) {
        let deadline = ppcore::limits::deadline(Instant::now(), limit);
        let mut guard = lock(&self.news.0);
        while self
            .links()
            .iter()
            .any(|l| l.state() == NodeState::Connecting)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stopped() {
                return;
            }
            guard = self
                .news
                .1
                .wait_timeout(guard, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until `n` nodes are up, the server stops, or `limit` passes;
    /// true if they are up. Woken by every node's change of state.
    pub(crate) fn wait_up(&self, n: usize, limit: Duration) -> bool {
        self.wait_nodes(limit, |nodes| {
            nodes
                .iter()
                .filter(|i| matches!(i.state, NodeState::Up { .. }))
                .count()
                >= n
        })
    }

    /// Waits until `holds` of the nodes, woken by every change of a node's
    /// state and every node added, or `limit`; whether it holds.
    pub(crate) fn wait_nodes(
        &self,
        limit: Duration,
        mut holds: impl FnMut(&[NodeInfo]) -> bool,
    ) -> bool {
        let deadline = ppcore::limits::deadline(Instant::now(), limit);
        loop {
            // The count of changes is read before the nodes: a change made
            // while `holds` runs (with no lock held: it is the user's code)
            // ends the wait below at once.
            let seen = *lock(&self.news.0);
            if holds(&self.nodes()) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stopped() {
                return false;
            }
            let changes = lock(&self.news.0);
            let _ = self
                .news
                .1
                .wait_timeout_while(changes, left, |n| *n == seen && !self.stopped());
        }
    }

    pub(crate) fn add_link(&self, link: Arc<NodeRecord>) {
        lock(&self.links).push(link);
        self.contacted();
    }

    /// The link named `name`, if there is one.
    pub(crate) fn link(&self, name: &str) -> Option<Arc<NodeRecord>> {
        lock(&self.links).iter().find(|l| l.name == name).cloned()
    }

    pub(crate) fn links(&self) -> Vec<Arc<NodeRecord>> {
        lock(&self.links).clone()
    }

    pub(crate) fn nodes(&self) -> Vec<NodeInfo> {
        let queued = self.queued_kinds();
        self.links().iter().map(|l| l.info(&queued)).collect()
    }

    /// The kinds of jobs waiting in the queue now.
    pub(crate) fn queued_kinds(&self) -> Vec<JobKind> {
        let mut kinds = Vec::new();
        // Asked of each kind with queued jobs; none is taken.
        self.queue.drain_kinds(|(kind, _)| {
            if !kinds.contains(kind) {
                kinds.push(*kind);
            }
            false
        });
        kinds
    }

    /// Tells the user, once per node, that a node refused this program: a
    /// `tracing` warning says it already if the program has a subscriber,
    /// else one line on stderr.
    pub(crate) fn report_ship_refusals(&self) {
        for link in self.links() {
            let Some(reason) = link.ship_refusal() else {
                continue;
            };
            if link.ship_reported.swap(true, Ordering::AcqRel)
                || tracing::dispatcher::has_been_set()
            {
                continue;
            }
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "pp: node {} refused this program: {reason} (its jobs run on other nodes)",
                link.name
            );
        }
    }

    /// Queues a new job.
    pub(crate) fn enqueue(&self, task: Arc<dyn Task>) {
        if self.stopped() {
            return task.abandon(crate::jobs::task::shutdown_error());
        }
        self.queue.push_kind(queue_key(&task), task);
    }

    /// Puts a job handed back (its node was lost or stopped) ahead of the
    /// jobs not started yet; one that takes kept results is placed again
    /// (they may lie elsewhere now).
    pub(crate) fn requeue(self: &Arc<Self>, task: Arc<dyn Task>) {
        if self.stopped() {
            return task.abandon(crate::jobs::task::shutdown_error());
        }
        if let Some(id) = task.keeps() {
            self.remaking_queued(&id);
        }
        if task.is_fetch() {
            return task.abandon(JobError::new(ppcore::ErrorKind::NodeLost, "handed back"));
        }
        if !task.inputs().is_empty() {
            return self.place(task);
        }
        let asks = task.request().is_some();
        self.queue.push_front_kind(queue_key(&task), task);
        if asks && self.open_ended {
            // Handed back by a node that went: nobody else may meet it.
            Core::watch_unmet(self);
        }
    }

    /// Whether anyone (local workers, a node, a node yet to come) may run `job`;
    /// if not, why.
    pub(crate) fn runnable(&self, job: (&str, &str)) -> Result<(), String> {
        if self.ncpus.load(Ordering::Acquire) > 0 || self.open_ended {
            return Ok(());
        }
        let links = lock(&self.links);
        if links.is_empty() {
            // No workers and no nodes at all: a paused server; jobs wait for
            // `set_ncpus`.
            return Ok(());
        }
        let mut why = Vec::new();
        for link in links.iter() {
            let view = link.view();
            match view.can_run(job) {
                Some(true) | None => return Ok(()),
                Some(false) => why.push(match (&view.state, view.ship_refusal()) {
                    (NodeState::Failed { reason }, _) => format!("{}: {reason}", link.name),
                    (_, Some(refused)) => format!(
                        "{}: has no job `{}` and refused this program: {refused}",
                        link.name, job.0
                    ),
                    _ => format!("{}: has no job `{}` of this type", link.name, job.0),
                }),
            }
        }
        let hint = match (self.ship_hint)() {
            None => String::new(),
            Some(hint) => format!(" ({hint})"),
        };
        Err(format!(
            "no local workers (ncpus = 0) and no node can run `{}`: {}{hint}",
            job.0,
            why.join("; ")
        ))
    }

    /// After a node refused us, or told which jobs it runs, or the local
    /// pool was emptied: fails the queued jobs nobody can run now, with the
    /// reason; the others keep their places.
    pub(crate) fn fail_unrunnable(self: &Arc<Self>) {
        if self.fail_unmet() {
            // Jobs whose request nobody meets now wait for a node to join.
            Core::watch_unmet(self);
        }
        if self.ncpus.load(Ordering::Acquire) > 0 || self.open_ended {
            return;
        }
        let mut verdicts: Vec<(JobKind, Option<String>)> = Vec::new();
        // Asked once per kind queued; the jobs of kinds someone can run are
        // not touched.
        let doomed = self.queue.drain_kinds(|(kind, _)| {
            let why = self.runnable(*kind).err();
            let doomed = why.is_some();
            verdicts.push((*kind, why));
            doomed
        });
        if doomed.is_empty() {
            return;
        }
        let kind = unrunnable_kind(&self.nodes());
        for task in doomed {
            let why = verdicts
                .iter()
                .find(|(k, _)| *k == task.job())
                .and_then(|(_, why)| why.clone())
                .unwrap_or_default();
            task.abandon(JobError::new(kind, why));
        }
    }
}
