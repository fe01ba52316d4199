//! [`Slurm`]: how a client starts its nodes through Slurm, in the
//! allocation it runs in or in one it submits, and the nodes' options.

use std::path::PathBuf;
use std::time::Duration;

/// How a client starts its nodes through Slurm; give it to
/// `ppclient::Builder::slurm_with`.
#[derive(Debug, Clone)]
pub struct Slurm {
    pub(crate) mode: Mode,
    pub(crate) program: Option<PathBuf>,
    pub(crate) servers_per_node: usize,
    pub(crate) grace: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) key_dir: Option<PathBuf>,
    pub(crate) advertise: Option<String>,
    pub(crate) start_timeout: Duration,
}

/// Where the nodes run.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Inside an allocation: its variables (`None`: this process's environment).
    Allocation(Option<Vec<(String, String)>>),
    /// Submit an allocation with `sbatch`.
    Submit(Submit),
}

/// An allocation to submit.
#[derive(Debug, Clone)]
pub(crate) struct Submit {
    /// Nodes to allocate.
    pub(crate) nodes: u32,
    /// The time limit, in Slurm's format.
    pub(crate) time: String,
    /// The partition, if not the default one.
    pub(crate) partition: Option<String>,
    /// More `sbatch` arguments, after ours.
    pub(crate) extra: Vec<String>,
}

impl Slurm {
    fn new(mode: Mode) -> Self {
        Slurm {
            mode,
            program: None,
            servers_per_node: 1,
            grace: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15),
            key_dir: None,
            advertise: None,
            start_timeout: Duration::from_secs(60),
        }
    }

    /// Nodes in the allocation this process runs in (`salloc`, `sbatch`):
    /// one job step per allocated node, read from `SLURM_JOB_ID`,
    /// `SLURM_JOB_NODELIST` and `SLURM_JOB_CPUS_PER_NODE` when the server is built.
    pub fn allocation() -> Self {
        Self::new(Mode::Allocation(None))
    }

    /// Like [`Slurm::allocation`], with the allocation's variables given
    /// (as `salloc` or `sbatch` would set them) instead of read from this
    /// process's environment: for a client started outside the allocation.
    pub fn allocation_from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::new(Mode::Allocation(Some(vars)))
    }

    /// Submits an allocation of `nodes` nodes for `time` (Slurm's format:
    /// `30`, `1:00:00`, `2-0`) with `sbatch`; its nodes join as they start,
    /// and it is cancelled when the client ends.
    pub fn submit(nodes: u32, time: impl Into<String>) -> Self {
        Self::new(Mode::Submit(Submit {
            nodes,
            time: time.into(),
            partition: None,
            extra: Vec::new(),
        }))
    }

    /// The partition to submit to (`sbatch --partition`).
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        if let Mode::Submit(s) = &mut self.mode {
            s.partition = Some(partition.into());
        }
        self
    }

    /// More `sbatch` arguments (`--account=x`, `--constraint=y`); they come
    /// after ours, so they win.
    pub fn sbatch_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        if let Mode::Submit(s) = &mut self.mode {
            s.extra.extend(args.into_iter().map(Into::into));
        }
        self
    }

    /// The node program the nodes run (default: `ppserver` beside this
    /// executable if there is one, else `ppserver` on the nodes' `PATH`).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// `ppserver`s per Slurm node, each a job step of its own with an equal
    /// share of the node's CPUs (default 1).
    pub fn servers_per_node(mut self, n: usize) -> Self {
        self.servers_per_node = n.max(1);
        self
    }

    /// The nodes' `--grace` (default 20 s): kept below Slurm's `KillWait`
    /// so that a cancelled node hands its jobs back before Slurm kills it.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a node stays without its client before it exits (default
    /// 15 s): what ends the allocation when the client died without cleaning up.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit.max(Duration::from_secs(1));
        self
    }

    /// Where the key file goes: a directory the nodes can read (default
    /// `$HOME/.pp`, on a cluster's shared home).
    pub fn key_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.key_dir = Some(dir.into());
        self
    }

    /// The host name or address the nodes dial (default: the listening
    /// address if it is a specific one, else this machine's host name).
    pub fn advertise(mut self, host: impl Into<String>) -> Self {
        self.advertise = Some(host.into());
        self
    }

    /// How long `ppclient::Builder::build` waits for the
    /// nodes of an allocation to join (default 60 s); a step that ends
    /// first fails the build at once.
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }
}
