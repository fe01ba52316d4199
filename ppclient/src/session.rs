//! The driver of one link: a thin I/O shell around [`ppcore::ClientLink`].
//!
//! Two threads per node. The driver owns the link (no lock around it): it
//! waits for bytes from the reader, a job from the shared queue (only while
//! the node has room) or the link's next timer, feeds what happened to the
//! link, and carries out the actions it returns: dial, write, close, resolve
//! or requeue jobs. The reader thread only reads the socket and forwards the
//! bytes. Every decision (handshake, window, heartbeats, losses, backoff)
//! is the link's, tested on a fake clock in ppcore.

use crate::connect::dial;
use crate::core::Core;
use crate::remote::{lock, JobSet, Link, NodeState};
use crate::task::Task;
use crate::timer::Expire;
use crossbeam_channel::{Receiver, Sender};
use ppcore::link::{Action, ClientLink, Event, LinkConfig, LinkState};
use ppcore::program::OfferAnswer;
use ppcore::wire::RunJob;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest batch of jobs taken from the queue at once.
const MAX_BATCH: usize = 1024;
/// How often the driver looks for jobs that ended on their own (timed out,
/// cancelled) while on the node, and at the stop flag.
const TICK: Duration = Duration::from_millis(50);
/// Received chunks waiting for the driver; beyond this the reader waits
/// (and TCP pushes back on the node).
const INBOX: usize = 64;
/// How often a link checks whether this program is hashed, to offer it.
const OFFER_POLL: Duration = Duration::from_millis(5);
const READ_BUF: usize = 64 << 10;

/// What reaches the driver from outside the link.
pub(crate) enum Inbound {
    /// Bytes read on connection `conn`.
    Bytes(u64, Vec<u8>),
    /// Connection `conn` ended.
    Closed(u64, String),
    /// The server stops.
    Stop,
}

/// What woke the driver.
enum Woke {
    Inbound(Option<Inbound>),
    Task(Option<Arc<dyn Task>>),
    Timer,
}

/// Whose link this is.
pub(crate) enum Target {
    /// A node we dial, already known by name.
    Named(Arc<Link>),
    /// A node that dialled us; known by name once it said who it is.
    Joined(SocketAddr),
}

/// The link's settings from the server's.
pub(crate) fn link_config(core: &Core, reconnect: bool) -> LinkConfig {
    let s = &core.settings;
    LinkConfig {
        secret: s.secret.clone(),
        heartbeat: s.heartbeat,
        handshake_timeout: s.connect_timeout.max(Duration::from_secs(1)),
        max_frame: s.max_frame,
        max_prefetch: s.max_prefetch,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(5),
        reconnect,
    }
}

struct Driver<'a> {
    core: &'a Arc<Core>,
    target: Target,
    link: ClientLink<Arc<dyn Task>>,
    tx: Sender<Inbound>,
    rx: Receiver<Inbound>,
    /// The live connection's writing half, and its number.
    conn: Option<TcpStream>,
    conn_no: u64,
    stopping: bool,
    /// Set when the queue held only jobs this node cannot run: the driver
    /// leaves the queue alone until its next tick (other workers take them).
    parked_at: Option<Instant>,
    /// This program's upload to the node, one chunk per turn.
    upload: Option<crate::ship::Upload>,
    /// This program is to be offered to the node once it is hashed.
    offer_due: bool,
}

/// Runs the link for `target` until it closes: dialling (or, for a node that
/// joined, over `stream`), serving, reconnecting.
pub(crate) fn drive(core: &Arc<Core>, target: Target, stream: Option<TcpStream>) {
    let (tx, rx) = crossbeam_channel::bounded(INBOX);
    let now = Instant::now();
    let link = match &stream {
        None => ClientLink::new(link_config(core, true), now),
        Some(_) => ClientLink::accepted(link_config(core, false), now),
    };
    if let Target::Named(record) = &target {
        record.set_waker(tx.clone());
    }
    let mut d = Driver {
        core,
        target,
        link,
        tx,
        rx,
        conn: None,
        conn_no: 0,
        stopping: false,
        parked_at: None,
        upload: None,
        offer_due: false,
    };
    if let Some(stream) = stream {
        d.connected(stream);
    }
    d.run();
    if let Some(record) = d.record() {
        record.clear_waker();
    }
}

