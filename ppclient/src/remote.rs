//! Remote nodes: one link per node, each with a supervisor thread that
//! connects, authenticates and then feeds the node jobs from the shared queue,
//! and a reader thread that resolves the jobs as results come back.
//!
//! A link whose connection breaks puts its in-flight jobs back in the queue
//! and reconnects with capped exponential backoff; a link whose node refuses
//! our secret or our protocol version stops for good and says why.

use crate::core::Core;
use crate::task::Task;
use ppcore::wire::{ClientMsg, JobInfo, NodeMsg, RunJob, DEFAULT_PORT};
use ppcore::{
    encode_frame, ClientHandshake, FrameError, FrameReader, HandshakeError, Ledger, NodeCounters,
    Secret,
};
use std::collections::HashSet;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Largest batch of jobs sent in one frame.
const MAX_BATCH: usize = 1024;
/// How often the feeder looks at its flags when there is nothing to send.
const TICK: Duration = Duration::from_millis(50);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The jobs a node advertised: (name, signature).
type JobSet = Arc<HashSet<(String, String)>>;

/// Settings every link uses.
#[derive(Debug, Clone)]
pub(crate) struct LinkSettings {
    pub(crate) secret: Secret,
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) max_prefetch: usize,
    pub(crate) max_frame: usize,
}

/// Where a node stands, as [`Server::nodes`](crate::Server::nodes) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// Not reached yet.
    Connecting,
    /// Connected and taking jobs.
    Up {
        /// Its worker slots.
        workers: usize,
    },
    /// It takes no new jobs and finishes those it has.
    Draining,
    /// Unreachable for now; retried with backoff.
    Down {
        /// Why the last attempt failed.
        reason: String,
    },
    /// Refused for good (wrong secret, other protocol version).
    Failed {
        /// What the node or the handshake said.
        reason: String,
    },
}

/// One node and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `host:port` as given (or as found by discovery, or the node's own name when it joined).
    pub name: String,
    /// Where it stands.
    pub state: NodeState,
}

/// One remote node, across reconnections.
pub(crate) struct Link {
    pub(crate) name: String,
    pub(crate) counters: NodeCounters,
    state: Mutex<NodeState>,
    /// The jobs it advertised last, once it has.
    jobs: Mutex<Option<JobSet>>,
    /// The live connection, if any.
    session: Mutex<Option<Arc<Session>>>,
}

impl Link {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new(Link {
            name,
            counters: NodeCounters::default(),
            state: Mutex::new(NodeState::Connecting),
            jobs: Mutex::new(None),
            session: Mutex::new(None),
        })
    }

    pub(crate) fn state(&self) -> NodeState {
        lock(&self.state).clone()
    }

    fn set_state(&self, state: NodeState) {
        *lock(&self.state) = state;
    }

    pub(crate) fn workers(&self) -> usize {
        match self.state() {
            NodeState::Up { workers } => workers,
            _ => 0,
        }
    }

    /// Whether this node can run the job: `Some(true)` yes, `Some(false)` no,
    /// `None` not known yet (it has not answered so far).
    pub(crate) fn can_run(&self, job: (&str, &str)) -> Option<bool> {
        if let NodeState::Failed { .. } = self.state() {
            return Some(false);
        }
        let jobs = lock(&self.jobs).clone()?;
        Some(jobs.contains(&(job.0.to_owned(), job.1.to_owned())))
    }

    /// Closes the live connection, if any (the server is going away).
    pub(crate) fn close(&self) {
        if let Some(s) = lock(&self.session).as_ref() {
            s.send(&ClientMsg::Goodbye);
            s.kill();
        }
    }
}

/// One live connection to a node.
struct Session {
    writer: Mutex<TcpStream>,
    ledger: Mutex<Ledger<Box<dyn Task>>>,
    space: Condvar,
    jobs: JobSet,
    dead: AtomicBool,
    draining: AtomicBool,
    /// Milliseconds since `born` when the node was last heard from.
    heard_ms: AtomicU64,
    born: Instant,
}

impl Session {
    fn send(&self, msg: &ClientMsg) -> bool {
        let Ok(frame) = encode_frame(msg) else {
            return false;
        };
        let mut w = lock(&self.writer);
        if w.write_all(&frame).is_err() {
            drop(w);
            self.kill();
            return false;
        }
        true
    }

    fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        let _ = lock(&self.writer).shutdown(Shutdown::Both);
        self.space.notify_all();
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    fn heard(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.heard_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.heard_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(heard)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a connection attempt failed, and whether to try again.
pub(crate) struct ConnectError {
    pub(crate) reason: String,
    last: bool,
}

impl ConnectError {
    fn retry(reason: impl Into<String>) -> Self {
        ConnectError {
            reason: reason.into(),
            last: false,
        }
    }
}

/// `host` or `host:port` to a socket address; the default port if none.
pub(crate) fn with_port(addr: &str) -> String {
    if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_owned()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

/// Connects to and serves a node at `link.name` until the server stops or the
/// node refuses us for good.
pub(crate) fn run_static(core: &Arc<Core>, link: &Arc<Link>) {
    let mut backoff = BACKOFF_MIN;
    while !core.stopped() {
        let attempt = dial(&link.name, &core.settings)
            .and_then(|stream| handshake(&stream, &core.settings).map(|welcome| (stream, welcome)));
        match attempt {
            Ok((stream, welcome)) => {
                let started = Instant::now();
                serve(core, link, stream, welcome);
                if started.elapsed() > BACKOFF_MAX {
                    backoff = BACKOFF_MIN;
                }
            }
            Err(e) if e.last => {
                tracing::warn!(node = %link.name, "node refused: {}", e.reason);
                link.set_state(NodeState::Failed { reason: e.reason });
                core.contacted();
                core.fail_unrunnable();
                return;
            }
            Err(e) => {
                tracing::debug!(node = %link.name, "cannot connect: {}", e.reason);
                link.set_state(NodeState::Down { reason: e.reason });
                core.contacted();
            }
        }
        if core.sleep(backoff) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn dial(name: &str, settings: &LinkSettings) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<SocketAddr> = name
        .to_socket_addrs()
        .map_err(|e| ConnectError::retry(format!("cannot resolve: {e}")))?
        .collect();
    let mut last = ConnectError::retry("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, settings.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = ConnectError::retry(format!("cannot connect: {e}")),
        }
    }
    Err(last)
}

/// Authenticates on a fresh connection; returns the node's `Welcome`.
pub(crate) fn handshake(
    stream: &TcpStream,
    settings: &LinkSettings,
) -> Result<NodeMsg, ConnectError> {
    let io = |e: std::io::Error| ConnectError::retry(format!("handshake failed: {e}"));
    stream.set_nodelay(true).map_err(io)?;
    stream
        .set_read_timeout(Some(settings.connect_timeout.max(Duration::from_secs(1))))
        .map_err(io)?;
    let nonce = ppcore::nonce().map_err(|e| ConnectError::retry(format!("no randomness: {e}")))?;
    let (hs, hello) = ClientHandshake::start(settings.secret.clone(), nonce);
    let mut writer = stream.try_clone().map_err(io)?;
    let mut reader = FrameReader::new(stream.try_clone().map_err(io)?, settings.max_frame);
    let mut next = |writer: &mut TcpStream, msg: &ClientMsg| -> Result<NodeMsg, ConnectError> {
        let frame = encode_frame(msg).map_err(|e| ConnectError::retry(e.to_string()))?;
        writer.write_all(&frame).map_err(io)?;
        match reader.read::<NodeMsg>() {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(ConnectError::retry(
                "the node closed the connection during the handshake",
            )),
            Err(FrameError::Io(e)) => Err(io(e)),
            Err(e) => Err(ConnectError::retry(format!("handshake failed: {e}"))),
        }
    };
    let final_error = |e: HandshakeError| match e {
        HandshakeError::Rejected(ref r) if r.contains("too many connections") => {
            ConnectError::retry(e.to_string())
        }
        e => ConnectError {
            reason: e.to_string(),
            last: true,
        },
    };
    let challenge = next(&mut writer, &hello)?;
    let auth = hs.on_challenge(challenge).map_err(final_error)?;
    let welcome = next(&mut writer, &auth)?;
    let welcome = hs.on_welcome(welcome).map_err(final_error)?;
    stream.set_read_timeout(None).map_err(io)?;
    Ok(welcome)
}

/// Serves one authenticated connection until it ends, then puts whatever was
/// in flight back in the queue.
pub(crate) fn serve(core: &Arc<Core>, link: &Arc<Link>, stream: TcpStream, welcome: NodeMsg) {
    let NodeMsg::Welcome { workers, jobs, .. } = welcome else {
        return;
    };
    let workers = workers as usize;
    let jobs: JobSet = Arc::new(
        jobs.into_iter()
            .map(|JobInfo { name, signature }| (name, signature))
            .collect(),
    );
    let settings = &core.settings;
    let _ = stream.set_write_timeout(Some((settings.heartbeat * 3).max(Duration::from_secs(1))));
    let (Ok(writer), Ok(read_half)) = (stream.try_clone(), stream.try_clone()) else {
        return;
    };
    let session = Arc::new(Session {
        writer: Mutex::new(writer),
        ledger: Mutex::new(Ledger::new(workers, settings.max_prefetch)),
        space: Condvar::new(),
        jobs: Arc::clone(&jobs),
        dead: AtomicBool::new(false),
        draining: AtomicBool::new(false),
        heard_ms: AtomicU64::new(0),
        born: Instant::now(),
    });
    *lock(&link.jobs) = Some(jobs);
    *lock(&link.session) = Some(Arc::clone(&session));
    link.set_state(NodeState::Up { workers });
    core.contacted();
    tracing::info!(node = %link.name, workers, "node up");

    let reader = {
        let (core, link, session) = (Arc::clone(core), Arc::clone(link), Arc::clone(&session));
        let max_frame = settings.max_frame;
        std::thread::Builder::new()
            .name("pp-node-reader".into())
            .spawn(move || {
                read_loop(
                    &core,
                    &link,
                    &session,
                    FrameReader::new(read_half, max_frame),
                )
            })
    };
    let clean = match reader {
        Ok(reader) => {
            feed(core, link, &session);
            session.kill();
            reader.join().unwrap_or(false)
        }
        Err(_) => false,
    };
    *lock(&link.session) = None;
    let left = lock(&session.ledger).drain();
    if !left.is_empty() {
        tracing::info!(node = %link.name, jobs = left.len(), "node lost with jobs in flight: rescheduling");
    }
    for task in left {
        if let Some(task) = task.retry(&link.name, !clean) {
            core.requeue(task);
        }
    }
    let reason = if clean {
        "the node stopped"
    } else {
        "connection lost"
    };
    link.set_state(NodeState::Down {
        reason: reason.into(),
    });
}

/// Pulls jobs from the shared queue while the node has room, sends them in
/// batches, and keeps the heartbeat.
fn feed(core: &Arc<Core>, link: &Link, session: &Session) {
    let heartbeat = core.settings.heartbeat;
    let mut pinged = Instant::now();
    let mut swept = Instant::now();
    let mut seq = 0u64;
    let mut batch: Vec<Box<dyn Task>> = Vec::new();
    loop {
        if session.is_dead() || core.stopped() {
            return;
        }
        if pinged.elapsed() >= heartbeat {
            seq += 1;
            session.send(&ClientMsg::Ping(seq));
            pinged = Instant::now();
        }
        if swept.elapsed() >= TICK {
            cancel_ended(session);
            swept = Instant::now();
        }
        if session.silent_for() > heartbeat * 3 {
            tracing::warn!(node = %link.name, "node silent for {:?}: lost", session.silent_for());
            return;
        }
        if session.draining.load(Ordering::Acquire) {
            core.sleep(TICK);
            continue;
        }
        let free = {
            let ledger = lock(&session.ledger);
            let (ledger, _) = session
                .space
                .wait_timeout_while(ledger, TICK, |l| l.free() == 0 && !session.is_dead())
                .unwrap_or_else(|e| e.into_inner());
            ledger.free()
        };
        if free == 0 {
            continue;
        }
        let Some(first) = core.queue.pop_timeout(TICK) else {
            continue;
        };
        batch.push(first);
        while batch.len() < free.min(MAX_BATCH) {
            match core.queue.try_pop() {
                Some(t) => batch.push(t),
                None => break,
            }
        }
        send_batch(core, session, &mut batch);
    }
}

/// Jobs that ended while on the node (timed out, cancelled) leave the
/// window, and the node is told to stop them.
fn cancel_ended(session: &Session) {
    let gone = lock(&session.ledger).remove_where(|task| task.ended());
    if gone.is_empty() {
        return;
    }
    session.space.notify_one();
    for (id, _) in gone {
        session.send(&ClientMsg::Cancel { id });
    }
}

fn send_batch(core: &Arc<Core>, session: &Session, batch: &mut Vec<Box<dyn Task>>) {
    let mut run = Vec::with_capacity(batch.len());
    let mut passed = 0;
    {
        let mut ledger = lock(&session.ledger);
        for mut task in batch.drain(..) {
            let (name, signature) = task.job();
            if !session
                .jobs
                .contains(&(name.to_owned(), signature.to_owned()))
            {
                passed += 1;
                core.pass_on(task);
                continue;
            }
            if let Some(d) = task.dispatch(&core.ctx) {
                run.push(RunJob {
                    id: task.id(),
                    attempt: d.attempt,
                    name: name.to_owned(),
                    args: d.args,
                });
                ledger.sent(task.id(), d.attempt, task);
            }
        }
    }
    if !run.is_empty() {
        session.send(&ClientMsg::Run(run));
    } else if passed > 0 {
        // Only jobs this node cannot run are queued: let others take them.
        core.sleep(Duration::from_millis(1));
    }
}

/// Reads the node's messages until the connection ends; true if the node
/// said goodbye (a stop, not a loss).
fn read_loop(
    core: &Arc<Core>,
    link: &Link,
    session: &Session,
    mut reader: FrameReader<TcpStream>,
) -> bool {
    loop {
        let msg = match reader.read::<NodeMsg>() {
            Ok(Some(msg)) => msg,
            Ok(None) => return false,
            Err(e) => {
                if !session.is_dead() {
                    tracing::info!(node = %link.name, "connection ended: {e}");
                }
                session.kill();
                return false;
            }
        };
        session.heard();
        match msg {
            NodeMsg::Done(results) => {
                let mut finished = Vec::with_capacity(results.len());
                {
                    let mut ledger = lock(&session.ledger);
                    for d in results {
                        let exec = Duration::from_nanos(d.exec_ns);
                        if let Some(task) = ledger.done(d.id, d.attempt, exec) {
                            finished.push((task, d.result, exec));
                        }
                    }
                }
                session.space.notify_one();
                for (task, result, exec) in finished {
                    link.counters.record(exec, result.is_err());
                    if let Some(again) = task.complete(result, &link.name) {
                        core.requeue(again);
                    }
                }
            }
            NodeMsg::Returned(jobs) => {
                let back: Vec<_> = {
                    let mut ledger = lock(&session.ledger);
                    jobs.into_iter()
                        .filter_map(|(id, a)| ledger.take(id, a))
                        .collect()
                };
                session.space.notify_one();
                for task in back {
                    if let Some(task) = task.retry(&link.name, false) {
                        core.requeue(task);
                    }
                }
            }
            NodeMsg::Draining => {
                tracing::info!(node = %link.name, "node draining");
                session.draining.store(true, Ordering::Release);
                link.set_state(NodeState::Draining);
            }
            NodeMsg::Goodbye => {
                session.kill();
                return true;
            }
            NodeMsg::Reject { reason } => {
                tracing::warn!(node = %link.name, "node closed the connection: {reason}");
                session.kill();
                return false;
            }
            NodeMsg::Pong(_) | NodeMsg::Status(_) => {}
            NodeMsg::Challenge { .. } | NodeMsg::Welcome { .. } => {
                tracing::warn!(node = %link.name, "handshake message after the handshake");
                session.kill();
                return false;
            }
        }
    }
}

/// Why [`node_status`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{node}: {reason}")]
pub struct StatusError {
    /// The node asked.
    pub node: String,
    /// What went wrong.
    pub reason: String,
}

/// Asks the node at `addr` (`host` or `host:port`) for its status.
pub fn node_status(
    addr: &str,
    secret: impl AsRef<[u8]>,
    timeout: Duration,
) -> Result<ppcore::wire::NodeStatus, StatusError> {
    let node = with_port(addr);
    let fail = |reason: String| StatusError {
        node: node.clone(),
        reason,
    };
    let settings = LinkSettings {
        secret: Secret::new(secret),
        connect_timeout: timeout,
        heartbeat: timeout,
        max_prefetch: 0,
        max_frame: ppcore::wire::DEFAULT_MAX_FRAME,
    };
    let stream = dial(&node, &settings).map_err(|e| fail(e.reason))?;
    handshake(&stream, &settings).map_err(|e| fail(e.reason))?;
    let io = |e: std::io::Error| fail(e.to_string());
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let frame = encode_frame(&ClientMsg::Status).map_err(|e| fail(e.to_string()))?;
    (&stream).write_all(&frame).map_err(io)?;
    let mut reader = FrameReader::new(&stream, settings.max_frame);
    loop {
        match reader.read::<NodeMsg>() {
            Ok(Some(NodeMsg::Status(status))) => {
                let _ = (&stream).write_all(&encode_frame(&ClientMsg::Goodbye).unwrap_or_default());
                return Ok(status);
            }
            Ok(Some(_)) => continue, // a Draining notice and the like
            Ok(None) => return Err(fail("the node closed the connection".into())),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}
