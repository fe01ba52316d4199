//! The arguments `run maclaurin` and `slurm submit` share: where the nodes
//! are, the Maclaurin job's, and how Slurm starts the nodes.

use ppclient::Slurm;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct ClusterArgs {
    /// Nodes, comma-separated, as host or host:port.
    #[arg(long, value_delimiter = ',')]
    pub(crate) nodes: Vec<String>,
    /// Find nodes by UDP broadcast whose address matches PATTERN ("*", "10.0.0.*").
    /// Given with --nodes, the job runs twice: once on the named nodes, once
    /// on the discovered ones.
    #[arg(long, value_name = "PATTERN")]
    pub(crate) discover: Option<String>,
    /// Where discovery probes go (default: broadcast on port 60000).
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) discover_via: Option<std::net::SocketAddr>,
    /// Local worker threads (default: all CPUs, none with Slurm; 0 = nodes only).
    #[arg(long, value_parser = |s: &str| ppcore::limits::parse_workers(s, true))]
    pub(crate) ncpus: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Inside a Slurm allocation (salloc, sbatch): start a ppserver job step
    /// on each allocated node with srun; they join this client.
    #[arg(long)]
    pub(crate) slurm: bool,
    #[command(flatten)]
    pub(crate) slurm_args: SlurmArgs,
    /// Every address NAME (host or host:port) resolves to is a node,
    /// resolved again as nodes come and go (a Kubernetes headless Service).
    #[arg(long, value_name = "NAME")]
    pub(crate) nodes_from_dns: Vec<String>,
    /// Listen at ADDR:PORT for nodes that join (`ppserver --join`); with
    /// Slurm the default is every interface and a free port.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) listen: Option<String>,
    /// Serve a live web dashboard of the run at ADDR (default 127.0.0.1:8787).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8787")]
    pub(crate) dashboard: Option<String>,
    /// Record each finished task's result in a journal at PATH, and take
    /// those it holds from an earlier run of the same command instead of
    /// running them again (docs/JOURNAL.md).
    #[arg(long, value_name = "PATH")]
    pub(crate) journal: Option<PathBuf>,
    /// Delete the --journal file first: start fresh (also from a journal
    /// that is refused as corrupt, truncated or another program's).
    #[arg(long, requires = "journal")]
    pub(crate) journal_reset: bool,
}

/// The Maclaurin job's arguments.
#[derive(clap::Args)]
pub(crate) struct MaclaurinArgs {
    /// Terms of the series.
    #[arg(long, default_value_t = 12_800_000)]
    pub(crate) terms: u64,
    /// Tasks the terms are split into.
    #[arg(long, default_value_t = 64)]
    pub(crate) tasks: u64,
    /// The x of 1/(1-x).
    #[arg(long, default_value_t = 0.999999)]
    pub(crate) x: f64,
}

/// How Slurm starts the nodes, for `run ... --slurm` and `slurm submit`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SlurmArgs {
    /// `ppserver`s per Slurm node, each its own job step with a share of the node's CPUs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) servers_per_node: usize,
    /// The node program on the nodes (default: `ppserver` beside this program, else on PATH).
    #[arg(long, value_name = "PATH")]
    pub(crate) node_program: Option<PathBuf>,
    /// A directory the nodes can read, for the key file (default: ~/.pp).
    #[arg(long, value_name = "DIR")]
    pub(crate) key_dir: Option<PathBuf>,
    /// Host name or address the nodes dial back to (default: this machine's host name).
    #[arg(long, value_name = "HOST")]
    pub(crate) advertise: Option<String>,
    /// Seconds a Slurm node lets running jobs finish when Slurm stops it (kept below KillWait).
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub(crate) node_grace: u64,
    /// Seconds a Slurm node lives without its client before it exits.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub(crate) node_idle_timeout: u64,
}

impl SlurmArgs {
    /// The options common to both ways, on top of `base`.
    pub(crate) fn apply(&self, base: Slurm) -> Slurm {
        let mut s = base
            .servers_per_node(self.servers_per_node)
            .grace(Duration::from_secs(self.node_grace))
            .idle_timeout(Duration::from_secs(self.node_idle_timeout));
        if let Some(p) = &self.node_program {
            s = s.program(p);
        }
        if let Some(d) = &self.key_dir {
            s = s.key_dir(d);
        }
        if let Some(h) = &self.advertise {
            s = s.advertise(h);
        }
        s
    }
}
