//! [`Builder`]: how a [`Server`] is configured and started.

use crate::api::server::Server;
use crate::cluster::node::{LinkSettings, NodeInfo, NodeState};
use crate::cluster::state::Core;
use crate::find::dns::{DnsName, Resolver};
use crate::jobs::queue_key::QueueKey;
use crate::jobs::task::Task;
use crate::jobs::tracker::Tracker;
use crate::journal::{Journal, JournalError};
use crate::link::dial::with_port;
use ppcore::wire::{DEFAULT_MAX_FRAME, DEFAULT_PORT};
use ppcore::{DuplicateJob, KeyError, KeySet, Pool, Registry};
use ppslurm::{Slurm, SlurmError};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a job whose request nobody meets waits for a node that may
/// still join ([`Builder::unmet_wait`]).
const DEFAULT_UNMET_WAIT: Duration = Duration::from_secs(60);

pub use ppcore::SECRET_ENV;

/// Why a [`Server`] could not be built.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two linked jobs share a name.
    #[error(transparent)]
    DuplicateJob(#[from] DuplicateJob),
    /// No key where nodes are to be reached, or a value that is not a
    /// generated key (the message says how to make one).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A thread could not be started, or the listening address bound.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Fewer nodes than [`Builder::require_nodes`] asked for were up once
    /// every node had answered (or the connect timeout passed).
    #[error("{up} of the {wanted} required node(s) are up: {}", describe(.nodes))]
    NodesUnavailable {
        /// How many nodes were required.
        wanted: usize,
        /// How many were up.
        up: usize,
        /// Every node and where it stood.
        nodes: Vec<NodeInfo>,
    },
    /// The Slurm nodes could not be started.
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    /// The journal ([`Builder::journal`]) cannot be used: truncated,
    /// corrupt, written by another program or a newer version, or in use.
    /// The message names the file and what to do.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The local pool's offer ([`Builder::resources`], [`Builder::tag`])
    /// has a bad name or count.
    #[error("local pool's offer: {0}")]
    Resources(#[from] ppcore::resources::ResourceError),
}

ppcore::debug_as_display!(BuildError);

fn describe(nodes: &[NodeInfo]) -> String {
    let each: Vec<String> = nodes
        .iter()
        .map(|n| match &n.state {
            NodeState::Up { workers } => format!("{} up ({workers} workers)", n.name),
            NodeState::Failed { reason } => format!("{} refused: {reason}", n.name),
            NodeState::Down { reason } => format!("{} down: {reason}", n.name),
            NodeState::Connecting => format!("{} not answering", n.name),
            NodeState::Draining => format!("{} draining", n.name),
        })
        .collect();
    if each.is_empty() {
        "no nodes were given".to_owned()
    } else {
        each.join("; ")
    }
}

/// Configures a [`Server`]; from [`Server::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    ncpus: Option<usize>,
    registry: Option<Registry>,
    nodes: Vec<String>,
    keys: Option<KeySource>,
    discover: Option<(String, SocketAddr)>,
    listen: Option<String>,
    dashboard: Option<String>,
    node_retries: u32,
    crash_retries: u32,
    require_nodes: usize,
    report_refusals: bool,
    /// Bytes of arguments submitted and not yet taken.
    byte_budget: u64,
    settings: LinkSettings,
    /// The secret as given, for the key file of Slurm nodes.
    slurm: Option<Slurm>,
    dns: Vec<DnsName>,
    dns_every: Duration,
    /// The journal's file, and whether to start it fresh.
    journal: Option<(PathBuf, bool)>,
    /// What the local pool offers besides its cpus (those are `ncpus`).
    offer: ppcore::resources::Offer,
    /// The first bad part of the offer, reported by `build`.
    offer_error: Option<ppcore::resources::ResourceError>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ncpus: None,
            registry: None,
            nodes: Vec::new(),
            keys: None,
            discover: None,
            listen: None,
            dashboard: None,
            node_retries: 3,
            crash_retries: 2,
            require_nodes: 0,
            report_refusals: true,
            byte_budget: ppcore::budget::DEFAULT_BYTE_BUDGET,
            settings: LinkSettings {
                keys: None,
                connect_timeout: Duration::from_secs(2),
                unmet_wait: DEFAULT_UNMET_WAIT,
                heartbeat: Duration::from_secs(1),
                max_prefetch: 4096,
                max_frame: DEFAULT_MAX_FRAME,
                max_payload: ppcore::stream::DEFAULT_MAX_PAYLOAD,
                run: None,
            },
            slurm: None,
            dns: Vec::new(),
            dns_every: Duration::from_secs(10),
            journal: None,
            offer: ppcore::resources::Offer::default(),
            offer_error: None,
        }
    }
}

