//! Remote nodes: what the server knows of each (name, state, jobs,
//! counters), and the thread that drives its link.
//!
//! The link itself ([`ppcore::ClientLink`], driven by `session`) puts
//! in-flight jobs back in the queue when a connection breaks and redials
//! with capped exponential backoff; a node that refuses our secret or our
//! protocol version is given up for good, with the reason.

use crate::core::{Core, JobKind};
use crate::session::{drive, Target, Waker};
use ppcore::sync::lock;
use ppcore::{KeySet, NodeCounters};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The jobs a node advertised: name to signatures (looked up without
/// allocating, on every submit while only nodes run jobs).
pub(crate) type JobSet = Arc<HashMap<String, HashSet<String>>>;

/// Settings every link uses.
#[derive(Debug, Clone)]
pub(crate) struct LinkSettings {
    /// The cluster's keys; `None` when no node is to be reached.
    pub(crate) keys: Option<KeySet>,
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) max_prefetch: usize,
    pub(crate) max_frame: usize,
    /// The largest arguments or result of one job, in bytes.
    pub(crate) max_payload: u64,
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
    /// Refused for good (wrong key, other protocol version), or a
    /// discovered node given up after failures in a row.
    Failed {
        /// What the node or the handshake said (its text reads as it
        /// always did).
        reason: ppcore::link::Refusal,
    },
}

/// One node and its state.
///
/// A node has one name everywhere: [`NodeInfo::name`] is also its row in
/// [`Server::stats`](crate::Server::stats) and the `node` of its jobs'
/// errors. A host name that resolves to several addresses (`localhost`:
/// `::1` and `127.0.0.1`) is one node, reached through the first address
/// that connects ([`NodeInfo::addr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// `host:port` as given (or as found by discovery, or the node's own name when it joined).
    pub name: String,
    /// Where it stands.
    pub state: NodeState,
    /// The address connected to, while (or last) connected.
    pub addr: Option<SocketAddr>,
    /// What the node calls itself (its `Welcome`), once it has said.
    pub node_id: Option<String>,
    /// Why the node, although up, runs none of the jobs queued now, or none
    /// of this program's own: it refused this program (and why), or it
    /// lacks the queued jobs. `None` when it runs them, and when its
    /// [`state`](Self::state) says why already (down, refused us).
    pub reason: Option<String>,
}

/// One remote node, across reconnections.
pub(crate) struct Link {
    pub(crate) name: String,
    pub(crate) counters: NodeCounters,
    state: Mutex<NodeState>,
    /// The jobs it advertised last, once it has.
    pub(crate) jobs: Mutex<Option<JobSet>>,
    /// Wakes the link's driver (to stop), while it runs.
    waker: Mutex<Option<Arc<Waker>>>,
    /// The address connected to, and the node's own name.
    peer: Mutex<(Option<SocketAddr>, Option<String>)>,
    /// Traffic, jobs in flight and round trip, for the dashboard.
    pub(crate) meter: crate::dashboard::LinkMeter,
    /// Whether this program was shipped to the node.
    pub(crate) ship: Mutex<crate::ship::Ship>,
    /// Set once the user was told that the node refused this program.
    pub(crate) ship_reported: AtomicBool,
    /// Asks to cancel its jobs in flight, for its driver
    /// ([`Server::cancel_all`](crate::Server::cancel_all), `cancel_group`).
    cancels: Mutex<Vec<CancelAsk>>,
    /// Whether `cancels` holds any (read by the driver at every turn).
    cancel_asked: AtomicBool,
}

/// Cancel the jobs in flight of one group (`Some`, by identity) or all;
/// the driver answers how many it cancelled.
pub(crate) struct CancelAsk {
    pub(crate) group: Option<usize>,
    /// Only jobs with ids below this (submitted before the ask).
    pub(crate) below: u64,
    pub(crate) reply: crossbeam_channel::Sender<usize>,
}

