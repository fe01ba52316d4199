//! One node as the client knows it, across reconnections: its
//! [`NodeRecord`] (name, counters, and one [`NodeView`] snapshot of state,
//! jobs, address and shipping, read and written whole), and what
//! [`Server::nodes`](crate::Server::nodes) says of it ([`NodeInfo`]).
//!
//! The link ([`ppcore::ClientLink`], driven by `link::driver`) writes the
//! record; it puts in-flight jobs back in the queue when a connection
//! breaks and redials with capped exponential backoff; a node that refuses
//! our secret or our protocol version is given up for good, with the reason.

use crate::jobs::recorder::LinkMeter;
use crate::jobs::task::JobKind;
use ppcore::sync::lock;
use ppcore::{ErrorKind, KeySet, NodeCounters, Wake};
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
    /// The journaled run this client belongs to (`Builder::journal`).
    pub(crate) run: Option<ppcore::wire::RunId>,
    /// How long a job whose request nobody meets waits for a node that
    /// may still join (`Builder::unmet_wait`).
    pub(crate) unmet_wait: Duration,
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
        reason: ppcore::link::DownReason,
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
    /// What it offers jobs (its `Welcome`; its workers as cpus), once up.
    pub offer: Option<ppcore::resources::Offer>,
}

/// Where shipping this program to one node stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Ship {
    /// Not offered (not needed, not possible, or `init` not called).
    #[default]
    No,
    /// Offered; the node has not said yet whether it will run it.
    Pending,
    /// The node runs it.
    Ready,
    /// The node refused it, and why.
    Refused(String),
}

/// What the client knows of one node at one moment. A [`NodeRecord`] keeps
/// one, read and written whole, so that nobody sees a half-updated node
/// (say, up but with the jobs of its last session).
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    /// Where it stands.
    pub(crate) state: NodeState,
    /// The jobs it advertised last, once it has.
    pub(crate) jobs: Option<JobSet>,
    /// The address connected to, while (or last) connected.
    pub(crate) addr: Option<SocketAddr>,
    /// What the node calls itself, once it has said.
    pub(crate) node_id: Option<String>,
    /// Whether this program was shipped to the node.
    pub(crate) ship: Ship,
    /// Where peers reach it for node-to-node transfers (`Welcome.reach`).
    pub(crate) reach: Option<String>,
    /// What it offers jobs (`Welcome.offer`), once up.
    pub(crate) offer: Option<ppcore::resources::Offer>,
}

impl Default for NodeView {
    /// A node not reached yet.
    fn default() -> Self {
        NodeView {
            state: NodeState::Connecting,
            jobs: None,
            addr: None,
            node_id: None,
            ship: Ship::No,
            reach: None,
            offer: None,
        }
    }
}

impl NodeView {
    /// Whether this node can run the job: `Some(true)` yes, `Some(false)` no,
    /// `None` not known yet (it has not answered so far). Pure.
    pub(crate) fn can_run(&self, job: (&str, &str)) -> Option<bool> {
        if let NodeState::Failed { .. } = self.state {
            return Some(false);
        }
        let jobs = self.jobs.as_ref()?;
        let has = jobs.get(job.0).is_some_and(|sigs| sigs.contains(job.1));
        if !has && self.ship == Ship::Pending {
            return None; // our program may bring it
        }
        Some(has)
    }

    /// Why the node refused our program, if it did.
    pub(crate) fn ship_refusal(&self) -> Option<&str> {
        match &self.ship {
            Ship::Refused(reason) => Some(reason),
            _ => None,
        }
    }

    /// Why the node, although up, runs none of the `queued` jobs, or none
    /// of this program's: see [`NodeInfo::reason`]. Pure.
    pub(crate) fn why_unused(&self, queued: &[JobKind]) -> Option<String> {
        if !matches!(self.state, NodeState::Up { .. }) {
            return None;
        }
        if let Some(refused) = self.ship_refusal() {
            return Some(format!("refused this program: {refused}"));
        }
        unused_for(queued, |kind| self.can_run(kind))
    }

    /// Its worker slots while up, else 0.
    pub(crate) fn workers(&self) -> usize {
        match self.state {
            NodeState::Up { workers } => workers,
            _ => 0,
        }
    }
}