impl Driver<'_> {
    fn record(&self) -> Option<&Arc<Link>> {
        match &self.target {
            Target::Named(r) => Some(r),
            Target::Joined(_) => None,
        }
    }

    fn name(&self) -> String {
        match &self.target {
            Target::Named(r) => r.name.clone(),
            Target::Joined(peer) => peer.to_string(),
        }
    }

    fn run(&mut self) {
        let mut swept = Instant::now();
        loop {
            self.act();
            if self.link.state() == LinkState::Closed {
                return;
            }
            if self.core.stopped() && !self.stopping {
                self.stopping = true;
                self.link.handle(Event::Close, Instant::now());
                continue;
            }
            // Never blocks: with a chunk due, `wait` below only looks.
            self.ship_turn();
            if swept.elapsed() >= TICK {
                swept = Instant::now();
                // Jobs that ended while on the node leave the window; the
                // link tells the node to stop them.
                drop(self.link.cancel_where(|t| t.ended()));
                continue;
            }
            self.wait();
        }
    }

    /// Waits for the next thing to happen and feeds it to the link.
    fn wait(&mut self) {
        let now = Instant::now();
        let wake = self
            .link
            .poll_timeout()
            .map_or(now + TICK, |t| t.min(now + TICK));
        let timeout = match (&self.upload, self.offer_due) {
            (Some(_), _) if self.link.upload_room() => Duration::ZERO, // a chunk is due
            (_, true) => wake.saturating_duration_since(now).min(OFFER_POLL),
            _ => wake.saturating_duration_since(now),
        };
        let never = crossbeam_channel::never();
        let core = self.core;
        if self.parked_at.is_some_and(|t| t.elapsed() >= TICK) {
            self.parked_at = None;
        }
        let (urgent, normal) = match (self.link.free(), self.parked_at) {
            (0, _) | (_, Some(_)) => (&never, &never),
            _ => core.queue.receivers(),
        };
        let woke = crossbeam_channel::select! {
            recv(self.rx) -> msg => Woke::Inbound(msg.ok()),
            recv(urgent) -> task => Woke::Task(task.ok()),
            recv(normal) -> task => Woke::Task(task.ok()),
            default(timeout) => Woke::Timer,
        };
        match woke {
            Woke::Inbound(Some(msg)) => self.inbound(msg),
            Woke::Inbound(None) => self.link.handle(Event::Close, Instant::now()),
            Woke::Task(Some(task)) => self.feed(task),
            Woke::Task(None) => {}
            Woke::Timer => self.link.handle(Event::Timer, Instant::now()),
        }
    }

    fn inbound(&mut self, msg: Inbound) {
        let now = Instant::now();
        match msg {
            Inbound::Bytes(no, bytes) if no == self.conn_no => {
                self.link.handle(Event::Received(&bytes), now);
            }
            Inbound::Closed(no, reason) if no == self.conn_no => {
                self.link.handle(Event::TransportClosed(reason), now);
            }
            Inbound::Stop => {}
            _ => {} // from a connection already closed
        }
    }

    /// Sends `first` and whatever else is queued, within the node's window.
    /// Jobs this node cannot run are put back at the front in their order
    /// (for local workers or other nodes); if there was nothing else, the
    /// driver parks until its next tick instead of taking them again at once.
    fn feed(&mut self, first: Arc<dyn Task>) {
        let room = self.link.free().min(MAX_BATCH);
        let mut batch = Vec::with_capacity(room.min(64));
        let mut skipped = Vec::new();
        let mut next = Some(first);
        while let Some(task) = next {
            let (name, signature) = task.job();
            if !self.link.can_run(name, signature) {
                skipped.push(task);
            } else {
                match task.dispatch(&self.core.ctx) {
                    Ok(d) => {
                        self.core
                            .ctx
                            .arm(Arc::clone(&task) as Arc<dyn Expire>, task.timeout());
                        let run = RunJob {
                            id: task.id(),
                            attempt: d.attempt,
                            name: name.to_owned(),
                            args: d.args,
                            program: None, // the link knows whose job it is
                        };
                        batch.push((run, task));
                    }
                    Err(Some(e)) => task.abandon(e),
                    Err(None) => {} // cancelled while queued
                }
            }
            // Look past skipped jobs only as far as one batch reaches.
            next = match batch.len() < room && skipped.len() < MAX_BATCH {
                true => self.core.queue.try_pop(),
                false => None,
            };
        }
        if batch.is_empty() && !skipped.is_empty() {
            self.parked_at = Some(Instant::now());
        }
        for task in skipped {
            self.core.pass_on(task);
        }
        if !batch.is_empty() {
            self.link.handle(Event::Submit(batch), Instant::now());
        }
    }

    /// Carries out every action the link has for us.
    fn act(&mut self) {
        while let Some(action) = self.link.poll() {
            match action {
                Action::Connect => self.dial(),
                Action::Send(bytes) => self.write(&bytes),
                Action::Disconnect => self.disconnect(),
                Action::Up(hello) => self.up(hello),
                Action::Draining => {
                    tracing::info!(node = %self.name(), "node draining");
                    if let Some(r) = self.record() {
                        r.set_state(NodeState::Draining);
                    }
                }
                Action::Down { reason, retry_in } => {
                    tracing::info!(node = %self.name(), ?retry_in, "node down: {reason}");
                    if let Some(r) = self.record() {
                        r.set_state(NodeState::Down { reason });
                    }
                    self.core.contacted();
                }
                Action::Failed { reason } => {
                    tracing::warn!(node = %self.name(), "node refused: {reason}");
                    if let Some(r) = self.record() {
                        r.set_state(NodeState::Failed { reason });
                    }
                    self.core.contacted();
                    self.core.fail_unrunnable();
                }
                Action::Done { job, result, exec } => {
                    let name = self.name();
                    if let Some(r) = self.record() {
                        r.counters.record(exec, result.is_err());
                    }
                    if let Some(again) = job.complete(result, &name) {
                        self.core.requeue(again);
                    }
                }
                Action::Offered { id, answer } => self.offered(id, answer),
                Action::ProgramReady { id, jobs } => self.program_ready(id, jobs),
                Action::ProgramRefused { id, reason } => {
                    self.ship_refused(id, format!("upload refused: {reason}"))
                }
                Action::Returned { job, lost } => {
                    if let Some(again) = job.retry(&self.name(), lost) {
                        self.core.requeue(again);
                    }
                }
            }
        }
    }

    fn up(&mut self, hello: ppcore::link::NodeHello) {
        if let Target::Joined(peer) = self.target {
            let record = self.core.link(&hello.node_id).unwrap_or_else(|| {
                let record = Link::new(hello.node_id.clone());
                self.core.add_link(Arc::clone(&record));
                record
            });
            tracing::info!(%peer, node = %record.name, "node joined");
            record.set_waker(self.tx.clone());
            self.target = Target::Named(record);
        }
        self.offer_due = crate::ship::on_up(&hello, self.record().map(|r| &**r));
        self.upload = None;
        let jobs: JobSet = Arc::new(
            hello
                .jobs
                .into_iter()
                .map(|j| (j.name, j.signature))
                .collect(),
        );
        if let Some(r) = self.record() {
            *lock(&r.jobs) = Some(jobs);
            r.set_state(NodeState::Up {
                workers: hello.workers,
            });
            tracing::info!(node = %r.name, workers = hello.workers, "node up");
        }
        self.core.contacted();
    }

    /// One step of shipping this program: the offer once it is hashed,
    /// then one chunk of the upload while the node keeps up.
    fn ship_turn(&mut self) {
        if self.offer_due {
            let record = self.record().cloned();
            self.offer_due = !crate::ship::try_offer(&mut self.link, record.as_deref());
            return;
        }
        if let Some(upload) = &mut self.upload {
            if self.link.upload_room() && !crate::ship::send_chunk(upload, &mut self.link) {
                self.upload = None;
            }
        }
    }

    /// The node answered our offer.
    fn offered(&mut self, id: ppcore::program::ProgramId, answer: OfferAnswer) {
        tracing::info!(node = %self.name(), program = %id, ?answer, "program offered");
        match answer {
            OfferAnswer::Need => match crate::ship::start_upload(id) {
                Ok(upload) => self.upload = Some(upload),
                Err(reason) => self.ship_refused(id, reason),
            },
            OfferAnswer::Refuse(reason) => self.ship_refused(id, reason),
            _ => {} // Have: ProgramReady follows
        }
    }

    /// Our program runs on the node: its jobs join the node's.
    fn program_ready(&mut self, id: ppcore::program::ProgramId, jobs: Vec<ppcore::wire::JobInfo>) {
        tracing::info!(node = %self.name(), program = %id, jobs = jobs.len(), "program ready");
        if let Some(r) = self.record() {
            let mut known = lock(&r.jobs);
            let mut all: std::collections::HashSet<(String, String)> =
                known.as_deref().cloned().unwrap_or_default();
            all.extend(jobs.into_iter().map(|j| (j.name, j.signature)));
            *known = Some(Arc::new(all));
            drop(known);
            *lock(&r.ship) = crate::ship::Ship::Ready;
        }
        self.parked_at = None;
        self.core.contacted();
    }

    /// The node will not run our program: jobs only it could run fail with the reason.
    fn ship_refused(&mut self, id: ppcore::program::ProgramId, reason: String) {
        tracing::warn!(node = %self.name(), program = %id, "program refused: {reason}");
        self.upload = None;
        if let Some(r) = self.record() {
            *lock(&r.ship) = crate::ship::Ship::Refused(reason);
        }
        self.core.fail_unrunnable();
    }

    fn dial(&mut self) {
        match dial(&self.name(), &self.core.settings) {
            Ok(stream) => self.connected(stream),
            Err(e) => self
                .link
                .handle(Event::ConnectFailed(e.reason), Instant::now()),
        }
    }

    /// A new connection: start its reader and tell the link.
    fn connected(&mut self, stream: TcpStream) {
        let now = Instant::now();
        let setup = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(self.write_timeout())))
            .and_then(|()| stream.try_clone());
        let nonce = ppcore::nonce();
        let (reader, nonce) = match (setup, nonce) {
            (Ok(reader), Ok(nonce)) => (reader, nonce),
            (Err(e), _) => return self.link.handle(Event::ConnectFailed(e.to_string()), now),
            (_, Err(e)) => {
                let reason = format!("no randomness: {e}");
                return self.link.handle(Event::ConnectFailed(reason), now);
            }
        };
        self.conn_no += 1;
        let (no, tx) = (self.conn_no, self.tx.clone());
        let spawned = std::thread::Builder::new()
            .name("pp-node-reader".into())
            .spawn(move || read_loop(reader, no, &tx));
        if let Err(e) = spawned {
            let _ = stream.shutdown(Shutdown::Both);
            return self.link.handle(Event::ConnectFailed(e.to_string()), now);
        }
        self.conn = Some(stream);
        self.link.handle(Event::Connected { nonce }, now);
    }

    /// A node that stops reading is lost after this long without progress.
    fn write_timeout(&self) -> Duration {
        (self.core.settings.heartbeat * ppcore::link::MISSED_BEATS).max(Duration::from_secs(1))
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        if let Err(e) = conn.write_all(bytes) {
            let reason = format!("write failed: {e}");
            self.link
                .handle(Event::TransportClosed(reason), Instant::now());
        }
    }

    fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        // Whatever the old reader still says is about a closed connection.
        self.conn_no += 1;
    }
}

/// Reads one connection until it ends, forwarding what it reads.
fn read_loop(mut stream: TcpStream, no: u64, tx: &Sender<Inbound>) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let msg = match stream.read(&mut buf) {
            Ok(0) => Inbound::Closed(no, "the node closed the connection".into()),
            Ok(n) => Inbound::Bytes(no, buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Inbound::Closed(no, format!("read failed: {e}")),
        };
        let last = matches!(msg, Inbound::Closed(..));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}
