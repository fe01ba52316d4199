//! Remote nodes: one link per node, each with a supervisor thread that
//! connects, authenticates and then serves the node over one session.
//!
//! A link whose connection breaks puts its in-flight jobs back in the queue
//! and reconnects with capped exponential backoff; a link whose node refuses
//! our secret or our protocol version stops for good and says why.

use crate::connect::{dial, handshake};
use crate::core::Core;
use crate::session::{feed, read_loop, Session};
use ppcore::wire::{ClientMsg, JobInfo, NodeMsg};
use ppcore::{FrameReader, NodeCounters, Secret};
use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The jobs a node advertised: (name, signature).
pub(crate) type JobSet = Arc<HashSet<(String, String)>>;

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

    pub(crate) fn set_state(&self, state: NodeState) {
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

    /// The live connection, if any.
    pub(crate) fn live(&self) -> Option<Arc<Session>> {
        lock(&self.session).clone()
    }

    /// Closes the live connection, if any (the server is going away).
    pub(crate) fn close(&self) {
        if let Some(s) = lock(&self.session).as_ref() {
            s.send(&ClientMsg::Goodbye);
            s.kill();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a link to the node at `name` and starts its supervisor thread.
pub(crate) fn start_static(core: &Arc<Core>, name: String) {
    let link = Link::new(name);
    core.add_link(Arc::clone(&link));
    let core = Arc::clone(core);
    let spawned = std::thread::Builder::new()
        .name("pp-link".into())
        .spawn(move || run_static(&core, &link));
    if let Err(e) = spawned {
        tracing::warn!("cannot start a link thread: {e}");
    }
}

/// Connects to and serves a node at `link.name` until the server stops or the
/// node refuses us for good.
fn run_static(core: &Arc<Core>, link: &Arc<Link>) {
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
    let session = Arc::new(Session::new(
        writer,
        workers,
        settings.max_prefetch,
        Arc::clone(&jobs),
    ));
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
    let left = session.drain();
    if !left.is_empty() {
        tracing::info!(node = %link.name, jobs = left.len(), "node lost with jobs in flight: rescheduling");
    }
    for task in left {
        if let Some(task) = task.retry(&link.name, !clean) {
            core.ctx.dash.get().inspect(|d| d.rerun(&link.name));
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