/// One remote node, across reconnections.
pub(crate) struct NodeRecord {
    pub(crate) name: String,
    pub(crate) counters: NodeCounters,
    /// What is known of the node now: one snapshot, read and written whole.
    view: Mutex<NodeView>,
    /// Wakes the link's driver (to stop, or to serve a cancel ask), while
    /// it runs. Not part of the view: it is the driver's doorbell.
    waker: Mutex<Option<Arc<dyn Wake>>>,
    /// Traffic, jobs in flight and round trip, for the dashboard.
    pub(crate) meter: LinkMeter,
    /// Set once the user was told that the node refused this program.
    pub(crate) ship_reported: AtomicBool,
    /// Asks to cancel its jobs in flight, for its driver
    /// ([`Server::cancel_all`](crate::Server::cancel_all), `cancel_group`).
    cancels: Mutex<Vec<CancelAsk>>,
    /// Whether `cancels` holds any (read by the driver at every turn).
    cancel_asked: AtomicBool,
    /// Jobs to run on this node and nowhere else (their kept inputs lie
    /// there), and fetches of values kept there; its driver takes them
    /// before the queue's.
    pinned: Mutex<std::collections::VecDeque<Arc<dyn crate::jobs::task::Task>>>,
    /// Whether `pinned` holds any (read by the driver at every turn).
    has_pinned: AtomicBool,
    /// Jobs whose kept inputs all lie here at rest: they go while a
    /// worker is free here, and are placed elsewhere if none is within a
    /// bounded wait (`cluster::near`). Each holds what its timer needs.
    near: Mutex<std::collections::VecDeque<Near>>,
    has_near: AtomicBool,
    /// Results of the journaled run that came from this node and are
    /// recorded now: its driver tells the node (`Recorded`), which forgets them.
    acks: Mutex<Vec<ppcore::wire::JobKey>>,
    has_acks: AtomicBool,
}

/// A job waiting for a free worker on the node where its inputs lie.
struct Near {
    task: Arc<dyn crate::jobs::task::Task>,
    /// Alive while the job waits here (its timer holds it weakly).
    _wait: Arc<dyn Send + Sync>,
}

/// Cancel the jobs in flight of one group (`Some`, by identity) or all;
/// the driver answers how many it cancelled.
pub(crate) struct CancelAsk {
    pub(crate) group: Option<usize>,
    /// Only jobs with ids below this (submitted before the ask).
    pub(crate) below: u64,
    pub(crate) reply: crossbeam_channel::Sender<usize>,
}

/// The address a node fetches from another's kept values at: the other's
/// `reach` as it said (`host:port`), or, for `:port`, the address the
/// client reached it at (`from`) with that port. A loopback address names
/// a peer only for nodes on the same host, so it is used only for a node
/// the client reaches on loopback too (`to`). `None`: no transfer.
pub(crate) fn peer_addr(
    reach: &str,
    from: Option<SocketAddr>,
    to: Option<SocketAddr>,
) -> Option<String> {
    let addr = match reach.strip_prefix(':') {
        Some(port) => SocketAddr::new(from?.ip(), port.parse().ok()?).to_string(),
        None => reach.to_owned(),
    };
    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
    let host = host.trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback && !to?.ip().is_loopback() {
        return None;
    }
    Some(addr)
}

impl NodeRecord {
    pub(crate) fn new(name: String) -> Arc<Self> {
        Arc::new(NodeRecord {
            name,
            counters: NodeCounters::default(),
            view: Mutex::new(NodeView::default()),
            waker: Mutex::new(None),
            meter: Default::default(),
            ship_reported: AtomicBool::new(false),
            cancels: Mutex::new(Vec::new()),
            cancel_asked: AtomicBool::new(false),
            pinned: Mutex::new(Default::default()),
            has_pinned: AtomicBool::new(false),
            near: Mutex::new(Default::default()),
            has_near: AtomicBool::new(false),
            acks: Mutex::new(Vec::new()),
            has_acks: AtomicBool::new(false),
        })
    }

    /// Queues `task` for this node while a worker is free here; `wait`
    /// lives as long as it waits.
    pub(crate) fn pin_near(
        &self,
        task: Arc<dyn crate::jobs::task::Task>,
        wait: Arc<dyn Send + Sync>,
    ) {
        lock(&self.near).push_back(Near { task, _wait: wait });
        self.has_near.store(true, Ordering::Release);
        self.wake_driver();
    }

    /// Up to `n` of the jobs waiting for a free worker here, oldest first.
    pub(crate) fn take_near(&self, n: usize) -> Vec<Arc<dyn crate::jobs::task::Task>> {
        if n == 0 || !self.has_near.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut near = lock(&self.near);
        let n = n.min(near.len());
        let out: Vec<_> = near.drain(..n).map(|w| w.task).collect();
        self.has_near.store(!near.is_empty(), Ordering::Release);
        out
    }

    /// Whether jobs wait here for a free worker.
    pub(crate) fn has_near(&self) -> bool {
        self.has_near.load(Ordering::Acquire)
    }

