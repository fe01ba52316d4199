//! What the server's threads share: the job queue, the run context, the
//! links to nodes, and the stop flag.

use crate::remote::{lock, Link, LinkSettings, NodeInfo, NodeState};
use crate::task::{RunCtx, Task};
use crate::tracker::Tracker;
use ppcore::{ErrorKind, JobError, Lanes};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Core {
    pub(crate) queue: Lanes<Arc<dyn Task>>,
    pub(crate) ctx: RunCtx,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) settings: LinkSettings,
    pub(crate) ncpus: AtomicUsize,
    /// Whether nodes we do not know yet may still turn up (listen, discovery).
    pub(crate) open_ended: bool,
    links: Mutex<Vec<Arc<Link>>>,
    stop: AtomicBool,
    /// Signalled on every change worth waking for: first contact, stop.
    news: (Mutex<()>, Condvar),
}

impl Core {
    pub(crate) fn new(
        tracker: Arc<Tracker>,
        settings: LinkSettings,
        ncpus: usize,
        open_ended: bool,
    ) -> Self {
        Core {
            queue: Lanes::new(),
            ctx: RunCtx::new(settings.max_frame),
            tracker,
            settings,
            ncpus: AtomicUsize::new(ncpus),
            open_ended,
            links: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            news: (Mutex::new(()), Condvar::new()),
        }
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
        while let Some(task) = self.queue.try_pop() {
            task.abandon(crate::task::shutdown_error());
        }
    }

    fn wake(&self) {
        let _guard = lock(&self.news.0);
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

    /// A link reached (or failed to reach) its node for the first time.
    pub(crate) fn contacted(&self) {
        self.wake();
    }

    /// Waits until every link has answered once (up, down or refused), or `limit`.
    pub(crate) fn wait_first_contact(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
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

    pub(crate) fn add_link(&self, link: Arc<Link>) {
        lock(&self.links).push(link);
    }

    /// The link named `name`, if there is one.
    pub(crate) fn link(&self, name: &str) -> Option<Arc<Link>> {
        lock(&self.links).iter().find(|l| l.name == name).cloned()
    }

    pub(crate) fn links(&self) -> Vec<Arc<Link>> {
        lock(&self.links).clone()
    }

    pub(crate) fn nodes(&self) -> Vec<NodeInfo> {
        self.links()
            .iter()
            .map(|l| NodeInfo {
                name: l.name.clone(),
                state: l.state(),
            })
            .collect()
    }

    /// Queues a new job.
    pub(crate) fn enqueue(&self, task: Arc<dyn Task>) {
        if self.stopped() {
            return task.abandon(crate::task::shutdown_error());
        }
        self.queue.push(task);
    }

    /// Puts a job handed back (its node was lost or stopped) ahead of the
    /// jobs not started yet.
    pub(crate) fn requeue(&self, task: Arc<dyn Task>) {
        if self.stopped() {
            return task.abandon(crate::task::shutdown_error());
        }
        self.queue.push_front(task);
    }

    /// A node pulled a job it cannot run: back in line if someone else may
    /// run it, else resolved with the reason.
    pub(crate) fn pass_on(&self, task: Arc<dyn Task>) {
        match self.runnable(task.job()) {
            Ok(()) => self.requeue(task),
            Err(reason) => task.abandon(JobError::new(ErrorKind::UnknownJob, reason)),
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
            match link.can_run(job) {
                Some(true) | None => return Ok(()),
                Some(false) => why.push(match (link.state(), link.ship_refusal()) {
                    (NodeState::Failed { reason }, _) => format!("{}: {reason}", link.name),
                    (_, Some(refused)) => format!(
                        "{}: has no job `{}` and refused this program: {refused}",
                        link.name, job.0
                    ),
                    _ => format!("{}: has no job `{}` of this type", link.name, job.0),
                }),
            }
        }
        let hint = match crate::ship::initialized() {
            true => String::new(),
            false => format!(" ({})", crate::ship::INIT_HINT),
        };
        Err(format!(
            "no local workers (ncpus = 0) and no node can run `{}`: {}{hint}",
            job.0,
            why.join("; ")
        ))
    }

    /// After a node refused us for good: fails the queued jobs nobody can run.
    pub(crate) fn fail_unrunnable(&self) {
        if self.ncpus.load(Ordering::Acquire) > 0 || self.open_ended {
            return;
        }
        let mut keep = Vec::new();
        while let Some(task) = self.queue.try_pop() {
            match self.runnable(task.job()) {
                Ok(()) => keep.push(task),
                Err(reason) => task.abandon(JobError::new(ErrorKind::UnknownJob, reason)),
            }
        }
        for task in keep {
            self.enqueue(task);
        }
    }
}
