//! The simulated cluster: one client with a link to each node, each node
//! with its own link, and the network between them, all driven from one
//! agenda in one thread.
//!
//! The client's side is what ppclient's driver does, without the socket
//! and the thread: a shared [`Lanes`] queue that every link pulls from
//! while it has room (`pop_batch` with the driver's watcher, woken by the
//! next push when it found nothing), jobs handed to the real
//! [`ClientLink`], and its outputs carried out (bytes onto the network,
//! dial and close, results, jobs handed back queued again at the front).
//! The node's side is ppserver's connection driver: the real [`NodeLink`],
//! jobs queued for its workers, finished jobs handed back in batches.

mod client;
mod node;

use crate::net::{Agenda, Ev, Net, NetConfig};
use ppcore::link::{ClientLink, Event, LinkConfig, TransportError};
use ppcore::wire::{DoneJob, JobInfo, NodeMsg, DEFAULT_MAX_FRAME};
use ppcore::{Key, KeySet, Lanes, NodeEvent, NodeLink, NodeLinkConfig, TransportEnd, Wake};
use serde_bytes::ByteBuf;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The one job kind: (name, signature), as the client's queue keys it.
pub(crate) type Kind = (&'static str, &'static str);
pub(crate) const KIND: Kind = ("sim::work", "(u64,)->u64");
/// The largest batch a driver takes from the queue at once (ppclient's).
const MAX_BATCH: usize = 1024;

/// What the simulation is made of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) nodes: usize,
    pub(crate) workers: usize,
    /// A job's mean run time on a node (uniform in ±50 %).
    pub(crate) exec_ns: u64,
    /// From a worker's end of a job to its connection driver's turn.
    pub(crate) flush_ns: u64,
    /// From a push to the queue to the woken driver's turn.
    pub(crate) wake_ns: u64,
    /// How long a dial to a node that does not answer takes to fail.
    pub(crate) connect_timeout_ns: u64,
    pub(crate) net: NetConfig,
    pub(crate) seed: u64,
}

/// A job as the client queues it: its arguments are encoded at submit.
pub(crate) struct Job {
    id: u64,
    attempt: u32,
    args: ByteBuf,
}

/// Pushes the driver's node on a list the simulation reads after every
/// push (the real one wakes the driver's poll).
struct SimWake {
    node: u32,
    woken: Arc<Mutex<Vec<u32>>>,
}

impl Wake for SimWake {
    fn wake(&self) {
        ppcore::sync::lock(&self.woken).push(self.node);
    }
}

/// The client's end of one node: what its driver holds.
pub(crate) struct ClientEnd {
    link: ClientLink<Job>,
    /// The connection the link is on (0: none yet).
    conn: u32,
    /// The time of the timer event in the agenda, if any.
    armed: Option<u64>,
    /// Which kinds of job the node runs, as found out this session.
    kinds: Vec<(Kind, bool)>,
    watcher: Arc<dyn Wake>,
    /// A `Turn` is in the agenda.
    turn_due: bool,
    pub(crate) up: bool,
    /// When the link last declared the node lost.
    pub(crate) lost_at: Option<u64>,
    /// When the client last heard from the node.
    pub(crate) heard_at: u64,
}

/// A node: its link (one connection at a time) and its workers.
pub(crate) struct NodeEnd {
    link: NodeLink,
    conn: u32,
    armed: Option<u64>,
    waiting: VecDeque<(u64, u32)>,
    idle: usize,
    done: Vec<DoneJob>,
    flush_due: bool,
    /// Stopped answering: it reads nothing, sends nothing, runs nothing.
    pub(crate) silent: bool,
}

/// What the client's side holds, apart from the nodes: dropped whole to
/// see what it held.
pub(crate) struct ClientSide {
    pub(crate) ends: Vec<ClientEnd>,
    queue: Lanes<Job, Kind>,
    woken: Arc<Mutex<Vec<u32>>>,
}

/// Counts of the run.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Stats {
    /// Events handled (stale timers and bytes for closed connections not
    /// counted).
    pub(crate) events: u64,
    /// Wall time spent in the client's side: queue, pick, link.
    pub(crate) client: Duration,
    pub(crate) resolved: u64,
    pub(crate) duplicates: u64,
    pub(crate) returned: u64,
    pub(crate) downs: u64,
    /// Links up now.
    pub(crate) up: usize,
    /// Jobs handed to links.
    pub(crate) taken: u64,
    /// Turns of a driver woken by a push that found nothing to take
    /// (every push wakes every driver waiting on the queue).
    pub(crate) empty_turns: u64,
}