impl Link {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new(Link {
            name,
            counters: NodeCounters::default(),
            state: Mutex::new(NodeState::Connecting),
            jobs: Mutex::new(None),
            waker: Mutex::new(None),
            peer: Mutex::new((None, None)),
            meter: Default::default(),
            ship: Mutex::new(crate::ship::Ship::No),
            ship_reported: AtomicBool::new(false),
            cancels: Mutex::new(Vec::new()),
            cancel_asked: AtomicBool::new(false),
        })
    }

    /// What [`Server::nodes`](crate::Server::nodes) says of this node,
    /// with `queued` the kinds of jobs waiting in the queue now.
    pub(crate) fn info(&self, queued: &[JobKind]) -> NodeInfo {
        let (addr, node_id) = lock(&self.peer).clone();
        NodeInfo {
            name: self.name.clone(),
            state: self.state(),
            addr,
            node_id,
            reason: self.why_unused(queued),
        }
    }

    /// Why the node, although up, runs none of the `queued` jobs, or none
    /// of this program's: see [`NodeInfo::reason`].
    pub(crate) fn why_unused(&self, queued: &[JobKind]) -> Option<String> {
        if !matches!(self.state(), NodeState::Up { .. }) {
            return None;
        }
        if let Some(refused) = self.ship_refusal() {
            return Some(format!("refused this program: {refused}"));
        }
        unused_for(queued, |kind| self.can_run(kind))
    }

    /// Notes the address a connection reached.
    pub(crate) fn set_addr(&self, addr: Option<SocketAddr>) {
        lock(&self.peer).0 = addr;
    }

    /// Notes what the node calls itself.
    pub(crate) fn set_node_id(&self, id: String) {
        lock(&self.peer).1 = Some(id);
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
        let has = jobs.get(job.0).is_some_and(|sigs| sigs.contains(job.1));
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

    pub(crate) fn set_waker(&self, waker: Arc<Waker>) {
        *lock(&self.waker) = Some(waker);
    }

    pub(crate) fn clear_waker(&self) {
        *lock(&self.waker) = None;
    }

    /// Wakes the driver so that it sees the server stopping: it says goodbye
    /// to the node and closes.
    pub(crate) fn close(&self) {
        self.wake_driver();
    }

    /// Wakes the driver, if one runs.
    fn wake_driver(&self) {
        let waker = lock(&self.waker).clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Asks the driver to cancel the jobs it has in flight (of `group`, or
    /// all) with ids below `below`; the answer, how many it cancelled,
    /// comes on the receiver. `None` if no driver runs (then nothing is in
    /// flight).
    pub(crate) fn ask_cancel(
        &self,
        group: Option<usize>,
        below: u64,
    ) -> Option<crossbeam_channel::Receiver<usize>> {
        let waker = lock(&self.waker).clone()?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        lock(&self.cancels).push(CancelAsk {
            group,
            below,
            reply,
        });
        self.cancel_asked.store(true, Ordering::Release);
        waker.wake();
        Some(answer)
    }

    /// The asks to cancel not served yet (cheap when there are none).
    pub(crate) fn take_cancel_asks(&self) -> Vec<CancelAsk> {
        // A plain load first: the driver asks every turn, and a swap would
        // write the flag's cache line each time.
        if !self.cancel_asked.load(Ordering::Acquire)
            || !self.cancel_asked.swap(false, Ordering::AcqRel)
        {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.cancels))
    }
}

/// Why a node runs none of the `queued` kinds of jobs, given whether it
/// can run each (`None`: not known yet); `None` if it may run one. Pure.
fn unused_for(
    queued: &[JobKind],
    can_run: impl Fn((&str, &str)) -> Option<bool>,
) -> Option<String> {
    if queued.is_empty() || queued.iter().any(|k| can_run(*k) != Some(false)) {
        return None;
    }
    let mut names: Vec<&str> = queued.iter().map(|k| k.0).collect();
    names.sort_unstable();
    names.dedup();
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    let more = match names.len().saturating_sub(3) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Some(format!(
        "runs none of the queued jobs: it has no {}{more}",
        shown.join(", ")
    ))
}

/// Adds a link to the node at `name` and starts its driver thread.
pub(crate) fn start_static(core: &Arc<Core>, name: String) {
    if core.stopped() {
        return;
    }
    let link = Link::new(name);
    core.add_link(Arc::clone(&link));
    let core = Arc::clone(core);
    let spawned =
        Arc::clone(&core).spawn("pp-link", move || drive(&core, Target::Named(link), None));
    if let Err(e) = spawned {
        tracing::warn!("cannot start a link thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::unused_for;

    #[test]
    fn a_node_is_unused_only_if_it_can_run_none_of_the_queued_jobs() {
        let queued = [("a", "sig"), ("b", "sig"), ("a", "other")];
        assert_eq!(unused_for(&[], |_| Some(false)), None, "nothing queued");
        assert_eq!(unused_for(&queued, |k| Some(k.0 == "b")), None);
        assert_eq!(unused_for(&queued, |_| None), None, "not known yet");
        assert_eq!(
            unused_for(&queued, |_| Some(false)).as_deref(),
            Some("runs none of the queued jobs: it has no `a`, `b`")
        );
        let many = [("e", ""), ("d", ""), ("c", ""), ("b", ""), ("a", "")];
        assert_eq!(
            unused_for(&many, |_| Some(false)).as_deref(),
            Some("runs none of the queued jobs: it has no `a`, `b`, `c` and 2 more")
        );
    }
}
