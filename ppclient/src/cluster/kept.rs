//! Kept results in the client: the references the caller holds
//! ([`KeptRef`], behind `Shared<T>` and a kept job's handle), where jobs
//! that take them run (`Core::place`, by the directory's rules), fetching
//! a value to the client, and making lost values again (lineage).
//!
//! Every change goes through the directory under its lock, and what it
//! answers ([`Moves`]) is carried out after the lock is released: jobs
//! queued or pinned to a node, failed, fetched, made again.

use crate::cluster::state::Core;
use crate::jobs::ctx::RunCtx;
use crate::jobs::task::{inner_id, Dispatch, KeptSink, Remake, Task};
use crate::jobs::timer::Expire;
use ppcore::shared::{KeptSource, SharedId, SharedValue};
use ppcore::sync::lock;
use ppcore::values::{Moves, Place, State};
use ppcore::wire::KeepOp;
use ppcore::{ErrorKind, JobError};
use serde_bytes::ByteBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a fetch waits between looks at its value when nothing wakes
/// it (a backstop: every change wakes it).
const FETCH_LOOK: Duration = Duration::from_millis(200);

/// A reference to a kept result, as the caller's `Shared<T>` and handle
/// hold it. When the last one goes, the client forgets the value (and the
/// links free it on the nodes, as they free unheld shared values).
pub(crate) struct KeptRef {
    id: SharedId,
    core: Weak<Core>,
}

impl KeptSource for KeptRef {
    fn id(&self) -> SharedId {
        self.id
    }

    fn fetch(&self) -> Result<Arc<SharedValue>, JobError> {
        let gone = || JobError::new(ErrorKind::Shutdown, "the server was dropped");
        let core = self.core.upgrade().ok_or_else(gone)?;
        core.fetch(&self.id)
    }
}

impl Drop for KeptRef {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            core.values.note_gone(self.id);
        }
    }
}

/// Where a job's kept input is, for the link about to send the job.
pub(crate) enum Input {
    /// In the client: it goes with the job.
    Here(Arc<SharedValue>),
    /// On that node already (`true`: still being made there).
    There(bool),
    /// Somewhere else: the job is to be placed again.
    Elsewhere,
}

/// The sink jobs whose results are kept report to.
struct Sink(Weak<Core>);

impl KeptSink for Sink {
    fn here(&self, id: SharedId, value: Arc<SharedValue>) {
        if let Some(core) = self.0.upgrade() {
            core.forget_gone();
            core.values.put_here(id, value);
            let moves = lock(&core.values.dir).in_client(&id);
            core.apply(moves);
        }
    }

    fn on_node(&self, id: SharedId, node: &str, len: u64) {
        if let Some(core) = self.0.upgrade() {
            if let Some(record) = core.link(node) {
                record.counters.kept();
            }
            let moves = lock(&core.values.dir).kept_on(&id, node.to_owned(), len);
            core.apply(moves);
        }
    }

    fn failed(&self, id: SharedId, err: &JobError) {
        if let Some(core) = self.0.upgrade() {
            let moves = lock(&core.values.dir).failed(&id, err.clone());
            core.apply(moves);
        }
    }

    fn recipe(&self, id: SharedId, remake: Remake) {
        if let Some(core) = self.0.upgrade() {
            core.values.set_recipe(id, remake);
        }
    }
}

impl Core {
    /// Where jobs whose results are kept report.
    pub(crate) fn kept_sink(self: &Arc<Self>) -> Arc<dyn KeptSink> {
        let sink = self
            .values
            .sink
            .get_or_init(|| Arc::new(Sink(Arc::downgrade(self))));
        Arc::clone(sink)
    }

    /// A new kept value, to be made by job `job` (`name`): its reference.
    pub(crate) fn new_kept(
        self: &Arc<Self>,
        job: u64,
        name: &'static str,
    ) -> Result<Arc<KeptRef>, JobError> {
        let id = SharedId::fresh()?;
        lock(&self.values.dir).add(id, (job, name));
        Ok(Arc::new(KeptRef {
            id,
            core: Arc::downgrade(self),
        }))
    }

    /// Queues `task`, held until the kept values it takes are ready and
    /// then sent where they lie.
    pub(crate) fn place(self: &Arc<Self>, task: Arc<dyn Task>) {
        let inputs = task.inputs();
        if inputs.is_empty() {
            return self.enqueue(task);
        }
        self.forget_gone();
        let id = task.id();
        let moves = lock(&self.values.dir).place(id, task, inputs);
        self.apply(moves);
    }

