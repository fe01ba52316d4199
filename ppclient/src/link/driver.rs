//! The driver of one link: a thin I/O shell around [`ppcore::ClientLink`].
//!
//! One thread per node, and no hand-off between threads on the way in or
//! out. The driver owns the link (no lock around it) and a non-blocking
//! socket; it sleeps in `mio` until the socket is readable or writable, the
//! link's next timer is due, or someone wakes it: a push to the job queue
//! (only while the node has room and the queue held nothing it can run), or
//! the server stopping (while jobs are on the node, and for 100 µs after its
//! last answer, it first looks at the socket and the queue, yielding the
//! core in between, so that an answer or the next job costs no wake-up).
//! Then it reads, feeds what happened to the link, and
//! carries out what the link hands out: bytes to write (what the socket does
//! not take waits in an [`Outbox`]; the link hears what each write did),
//! dial and close, then events (resolve or requeue jobs, node up or down).
//! Every decision (handshake, window, heartbeats, losses, backoff, the write
//! stall, the ended-job sweep, when to offer the program and send its next
//! chunk) is the link's, tested on a fake clock in ppcore.

use crate::cluster::kept::Input;
use crate::cluster::node::{JobSet, NodeRecord, NodeState};
use crate::cluster::state::Core;
use crate::jobs::task::{JobKind, Task};
use crate::jobs::timer::Expire;
use crate::link::dial::dial;
use crate::link::fit::NodeFit;
use mio::net::TcpStream;
use mio::{Events, Poll};
use ppcore::io_driver::{self, ReadOutcome, Spun, Waker, READS_PER_TURN, READ_BUF};
use ppcore::link::{
    ClientLink, Event, LinkConfig, LinkEvent, LinkIo, LinkState, Refusal, TransportError,
};
use ppcore::program::{OfferAnswer, ProgramId};
use ppcore::shared::{SharedId, SharedValue};
use ppcore::wire::{KeepOp, RunJob};
use ppcore::{Outbox, Wake};
use std::collections::{HashMap, HashSet};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest batch of jobs taken from the queue at once.
const MAX_BATCH: usize = 1024;

/// Whose link this is.
pub(crate) enum Target {
    /// A node we dial, already known by name.
    Named(Arc<NodeRecord>),
    /// A node that dialled us; known by name once it said who it is.
    Joined(Arc<crate::cluster::joins::Join>),
}

/// The link's settings from the server's; `None` without keys.
pub(crate) fn link_config(core: &Core, reconnect: bool) -> Option<LinkConfig> {
    let s = &core.settings;
    Some(LinkConfig {
        keys: s.keys.clone()?,
        heartbeat: s.heartbeat,
        handshake_timeout: s.connect_timeout.max(Duration::from_secs(1)),
        max_frame: s.max_frame,
        max_payload: s.max_payload,
        stream_stall: ppcore::stream::DEFAULT_STALL,
        max_prefetch: s.max_prefetch,
        backoff_min: ppcore::link::RECONNECT_FIRST,
        backoff_max: ppcore::link::RECONNECT_MAX,
        reconnect,
        give_up_after: None,
        send_window: ppcore::window::default_window(s.max_frame),
        run: s.run,
    })
}

struct Driver<'a> {
    core: &'a Arc<Core>,
    target: Target,
    /// A joined node's place in the join table, held while it is served
    /// under its name (dropping it frees the name).
    joined: Option<Arc<crate::cluster::joins::Join>>,
    link: ClientLink<Arc<dyn Task>>,
    poll: Poll,
    waker: Arc<Waker>,
    /// `waker`, as the queue keeps it, marking that the queue woke it.
    watch: Arc<QueueWatch>,
    /// `watch`, as the queue keeps it.
    watcher: Arc<dyn Wake>,
    /// The live connection.
    conn: Option<TcpStream>,
    outbox: Outbox,
    /// The socket may have more to read.
    readable: bool,
    /// Whether the poll watches the socket for room to write (only while
    /// the outbox holds bytes).
    watch_write: bool,
    /// The node's name, as errors and stats give it.
    name: String,
    buf: Vec<u8>,
    stopping: bool,
    /// Which kinds of job the node runs, as found out so far this session.
    kinds: Vec<(JobKind, bool)>,
    /// This program's upload to the node, one chunk per turn (the link
    /// says when).
    upload: Option<crate::link::ship::Upload>,
    /// When the node last answered a job.
    active: Instant,
    /// The node's offer and what the jobs with a request sent there hold
    /// (from its `Welcome`, while it is up).
    fit: Option<NodeFit>,
}