    /// Job `id`, if it still waits here for a free worker.
    pub(crate) fn take_near_id(&self, id: u64) -> Option<Arc<dyn crate::jobs::task::Task>> {
        let mut near = lock(&self.near);
        let at = near.iter().position(|w| w.task.id() == id)?;
        let out = near.remove(at).map(|w| w.task);
        self.has_near.store(!near.is_empty(), Ordering::Release);
        out
    }

    /// Queues `task` for this node alone, and wakes its driver.
    pub(crate) fn pin(&self, task: Arc<dyn crate::jobs::task::Task>) {
        lock(&self.pinned).push_back(task);
        self.has_pinned.store(true, Ordering::Release);
        self.wake_driver();
    }

    /// Up to `n` of the jobs pinned to this node, oldest first.
    pub(crate) fn take_pinned(&self, n: usize) -> Vec<Arc<dyn crate::jobs::task::Task>> {
        if !self.has_pinned.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut pinned = lock(&self.pinned);
        let n = n.min(pinned.len());
        let out: Vec<_> = pinned.drain(..n).collect();
        self.has_pinned.store(!pinned.is_empty(), Ordering::Release);
        out
    }

    /// Every job pinned to this node (it was lost: they are placed again).
    pub(crate) fn drain_pinned(&self) -> Vec<Arc<dyn crate::jobs::task::Task>> {
        let mut all = self.take_pinned(usize::MAX);
        all.extend(self.take_near(usize::MAX));
        all
    }

    /// Takes out the pinned jobs for which `pick` holds (cancelled ones).
    pub(crate) fn take_pinned_where(
        &self,
        mut pick: impl FnMut(&Arc<dyn crate::jobs::task::Task>) -> bool,
    ) -> Vec<Arc<dyn crate::jobs::task::Task>> {
        let mut out = {
            let mut pinned = lock(&self.pinned);
            let (out, keep): (Vec<_>, Vec<_>) = pinned.drain(..).partition(|t| pick(t));
            pinned.extend(keep);
            self.has_pinned.store(!pinned.is_empty(), Ordering::Release);
            out
        };
        let mut near = lock(&self.near);
        let (gone, keep): (Vec<_>, Vec<_>) = near.drain(..).partition(|w| pick(&w.task));
        near.extend(keep);
        self.has_near.store(!near.is_empty(), Ordering::Release);
        out.extend(gone.into_iter().map(|w| w.task));
        out
    }

    /// What is known of the node now, whole.
    pub(crate) fn view(&self) -> NodeView {
        lock(&self.view).clone()
    }

    /// Changes what is known of the node in one step: readers see it
    /// before or after, never half-way. `change` runs under the record's
    /// lock: crate code only, no I/O.
    pub(crate) fn update(&self, change: impl FnOnce(&mut NodeView)) {
        change(&mut lock(&self.view));
    }

    /// What [`Server::nodes`](crate::Server::nodes) says of this node,
    /// with `queued` the kinds of jobs waiting in the queue now.
    pub(crate) fn info(&self, queued: &[JobKind]) -> NodeInfo {
        let view = self.view();
        NodeInfo {
            name: self.name.clone(),
            reason: view.why_unused(queued),
            state: view.state,
            addr: view.addr,
            node_id: view.node_id,
            offer: view.offer,
        }
    }

    /// Notes the address a connection reached.
    pub(crate) fn set_addr(&self, addr: Option<SocketAddr>) {
        self.update(|v| v.addr = addr);
    }

    /// Notes where peers reach the node (`None`: they cannot).
    pub(crate) fn set_reach(&self, reach: Option<String>) {
        self.update(|v| v.reach = reach);
    }

    /// The address node `to` fetches this node's kept values at, if it can.
    pub(crate) fn peer_addr_for(&self, to: &NodeRecord) -> Option<String> {
        let from = self.view();
        peer_addr(from.reach.as_deref()?, from.addr, to.view().addr)
    }

    /// The node said hello: what it calls itself, its jobs and its
    /// workers, in one step.
    pub(crate) fn came_up(&self, node_id: String, jobs: JobSet, workers: usize) {
        self.update(|v| {
            v.node_id = Some(node_id);
            v.jobs = Some(jobs);
            v.state = NodeState::Up { workers };
        });
    }

    /// Our program runs on the node: its `jobs` (name, signature) join the
    /// node's, in the same step as shipping is marked done.
    pub(crate) fn program_ready(&self, jobs: impl IntoIterator<Item = (String, String)>) {
        self.update(|v| {
            let mut all: HashMap<String, HashSet<String>> =
                v.jobs.as_deref().cloned().unwrap_or_default();
            for (name, signature) in jobs {
                all.entry(name).or_default().insert(signature);
            }
            v.jobs = Some(Arc::new(all));
            v.ship = Ship::Ready;
        });
    }