impl Server {
    /// A builder with the defaults: every linked job, `ncpus` auto-detected, no nodes.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Builder {
    /// Local worker threads. Default: the CPUs this process may use
    /// (`available_parallelism`, which honours cgroup quotas and affinity).
    /// 0 runs everything on remote nodes.
    /// At most [`ppcore::limits::MAX_WORKERS`].
    pub fn ncpus(mut self, n: usize) -> Self {
        self.ncpus = Some(n.min(ppcore::limits::MAX_WORKERS));
        self
    }

    /// Named resources the local pool offers its jobs, as
    /// `ppserver --resources` takes them: `"gpu=2,licence=4"` (whole
    /// counts of instances: gpu 0 and gpu 1). Its cpus are its workers
    /// ([`ncpus`](Self::ncpus)). A job asking for
    /// [`Options::resource`](crate::Options::resource) runs locally only
    /// while its amount is free. A bad list fails `build`. See
    /// docs/RESOURCES.md.
    pub fn resources(mut self, list: &str) -> Self {
        if let Err(e) = self.offer.add_list(list) {
            self.offer_error.get_or_insert(e);
        }
        self
    }

    /// A tag of the local pool (`ssd`): jobs asking for it
    /// ([`Options::tag`](crate::Options::tag)) may run here.
    pub fn tag(mut self, name: &str) -> Self {
        if let Err(e) = self.offer.add_tag(name) {
            self.offer_error.get_or_insert(e);
        }
        self
    }