/// Runs the link for `target` until it closes: dialling (or, for a node that
/// joined, over `stream`), serving, reconnecting.
pub(crate) fn drive(core: &Arc<Core>, target: Target, stream: Option<std::net::TcpStream>) {
    let Some(config) = link_config(core, stream.is_none()) else {
        if let Target::Named(record) = &target {
            let reason = Refusal::NoKey;
            record.set_state(NodeState::Failed { reason });
            core.contacted();
        }
        return;
    };
    drive_with(core, target, stream, config);
}

/// [`drive`] with the link's settings given (a discovered node's gives up).
pub(crate) fn drive_with(
    core: &Arc<Core>,
    target: Target,
    stream: Option<std::net::TcpStream>,
    config: LinkConfig,
) {
    let (poll, waker) = match Poll::new().and_then(|p| Waker::new(&p).map(|w| (p, w))) {
        Ok(pw) => pw,
        Err(e) => {
            tracing::warn!("cannot start a link: {e}");
            if let Target::Named(r) = &target {
                let why = TransportError::Connect(format!("cannot start a link: {e}"));
                r.set_state(NodeState::Down { reason: why.into() });
            }
            core.contacted();
            return;
        }
    };
    let now = Instant::now();
    let link = match &stream {
        None => ClientLink::new(config, now),
        Some(_) => ClientLink::accepted(config, now),
    };
    if let Target::Named(record) = &target {
        record.set_waker(Arc::clone(&waker));
    }
    let watch = Arc::new(QueueWatch {
        woken: AtomicBool::new(false),
        waker: Arc::clone(&waker),
    });
    let watcher: Arc<dyn Wake> = watch.clone();
    let mut d = Driver {
        core,
        target,
        link,
        poll,
        waker,
        watch,
        watcher,
        conn: None,
        outbox: Outbox::new(),
        readable: false,
        watch_write: false,
        name: String::new(),
        joined: None,
        buf: vec![0u8; READ_BUF],
        stopping: false,
        kinds: Vec::new(),
        upload: None,
        active: now,
        fit: None,
    };
    d.name = d.target_name();
    if let Some(stream) = stream {
        d.connected(stream);
    }
    d.run();
    core.queue.unwatch(&d.watcher);
    if let Some(record) = d.record() {
        record.clear_waker();
    }
}