pub(crate) struct World {
    params: Params,
    pub(crate) agenda: Agenda,
    pub(crate) net: Net,
    pub(crate) client: ClientSide,
    pub(crate) nodes: Vec<NodeEnd>,
    /// The live connection of each node (a closed one is no longer live).
    live: Vec<u32>,
    next_conn: u32,
    welcome: NodeMsg,
    node_config: NodeLinkConfig,
    pub(crate) stats: Stats,
    /// Jobs submitted so far, and how many in all.
    submitted: u64,
    to_submit: u64,
    batch: usize,
    max_queued: usize,
    /// Which jobs resolved (each once).
    seen: Vec<bool>,
    /// A node to silence right after the client next hears from it.
    silence_next: Option<usize>,
}

fn keys() -> KeySet {
    KeySet::one(Key::from_bytes([7; 32]))
}

/// The client's link settings: ppclient's defaults (1 s heartbeat, 2 s to
/// connect, 16 MiB frames, 4096 jobs of prefetch, redial).
fn link_config() -> LinkConfig {
    LinkConfig {
        keys: keys(),
        heartbeat: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(2),
        max_frame: DEFAULT_MAX_FRAME,
        max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
        stream_stall: ppcore::stream::DEFAULT_STALL,
        max_prefetch: 4096,
        backoff_min: ppcore::link::RECONNECT_FIRST,
        backoff_max: ppcore::link::RECONNECT_MAX,
        reconnect: true,
        give_up_after: None,
        send_window: ppcore::window::default_window(DEFAULT_MAX_FRAME),
        run: None,
    }
}

/// The node's link settings: ppserver's defaults (5 s heartbeat, 5 s to
/// finish the handshake, credit of 4096 + 4 × workers jobs and 64 MiB).
fn node_config(workers: usize) -> NodeLinkConfig {
    NodeLinkConfig {
        keys: keys(),
        handshake_timeout: Duration::from_secs(5),
        heartbeat: Duration::from_secs(5),
        max_frame: DEFAULT_MAX_FRAME,
        credit_jobs: 4096 + 4 * workers,
        credit_bytes: 64 << 20,
        max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
        stream_stall: ppcore::stream::DEFAULT_STALL,
        send_window: ppcore::window::default_window(DEFAULT_MAX_FRAME),
    }
}

fn welcome(workers: usize) -> NodeMsg {
    NodeMsg::Welcome {
        node_id: "sim".into(),
        version: "sim".into(),
        workers: workers as u32,
        jobs: vec![JobInfo {
            name: KIND.0.into(),
            signature: KIND.1.into(),
        }],
        heartbeat_ms: 5000,
        caps: vec![],
        credit_jobs: 0,
        credit_bytes: 0,
        shared_max: 0,
        reach: None,
        max_payload: 0,
        offer: None,
    }
}

impl World {
    /// A client with a link to each of `params.nodes` nodes, every link
    /// about to dial.
    pub(crate) fn new(params: Params) -> Self {
        let base = Instant::now();
        let agenda = Agenda::new(base);
        let now = agenda.now();
        let woken = Arc::new(Mutex::new(Vec::new()));
        let config = link_config();
        let ends = (0..params.nodes)
            .map(|i| ClientEnd {
                link: ClientLink::new(config.clone(), now),
                conn: 0,
                armed: None,
                kinds: Vec::new(),
                watcher: Arc::new(SimWake {
                    node: i as u32,
                    woken: Arc::clone(&woken),
                }),
                turn_due: false,
                up: false,
                lost_at: None,
                heard_at: 0,
            })
            .collect();
        let node_config = node_config(params.workers);
        let welcome = welcome(params.workers);
        let nodes = (0..params.nodes)
            .map(|_| NodeEnd {
                link: NodeLink::new(node_config.clone(), welcome.clone(), now),
                conn: 0,
                armed: None,
                waiting: VecDeque::new(),
                idle: params.workers,
                done: Vec::new(),
                flush_due: false,
                silent: false,
            })
            .collect();
        let mut world = World {
            params,
            agenda,
            net: Net::new(params.net, params.nodes, params.seed),
            client: ClientSide {
                ends,
                queue: Lanes::new(),
                woken,
            },
            nodes,
            live: vec![0; params.nodes],
            next_conn: 0,
            welcome,
            node_config,
            stats: Stats::default(),
            submitted: 0,
            to_submit: 0,
            batch: 1024,
            max_queued: 1 << 18,
            seen: Vec::new(),
            silence_next: None,
        };
        for i in 0..params.nodes {
            world.client_act(i);
        }
        world
    }

