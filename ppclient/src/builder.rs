//! [`Builder`]: how a [`Server`] is configured and started.

use crate::connect::with_port;
use crate::core::Core;
use crate::remote::{LinkSettings, NodeInfo, NodeState};
use crate::server::Server;
use crate::task::Task;
use crate::tracker::Tracker;
use ppcore::wire::{DEFAULT_MAX_FRAME, DEFAULT_PORT};
use ppcore::{DuplicateJob, Pool, Registry, Secret};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// Where [`Builder`] finds the secret when none is given.
pub const SECRET_ENV: &str = "PP_SECRET";

/// Why a [`Server`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two linked jobs share a name.
    #[error(transparent)]
    DuplicateJob(#[from] DuplicateJob),
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
}

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
    secret: Option<Secret>,
    discover: Option<(String, SocketAddr)>,
    listen: Option<String>,
    node_retries: u32,
    crash_retries: u32,
    require_nodes: usize,
    report_refusals: bool,
    settings: LinkSettings,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ncpus: None,
            registry: None,
            nodes: Vec::new(),
            secret: None,
            discover: None,
            listen: None,
            node_retries: 3,
            crash_retries: 2,
            require_nodes: 0,
            report_refusals: true,
            settings: LinkSettings {
                secret: Secret::default(),
                connect_timeout: Duration::from_secs(2),
                heartbeat: Duration::from_secs(1),
                max_prefetch: 1024,
                max_frame: DEFAULT_MAX_FRAME,
            },
        }
    }
}

impl Builder {
    /// Local worker threads. Default: the CPUs this process may use
    /// (`available_parallelism`, which honours cgroup quotas and affinity).
    /// 0 runs everything on remote nodes.
    pub fn ncpus(mut self, n: usize) -> Self {
        self.ncpus = Some(n);
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

    /// The secret shared with the nodes. Without it, the `PP_SECRET`
    /// environment variable, as `ppserver` and the `ppclient` command read
    /// it; without that, the empty secret (which nodes accept on loopback only).
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(Secret::new(secret));
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
        let registry = match self.registry.take() {
            Some(r) => r,
            None => Registry::linked()?,
        };
        let ncpus = self.ncpus.unwrap_or_else(detect_ncpus);
        let listener = match &self.listen {
            Some(addr) => Some(TcpListener::bind(addr.as_str())?),
            None => None,
        };
        let secret = self.secret.clone().unwrap_or_else(|| {
            std::env::var_os(SECRET_ENV)
                .map(|s| Secret::new(s.as_encoded_bytes()))
                .unwrap_or_default()
        });
        let settings = LinkSettings {
            secret,
            ..self.settings.clone()
        };
        let open_ended = listener.is_some() || self.discover.is_some();
        let tracker = Arc::new(Tracker::new()?);
        let core = Arc::new(Core::new(tracker, settings, ncpus, open_ended));
        let worker_core = Arc::clone(&core);
        let pool = Pool::start("pp-worker", ncpus, core.queue.clone(), move |task| {
            Task::run_local(task, &worker_core.ctx)
        });
        for node in &self.nodes {
            crate::remote::start_static(&core, node.clone());
        }
        let listen_addr = match listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let core = Arc::clone(&core);
                std::thread::Builder::new()
                    .name("pp-listen".into())
                    .spawn(move || crate::discovery::accept_joins(&core, &listener))?;
                Some(addr)
            }
            None => None,
        };
        if let Some((pattern, target)) = self.discover.clone() {
            let _ = crate::discovery::probe(&core, &pattern, target);
            let core = Arc::clone(&core);
            std::thread::Builder::new()
                .name("pp-discover".into())
                .spawn(move || crate::discovery::discover(&core, &pattern, target))?;
        }
        core.wait_first_contact(self.settings.connect_timeout + Duration::from_secs(1));
        let nodes = core.nodes();
        let up = nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Up { .. }))
            .count();
        if self.report_refusals && up >= self.require_nodes {
            report_refusals(&nodes);
        }
        if up < self.require_nodes {
            core.stop();
            pool.set_workers(0);
            return Err(BuildError::NodesUnavailable {
                wanted: self.require_nodes,
                up,
                nodes,
            });
        }
        Ok(Server::new(
            core,
            pool,
            registry,
            (self.node_retries, self.crash_retries),
            listen_addr,
            ppcore::wire::max_payload(self.settings.max_frame),
        ))
    }
}

/// Tells the user about nodes that refused us, logger or not: a refusal is
/// a configuration error the program's author must see.
fn report_refusals(nodes: &[NodeInfo]) {
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

/// The CPUs this process may use; 1 if that cannot be told.
pub fn detect_ncpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
