//! Remote nodes: what the server knows of each (name, state, jobs,
//! counters), and the thread that drives its link.
//!
//! The link itself ([`ppcore::ClientLink`], driven by `session`) puts
//! in-flight jobs back in the queue when a connection breaks and redials
//! with capped exponential backoff; a node that refuses our secret or our
//! protocol version is given up for good, with the reason.

use crate::core::Core;
use crate::session::{drive, Inbound, Target};
use crossbeam_channel::Sender;
use ppcore::{NodeCounters, Secret};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
    pub(crate) jobs: Mutex<Option<JobSet>>,
    /// Wakes the link's driver (to stop), while it runs.
    waker: Mutex<Option<Sender<Inbound>>>,
    /// Whether this program was shipped to the node.
    pub(crate) ship: Mutex<crate::ship::Ship>,
}

impl Link {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new(Link {
            name,
            counters: NodeCounters::default(),
            state: Mutex::new(NodeState::Connecting),
            jobs: Mutex::new(None),
            waker: Mutex::new(None),
            ship: Mutex::new(crate::ship::Ship::No),
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
        let has = jobs.contains(&(job.0.to_owned(), job.1.to_owned()));
        if !has && *lock(&self.ship) == crate::ship::Ship::Pending {
            return None; // our program may bring it
        }
        Some(has)
    }

    /// Why the node refused our program, if it did.
    pub(crate) fn ship_refusal(&self) -> Option<String> {
        match &*lock(&self.ship) {
            crate::ship::Ship::Refused(reason) => Some(reason.clone()),
            _ => None,
        }
    }

    pub(crate) fn set_waker(&self, tx: Sender<Inbound>) {
        *lock(&self.waker) = Some(tx);
    }

    pub(crate) fn clear_waker(&self) {
        *lock(&self.waker) = None;
    }

    /// Wakes the driver so that it sees the server stopping: it says goodbye
    /// to the node and closes.
    pub(crate) fn close(&self) {
        let waker = lock(&self.waker).clone();
        if let Some(tx) = waker {
            // A full inbox means the driver is awake anyway.
            let _ = tx.try_send(Inbound::Stop);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a link to the node at `name` and starts its driver thread.
pub(crate) fn start_static(core: &Arc<Core>, name: String) {
    let link = Link::new(name);
    core.add_link(Arc::clone(&link));
    let core = Arc::clone(core);
    let spawned = std::thread::Builder::new()
        .name("pp-link".into())
        .spawn(move || drive(&core, Target::Named(link), None));
    if let Err(e) = spawned {
        tracing::warn!("cannot start a link thread: {e}");
    }
}