impl Driver<'_> {
    fn record(&self) -> Option<&Arc<NodeRecord>> {
        match &self.target {
            Target::Named(r) => Some(r),
            Target::Joined(_) => None,
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn target_name(&self) -> String {
        match &self.target {
            Target::Named(r) => r.name.clone(),
            Target::Joined(join) => join.peer.to_string(),
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(8);
        loop {
            self.settle();
            if self.link.state() == LinkState::Closed {
                return;
            }
            if self.core.stopped() && !self.stopping {
                self.stopping = true;
                self.link.handle(Event::Close, Instant::now());
                continue;
            }
            self.serve_cancel_asks();
            if let Some(acks) = self.record().map(|r| r.take_acks()) {
                self.link.recorded(&acks);
            }
            // Jobs that ended while on the node leave the window (the link
            // tells the node to stop them), and shared values nobody holds
            // are freed, when the link says a sweep is due.
            let now = Instant::now();
            if let Some(gone) = self.link.sweep(now, |t| t.ended(), ppcore::shared::is_held) {
                drop(gone);
                self.core.forget_gone();
                self.core.drop_unheld();
                continue;
            }
            self.ship_turn();
            self.settle();
            self.wait(&mut events);
        }
    }

    /// Cancels the jobs in flight that `Server::cancel_all` or
    /// `cancel_group` asked for, and says how many.
    fn serve_cancel_asks(&mut self) {
        // One atomic load per turn when nobody asks (no Arc clone).
        let asks = match self.record() {
            Some(record) => record.take_cancel_asks(),
            None => return,
        };
        for ask in asks {
            let gone = self
                .link
                .cancel_where(|t| t.id() < ask.below && crate::jobs::task::in_group(t, ask.group));
            let n = gone.into_iter().filter(|t| Arc::clone(t).cancel()).count();
            let _ = ask.reply.send(n);
        }
    }

    /// Carries out the link's actions and writes what it can, until the
    /// link has nothing more to say.
    fn settle(&mut self) {
        loop {
            self.act();
            let Some(conn) = &mut self.conn else {
                self.outbox.clear();
                return;
            };
            let before = self.outbox.len();
            let now = Instant::now();
            let flushed = self.outbox.flush(conn, now);
            let left = self.outbox.len();
            // The link keeps the write-stall rule: it hears what each write did.
            self.link.wrote(before - left, left, now);
            match flushed {
                // Arguments too large for a frame go out one chunk at a
                // time, when what waits runs low: heartbeats and other jobs
                // go in between. The link also learns what is unsent, and
                // takes no job while that is at its send window.
                Ok(_) if self.link.send_more(self.outbox.len()) => {}
                Ok(all) => {
                    // Room to write matters only while bytes wait.
                    let registry = self.poll.registry();
                    let watch = &mut self.watch_write;
                    if let Err(e) = io_driver::watch_writes(registry, conn, watch, all) {
                        tracing::warn!(node = %self.name, "poll: {e}");
                    }
                    return;
                }
                Err(e) => {
                    let reason = TransportError::Write(e.to_string());
                    self.link
                        .handle(Event::TransportClosed(reason), Instant::now());
                }
            }
        }
    }

    /// Sleeps until the socket, the queue, a wake-up or a timer has news,
    /// and feeds it to the link.
    fn wait(&mut self, events: &mut Events) {
        if self.spin(events) {
            return; // jobs taken: their frames go out first
        }
        // Asleep from here: a push or a stop from now on wakes the poll.
        self.waker.going_to_sleep();
        let busy = self.readable || self.core.stopped() || self.take_jobs();
        let now = Instant::now();
        let mut wake = self.link.next_sweep();
        if let Some(t) = self.link.poll_timeout() {
            wake = wake.min(t);
        }
        let chunk_due = self.upload.is_some() && self.link.chunk_due();
        let timeout = match busy || chunk_due {
            true => Duration::ZERO,
            false => wake.saturating_duration_since(now),
        };
        match io_driver::sleep(&mut self.poll, events, timeout) {
            Ok(socket) => self.readable |= socket,
            Err(e) => tracing::warn!(node = %self.name(), "poll failed: {e}"),
        }
        self.waker.awake();
        if self.readable {
            self.read();
        }
        let now = Instant::now();
        if self.link.poll_timeout().is_some_and(|t| t <= now) {
            self.link.handle(Event::Timer, now);
        }
    }

    /// While jobs are on the node, or shortly after the last answer, looks
    /// at the socket and the queue for a short while (yielding the core in
    /// between) before sleeping: an answer or the next job is then taken
    /// without waking this thread. True if it took jobs.
    fn spin(&mut self, events: &mut Events) -> bool {
        if self.conn.is_none() || self.readable || self.stopping {
            return false;
        }
        let jobs_out = self.link.in_flight() > 0;
        if !io_driver::worth_spinning(jobs_out, self.active, Instant::now()) {
            return false;
        }
        match io_driver::spin(self, |d| &mut d.poll, events, Self::take_jobs) {
            Spun::News => true,
            Spun::Socket => {
                self.readable = true;
                false
            }
            Spun::Quiet => false,
        }
    }

    /// Reads what the socket has (a bounded amount per turn), feeding it to
    /// the link.
    fn read(&mut self) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = &mut self.conn else {
                self.readable = false;
                return;
            };
            let now = Instant::now();
            match io_driver::read_once(conn, &mut self.buf) {
                ReadOutcome::Closed => {
                    self.readable = false;
                    let reason = TransportError::PeerClosed;
                    self.link.handle(Event::TransportClosed(reason), now);
                }
                ReadOutcome::Bytes(n) => {
                    self.record().inspect(|r| r.meter.received(n));
                    self.link.handle(Event::Received(&self.buf[..n]), now)
                }
                ReadOutcome::WouldBlock => {
                    self.readable = false;
                    return;
                }
                ReadOutcome::Failed(e) => {
                    self.readable = false;
                    let reason = TransportError::Read(e.to_string());
                    self.link.handle(Event::TransportClosed(reason), now);
                }
            }
            self.settle();
        }
    }

    /// Whether the node runs jobs of `kind` (looked up once per session).
    fn runs(
        link: &ClientLink<Arc<dyn Task>>,
        kinds: &mut Vec<(JobKind, bool)>,
        kind: &JobKind,
    ) -> bool {
        if let Some((_, yes)) = kinds.iter().find(|(k, _)| k == kind) {
            return *yes;
        }
        let yes = link.can_run(kind.0, kind.1);
        kinds.push((*kind, yes));
        yes
    }

    /// Takes queued jobs the node can run, within its window, and submits
    /// them; true if it took any. Jobs pinned to this node (their kept
    /// inputs lie here) go first; a job that keeps its result here may pin
    /// its dependents, which go in the next round. Jobs it cannot run keep
    /// their places in the queue. If there is room but nothing for this
    /// node, the queue wakes the driver at its next push.
    fn take_jobs(&mut self) -> bool {
        let mut took = false;
        // Each round but the first takes only what the last one pinned: a
        // chain of N dependent jobs takes N rounds, bounded by the window.
        loop {
            if self.stopping {
                self.pass_on_unused_wake();
                return took;
            }
            // Pinned jobs mostly wait there for inputs being made there:
            // they take the node's credit, not a worker slot.
            let pinned_room = self.link.free_within_credit().min(MAX_BATCH);
            let mut tasks = match pinned_room {
                0 => Vec::new(),
                n => self.record().map(|r| r.take_pinned(n)).unwrap_or_default(),
            };
            // Jobs whose inputs lie here at rest: while a worker is free.
            if !took && pinned_room > tasks.len() {
                if let Some(r) = self.record().filter(|r| r.has_near()) {
                    let idle = r.view().workers().saturating_sub(self.link.in_flight());
                    tasks.extend(r.take_near(idle.min(pinned_room - tasks.len())));
                }
            }
            let pinned = tasks.len();
            let room = self.link.free().min(MAX_BATCH).saturating_sub(pinned);
            if !took && room > 0 {
                self.watch.woken.store(false, Ordering::SeqCst);
                let (link, kinds) = (&self.link, &mut self.kinds);
                // Jobs that ask for nothing; then those with a request.
                tasks.extend(self.core.queue.pop_batch(
                    |(kind, request)| request.is_none() && Self::runs(link, kinds, kind),
                    room,
                    Some(&self.watcher),
                ));
                // Jobs with a request, where it fits the node's offer now.
                let left = (room + pinned).saturating_sub(tasks.len());
                if let (Some(fit), true) = (&mut self.fit, left > 0) {
                    let (core, watcher) = (self.core, &self.watcher);
                    tasks.extend(fit.take(
                        &core.queue,
                        |k| Self::runs(link, kinds, k),
                        left,
                        watcher,
                    ));
                }
            } else if !took {
                self.pass_on_unused_wake();
            }
            if tasks.is_empty() {
                return took;
            }
            took = true;
            self.send_jobs(tasks, pinned);
        }
    }

    /// The queue woke this driver for a job it will not look for now (no
    /// room, or stopping): the wake goes to another waiting driver.
    fn pass_on_unused_wake(&self) {
        if self.watch.woken.swap(false, Ordering::SeqCst) {
            self.core.queue.pass_on(&self.watcher);
        }
    }

    /// Encodes `tasks` (the first `pinned` of them pinned to this node) and
    /// hands them to the link.
    fn send_jobs(&mut self, tasks: Vec<Arc<dyn Task>>, pinned: usize) {
        let mut batch = Vec::with_capacity(tasks.len());
        let now = Instant::now();
        // Jobs with a request that do not reach the link give back what
        // they hold of the node's offer.
        let asked: Vec<u64> = match self.fit {
            Some(_) => tasks
                .iter()
                .filter(|t| t.request().is_some())
                .map(|t| t.id())
                .collect(),
            None => Vec::new(),
        };
        let mut sent = Vec::new();
        let mut tasks = tasks.into_iter().enumerate();
        let mut making = Vec::new();
        for (_, task) in tasks.by_ref() {
            match task.dispatch(&self.core.ctx, now) {
                Ok(d) => {
                    // The shared values the job names go first, once.
                    if let Err(e) = self.share(&d.shared) {
                        task.abandon(e);
                        continue;
                    }
                    let mut shared: Vec<SharedId> = d.shared.iter().map(|v| v.id()).collect();
                    match self.kept_inputs(&d.kept) {
                        Ok(chained) => {
                            if chained {
                                self.record().inspect(|r| r.counters.chained());
                            }
                        }
                        Err(None) => {
                            // An input lies elsewhere now: placed again.
                            if let Some(t) = task.retry(&self.name, false) {
                                self.core.requeue(t);
                            }
                            continue;
                        }
                        Err(Some(e)) => {
                            task.abandon(e);
                            continue;
                        }
                    }
                    shared.extend(d.kept.iter().map(|k| k.id()));
                    self.core
                        .ctx
                        .arm(Arc::clone(&task) as Arc<dyn Expire>, task.timeout());
                    if let Some(KeepOp::Keep(id)) = d.keep {
                        making.push(id);
                    }
                    let run = RunJob {
                        id: task.id(),
                        attempt: d.attempt,
                        name: task.job().0.to_owned(),
                        args: d.args,
                        program: None, // the link knows whose job it is
                        shared,
                        keep: d.keep,
                        journal: d.journal,
                        request: task.request().map(|r| (**r).clone()),
                    };
                    sent.push(run.id);
                    let streamed = self.link.is_streamed(run.args.len());
                    batch.push((run, task));
                    // Streamed arguments go to the link at once: the next
                    // job is encoded only if its send window has room.
                    if streamed {
                        self.link
                            .handle(Event::Submit(std::mem::take(&mut batch)), now);
                        if self.link.free() == 0 {
                            break;
                        }
                    }
                }
                Err(Some(e)) => task.abandon(e),
                Err(None) => {} // cancelled while queued
            }
        }
        if !batch.is_empty() {
            self.link.handle(Event::Submit(batch), now);
        }
        // Jobs not encoded (the window is full) go back ahead of the line,
        // in order (the front lane is first in, first out); pinned ones to
        // this node again.
        for (i, task) in tasks {
            match (i < pinned, self.record()) {
                (true, Some(r)) => r.pin(task),
                _ => self.core.requeue(task),
            }
        }
        if let Some(fit) = &mut self.fit {
            for id in asked.into_iter().filter(|id| !sent.contains(id)) {
                fit.release(id);
            }
        }
        // Their results will be kept here: the jobs waiting on them follow.
        for id in making {
            self.core.making(&id, &self.name);
        }
    }

    /// Sends the node the kept results a job takes that lie in the client;
    /// true if one of them is still being made there (the node starts the
    /// job when it is: no round trip). `Err(None)`: one lies elsewhere.
    fn kept_inputs(
        &mut self,
        kept: &[Arc<dyn ppcore::shared::KeptSource>],
    ) -> Result<bool, Option<ppcore::JobError>> {
        let mut chained = false;
        for input in kept {
            let id = input.id();
            match self.core.input_for(&id, &self.name) {
                Input::Here(value) => self.share_one(&value, true).map_err(Some)?,
                Input::There(making) => chained |= making,
                Input::Elsewhere => return Err(None),
            }
        }
        Ok(chained)
    }

    /// Sends the node the shared values it does not hold yet; an error if
    /// one is over the node's payload limit.
    fn share(&mut self, values: &[Arc<SharedValue>]) -> Result<(), ppcore::JobError> {
        for value in values {
            self.share_one(value, false)?;
        }
        Ok(())
    }

    /// Sends the node value `value` (a kept result the client holds, if
    /// `kept`) unless it holds it already.
    fn share_one(&mut self, value: &Arc<SharedValue>, kept: bool) -> Result<(), ppcore::JobError> {
        if self.link.needs_share(&value.id()) {
            self.link
                .share(value.id(), Arc::clone(value.bytes()), kept)
                .map_err(|e| {
                    let message = format!("node {} refuses a shared value: {e}", self.name);
                    ppcore::JobError::new(ppcore::ErrorKind::Codec, message)
                })?;
        }
        Ok(())
    }

    /// Carries out everything the link has for us: bytes to write first
    /// (a goodbye goes out before its connection closes), then socket
    /// commands, then what happened.
    fn act(&mut self) {
        loop {
            while let Some(bytes) = self.link.poll_transmit() {
                self.record().inspect(|r| r.meter.sent(bytes.len()));
                self.outbox.push(&bytes, Instant::now())
            }
            if let Some(io) = self.link.poll_io() {
                match io {
                    LinkIo::Connect => self.dial(),
                    LinkIo::Disconnect => self.disconnect(),
                }
                continue;
            }
            let Some(event) = self.link.poll_event() else {
                break;
            };
            match event {
                LinkEvent::Up(hello) => {
                    self.fit = Some(NodeFit::new(hello.offer.clone()));
                    self.up(hello)
                }
                LinkEvent::Draining => {
                    tracing::info!(node = %self.name(), "node draining");
                    if let Some(r) = self.record() {
                        r.set_state(NodeState::Draining);
                    }
                    self.core.contacted();
                }
                LinkEvent::Down { reason, retry_in } => {
                    tracing::info!(node = %self.name(), ?retry_in, "node down: {reason}");
                    if let Some(r) = self.record() {
                        r.set_state(NodeState::Down { reason });
                    }
                    // What it kept for this connection is gone with it.
                    self.core.node_lost(&self.name);
                    self.fit = None;
                    self.core.contacted();
                }
                LinkEvent::Failed { reason } => {
                    tracing::warn!(node = %self.name(), "node refused: {reason}");
                    if let Some(r) = self.record() {
                        r.set_state(NodeState::Failed { reason });
                        // After build() returned, nobody else tells the user.
                        if self.core.report_late.load(Ordering::Acquire) {
                            crate::cluster::node::report_refusals(&[r.info(&[])]);
                        }
                    }
                    self.core.contacted();
                    self.core.fail_unrunnable();
                }
                LinkEvent::Done {
                    job,
                    result,
                    exec,
                    kept,
                } => {
                    self.active = Instant::now();
                    if let (Some(fit), Some(_)) = (&mut self.fit, job.request()) {
                        fit.release(job.id());
                    }
                    if let Some(r) = self.record().filter(|_| !job.is_fetch()) {
                        r.counters.record(exec, result.is_err());
                        if job.is_remake() && result.is_ok() {
                            r.counters.recomputed();
                        }
                    }
                    if let (Some(len), Some(id)) = (kept, job.keeps()) {
                        // Freed there by the sweep once nobody holds it.
                        self.link.note_kept(id, len);
                    }
                    self.core.ctx.dash.get().inspect(|d| {
                        d.remote_end(&self.name, job.job().0, exec, result.as_ref().err())
                    });
                    // An input failed or was cancelled meanwhile: so does it.
                    let inputs = job.inputs();
                    let failed = match inputs.is_empty() {
                        true => None,
                        false => ppcore::sync::lock(&self.core.values.dir).input_failure(&inputs),
                    };
                    if let Some(err) = failed {
                        job.abandon(err);
                    } else if let Some(again) = job.complete(result, &self.name, kept) {
                        self.core.ctx.dash.get().inspect(|d| d.rerun(&self.name));
                        self.core.requeue(again);
                    }
                }
                LinkEvent::Offered { id, answer } => self.offered(id, answer),
                LinkEvent::ProgramReady { id, jobs } => self.program_ready(id, jobs),
                LinkEvent::ProgramRefused { id, reason } => {
                    self.ship_refused(id, format!("upload refused: {reason}"))
                }
                LinkEvent::Returned { job, lost } => {
                    if let (Some(fit), Some(_)) = (&mut self.fit, job.request()) {
                        fit.release(job.id());
                    }
                    if let Some(again) = job.retry(&self.name, lost) {
                        self.core.ctx.dash.get().inspect(|d| d.rerun(&self.name));
                        self.core.requeue(again);
                    }
                }
            }
        }
        self.record().inspect(|r| {
            r.meter.link(self.link.in_flight(), self.link.rtt());
            r.counters.set_shared(self.link.shared_sent());
            r.counters.set_kept_here(self.link.kept_here());
            if self.core.ctx.dash.get().is_some() {
                let in_flight = self.link.in_flight();
                r.meter
                    .set_in_use(self.fit.as_ref().map(|f| f.in_use(in_flight)));
            }
        });
        for id in self.link.take_lost_kept() {
            self.core.kept_lost_on(&id, &self.name);
        }
    }

    fn up(&mut self, hello: ppcore::link::NodeHello) {
        if let Target::Joined(join) = &self.target {
            let peer = join.peer;
            // Named by its claimed id and its address; never over a live join.
            let Some(name) = join.claim(&hello.node_id) else {
                tracing::warn!(%peer, "a node of that name is already joined: refused");
                return self.link.handle(Event::Close, Instant::now());
            };
            let record = self.core.link(&name).unwrap_or_else(|| {
                let record = NodeRecord::new(name);
                self.core.add_link(Arc::clone(&record));
                record
            });
            tracing::info!(%peer, node = %record.name, "node joined");
            record.set_addr(Some(peer));
            record.set_waker(Arc::clone(&self.waker));
            self.joined = Some(Arc::clone(join));
            self.target = Target::Named(record);
            self.name = self.target_name();
        }
        self.kinds.clear();
        // Before the jobs are published: nobody takes this program's jobs
        // for unrunnable while it is offered.
        let record = self.record().cloned();
        crate::link::ship::on_up(&mut self.link, record.as_deref(), Instant::now());
        self.upload = None;
        let mut jobs = HashMap::<String, HashSet<String>>::new();
        for j in hello.jobs {
            jobs.entry(j.name).or_default().insert(j.signature);
        }
        let jobs: JobSet = Arc::new(jobs);
        // What the node holds of our journaled run, for `submit` to reclaim.
        if !hello.orphans.is_empty() {
            tracing::info!(node = %self.name, jobs = hello.orphans.len(), "node holds results of this run");
            self.core.reclaimable(&self.name, hello.orphans);
        }
        if let Some(r) = self.record() {
            r.set_reach(hello.reach.clone());
            let reachable = hello.reach.is_some();
            ppcore::sync::lock(&self.core.values.dir).set_reachable(r.name.clone(), reachable);
            let offer = hello.offer.clone();
            r.update(|v| v.offer = Some(offer));
            r.came_up(hello.node_id.clone(), jobs, hello.workers);
            tracing::info!(node = %r.name, workers = hello.workers, "node up");
        }
        self.core.contacted();
        // Jobs queued while nobody knew whether this node runs them, and
        // nobody else can: resolved now with the reason.
        self.core.fail_unrunnable();
    }

    /// One step of shipping this program: the offer once it is hashed,
    /// then one chunk of the upload while the node keeps up.
    fn ship_turn(&mut self) {
        let now = Instant::now();
        if self.link.offer_due(now) {
            let record = self.record().cloned();
            crate::link::ship::try_offer(&mut self.link, record.as_deref(), now);
            return;
        }
        if let Some(upload) = &mut self.upload {
            if self.link.chunk_due() && !crate::link::ship::send_chunk(upload, &mut self.link) {
                self.upload = None;
                self.link.upload_over();
            }
        }
    }

    /// The node answered our offer.
    fn offered(&mut self, id: ProgramId, answer: OfferAnswer) {
        tracing::info!(node = %self.name(), program = %id, ?answer, "program offered");
        match answer {
            OfferAnswer::Need => match crate::link::ship::start_upload(id) {
                Ok(upload) => self.upload = Some(upload),
                Err(reason) => self.ship_refused(id, reason),
            },
            OfferAnswer::Refuse(reason) => self.ship_refused(id, reason),
            _ => {} // Have: ProgramReady follows
        }
    }

    /// Our program runs on the node: its jobs join the node's.
    fn program_ready(&mut self, id: ProgramId, jobs: Vec<ppcore::wire::JobInfo>) {
        tracing::info!(node = %self.name(), program = %id, jobs = jobs.len(), "program ready");
        self.upload = None;
        // The link runs more kinds now: ask it again.
        self.kinds.clear();
        if let Some(r) = self.record() {
            r.program_ready(jobs.into_iter().map(|j| (j.name, j.signature)));
        }
        self.core.contacted();
    }

    /// The node will not run our program: jobs only it could run fail with
    /// the reason.
    fn ship_refused(&mut self, id: ProgramId, reason: String) {
        tracing::warn!(node = %self.name(), program = %id, "program refused: {reason}");
        self.upload = None;
        self.link.upload_over();
        if let Some(r) = self.record() {
            r.set_ship(crate::cluster::node::Ship::Refused(reason));
        }
        // After build() returned, nobody else tells the user.
        if self.core.report_late.load(Ordering::Acquire) {
            self.core.report_ship_refusals();
        }
        self.core.fail_unrunnable();
    }

    fn dial(&mut self) {
        match dial(&self.name(), &self.core.settings) {
            Ok(stream) => self.connected(stream),
            Err(e) => self.link.handle(
                Event::ConnectFailed(TransportError::Connect(e.reason)),
                Instant::now(),
            ),
        }
    }

    /// A new connection: make it non-blocking, watch it, tell the link.
    fn connected(&mut self, stream: std::net::TcpStream) {
        let now = Instant::now();
        let watched = io_driver::watch(&self.poll, stream);
        self.watch_write = false;
        let stream = match watched {
            Ok(stream) => stream,
            Err(e) => {
                let reason = TransportError::Connect(e.to_string());
                return self.link.handle(Event::ConnectFailed(reason), now);
            }
        };
        if let Some(r) = self.record() {
            r.set_addr(stream.peer_addr().ok());
        }
        self.kinds.clear();
        self.outbox.clear();
        self.readable = true;
        self.conn = Some(stream);
        self.link.handle(Event::Connected, now);
    }

    fn disconnect(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // A goodbye the link just said goes out if the socket takes it.
            let _ = self.outbox.flush(&mut conn, Instant::now());
            let _ = self.poll.registry().deregister(&mut conn);
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.outbox.clear();
        self.readable = false;
    }
}

/// A driver's waker as the job queue keeps it: it also marks that the
/// queue woke the driver, so that a driver that will not look hands the
/// wake on (`Lanes::pass_on`) and one woken otherwise costs the queue
/// nothing.
struct QueueWatch {
    woken: AtomicBool,
    waker: Arc<Waker>,
}

impl Wake for QueueWatch {
    fn wake(&self) {
        self.woken.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}