    /// Queues `jobs` more jobs, `batch` at a time, never more than
    /// `max_queued` waiting.
    pub(crate) fn submit(&mut self, jobs: u64, batch: usize, max_queued: usize) {
        self.to_submit += jobs;
        self.batch = batch.max(1);
        self.max_queued = max_queued.max(batch);
        self.seen.resize(self.to_submit as usize, false);
        self.agenda.after(0, Ev::Submit);
    }

    /// Silences `node` right after the client next hears from it.
    pub(crate) fn silence_after_next_word(&mut self, node: usize) {
        self.silence_next = Some(node);
    }

    /// The heartbeat interval a link agreed on (the smaller of both ends').
    pub(crate) fn heartbeat(&self) -> Duration {
        Duration::from_secs(1).min(self.node_config.heartbeat)
    }

    /// Runs events until `stop` holds (checked after each) or none is due
    /// before `until`; true if `stop` held.
    pub(crate) fn run_until(&mut self, until: u64, mut stop: impl FnMut(&World) -> bool) -> bool {
        while let Some(ev) = self.agenda.next_until(until) {
            self.handle(ev);
            if stop(self) {
                return true;
            }
        }
        self.agenda.advance_to(until);
        stop(self)
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Dialled { node } => self.dialled(node as usize),
            Ev::ToNode { node, conn, bytes } => self.node_receives(node as usize, conn, &bytes),
            Ev::ToClient { node, conn, bytes } => self.client_receives(node as usize, conn, &bytes),
            Ev::ClosedToNode { node, conn } => {
                let n = &mut self.nodes[node as usize];
                if n.conn == conn && !n.silent {
                    self.stats.events += 1;
                    let now = self.agenda.now();
                    n.link
                        .handle(NodeEvent::TransportClosed(TransportEnd::ClosedByPeer), now);
                    self.node_act(node as usize);
                }
            }
            Ev::ClosedToClient { node, conn } => {
                if self.client.ends[node as usize].conn == conn {
                    self.stats.events += 1;
                    let started = Instant::now();
                    let now = self.agenda.now();
                    let reason = TransportError::PeerClosed;
                    let c = &mut self.client.ends[node as usize];
                    c.link.handle(Event::TransportClosed(reason), now);
                    self.client_act(node as usize);
                    self.stats.client += started.elapsed();
                }
            }
            Ev::ClientTimer { node } => self.client_timer(node as usize),
            Ev::NodeTimer { node, conn } => self.node_timer(node as usize, conn),
            Ev::Finished {
                node,
                conn,
                id,
                attempt,
            } => self.finished(node as usize, conn, id, attempt),
            Ev::Flush { node, conn } => self.flush(node as usize, conn),
            Ev::Turn { node } => {
                self.stats.events += 1;
                let started = Instant::now();
                self.client.ends[node as usize].turn_due = false;
                let taken = self.stats.taken;
                self.client_act(node as usize);
                self.stats.empty_turns += u64::from(self.stats.taken == taken);
                self.stats.client += started.elapsed();
            }
            Ev::Submit => self.submit_batch(),
        }
    }

    /// Takes the client's side out of the world (to drop it and see what
    /// it held); the world is of no further use.
    pub(crate) fn take_client(&mut self) -> ClientSide {
        ClientSide {
            ends: std::mem::take(&mut self.client.ends),
            queue: std::mem::take(&mut self.client.queue),
            woken: std::mem::take(&mut self.client.woken),
        }
    }

    /// Takes the nodes out of the world, likewise.
    pub(crate) fn take_nodes(&mut self) -> Vec<NodeEnd> {
        std::mem::take(&mut self.nodes)
    }
}