    /// Carries out what the directory answered.
    pub(crate) fn apply(self: &Arc<Self>, moves: Moves<Arc<dyn Task>, String>) {
        let Moves {
            run,
            fail,
            fetch,
            transfer,
            remake,
        } = moves;
        for (task, place) in run {
            match place {
                Place::On(node) => match self.link(&node) {
                    Some(record) if !self.stopped() => record.pin(task),
                    _ => self.enqueue(task),
                },
                Place::Near(node) => match self.link(&node) {
                    Some(record) if !self.stopped() => self.near(&record, task),
                    _ => self.enqueue(task),
                },
                Place::Anywhere => self.enqueue(task),
            }
        }
        for (task, err) in fail {
            task.abandon(err);
        }
        for (id, node) in fetch {
            self.fetch_from(id, &node);
        }
        for (id, from, to) in transfer {
            self.transfer(id, &from, &to);
        }
        for id in remake {
            self.remake(id);
        }
        self.values.changed();
    }

    /// The job making kept value `id` was sent to `node`: jobs waiting on
    /// it may follow it there now.
    pub(crate) fn making(self: &Arc<Self>, id: &SharedId, node: &str) {
        let moves = lock(&self.values.dir).making(id, node.to_owned());
        self.apply(moves);
    }

    /// The job making kept value `id` is queued again (its node handed it
    /// back or was lost).
    pub(crate) fn remaking_queued(self: &Arc<Self>, id: &SharedId) {
        let moves = lock(&self.values.dir).requeued(id);
        self.apply(moves);
    }

    /// Where kept input `id` of a job about to go to `node` lies.
    pub(crate) fn input_for(self: &Arc<Self>, id: &SharedId, node: &str) -> Input {
        if let Some(value) = self.values.here(id) {
            return Input::Here(value);
        }
        match lock(&self.values.dir).state(id) {
            Some(State::On(n)) if n == node => Input::There(false),
            Some(State::Making(n)) if n == node => Input::There(true),
            _ => Input::Elsewhere,
        }
    }

    /// Node `node`'s link went down: the values kept there are lost. Those
    /// still referenced are made again now; jobs pinned to it are placed
    /// again; on a server whose nodes may still join, queued jobs only it
    /// met are watched (they fail after `unmet_wait`).
    pub(crate) fn node_lost(self: &Arc<Self>, node: &str) {
        let (lost, moves) = lock(&self.values.dir).node_lost(&node.to_owned());
        self.apply(moves);
        for id in lost {
            if ppcore::shared::is_held(&id) && lock(&self.values.dir).remaking(&id) {
                self.remake_now(id);
            }
        }
        if let Some(record) = self.link(node) {
            for task in record.drain_pinned() {
                if task.is_fetch() {
                    task.abandon(JobError::new(ErrorKind::NodeLost, "node lost"));
                } else {
                    self.place(task);
                }
            }
        }
        self.values.changed();
        if self.open_ended {
            // Queued jobs only it could run may now wait for a node to
            // join: at most `unmet_wait` (`cluster::unmet`).
            Core::watch_unmet(self);
        }
    }

    /// Node `node` says it does not have kept value `id` any more: lost.
    pub(crate) fn kept_lost_on(self: &Arc<Self>, id: &SharedId, node: &str) {
        let moves = lock(&self.values.dir).fetch_failed(id, &node.to_owned());
        self.apply(moves);
    }

    /// Forgets the kept values nobody refers to any more.
    pub(crate) fn forget_gone(self: &Arc<Self>) {
        let gone = self.values.take_gone();
        for id in gone {
            let moves = lock(&self.values.dir).forget(&id);
            self.apply(moves);
        }
    }

    /// Frees the kept values the client holds that nobody holds any more
    /// (the links free those on the nodes likewise).
    pub(crate) fn drop_unheld(self: &Arc<Self>) {
        for id in self.values.drop_unheld() {
            let moves = lock(&self.values.dir).dropped_here(&id);
            self.apply(moves);
        }
    }

    /// Lost value `id` is to be made again (the directory counted it).
    fn remake(self: &Arc<Self>, id: SharedId) {
        self.remake_now(id);
    }

    fn remake_now(self: &Arc<Self>, id: SharedId) {
        let round = lock(&self.values.dir).remade(&id);
        match self.values.recipe(&id) {
            Some(remake) => {
                tracing::info!(value = %id, round, "making a lost kept result again");
                self.place(remake(round));
            }
            None => {
                let err = JobError::new(
                    ErrorKind::Dependency,
                    format!("kept value {id} was lost and cannot be made again"),
                );
                let moves = lock(&self.values.dir).failed(&id, err);
                self.apply(moves);
            }
        }
    }