    /// Notes where shipping this program stands.
    pub(crate) fn set_ship(&self, ship: Ship) {
        self.update(|v| v.ship = ship);
    }

    pub(crate) fn state(&self) -> NodeState {
        lock(&self.view).state.clone()
    }

    pub(crate) fn set_state(&self, state: NodeState) {
        self.update(|v| v.state = state);
    }

    /// Why the node refused our program, if it did.
    pub(crate) fn ship_refusal(&self) -> Option<String> {
        lock(&self.view).ship_refusal().map(str::to_owned)
    }

    pub(crate) fn set_waker<W: Wake + 'static>(&self, waker: Arc<W>) {
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

    /// These results from this node are recorded in the journal: its
    /// driver is to tell the node.
    pub(crate) fn recorded(&self, keys: impl IntoIterator<Item = ppcore::wire::JobKey>) {
        lock(&self.acks).extend(keys);
        self.has_acks.store(true, Ordering::Release);
        self.wake_driver();
    }

    /// The recorded results not told to the node yet (cheap when none).
    pub(crate) fn take_acks(&self) -> Vec<ppcore::wire::JobKey> {
        if !self.has_acks.load(Ordering::Acquire) || !self.has_acks.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.acks))
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

/// The kind of error for a job that no local worker and no node can run:
/// [`ErrorKind::Auth`] if a node that might have run it refused us (it is
/// `Failed`: wrong key, other protocol version), else
/// [`ErrorKind::UnknownJob`]. The one rule for every place that gives up on
/// such a job.
pub(crate) fn unrunnable_kind(nodes: &[NodeInfo]) -> ErrorKind {
    if nodes
        .iter()
        .any(|n| matches!(n.state, NodeState::Failed { .. }))
    {
        ErrorKind::Auth
    } else {
        ErrorKind::UnknownJob
    }
}

/// Tells the user about nodes that refused us, logger or not: a refusal is
/// a configuration error the program's author must see.
pub(crate) fn report_refusals(nodes: &[NodeInfo]) {
    use std::io::Write;
    for node in nodes {
        if let NodeState::Failed { reason } = &node.state {
            if tracing::dispatcher::has_been_set() {
                tracing::warn!(node = %node.name, "node refused us: {reason}");
            } else {
                let _ = writeln!(
                    std::io::stderr(),
                    "pp: node {} refused us: {reason} (jobs run without it)",
                    node.name
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{peer_addr, unused_for, JobSet, NodeRecord, NodeState, Ship};
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    #[test]
    fn a_node_coming_up_and_taking_our_program_is_seen_whole() {
        let record = NodeRecord::new("n:1".into());
        record.set_ship(Ship::Pending);
        let jobs: JobSet = Arc::new(HashMap::from([(
            "a".to_owned(),
            HashSet::from(["sig".to_owned()]),
        )]));
        record.came_up("node-1".into(), jobs, 4);
        let view = record.view();
        assert_eq!(view.state, NodeState::Up { workers: 4 });
        assert_eq!(view.node_id.as_deref(), Some("node-1"));
        assert_eq!(view.can_run(("a", "sig")), Some(true));
        assert_eq!(view.can_run(("b", "sig")), None, "our program may bring it");
        record.program_ready([("b".to_owned(), "sig".to_owned())]);
        let view = record.view();
        assert_eq!(view.ship, Ship::Ready);
        assert_eq!(view.can_run(("a", "sig")), Some(true), "its own jobs stay");
        assert_eq!(view.can_run(("b", "sig")), Some(true));
        assert_eq!(view.can_run(("c", "sig")), Some(false));
    }

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

    #[test]
    fn a_peer_is_reached_where_it_says_or_at_the_address_dialed_but_loopback_only_from_loopback() {
        let at = |s: &str| Some(s.parse().unwrap());
        let (lo, lan) = (at("127.0.0.1:1"), at("10.0.0.9:1"));
        let got = peer_addr(":7000", at("10.0.0.5:7000"), lan);
        assert_eq!(got.as_deref(), Some("10.0.0.5:7000"));
        assert_eq!(
            peer_addr("a.example:9", None, lan).as_deref(),
            Some("a.example:9")
        );
        assert_eq!(
            peer_addr("127.0.0.1:7000", None, lo).as_deref(),
            Some("127.0.0.1:7000")
        );
        assert_eq!(peer_addr("127.0.0.1:7000", None, lan), None);
        assert_eq!(peer_addr(":7000", at("127.0.0.1:7000"), lan), None);
        assert_eq!(peer_addr("[::1]:7000", None, lan), None);
        assert_eq!(peer_addr(":7000", None, lan), None);
        assert_eq!(peer_addr(":x", at("10.0.0.5:7000"), lan), None);
    }
}