    /// The memory the local pool offers its jobs, in bytes, for
    /// [`Options::memory`](crate::Options::memory) requests (default: not
    /// counted, any request fits). Placement only: a local job shares
    /// this process's memory and nothing stops it taking more.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.offer.set_memory(Some(bytes));
        self
    }

    /// The jobs this server may run, instead of every linked job.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Remote nodes, as `host` or `host:port` (default port 60000), like pp's
    /// `ppservers`. Nodes that are down are retried with backoff.
    pub fn nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.nodes
            .extend(nodes.into_iter().map(|n| with_port(&n.into())));
        self
    }

    /// The cluster's key as text (`ppk1-...`, as `ppserver --gen-secret
    /// FILE` or `ppclient secret new FILE` write it; two, blank-separated,
    /// during a rollover). Without it, the `PP_SECRET` environment variable,
    /// as `ppserver` and the `ppclient` command read it. A value that is not
    /// a generated key makes [`Builder::build`] fail with
    /// [`BuildError::Key`], saying how to make one. Needed only to reach
    /// nodes (named, discovered or joining).
    pub fn secret(mut self, key: impl AsRef<[u8]>) -> Self {
        let text = String::from_utf8_lossy(key.as_ref()).into_owned();
        self.keys = Some(KeySource::Text(text));
        self
    }

    /// The cluster's key from a key file (see [`Builder::secret`]).
    pub fn secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keys = Some(KeySource::File(path.into()));
        self
    }

    /// The cluster's keys, already read (see [`Builder::secret`]).
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(KeySource::Keys(keys));
        self
    }

    /// Finds nodes by UDP broadcast on the local network, keeping those whose
    /// address matches `pattern` (`"*"` or like `"192.168.1.*"`), as pp's
    /// `ppservers=("*",)`.
    pub fn discover(self, pattern: &str) -> Self {
        let target = SocketAddr::from(([255, 255, 255, 255], DEFAULT_PORT));
        self.discover_via(pattern, target)
    }

    /// Like [`Builder::discover`], sending probes to `target` (a broadcast
    /// address and port, or one node).
    pub fn discover_via(mut self, pattern: &str, target: SocketAddr) -> Self {
        self.discover = Some((pattern.to_owned(), target));
        self
    }

    /// Listens on `addr` for nodes started with `ppserver --join`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Starts the nodes through Slurm, inside the allocation this process
    /// runs in (`salloc`, an `sbatch` script): one `ppserver` job step per
    /// allocated node, with that node's CPUs as workers, joining this client.
    /// Same as `slurm_with(Slurm::allocation())`; see [`Slurm`].
    pub fn slurm(self) -> Self {
        self.slurm_with(Slurm::allocation())
    }

    /// Starts the nodes through Slurm as `slurm` says: in the current
    /// allocation, or in one it submits ([`Slurm::submit`]). The server
    /// listens for them (on [`Builder::listen`]'s address, else on every
    /// interface with a free port); without a [`Builder::secret`] a random
    /// one is made; without [`Builder::ncpus`] it has no local workers (the
    /// allocation's CPUs are its nodes'). The nodes stop when the server is dropped.
    pub fn slurm_with(mut self, slurm: Slurm) -> Self {
        self.slurm = Some(slurm);
        self
    }

    /// Every address `name` (`host` or `host:port`, default port 60000)
    /// resolves to becomes a node of its own, resolved again every 10 s
    /// ([`Builder::dns_interval`]) so that new nodes join: for a Kubernetes
    /// headless Service. (A name given to [`Builder::nodes`] stays one node.)
    pub fn nodes_from_dns(self, name: impl Into<String>) -> Self {
        self.nodes_from_dns_with(name, |n: &str| {
            use std::net::ToSocketAddrs;
            n.to_socket_addrs().map(Iterator::collect)
        })
    }

    /// Like [`Builder::nodes_from_dns`], asking `resolve` (given `host:port`)
    /// instead of the system's resolver: a service registry, or a test.
    pub fn nodes_from_dns_with(
        mut self,
        name: impl Into<String>,
        resolve: impl Fn(&str) -> std::io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        let resolver: Resolver = std::sync::Arc::new(resolve);
        self.dns.push(DnsName {
            name: with_port(&name.into()),
            resolver,
        });
        self
    }

    /// How often [`Builder::nodes_from_dns`] names are resolved again (default 10 s).
    pub fn dns_interval(mut self, every: Duration) -> Self {
        self.dns_every = every;
        self
    }

    /// Serves a live web dashboard at `addr` (`"127.0.0.1:8787"`, or a bare
    /// port for 127.0.0.1): nodes, a task stream, progress per group with
    /// ETA, recent errors, and `/api/status` as JSON. Off by default. It
    /// answers only requests addressed to it by IP or `localhost`; bind it
    /// beyond loopback only on a network you trust (it has no login). It
    /// serves from one thread however many connect: at most 256 connections
    /// (the longest idle evicted for a newcomer), 16 event streams, a
    /// request head within 10 s and 8 KiB (`ppcore::http`).
    pub fn dashboard(mut self, addr: impl Into<String>) -> Self {
        self.dashboard = Some(addr.into());
        self
    }

    /// How many node losses a job may meet before it fails with
    /// [`ErrorKind::NodeLost`](ppcore::ErrorKind::NodeLost) (default 3).
    pub fn node_retries(mut self, n: u32) -> Self {
        self.node_retries = n;
        self
    }

    /// How many node worker processes (isolation mode) a job may crash
    /// before it fails with [`ErrorKind::Crashed`](ppcore::ErrorKind::Crashed) and is not run again
    /// (default 2).
    pub fn crash_retries(mut self, n: u32) -> Self {
        self.crash_retries = n;
        self
    }

    /// How often nodes are pinged; a node silent for three intervals is lost
    /// (default 1 s).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.settings.heartbeat = interval;
        self
    }

    /// The largest arguments, and the largest result, of one job in bytes
    /// (default 1 GiB). Larger arguments fail at `submit` with
    /// [`ErrorKind::Codec`](ppcore::ErrorKind::Codec), before they are
    /// encoded; a node refuses to send a larger result (the job fails with
    /// the same kind). A node's own limit (`ppserver --max-payload`) also
    /// applies: arguments over it fail before any byte is sent. Payloads
    /// larger than a frame travel as streams of 1 MiB chunks.
    pub fn max_payload(mut self, bytes: u64) -> Self {
        self.settings.max_payload = bytes.max(1);
        self
    }

    /// The most bytes of encoded arguments of jobs submitted and not yet
    /// taken by a local worker or a node's link (default 1 GiB). Beyond it
    /// [`Server::submit`](crate::Server::submit) waits until jobs are taken,
    /// and [`Server::try_submit`](crate::Server::try_submit) hands the job
    /// back, so a loop submitting large arguments cannot exhaust memory. A
    /// job larger than the whole budget waits until nothing else holds any.
    pub fn byte_budget(mut self, bytes: u64) -> Self {
        self.byte_budget = bytes;
        self
    }

    /// How long a job whose request ([`Options::cpus`](crate::Options::cpus),
    /// [`resource`](crate::Options::resource), ...) no machine up can meet
    /// waits for a node that offers it to join, when one may: the client
    /// listens ([`Builder::listen`]), discovers nodes or finds them through
    /// DNS (default 60 s). Then it fails with
    /// [`ErrorKind::Unsatisfiable`](crate::ErrorKind::Unsatisfiable),
    /// naming the request, the largest offer and this wait. With only
    /// named nodes there is no wait: once every node answered (or its
    /// connect timeout passed) such a job fails at `submit`.
    pub fn unmet_wait(mut self, wait: Duration) -> Self {
        self.settings.unmet_wait = wait;
        self
    }

    /// How long to wait for a node to accept a connection (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Makes [`Builder::build`] fail with [`BuildError::NodesUnavailable`]
    /// unless at least `n` nodes are up once every node has answered (or the
    /// connect timeout passed): for programs that would rather stop than run
    /// without their cluster. Default 0: nodes that are down are retried in
    /// the background, and nodes that refuse us are reported (below).
    pub fn require_nodes(mut self, n: usize) -> Self {
        self.require_nodes = n;
        self
    }

    /// Whether [`Builder::build`] reports nodes that refused us (default
    /// true). A program that looks at [`Server::nodes`] and tells its user
    /// itself turns it off, so that the user is not told twice.
    pub fn report_refusals(mut self, report: bool) -> Self {
        self.report_refusals = report;
        self
    }

    /// Records every finished job's result in a journal at `path` (a redb
    /// database, created if missing), and gives back the results it
    /// already holds: the same program run again with the same journal
    /// gets each recorded result at `submit`, without running the job (its
    /// handle resolves at once; its callback, if any, runs again: the new
    /// process has fresh state). See docs/JOURNAL.md.
    ///
    /// A job's identity is its name, a hash of its encoded arguments and
    /// which occurrence of that pair it is in submission order, or
    /// [`Options::journal_key`](crate::Options::journal_key). A result is
    /// in the journal (committed, synced) before its handle or callback
    /// sees it. Recorded: values, and the job's own errors (returned or
    /// panicked); not the system's (shutdown, cancel, timeout, lost
    /// nodes), nor kept jobs ([`Options::keep`](crate::Options::keep)) in
    /// this version, nor jobs whose arguments name [`Shared`](crate::Shared)
    /// values unless they have a journal key.
    ///
    /// [`Builder::build`] fails with [`BuildError::Journal`] for a journal
    /// that is truncated, corrupt, written by another program (jobs this one
    /// lacks) or by a newer version, or open in another program; a journal
    /// left by a killed client opens as it is.
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some((path.into(), false));
        self
    }

    /// [`Builder::journal`], deleting the file first: a fresh start, also
    /// from a journal that [`Builder::build`] refuses (`--journal-reset`).
    pub fn journal_reset(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some((path.into(), true));
        self
    }

    /// Starts the server: the local pool, and a link to each node. Returns
    /// once every node given has answered once (or a connect timeout passed).
    ///
    /// A node that refuses us (wrong secret, other protocol version) is
    /// reported here without any set-up: as a `tracing` warning if the
    /// program has a subscriber, else as one line on stderr (unless
    /// [`Builder::report_refusals`] is off, or the build fails and its error
    /// says it). It also shows in [`Server::nodes`] and beside its row of
    /// [`Server::print_stats`], and jobs only it might have run fail with
    /// [`ErrorKind::Auth`](ppcore::ErrorKind::Auth).
    pub fn build(mut self) -> Result<Server, BuildError> {
        // A program a node started as a worker, that forgot `init()`, ends
        // here with a message naming the fix (the node passes it on).
        ppcore::worker::exit_if_uninitialized_worker();
        ppcore::quiet_job_panics();
        if let Some(e) = self.offer_error.take() {
            return Err(e.into());
        }
        let registry = match self.registry.take() {
            Some(r) => r,
            None => Registry::linked()?,
        };
        // Before anything starts: a journal that cannot be used stops here.
        let journal = match &self.journal {
            Some((path, reset)) => Some(Journal::open(path, *reset, &registry)?),
            None => None,
        };
        // With Slurm the allocation's CPUs belong to its nodes, the one this
        // client runs on too: no local workers unless asked.
        let ncpus = match (self.ncpus, &self.slurm) {
            (Some(n), _) => n,
            (None, Some(_)) => 0,
            (None, None) => detect_ncpus(),
        };
        if self.slurm.is_some() && self.listen.is_none() {
            self.listen = Some("0.0.0.0:0".into());
        }
        let listener = match &self.listen {
            Some(addr) => Some(TcpListener::bind(addr.as_str())?),
            None => None,
        };
        let mut keys = match self.keys.take() {
            Some(source) => Some(source.read()?),
            None => match std::env::var_os(SECRET_ENV) {
                Some(text) => Some(KeySet::parse(&text.to_string_lossy())?),
                None => None,
            },
        };
        // Slurm nodes are started by us: without a key, a fresh one for them.
        if self.slurm.is_some() && keys.is_none() {
            keys = Some(KeySet::one(ppcore::Key::generate()?));
        }
        let remote = !self.nodes.is_empty() || listener.is_some() || self.discover.is_some();
        if remote && keys.is_none() {
            return Err(KeyError::Missing.into());
        }
        let slurm_key_file = keys.as_ref().map(ppslurm::key_file_text);
        // Times are capped so that no deadline computed from them overflows.
        let settings = LinkSettings {
            keys,
            // Named to every node: its results there outlive this process.
            run: journal.as_ref().map(|j| j.run()),
            connect_timeout: ppcore::limits::cap(self.settings.connect_timeout),
            heartbeat: ppcore::limits::cap(self.settings.heartbeat).max(Duration::from_millis(1)),
            ..self.settings.clone()
        };
        let open_ended = listener.is_some() || self.discover.is_some() || !self.dns.is_empty();
        let tracker = Arc::new(Tracker::new(self.byte_budget)?);
        let mut offer = std::mem::take(&mut self.offer);
        offer.set_cpus(u32::try_from(ncpus).unwrap_or(u32::MAX));
        let core = Arc::new(Core::new(
            tracker,
            settings,
            (ncpus, offer),
            open_ended,
            || (!crate::link::ship::initialized()).then_some(crate::link::ship::INIT_HINT),
        ));
        let worker_core = Arc::clone(&core);
        let taking = Arc::clone(&core);
        // Local workers take jobs with a request only if the pool's offer
        // covers it (the others wait for a node that offers it).
        let fits_here = move |(_, request): &QueueKey| {
            request
                .as_ref()
                .is_none_or(|r| taking.slots.covers(r).is_ok())
        };
        let pool = Pool::start_taking(
            "pp-worker",
            ncpus,
            core.queue.clone(),
            fits_here,
            move |task| {
                let core = &*worker_core;
                crate::jobs::slots::run_local(
                    &core.slots,
                    task,
                    || core.stopped(),
                    |task| Task::run_local(task, &core.ctx),
                )
            },
        );
        for node in &self.nodes {
            crate::link::spawn::start_static(&core, node.clone());
        }
        let listen_addr = match listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let core = Arc::clone(&core);
                Arc::clone(&core).spawn("pp-listen", move || {
                    crate::find::discovery::accept_joins(&core, &listener)
                })?;
                Some(addr)
            }
            None => None,
        };
        if let Some((pattern, target)) = self.discover.clone() {
            let found = crate::find::discovery::Found::new();
            let _ = crate::find::discovery::probe(&core, &pattern, target, &found);
            let core = Arc::clone(&core);
            Arc::clone(&core).spawn("pp-discover", move || {
                crate::find::discovery::discover(&core, &pattern, target, &found)
            })?;
        }
        for dns in self.dns.clone() {
            let (core, every) = (Arc::clone(&core), self.dns_every);
            std::thread::Builder::new()
                .name("pp-dns".into())
                .spawn(move || crate::find::dns::watch(&core, &dns.name, &dns.resolver, every))?;
        }
        let slurm = match (&self.slurm, listen_addr, &slurm_key_file) {
            (Some(slurm), Some(addr), Some(key_file)) => {
                match crate::slurm::start(slurm, key_file, addr, &core) {
                    Ok(launched) => Some(launched),
                    Err(e) => {
                        core.stop();
                        return Err(e.into());
                    }
                }
            }
            _ => None,
        };
        core.wait_first_contact(self.settings.connect_timeout + Duration::from_secs(1));
        let nodes = core.nodes();
        let up = nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Up { .. }))
            .count();
        if self.report_refusals && up >= self.require_nodes {
            crate::cluster::node::report_refusals(&nodes);
            core.report_late.store(true, Ordering::Release);
            core.report_ship_refusals();
        }
        if up < self.require_nodes {
            core.stop();
            pool.set_workers(0);
            core.join();
            return Err(BuildError::NodesUnavailable {
                wanted: self.require_nodes,
                up,
                nodes,
            });
        }
        // Last, once everything else is up: no job runs before `build`
        // returns. (Bound earlier, its allocations and threads shifted the
        // pool's hot data and cost the local pool several percent.)
        if let Some(addr) = &self.dashboard {
            if let Err(e) = crate::dashboard::bind(addr).and_then(|d| d.start(&core)) {
                core.stop();
                pool.set_workers(0);
                return Err(e.into());
            }
        }
        let acks_core = Arc::downgrade(&core);
        let server = Server::new(
            core,
            pool,
            registry,
            (self.node_retries, self.crash_retries),
            listen_addr,
            usize::try_from(self.settings.max_payload).unwrap_or(usize::MAX),
        );
        let server = match journal {
            Some(journal) => {
                // After each commit, the nodes that hold those results are
                // told: they forget them.
                journal.set_acker(Box::new(move |acks| {
                    let Some(core) = acks_core.upgrade() else {
                        return;
                    };
                    let mut by_node: std::collections::HashMap<String, Vec<ppcore::wire::JobKey>> =
                        Default::default();
                    for (node, key) in acks {
                        by_node.entry(node).or_default().push(key);
                    }
                    for (node, keys) in by_node {
                        if let Some(record) = core.link(&node) {
                            record.recorded(keys);
                        }
                    }
                }));
                server.with_journal(journal)
            }
            None => server,
        };
        Ok(match slurm {
            Some(launched) => server.with_slurm(launched),
            None => server,
        })
    }
}

/// Where the keys come from; read at build. Never printed.
#[derive(Clone)]
enum KeySource {
    Text(String),
    File(PathBuf),
    Keys(KeySet),
}

impl KeySource {
    fn read(self) -> Result<KeySet, KeyError> {
        match self {
            KeySource::Text(text) => KeySet::parse(&text),
            KeySource::File(path) => KeySet::read_file(&path),
            KeySource::Keys(keys) => Ok(keys),
        }
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            KeySource::Text(_) | KeySource::Keys(_) => f.write_str("Keys(..)"),
        }
    }
}

/// The CPUs this process may use; 1 if that cannot be told.
pub fn detect_ncpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