    /// Brings kept value `id` from `node` to the client.
    fn fetch_from(self: &Arc<Self>, id: SharedId, node: &str) {
        let task = Arc::new(Fetch {
            id: inner_id(),
            value: id,
            core: Arc::downgrade(self),
            node: node.to_owned(),
            over: AtomicBool::new(false),
        });
        match self.link(node) {
            Some(record) => record.pin(task),
            None => task.abandon(JobError::new(ErrorKind::NodeLost, "no such node")),
        }
    }

    /// Kept value `id` in the client: fetched from where it lies, once,
    /// waiting for its job (or its remake) if need be.
    fn fetch(self: &Arc<Self>, id: &SharedId) -> Result<Arc<SharedValue>, JobError> {
        let _blocking = self.tracker.blocking();
        loop {
            let seen = self.values.version();
            self.forget_gone();
            if let Some(value) = self.values.here(id) {
                return Ok(value);
            }
            let (state, from) = {
                let mut dir = lock(&self.values.dir);
                let from = dir.start_fetch(id);
                (dir.state(id).cloned(), from)
            };
            match state {
                None => {
                    return Err(JobError::new(
                        ErrorKind::Dependency,
                        format!("kept value {id} is no longer known"),
                    ))
                }
                Some(State::Failed(e)) => return Err(e),
                Some(State::Lost) if lock(&self.values.dir).remaking(id) => self.remake_now(*id),
                _ => {}
            }
            if let Some(node) = from {
                self.fetch_from(*id, &node);
            }
            if self.stopped() {
                return Err(crate::jobs::task::shutdown_error());
            }
            self.values.wait_change(seen, FETCH_LOOK);
        }
    }
}

/// The fetch of a kept value from the node that keeps it: sent as a job
/// (it takes the link's credit like one), answered with the value's bytes.
struct Fetch {
    id: u64,
    value: SharedId,
    core: Weak<Core>,
    /// The node it fetches from.
    node: String,
    over: AtomicBool,
}

impl Fetch {
    fn end(&self, result: Result<ByteBuf, JobError>) {
        if self.over.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let moves = match result {
            Ok(bytes) => {
                core.link(&self.node)
                    .inspect(|r| r.counters.fetched(bytes.len() as u64));
                let value = SharedValue::kept_listed(self.value, bytes.into_vec(), None);
                core.values.put_here(self.value, value);
                lock(&core.values.dir).in_client(&self.value)
            }
            Err(e) if e.kind == ErrorKind::NodeLost => {
                // Gone from its node: lost, and made again when needed.
                tracing::info!(value = %self.value, "fetch failed: {e}");
                lock(&core.values.dir).fetch_failed(&self.value, &self.node)
            }
            Err(e) => {
                // It lies there but cannot come here (over the client's
                // payload limit, say): what needs it here fails with why,
                // rather than fetching again and again.
                let message = format!("kept value {} cannot be fetched: {}", self.value, e);
                lock(&core.values.dir).failed(&self.value, e.with_message(message))
            }
        };
        core.apply(moves);
    }
}

impl Expire for Fetch {
    fn expire(self: Arc<Self>) {}
}

impl Task for Fetch {
    fn id(&self) -> u64 {
        self.id
    }

    fn job(&self) -> (&'static str, &'static str) {
        ("", "")
    }

    fn timeout(&self) -> Option<Duration> {
        None
    }

    fn run_local(self: Arc<Self>, _ctx: &RunCtx) {
        self.end(Err(JobError::new(
            ErrorKind::NodeLost,
            "a fetch runs on its node only",
        )));
    }

    fn dispatch(&self, _ctx: &RunCtx, _now: Instant) -> Result<Dispatch, Option<JobError>> {
        if self.over.load(Ordering::Acquire) {
            return Err(None);
        }
        Ok(Dispatch {
            attempt: 1,
            args: ByteBuf::new(),
            shared: Vec::new(),
            kept: Vec::new(),
            keep: Some(KeepOp::Fetch(self.value)),
            journal: None,
        })
    }

    fn complete(
        self: Arc<Self>,
        result: Result<ByteBuf, JobError>,
        _node: &str,
        _kept: Option<u64>,
    ) -> Option<Arc<dyn Task>> {
        self.end(result);
        None
    }

    fn retry(self: Arc<Self>, _node: &str, _lost: bool) -> Option<Arc<dyn Task>> {
        self.end(Err(JobError::new(ErrorKind::NodeLost, "handed back")));
        None
    }

    fn abandon(self: Arc<Self>, err: JobError) {
        self.end(Err(err));
    }

    fn ended(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    fn group(&self) -> Option<usize> {
        None
    }

    fn cancel(self: Arc<Self>) -> bool {
        false
    }

    fn is_fetch(&self) -> bool {
        true
    }
}
